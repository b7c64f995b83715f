//! `pod_ready`: one pod by name, or every pod matching `selector` (only those on `node` when it
//! is set: a DaemonSet's Talon watches its own node's pods), and why each is not Ready
//! (eviction, scheduling, waiting or failing containers, termination).

use super::api::Pod;
use super::client::{Conn, items, typed};
use super::text::{age, human, list_clipped, name_of, objects_detail, pick, reason_message};
use crate::core::outcome::Outcome;
use serde_json::Value;
use std::time::SystemTime;

/// Fetch the pod `ns/name`, or the pods matching `selector` in `ns` (on `node` only, by the
/// field selector `spec.nodeName`, when given), and judge them.
pub(super) async fn check(
    conn: &Conn,
    ns: &str,
    name: &str,
    selector: Option<&str>,
    node: Option<&str>,
    now: SystemTime,
) -> Outcome {
    let path = ["api", "v1", "namespaces", ns, "pods"];
    match selector {
        None => {
            let got = match conn.client.get(&[&path[..], &[name]].concat(), &[]).await {
                Ok(v) => typed::<Pod>(&v).map(|p| (p, v)),
                Err(e) => Err(e),
            };
            match got {
                Ok((p, raw)) => pods_outcome(std::slice::from_ref(&p), None, ns, now)
                    .with_detail(detail(&[p], &[raw])),
                Err(e) => conn.fail(&format!("pod {ns}/{name}"), e),
            }
        }
        Some(sel) => {
            let mut query = vec![("labelSelector", sel)];
            let field;
            let scope = match node {
                Some(n) => {
                    field = format!("spec.nodeName={n}");
                    query.push(("fieldSelector", &field));
                    format!("{sel} on node {n}")
                }
                None => sel.to_string(),
            };
            let got = match conn.client.get(&path, &query).await {
                Ok(v) => items::<Pod>(&v),
                Err(e) => Err(e),
            };
            match got {
                Ok((pods, raw)) => {
                    pods_outcome(&pods, Some(&scope), ns, now).with_detail(detail(&pods, &raw))
                }
                Err(e) => conn.fail(&format!("pods {scope} in {ns}"), e),
            }
        }
    }
}

/// What a pod verdict is computed from: each pod's phase, conditions and container states;
/// pods that are not Ready first; as the server wrote them (`raw`).
fn detail(pods: &[Pod], raw: &[Value]) -> String {
    objects_detail(
        pods.iter()
            .zip(raw)
            .map(|(p, raw)| {
                let status = p.status.as_ref();
                let ready = status
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let v = pick(
                    raw["status"].clone(),
                    &[
                        "phase",
                        "reason",
                        "message",
                        "conditions",
                        "initContainerStatuses",
                        "containerStatuses",
                    ],
                );
                (!ready, format!("pod {}", name_of(&p.metadata)), v)
            })
            .collect(),
    )
}

/// `pod_ready` over the pods found (by name: one; by selector: every match).
pub fn pods_outcome(pods: &[Pod], selector: Option<&str>, ns: &str, now: SystemTime) -> Outcome {
    // Completed pods (Jobs) matched by a selector are neither ready nor a problem.
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            selector.is_none()
                || p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded")
        })
        .collect();
    if live.is_empty() {
        return Outcome::fail(match selector {
            Some(s) => format!("no pods match {s} in namespace {ns}"),
            None => format!("no pod in namespace {ns}"),
        });
    }
    let mut bad = Vec::new();
    for p in &live {
        if let Some(why) = pod_problem(p, now) {
            let name = name_of(&p.metadata);
            bad.push(format!("pod {ns}/{name} not ready: {why}"));
        }
    }
    let scope = selector
        .map(|s| format!(" ({s} in {ns})"))
        .unwrap_or_default();
    if bad.is_empty() {
        if selector.is_none() {
            let name = name_of(&live[0].metadata);
            Outcome::pass(format!("pod {ns}/{name} Ready"))
        } else {
            Outcome::pass(format!("{}/{} pods ready{scope}", live.len(), live.len()))
        }
    } else if selector.is_none() {
        Outcome::fail(bad.remove(0))
    } else {
        Outcome::fail(format!(
            "{}/{} pods ready{scope}; {}",
            live.len() - bad.len(),
            live.len(),
            list_clipped(&bad)
        ))
    }
}

/// Why a pod is not Ready, or `None` when it is.
fn pod_problem(p: &Pod, now: SystemTime) -> Option<String> {
    let Some(s) = &p.status else {
        return Some("no status yet".to_string());
    };
    let ready = s
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready && p.metadata.deletion_timestamp.is_none() {
        return None;
    }
    let mut why = Vec::new();
    if let Some(t) = &p.metadata.deletion_timestamp {
        why.push(format!("terminating for {}", human(age(t, now))));
    }
    let phase = s.phase.as_deref().unwrap_or("Unknown");
    if phase == "Succeeded" || phase == "Failed" {
        why.push(format!(
            "phase {phase}{}",
            reason_message(s.reason.as_deref(), s.message.as_deref())
        ));
    }
    let statuses = s
        .init_container_statuses
        .iter()
        .flatten()
        .map(|c| (true, c))
        .chain(s.container_statuses.iter().flatten().map(|c| (false, c)));
    for (init, c) in statuses {
        let kind = if init { "init container" } else { "container" };
        let restarts = if c.restart_count > 0 {
            format!(", {} restarts", c.restart_count)
        } else {
            String::new()
        };
        let state = c.state.as_ref();
        if let Some(w) = state.and_then(|st| st.waiting.as_ref()) {
            why.push(format!(
                "{kind} {} {}{}{restarts}",
                c.name,
                w.reason.as_deref().unwrap_or("Waiting"),
                reason_message(None, w.message.as_deref())
            ));
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            if init && t.exit_code == 0 {
                continue;
            }
            why.push(format!(
                "{kind} {} terminated: {} (exit {}){restarts}",
                c.name,
                t.reason.as_deref().unwrap_or("Terminated"),
                t.exit_code
            ));
        } else if !c.ready && !init {
            why.push(format!("{kind} {} running but not ready{restarts}", c.name));
        }
    }
    if why.is_empty() {
        let unscheduled = s
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False");
        match unscheduled {
            Some(c) => why.push(format!(
                "unschedulable{}",
                reason_message(None, c.message.as_deref())
            )),
            None => why.push(format!(
                "phase {phase}{}",
                reason_message(s.reason.as_deref(), s.message.as_deref())
            )),
        }
    }
    Some(why.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::k8s::api::{ObjectMeta, PodStatus};

    fn pod_with(status: PodStatus) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                ..Default::default()
            },
            status: Some(status),
        }
    }

    #[test]
    fn pods_explain_eviction_scheduling_and_failing_init_containers() {
        use crate::probe::k8s::api::{
            ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition,
        };
        let now = SystemTime::now();
        let evicted = pod_with(PodStatus {
            phase: Some("Failed".into()),
            reason: Some("Evicted".into()),
            message: Some("The node was low on resource: memory.".into()),
            ..Default::default()
        });
        assert_eq!(
            pods_outcome(&[evicted], None, "apps", now).output,
            "pod apps/p not ready: phase Failed: Evicted (The node was low on resource: memory.)"
        );
        let pending = pod_with(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                message: Some("0/1 nodes are available: 1 node(s) had untolerated taint.".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(
            pods_outcome(&[pending], None, "apps", now).output,
            "pod apps/p not ready: unschedulable (0/1 nodes are available: 1 node(s) had untolerated taint.)"
        );
        let init_failed = pod_with(PodStatus {
            phase: Some("Pending".into()),
            init_container_statuses: Some(vec![ContainerStatus {
                name: "migrate".into(),
                restart_count: 2,
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 1,
                        reason: Some("Error".into()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let o = pods_outcome(&[init_failed], None, "apps", now);
        assert_eq!(o.status, crate::core::Status::Fail);
        assert_eq!(
            o.output,
            "pod apps/p not ready: init container migrate terminated: Error (exit 1), 2 restarts"
        );
        // A completed Job pod matched by a selector is neither ready nor a failure.
        let done = pod_with(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert_eq!(
            pods_outcome(&[done], Some("job=backup"), "apps", now).output,
            "no pods match job=backup in namespace apps"
        );
    }
}
