//! `daemonset_ready`, `deployment_ready`, `statefulset_ready`: one namespaced workload fetched by
//! name and judged by one rule — rollout observed, wants pods, every pod ready and available —
//! with each kind saying only what differs ([`Workload`]).

use super::api::{DaemonSet, Deployment, ObjectMeta, StatefulSet};
use super::client::{Conn, typed};
use super::text::{objects_detail, pick, reason_message};
use crate::core::outcome::Outcome;
use serde::de::DeserializeOwned;

/// What the workload rule needs from a DaemonSet, Deployment or StatefulSet (all `apps/v1`).
pub(super) trait Workload: DeserializeOwned {
    /// The kind as messages name it (`daemonset`).
    const KIND: &'static str;
    /// The resource in the API's paths (`daemonsets`).
    const RESOURCE: &'static str;
    /// Its metadata (for the generation).
    fn meta(&self) -> &ObjectMeta;
    /// What a workload that wants no pods is doing, after its name.
    const WANTS_NONE: &'static str;
    /// The pod counts from its status; `None` while it has no status.
    fn counts(&self) -> Option<Counts>;
    /// Why its rollout cannot finish, when its status says so (beyond the counts).
    fn stalled(&self) -> Option<String> {
        None
    }
}

/// The pod counts of a workload's status.
pub(super) struct Counts {
    desired: i32,
    ready: i32,
    available: i32,
    /// Pods already on the current template; `None` when the status does not say.
    updated: Option<i32>,
    /// The generation its controller has acted on.
    observed: Option<i64>,
}

/// Fetch the workload `ns/name` of kind `W` and judge it.
pub(super) async fn check<W: Workload>(conn: &Conn, ns: &str, name: &str) -> Outcome {
    let what = format!("{} {ns}/{name}", W::KIND);
    let path = ["apis", "apps", "v1", "namespaces", ns, W::RESOURCE, name];
    let got = match conn.client.get(&path, &[]).await {
        Ok(v) => typed::<W>(&v).map(|w| (w, v)),
        Err(e) => Err(e),
    };
    match got {
        Ok((w, raw)) => workload_outcome(&what, &w).with_detail(detail(&what, &raw)),
        Err(e) => conn.fail(&what, e),
    }
}

/// What a workload verdict is computed from: its generation, wanted replicas and status, as
/// the server wrote them (`v`).
fn detail(what: &str, v: &serde_json::Value) -> String {
    let mut shown = serde_json::Map::new();
    shown.insert("generation".into(), v["metadata"]["generation"].clone());
    shown.insert(
        "spec".into(),
        pick(v["spec"].clone(), &["replicas", "minReadySeconds"]),
    );
    shown.insert("status".into(), v["status"].clone());
    objects_detail(vec![(true, what.to_string(), shown.into())])
}

/// `daemonset_ready` for one DaemonSet.
pub fn daemonset_outcome(what: &str, d: &DaemonSet) -> Outcome {
    workload_outcome(what, d)
}

/// `deployment_ready` for one Deployment.
pub fn deployment_outcome(what: &str, d: &Deployment) -> Outcome {
    workload_outcome(what, d)
}

/// `statefulset_ready` for one StatefulSet.
pub fn statefulset_outcome(what: &str, s: &StatefulSet) -> Outcome {
    workload_outcome(what, s)
}

/// The workload rule; `what` names the object in messages (`deployment apps/web`).
fn workload_outcome<W: Workload>(what: &str, w: &W) -> Outcome {
    let no_status = || {
        Outcome::fail(format!(
            "{what} has no status yet (its controller has not observed it)"
        ))
    };
    let Some(c) = w.counts() else {
        return no_status();
    };
    let ready = format!("{}/{} ready", c.ready, c.desired);
    let generation = w.meta().generation;
    if let (Some(g), Some(o)) = (generation, c.observed)
        && o < g
    {
        return Outcome::fail(format!(
            "{what} rollout not observed yet (generation {g}, observed {o}); {ready}"
        ));
    }
    if generation.is_some() && c.observed.is_none() {
        return no_status();
    }
    if let Some(f) = w.stalled() {
        return Outcome::fail(format!("{what} {f}; {ready}"));
    }
    if c.desired == 0 {
        return Outcome::fail(format!("{what} {}", W::WANTS_NONE));
    }
    if c.desired < 0 {
        return Outcome::fail(format!("{what} wants 0 pods (desired 0)"));
    }
    if c.ready < c.desired || c.available < c.desired {
        let mut s = format!("{what} {ready}, {} available", c.available);
        if let Some(u) = c.updated.filter(|u| *u < c.desired) {
            s.push_str(&format!(
                ", {u}/{} updated (rollout in progress)",
                c.desired
            ));
        }
        return Outcome::fail(s);
    }
    let mut s = format!("{what} {ready}");
    if let Some(u) = c.updated.filter(|u| *u < c.desired) {
        s.push_str(&format!(
            " (rollout in progress: {u}/{} updated)",
            c.desired
        ));
    }
    Outcome::pass(s)
}

impl Workload for DaemonSet {
    const KIND: &'static str = "daemonset";
    const RESOURCE: &'static str = "daemonsets";
    const WANTS_NONE: &'static str =
        "schedules no pods (desired 0): no node matches its node selector and tolerations";

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn counts(&self) -> Option<Counts> {
        let s = self.status.as_ref()?;
        Some(Counts {
            desired: s.desired_number_scheduled,
            ready: s.number_ready,
            available: s.number_available.unwrap_or(0),
            updated: s.updated_number_scheduled,
            observed: s.observed_generation,
        })
    }
}

impl Workload for Deployment {
    const KIND: &'static str = "deployment";
    const RESOURCE: &'static str = "deployments";
    const WANTS_NONE: &'static str = "is scaled to 0 replicas";

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn counts(&self) -> Option<Counts> {
        let s = self.status.as_ref()?;
        Some(Counts {
            desired: self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            updated: s.updated_replicas,
            observed: s.observed_generation,
        })
    }

    fn stalled(&self) -> Option<String> {
        let s = self.status.as_ref()?;
        let c = s.conditions.iter().flatten().find(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })?;
        Some(format!(
            "rollout stalled{}",
            reason_message(c.reason.as_deref(), c.message.as_deref())
        ))
    }
}

impl Workload for StatefulSet {
    const KIND: &'static str = "statefulset";
    const RESOURCE: &'static str = "statefulsets";
    const WANTS_NONE: &'static str = "is scaled to 0 replicas";

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn counts(&self) -> Option<Counts> {
        let s = self.status.as_ref()?;
        Some(Counts {
            desired: self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            updated: s.updated_replicas,
            observed: s.observed_generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::k8s::api::{
        DaemonSetStatus, DeploymentSpec, DeploymentStatus, StatefulSetSpec, StatefulSetStatus,
    };

    #[test]
    fn workloads_without_status_are_explained() {
        let d = Deployment {
            metadata: ObjectMeta {
                generation: Some(1),
                ..Default::default()
            },
            ..Default::default()
        };
        let o = deployment_outcome("deployment a/b", &d);
        assert_eq!(o.status, crate::core::Status::Fail);
        assert_eq!(
            o.output,
            "deployment a/b has no status yet (its controller has not observed it)"
        );
        // A status its controller has not filled in (no observed generation) is no status either.
        let s = StatefulSet {
            metadata: ObjectMeta {
                generation: Some(2),
                ..Default::default()
            },
            status: Some(StatefulSetStatus::default()),
            ..Default::default()
        };
        assert_eq!(
            statefulset_outcome("statefulset a/db", &s).output,
            "statefulset a/db has no status yet (its controller has not observed it)"
        );
        assert_eq!(
            daemonset_outcome("daemonset a/agent", &DaemonSet::default()).output,
            "daemonset a/agent has no status yet (its controller has not observed it)"
        );
    }

    #[test]
    fn each_kind_says_in_its_own_words_that_it_wants_no_pods() {
        let d = DaemonSet {
            status: Some(DaemonSetStatus {
                desired_number_scheduled: 0,
                observed_generation: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            daemonset_outcome("daemonset a/agent", &d).output,
            "daemonset a/agent schedules no pods (desired 0): no node matches its node selector and tolerations"
        );
        let dep = Deployment {
            spec: Some(DeploymentSpec { replicas: Some(0) }),
            status: Some(DeploymentStatus::default()),
            ..Default::default()
        };
        assert_eq!(
            deployment_outcome("deployment a/web", &dep).output,
            "deployment a/web is scaled to 0 replicas"
        );
        let st = StatefulSet {
            spec: Some(StatefulSetSpec { replicas: Some(0) }),
            status: Some(StatefulSetStatus::default()),
            ..Default::default()
        };
        let o = statefulset_outcome("statefulset a/db", &st);
        assert_eq!(o.status, crate::core::Status::Fail);
        assert_eq!(o.output, "statefulset a/db is scaled to 0 replicas");
        // Without a spec, one replica is wanted: an empty status is then 0/1 ready.
        let st = StatefulSet {
            status: Some(StatefulSetStatus::default()),
            ..Default::default()
        };
        assert_eq!(
            statefulset_outcome("statefulset a/db", &st).output,
            "statefulset a/db 0/1 ready, 0 available"
        );
    }
}
