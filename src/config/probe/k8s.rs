//! `k8s` probe spec: which check (`api`, `node_ready`, `node_schedulable`, `daemonset_ready`,
//! `deployment_ready`, `statefulset_ready`, `pod_ready`, `can_i`), the kubeconfig and context,
//! and the object, selector, taints or access review it is about — validated like the API server
//! would (label selectors, object names, verbs). The API calls live in `crate::probe::k8s`.

use super::{Check, Kind, KindSpec, ProbeKind};
use serde::{Deserialize, Serialize};

/// `[k8s.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "k8s",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::K8s),
};

/// What a `k8s` probe checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum K8sCheck {
    /// The API server answers its version endpoint.
    Api,
    /// The named node (or every node) has `Ready=True`.
    NodeReady,
    /// Not cordoned, no disallowed `NoSchedule`/`NoExecute` taint, no pressure condition.
    NodeSchedulable,
    DaemonsetReady,
    DeploymentReady,
    StatefulsetReady,
    /// Pods by name or label selector are Ready.
    PodReady,
    /// An access review for a verb on a resource (self, or another user with `as`).
    CanI,
}

impl K8sCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            K8sCheck::Api => "api",
            K8sCheck::NodeReady => "node_ready",
            K8sCheck::NodeSchedulable => "node_schedulable",
            K8sCheck::DaemonsetReady => "daemonset_ready",
            K8sCheck::DeploymentReady => "deployment_ready",
            K8sCheck::StatefulsetReady => "statefulset_ready",
            K8sCheck::PodReady => "pod_ready",
            K8sCheck::CanI => "can_i",
        }
    }

    /// Keys (besides `check`) this check accepts.
    fn keys(self) -> &'static [&'static str] {
        const CONN: [&str; 2] = ["kubeconfig", "context"];
        match self {
            K8sCheck::Api => &CONN,
            K8sCheck::NodeReady => &["kubeconfig", "context", "node", "selector"],
            K8sCheck::NodeSchedulable => &[
                "kubeconfig",
                "context",
                "node",
                "selector",
                "allowed_taints",
            ],
            K8sCheck::DaemonsetReady | K8sCheck::DeploymentReady | K8sCheck::StatefulsetReady => {
                &["kubeconfig", "context", "namespace", "name"]
            }
            K8sCheck::PodReady => &[
                "kubeconfig",
                "context",
                "namespace",
                "name",
                "selector",
                "node",
            ],
            K8sCheck::CanI => &[
                "kubeconfig",
                "context",
                "namespace",
                "name",
                "verb",
                "resource",
                "subresource",
                "group",
                "as",
            ],
        }
    }
}

/// `verb = "get"` or `verb = ["get", "create"]` (every verb must be allowed).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Verbs {
    One(String),
    Many(Vec<String>),
}

impl Verbs {
    pub fn list(&self) -> Vec<&str> {
        match self {
            Verbs::One(v) => vec![v.as_str()],
            Verbs::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// The `[k8s.NAME]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct K8sSpec {
    pub check: K8sCheck,
    /// Kubeconfig file (`~` expanded). Unset: `$KUBECONFIG`, `~/.kube/config`, then the
    /// in-cluster service account when running in a pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// Kubeconfig context; unset = the file's current context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Namespace of the object; unset = the context's namespace (or `default`). For `can_i`,
    /// unset means a cluster-wide review.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name (DaemonSet, Deployment, StatefulSet, Pod; for `can_i` the resource's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Label selector (`app=web,tier!=cache`) for `pod_ready` and the node checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Node name for the node checks; unset = every node (or those matching `selector`).
    /// `"${NODE_NAME}"` reads the name from that environment variable at run time (a DaemonSet
    /// sets it from the downward API, so each pod checks its own node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Taints `node_schedulable` accepts, as `key`, `key:Effect` or `key=value:Effect`.
    /// Unset: the standard control-plane taints. Setting it replaces the defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_taints: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verb: Option<Verbs>,
    /// Resource (plural, e.g. `nodes`) for `can_i`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// API group of `resource` (empty = core).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Review access for this user (SubjectAccessReview) instead of Talon's own credentials.
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_user: Option<String>,
}

/// Taints a control-plane node carries normally; not a reason to page anyone.
pub const DEFAULT_ALLOWED_TAINTS: &[&str] = &[
    "node-role.kubernetes.io/control-plane:NoSchedule",
    "node-role.kubernetes.io/master:NoSchedule",
];

const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const KNOWN_VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "proxy",
    "impersonate",
    "bind",
    "escalate",
    "use",
    "approve",
    "sign",
    "*",
];

impl K8sSpec {
    /// `(key, is set)` for every optional key, for the per-check key table.
    fn set_keys(&self) -> [(&'static str, bool); 12] {
        [
            ("kubeconfig", self.kubeconfig.is_some()),
            ("context", self.context.is_some()),
            ("namespace", self.namespace.is_some()),
            ("name", self.name.is_some()),
            ("selector", self.selector.is_some()),
            ("node", self.node.is_some()),
            ("allowed_taints", self.allowed_taints.is_some()),
            ("verb", self.verb.is_some()),
            ("resource", self.resource.is_some()),
            ("subresource", self.subresource.is_some()),
            ("group", self.group.is_some()),
            ("as", self.as_user.is_some()),
        ]
    }

    /// The taints `node_schedulable` accepts: `allowed_taints`, else the control-plane ones.
    pub fn taint_rules(&self) -> Vec<TaintRule> {
        let written: Vec<&str> = match &self.allowed_taints {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => DEFAULT_ALLOWED_TAINTS.to_vec(),
        };
        written
            .into_iter()
            .filter_map(|s| TaintRule::parse(s).ok())
            .collect()
    }
}

impl KindSpec for K8sSpec {
    fn validate(&self, c: &mut Check<'_>) {
        let check = self.check.as_str();
        let allowed = self.check.keys();
        for (key, set) in self.set_keys() {
            if set && !allowed.contains(&key) {
                let hint = match (key, self.check) {
                    ("name", K8sCheck::NodeReady | K8sCheck::NodeSchedulable) => {
                        " (name a node with `node`)"
                    }
                    ("node", _) => " (`node` is for node_ready, node_schedulable and pod_ready)",
                    _ => "",
                };
                c.error(
                    key,
                    format!("`{key}` does not apply to check = \"{check}\"{hint}"),
                );
            }
        }
        let empty = |v: &Option<String>| v.as_deref().is_some_and(|s| s.trim().is_empty());
        for (key, v) in [
            ("kubeconfig", &self.kubeconfig),
            ("context", &self.context),
            ("node", &self.node),
            ("resource", &self.resource),
            ("subresource", &self.subresource),
            ("as", &self.as_user),
        ] {
            if empty(v) {
                c.error(key, "must not be empty (leave the key out instead)");
            }
        }
        if let Some(n) = &self.node
            && !n.trim().is_empty()
        {
            let ok = match env_ref(n) {
                Some(var) => is_env_name(var),
                None => check_object_name(n).is_ok(),
            };
            if !ok {
                c.error(
                    "node",
                    format!("`{n}` is not a node name or an environment reference like \"${{NODE_NAME}}\""),
                );
            }
        }
        for (key, v) in [("namespace", &self.namespace), ("name", &self.name)] {
            if let Some(s) = v
                && let Err(e) = check_object_name(s)
            {
                c.error(key, e);
            }
        }
        match self.check {
            K8sCheck::DaemonsetReady | K8sCheck::DeploymentReady | K8sCheck::StatefulsetReady => {
                if self.name.is_none() {
                    c.error(
                        "check",
                        format!("check = \"{check}\" needs `name` (the object's name)"),
                    );
                }
            }
            K8sCheck::PodReady => match (&self.name, &self.selector) {
                (None, None) => c.error(
                    "check",
                    "check = \"pod_ready\" needs `name` or `selector` (e.g. selector = \"app=web\")",
                ),
                (Some(_), Some(_)) => c.error("selector", "give `name` or `selector`, not both"),
                _ => {
                    if self.node.is_some() && self.selector.is_none() {
                        c.error(
                            "node",
                            "`node` narrows a `selector` to the pods on one node; a pod named by `name` is on whatever node it is",
                        );
                    }
                }
            },
            K8sCheck::NodeReady | K8sCheck::NodeSchedulable => {
                if self.node.is_some() && self.selector.is_some() {
                    c.error("selector", "give `node` or `selector`, not both");
                }
            }
            K8sCheck::CanI => {
                match &self.verb {
                    None => c.error(
                        "check",
                        "check = \"can_i\" needs `verb` (e.g. verb = \"get\" or [\"get\", \"create\"])",
                    ),
                    Some(v) if v.list().is_empty() => c.error("verb", "must name at least one verb"),
                    Some(v) => {
                        for verb in v.list() {
                            if verb.trim().is_empty() {
                                c.error("verb", "verbs must not be empty");
                            } else if !KNOWN_VERBS.contains(&verb) {
                                let hint = crate::config::diag::suggest(verb, KNOWN_VERBS.iter().copied())
                                    .map(|s| format!(" (did you mean `{s}`?)"))
                                    .unwrap_or_default();
                                c.warning(
                                    "verb",
                                    format!("`{verb}` is not a standard Kubernetes verb{hint}"),
                                );
                            }
                        }
                    }
                }
                if self.resource.is_none() {
                    c.error(
                        "check",
                        "check = \"can_i\" needs `resource` (plural, e.g. resource = \"nodes\")",
                    );
                }
            }
            K8sCheck::Api => {}
        }
        if let Some(s) = &self.selector
            && let Err(e) = check_selector(s)
        {
            c.error(
                "selector",
                format!("`{s}` is not a valid label selector: {e}"),
            );
        }
        for t in self.allowed_taints.iter().flatten() {
            if let Err(e) = TaintRule::parse(t) {
                c.error("allowed_taints", e);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Label selectors and taint rules (validation only: the API server applies selectors).

/// Check a label selector's syntax the way the API server parses it: comma-separated
/// requirements `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`.
pub fn check_selector(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("it is empty".to_string());
    }
    // Split on commas outside parentheses.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced `)`".to_string());
                }
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced `(`".to_string());
    }
    parts.push(&s[start..]);
    for part in parts {
        let p = part.trim();
        if p.is_empty() {
            return Err("empty requirement between commas".to_string());
        }
        if let Some(k) = p.strip_prefix('!') {
            check_label_key(k.trim())?;
            continue;
        }
        if let Some((k, v)) = p.split_once("!=").or_else(|| p.split_once("==")) {
            check_label_key(k.trim())?;
            check_label_value(v.trim())?;
            continue;
        }
        if let Some((k, v)) = p.split_once('=') {
            check_label_key(k.trim())?;
            check_label_value(v.trim())?;
            continue;
        }
        let words: Vec<&str> = p.splitn(2, char::is_whitespace).collect();
        if words.len() == 2 {
            let rest = words[1].trim_start();
            let (op, set) = if let Some(r) = rest.strip_prefix("notin") {
                ("notin", r)
            } else if let Some(r) = rest.strip_prefix("in") {
                ("in", r)
            } else {
                return Err(format!("`{p}`: expected =, !=, in or notin after the key"));
            };
            let set = set.trim();
            let Some(inner) = set.strip_prefix('(').and_then(|x| x.strip_suffix(')')) else {
                return Err(format!("`{p}`: `{op}` needs a set like (a, b)"));
            };
            check_label_key(words[0])?;
            if inner.trim().is_empty() {
                return Err(format!("`{p}`: the set is empty"));
            }
            for v in inner.split(',') {
                check_label_value(v.trim())?;
            }
            continue;
        }
        check_label_key(p)?;
    }
    Ok(())
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !s.is_empty()
        && s.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !l.is_empty()
                && l.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn check_label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Err(format!("`{k}`: prefix `{p}` is not a DNS subdomain"));
    }
    if !is_label_name(name) {
        return Err(format!(
            "`{k}` is not a label key (letters, digits, `-`, `_`, `.`, at most 63, optionally prefixed by a DNS subdomain and `/`)"
        ));
    }
    Ok(())
}

fn check_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_label_name(v) {
        Ok(())
    } else {
        Err(format!(
            "`{v}` is not a label value (letters, digits, `-`, `_`, `.`, at most 63)"
        ))
    }
}

pub use crate::config::envfile::env_ref;

fn is_env_name(s: &str) -> bool {
    let b = s.as_bytes();
    !s.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Names and namespaces: DNS subdomains (pods and most objects allow dots; namespaces don't,
/// but the API server says so more precisely than we could).
fn check_object_name(s: &str) -> Result<(), String> {
    if is_dns_subdomain(s) {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a Kubernetes object name (lowercase letters, digits, `-` and `.`)"
        ))
    }
}

/// One entry of `allowed_taints`: `key`, `key:Effect`, `key=value:Effect` or `key=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaintRule {
    pub key: String,
    pub value: Option<String>,
    pub effect: Option<String>,
}

impl TaintRule {
    pub fn parse(s: &str) -> Result<TaintRule, String> {
        let (kv, effect) = match s.rsplit_once(':') {
            Some((kv, e)) => {
                if !EFFECTS.contains(&e) {
                    return Err(format!(
                        "`{s}`: effect `{e}` is not one of {}",
                        EFFECTS.join(", ")
                    ));
                }
                (kv, Some(e.to_string()))
            }
            None => (s, None),
        };
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (kv, None),
        };
        check_label_key(key)
            .map_err(|e| format!("`{s}` is not a taint like key[=value][:Effect]: {e}"))?;
        Ok(TaintRule {
            key: key.to_string(),
            value,
            effect,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_checked_like_the_api_server() {
        for ok in [
            "app=web",
            "app==web,tier!=cache",
            "app in (a, b),!legacy",
            "example.com/role notin (x)",
            "app",
            "app=",
        ] {
            assert_eq!(check_selector(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "app=web,",
            "app in a",
            "app in ()",
            "-app=x",
            "app=we b",
            "Ex_ample/x=y",
            "app in (a",
        ] {
            assert!(check_selector(bad).is_err(), "{bad} should be rejected");
        }
    }
}
