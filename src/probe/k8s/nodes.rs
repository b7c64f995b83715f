//! `node_ready` and `node_schedulable`: the named node (`node`, or `"${VAR}"` read from the
//! environment), else every node matching `selector`; readiness, cordons, taints and pressure.

use super::api::{Node, Taint};
use super::client::{Conn, items, typed};
use super::text::{age, human, list_clipped, name_of, objects_detail, reason_message};
use crate::config::probe::k8s::{K8sCheck, K8sSpec, TaintRule, env_ref};
use crate::core::outcome::Outcome;
use serde_json::Value;
use std::time::SystemTime;

/// Fetch the nodes this spec names and judge them (`node_ready` or `node_schedulable`).
pub(super) async fn check(spec: &K8sSpec, conn: &Conn, now: SystemTime) -> Outcome {
    let node = match spec.node.as_deref().map(resolve_node).transpose() {
        Ok(n) => n,
        Err(o) => return o,
    };
    let nodes = match &node {
        Some(n) => match conn.client.get(&["api", "v1", "nodes", n], &[]).await {
            Ok(v) => typed::<Node>(&v).map(|t| (vec![t], vec![v])),
            Err(e) => Err(e),
        }
        .map_err(|e| conn.fail(&format!("node {n}"), e)),
        None => {
            let query: Vec<(&str, &str)> = spec
                .selector
                .as_deref()
                .map(|s| ("labelSelector", s))
                .into_iter()
                .collect();
            match conn.client.get(&["api", "v1", "nodes"], &query).await {
                Ok(v) => items::<Node>(&v),
                Err(e) => Err(e),
            }
            .map_err(|e| conn.fail("nodes", e))
        }
    };
    match nodes {
        Err(o) => o,
        Ok((nodes, raw)) if spec.check == K8sCheck::NodeReady => {
            node_ready_outcome(&nodes, spec.selector.as_deref(), now)
                .with_detail(detail(&nodes, &raw))
        }
        Ok((nodes, raw)) => {
            node_schedulable_outcome(&nodes, spec.selector.as_deref(), &spec.taint_rules())
                .with_detail(detail(&nodes, &raw))
        }
    }
}

/// What a node verdict is computed from: each node's conditions, cordon and taints; nodes that
/// are not Ready, cordoned or tainted first; as the server wrote them (`raw`).
fn detail(nodes: &[Node], raw: &[Value]) -> String {
    objects_detail(
        nodes
            .iter()
            .zip(raw)
            .map(|(n, raw)| {
                let spec = n.spec.as_ref();
                let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
                let ready = conditions
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let cordoned = spec.and_then(|s| s.unschedulable).unwrap_or(false);
                let taints = spec.and_then(|s| s.taints.as_ref());
                let problem = !ready || cordoned || taints.is_some_and(|t| !t.is_empty());
                (
                    problem,
                    format!("node {}", name_of(&n.metadata)),
                    serde_json::json!({
                        "unschedulable": cordoned,
                        "taints": raw["spec"]["taints"],
                        "conditions": raw["status"]["conditions"],
                    }),
                )
            })
            .collect(),
    )
}

/// The node name to ask for: as written, or read from the environment for `"${VAR}"`.
pub(super) fn resolve_node(n: &str) -> Result<String, Outcome> {
    let Some(var) = env_ref(n) else {
        return Ok(n.to_string());
    };
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(Outcome::error(format!(
            "node = \"{n}\": environment variable {var} is not set (in a DaemonSet, set it from the downward API: fieldRef spec.nodeName)"
        ))),
    }
}

/// `node_ready` over the nodes found.
pub fn node_ready_outcome(nodes: &[Node], selector: Option<&str>, now: SystemTime) -> Outcome {
    if nodes.is_empty() {
        return no_nodes(selector);
    }
    let mut bad = Vec::new();
    let mut ready_since = None;
    for n in nodes {
        let name = name_of(&n.metadata);
        let cond = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        match cond {
            None => bad.push(format!(
                "node {name} has no Ready condition (the kubelet has not reported)"
            )),
            Some(c) if c.status == "True" => {
                ready_since = c.last_transition_time.as_ref().map(|t| age(t, now));
            }
            Some(c) => {
                let state = if c.status == "False" {
                    "NotReady".to_string()
                } else {
                    format!("NotReady (Ready={})", c.status)
                };
                let mut s = format!("node {name} {state}");
                if let Some(t) = &c.last_transition_time {
                    s.push_str(&format!(" for {}", human(age(t, now))));
                }
                s.push_str(&reason_message(c.reason.as_deref(), c.message.as_deref()));
                bad.push(s);
            }
        }
    }
    let since = ready_since
        .map(|d| format!(" for {}", human(d)))
        .unwrap_or_default();
    verdict(nodes, bad, "Ready", &since, "")
}

/// `node_schedulable` over the nodes found.
fn node_schedulable_outcome(
    nodes: &[Node],
    selector: Option<&str>,
    allowed: &[TaintRule],
) -> Outcome {
    if nodes.is_empty() {
        return no_nodes(selector);
    }
    let mut bad = Vec::new();
    let mut tolerated: Vec<String> = Vec::new();
    for n in nodes {
        let spec = n.spec.as_ref();
        let cordoned = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let mut problems = Vec::new();
        if cordoned {
            problems.push("cordoned (spec.unschedulable)".to_string());
        }
        for t in spec.and_then(|s| s.taints.as_ref()).into_iter().flatten() {
            let text = taint_text(t);
            if t.effect == "PreferNoSchedule"
                || (cordoned && t.key == "node.kubernetes.io/unschedulable")
            {
                continue;
            }
            if allowed.iter().any(|r| allows(r, t)) {
                if !tolerated.contains(&text) {
                    tolerated.push(text);
                }
                continue;
            }
            problems.push(format!("taint {text}"));
        }
        for c in n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
        {
            let pressure = matches!(
                c.type_.as_str(),
                "MemoryPressure" | "DiskPressure" | "PIDPressure" | "NetworkUnavailable"
            );
            if pressure && c.status == "True" {
                problems.push(format!(
                    "{}{}",
                    c.type_,
                    reason_message(None, c.message.as_deref())
                ));
            }
        }
        if !problems.is_empty() {
            bad.push(format!(
                "node {} not schedulable: {}",
                name_of(&n.metadata),
                problems.join(", ")
            ));
        }
    }
    let note = if tolerated.is_empty() {
        String::new()
    } else {
        format!(" (allowed taint {})", tolerated.join(", "))
    };
    verdict(nodes, bad, "schedulable", &note, &note)
}

/// Nothing to judge: no node matched.
fn no_nodes(selector: Option<&str>) -> Outcome {
    Outcome::fail(match selector {
        Some(s) => format!("no nodes match {s}"),
        None => "the cluster has no nodes".to_string(),
    })
}

/// The verdict over (non-empty) `nodes` given the problems found (`bad`, one line per node):
/// one node speaks for itself, several are counted. `state` is what a good node is (`Ready`);
/// `one` and `all` are appended to a pass for one node and for several.
fn verdict(nodes: &[Node], mut bad: Vec<String>, state: &str, one: &str, all: &str) -> Outcome {
    let n = nodes.len();
    if bad.is_empty() {
        if n == 1 {
            let name = name_of(&nodes[0].metadata);
            Outcome::pass(format!("node {name} {state}{one}"))
        } else {
            Outcome::pass(format!("{n}/{n} nodes {state}{all}"))
        }
    } else if n == 1 {
        Outcome::fail(bad.remove(0))
    } else {
        Outcome::fail(format!(
            "{}/{n} nodes not {state}: {}",
            bad.len(),
            list_clipped(&bad)
        ))
    }
}

/// `key=value:Effect`, or `key:Effect` without a value.
fn taint_text(t: &Taint) -> String {
    match t.value.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => format!("{}={v}:{}", t.key, t.effect),
        None => format!("{}:{}", t.key, t.effect),
    }
}

/// Whether an allowed-taint rule accepts this taint of a node.
fn allows(rule: &TaintRule, t: &Taint) -> bool {
    rule.key == t.key
        && rule
            .value
            .as_deref()
            .is_none_or(|v| t.value.as_deref().unwrap_or("") == v)
        && rule.effect.as_deref().is_none_or(|e| e == t.effect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::k8s::api::{NodeCondition, NodeSpec, NodeStatus, ObjectMeta, Time};
    use std::time::UNIX_EPOCH;

    fn time_ago(now: SystemTime, secs: u64) -> Time {
        let t = now.duration_since(UNIX_EPOCH).unwrap().as_secs() - secs;
        Time(jiff::Timestamp::from_second(t as i64).unwrap())
    }

    fn node(name: &str, ready: &str, reason: &str, msg: &str, ago: u64, now: SystemTime) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    reason: Some(reason.into()),
                    message: Some(msg.into()),
                    last_transition_time: Some(time_ago(now, ago)),
                }]),
            }),
        }
    }

    #[test]
    fn node_not_ready_names_node_reason_and_duration() {
        let now = SystemTime::now();
        let n = node(
            "lima-default",
            "False",
            "KubeletNotReady",
            "PLEG is not healthy",
            192,
            now,
        );
        let o = node_ready_outcome(&[n], None, now);
        assert_eq!(o.status, crate::core::Status::Fail);
        assert_eq!(
            o.output,
            "node lima-default NotReady for 3m 12s: KubeletNotReady (PLEG is not healthy)"
        );
    }

    #[test]
    fn control_plane_taint_is_allowed_by_default_but_custom_taint_is_not() {
        let now = SystemTime::now();
        let mut n = node("cp", "True", "KubeletReady", "ok", 10, now);
        n.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "node-role.kubernetes.io/control-plane".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let spec = |allowed: Option<Vec<String>>| K8sSpec {
            check: K8sCheck::NodeSchedulable,
            kubeconfig: None,
            context: None,
            namespace: None,
            name: None,
            selector: None,
            node: None,
            allowed_taints: allowed,
            verb: None,
            resource: None,
            subresource: None,
            group: None,
            as_user: None,
        };
        let o = node_schedulable_outcome(std::slice::from_ref(&n), None, &spec(None).taint_rules());
        assert!(o.status.passed(), "{o:?}");
        assert!(
            o.output
                .contains("allowed taint node-role.kubernetes.io/control-plane:NoSchedule")
        );
        // An empty allow-list makes the same taint a failure.
        let o = node_schedulable_outcome(&[n], None, &spec(Some(vec![])).taint_rules());
        assert_eq!(
            o.output,
            "node cp not schedulable: taint node-role.kubernetes.io/control-plane:NoSchedule"
        );
    }

    #[test]
    fn taint_rules_parse_and_match() {
        let r = TaintRule::parse("dedicated=gpu:NoSchedule").unwrap();
        let t = |k: &str, v: Option<&str>, e: &str| Taint {
            key: k.into(),
            value: v.map(Into::into),
            effect: e.into(),
        };
        assert!(allows(&r, &t("dedicated", Some("gpu"), "NoSchedule")));
        assert!(!allows(&r, &t("dedicated", Some("cpu"), "NoSchedule")));
        assert!(!allows(&r, &t("dedicated", Some("gpu"), "NoExecute")));
        assert!(allows(
            &TaintRule::parse("key").unwrap(),
            &t("key", Some("v"), "NoExecute")
        ));
        assert!(
            TaintRule::parse("key:Sometimes")
                .unwrap_err()
                .contains("effect `Sometimes`")
        );
    }

    #[test]
    fn nodes_without_status_or_matches_are_explained() {
        let now = SystemTime::now();
        let mut n = node("fresh", "True", "", "", 1, now);
        n.status = None;
        assert_eq!(
            node_ready_outcome(&[n], None, now).output,
            "node fresh has no Ready condition (the kubelet has not reported)"
        );
        assert_eq!(
            node_ready_outcome(&[], Some("pool=gpu"), now).output,
            "no nodes match pool=gpu"
        );
    }
}
