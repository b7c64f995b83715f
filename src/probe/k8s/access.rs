//! `can_i`: whether Talon's own credentials (a SelfSubjectAccessReview) or a named user (`as_user`,
//! a SubjectAccessReview) may do each verb on a resource, and when not, the authorizer's reason.

use super::api::{
    AccessReview, AccessReviewAnswer, AccessReviewSpec, ResourceAttributes,
    SubjectAccessReviewStatus,
};
use super::client::{Conn, typed};
use super::errors::Error;
use super::text::{clip, objects_detail};
use crate::config::probe::k8s::{K8sSpec, Verbs};
use crate::core::outcome::Outcome;

/// Review every verb of the spec; pass when all are allowed.
pub(super) async fn check(spec: &K8sSpec, conn: &Conn) -> Outcome {
    let verbs = spec.verb.as_ref().map(Verbs::list).unwrap_or_default();
    let resource = spec.resource.clone().unwrap_or_default();
    let target = resource_display(
        &resource,
        spec.subresource.as_deref(),
        spec.group.as_deref(),
        spec.namespace.as_deref(),
        spec.name.as_deref(),
    );
    let who = spec
        .as_user
        .clone()
        .unwrap_or_else(|| "Talon's credentials".to_string());
    let mut denied: Vec<(String, String)> = Vec::new();
    // Each review's answer, for a failure's detail.
    let mut answers: Vec<(bool, String, serde_json::Value)> = Vec::new();
    for verb in &verbs {
        let attrs = ResourceAttributes {
            verb: Some(verb.to_string()),
            resource: Some(resource.clone()),
            subresource: spec.subresource.clone(),
            group: spec.group.clone(),
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
        };
        match review(conn, spec.as_user.as_deref(), attrs).await {
            Err(e) => return conn.fail(&format!("an access review for {verb} {target}"), e),
            Ok(None) => {
                return Outcome::error(format!(
                    "the access review for {verb} {target} came back without a status"
                ));
            }
            Ok(Some(s)) => {
                answers.push((
                    !s.allowed,
                    format!("{verb} {target}"),
                    serde_json::to_value(&s).unwrap_or_default(),
                ));
                if !s.allowed {
                    denied.push((verb.to_string(), denial(s)));
                }
            }
        }
    }
    if denied.is_empty() {
        return Outcome::pass(format!("{who} may {} {target}", verbs.join(", ")));
    }
    let names: Vec<&str> = denied.iter().map(|(v, _)| v.as_str()).collect();
    let why = if denied.iter().all(|(_, w)| *w == denied[0].1) {
        denied[0].1.clone()
    } else {
        denied
            .iter()
            .map(|(v, w)| format!("{v}: {w}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Outcome::fail(format!(
        "{who} may not {} {target}: {why}",
        names.join(", ")
    ))
    .with_detail(objects_detail(answers))
}

/// Ask whether `user` — or, without one, Talon's own credentials — may do `attrs`: POST a
/// SubjectAccessReview (or SelfSubjectAccessReview) and return the server's answer.
async fn review(
    conn: &Conn,
    user: Option<&str>,
    attrs: ResourceAttributes,
) -> Result<Option<SubjectAccessReviewStatus>, Error> {
    let (kind, resource) = match user {
        Some(_) => ("SubjectAccessReview", "subjectaccessreviews"),
        None => ("SelfSubjectAccessReview", "selfsubjectaccessreviews"),
    };
    let review = AccessReview {
        api_version: "authorization.k8s.io/v1",
        kind,
        spec: AccessReviewSpec {
            user: user.map(str::to_string),
            resource_attributes: Some(attrs),
        },
    };
    let path = ["apis", "authorization.k8s.io", "v1", resource];
    let v = conn.client.post(&path, &review).await?;
    Ok(typed::<AccessReviewAnswer>(&v)?.status)
}

/// Why a review said no: denied outright or no rule allows it, with the authorizer's reason.
fn denial(s: SubjectAccessReviewStatus) -> String {
    let mut why = if s.denied == Some(true) {
        "explicitly denied".to_string()
    } else {
        "no rule allows it".to_string()
    };
    if let Some(r) = s.reason.filter(|r| !r.is_empty()) {
        why = format!("{why}: {}", clip(&r, 160));
    }
    if let Some(r) = s.evaluation_error.filter(|r| !r.is_empty()) {
        why = format!("{why} (evaluation error: {})", clip(&r, 160));
    }
    why
}

/// `nodes/proxy`, `deployments.apps "web" in namespace default`, kubectl style.
fn resource_display(
    resource: &str,
    sub: Option<&str>,
    group: Option<&str>,
    ns: Option<&str>,
    name: Option<&str>,
) -> String {
    let mut s = resource.to_string();
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        s = format!("{s}.{g}");
    }
    if let Some(sub) = sub {
        s = format!("{s}/{sub}");
    }
    if let Some(n) = name {
        s = format!("{s} \"{n}\"");
    }
    if let Some(ns) = ns {
        s = format!("{s} in namespace {ns}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_read_like_kubectl() {
        assert_eq!(
            resource_display("nodes", Some("proxy"), None, None, None),
            "nodes/proxy"
        );
        assert_eq!(
            resource_display(
                "deployments",
                None,
                Some("apps"),
                Some("default"),
                Some("web")
            ),
            "deployments.apps \"web\" in namespace default"
        );
        // The core group is the empty string: no trailing dot.
        assert_eq!(
            resource_display("pods", None, Some(""), Some("kube-system"), None),
            "pods in namespace kube-system"
        );
    }

    #[test]
    fn a_denial_names_its_kind_and_the_authorizers_reason() {
        let s = |denied, reason: &str, eval: &str| SubjectAccessReviewStatus {
            allowed: false,
            denied,
            reason: Some(reason.into()),
            evaluation_error: Some(eval.into()),
        };
        assert_eq!(denial(s(None, "", "")), "no rule allows it");
        assert_eq!(
            denial(s(Some(true), "policy says no", "")),
            "explicitly denied: policy says no"
        );
        assert_eq!(
            denial(s(Some(false), "", "webhook down")),
            "no rule allows it (evaluation error: webhook down)"
        );
    }
}
