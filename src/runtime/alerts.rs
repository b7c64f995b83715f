//! Firing alerts kept alive in Alertmanager: while the open incident is in `sos`, its failing
//! probes' alerts are posted again to every `alertmanager` channel its pages went to (with
//! escalation policies, the channels of the steps reached so far) every `repost_secs` (below
//! the receiver's `resolve_timeout`, as Prometheus re-sends every minute), each post pushing
//! `endsAt` forward by `firing_ttl_secs`. A probe that leaves the incident, or the incident
//! closing, is resolved at once (`endsAt` = now) — the same alerts the core's `resolved` notice
//! ends, so whichever arrives last changes nothing.
//!
//! Fed from the status board (state, incident, probe outputs, host name — already redacted) and
//! the current config (after each reload); posts straight through
//! [`crate::notify::send`] (redaction and the channel timeout), not through the core: a re-post
//! is not a new page, so it is neither recorded nor retried, only logged when it fails.

use crate::config::Config;
use crate::core::SystemState;
use crate::notify::{self, ChannelKind, FailingLine, Notice, NoticeKind, NotifyCtx};
use crate::server::snapshot::StatusSnapshot;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What is firing: the incident, when it opened, its failing probes with their reasons, and the
/// channels its pages went to (`None`: every channel).
#[derive(Debug, Clone, PartialEq)]
struct Firing {
    incident: String,
    since_ms: i64,
    probes: BTreeMap<String, String>,
    channels: Option<Vec<String>>,
}

/// The alerts that should be firing for this snapshot: the open incident's failing probes while
/// the system is in `sos`.
fn firing(s: &StatusSnapshot) -> Option<Firing> {
    let inc = s
        .incident
        .as_ref()
        .filter(|_| s.state == SystemState::Sos)?;
    let probes: BTreeMap<String, String> = inc
        .failing_probes
        .iter()
        .map(|name| {
            let reason = s
                .probes
                .iter()
                .find(|p| &p.name == name)
                .map(|p| p.output.clone())
                .unwrap_or_default();
            (name.clone(), reason)
        })
        .collect();
    (!probes.is_empty()).then(|| Firing {
        incident: inc.id.clone(),
        since_ms: inc.started_unix * 1000,
        probes,
        channels: inc.paged_channels.clone(),
    })
}

fn notice(kind: NoticeKind, host: &str, f: &Firing, at_ms: i64) -> Notice {
    Notice {
        kind,
        host: host.to_string(),
        state: if kind == NoticeKind::Resolved {
            "healthy".into()
        } else {
            "sos".into()
        },
        incident_id: Some(f.incident.clone()),
        failing: f
            .probes
            .iter()
            .map(|(probe, reason)| FailingLine {
                probe: probe.clone(),
                reason: reason.clone(),
            })
            .collect(),
        tried: Vec::new(),
        since_ms: Some(f.since_ms),
        at_ms,
        duration_secs: None,
        ack_hint: Some(format!("talon ack {}", f.incident)),
    }
}

/// The `alertmanager` channels of a config, the shortest re-post interval among them and a
/// delivery context.
struct Channels {
    list: Vec<notify::ChannelConfig>,
    every: Duration,
    ctx: Option<NotifyCtx>,
}

impl Channels {
    fn of(cfg: &Config) -> Self {
        let list: Vec<notify::ChannelConfig> = cfg
            .notify
            .iter()
            .filter(|c| matches!(c.kind, ChannelKind::Alertmanager(_)))
            .cloned()
            .collect();
        let every = list
            .iter()
            .filter_map(|c| match &c.kind {
                ChannelKind::Alertmanager(s) => Some(s.repost()),
                _ => None,
            })
            .min()
            .unwrap_or(Duration::from_secs(60));
        let ctx = if list.is_empty() {
            None
        } else {
            match NotifyCtx::new(cfg.search_path.clone(), Arc::new(cfg.redactor())) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "alert re-posting disabled");
                    None
                }
            }
        };
        Self { list, every, ctx }
    }

    /// Post `n` to the `alertmanager` channels among `to` (`None`: all of them).
    async fn post(&self, n: &Notice, to: &Option<Vec<String>>) {
        let Some(ctx) = &self.ctx else { return };
        for ch in self
            .list
            .iter()
            .filter(|ch| to.as_ref().is_none_or(|to| to.contains(&ch.name)))
        {
            match notify::send(n, ch, ctx).await {
                Ok(()) => {
                    tracing::debug!(channel = %ch.name, notice = n.kind.as_str(), alerts = n.failing.len(), "alerts re-posted")
                }
                Err(e) => {
                    tracing::warn!(channel = %ch.name, notice = n.kind.as_str(), error = %e, "alerts not re-posted")
                }
            }
        }
    }
}

/// Start re-posting; the returned sender takes each new config. Ends when the status board or
/// the sender is dropped.
pub(super) fn spawn(
    cfg: Arc<Config>,
    mut status: watch::Receiver<StatusSnapshot>,
) -> watch::Sender<Arc<Config>> {
    let (tx, mut configs) = watch::channel(cfg);
    tokio::spawn(async move {
        let mut channels = Channels::of(&configs.borrow_and_update());
        // What was last posted as firing, and when the next re-post is due.
        let mut posted: Option<Firing> = None;
        let mut due = crate::clock::now();
        loop {
            let (want, host) = {
                let s = status.borrow_and_update();
                (firing(&s), s.host.clone())
            };
            let now_ms = crate::clock::wall_ms();
            // Resolve what no longer fires: a whole closed incident, or probes that left it.
            if let Some(p) = &posted {
                let mut gone = p.clone();
                if let Some(w) = want.as_ref().filter(|w| w.incident == p.incident) {
                    gone.probes.retain(|name, _| !w.probes.contains_key(name));
                }
                if !gone.probes.is_empty() {
                    channels
                        .post(
                            &notice(NoticeKind::Resolved, &host, &gone, now_ms),
                            &gone.channels,
                        )
                        .await;
                }
            }
            match want {
                Some(w) => {
                    // A new step reaching another channel is a change too: it fires there now.
                    let changed = posted.as_ref().map(|p| {
                        (
                            &p.incident,
                            p.probes.keys().collect::<Vec<_>>(),
                            &p.channels,
                        )
                    }) != Some((&w.incident, w.probes.keys().collect(), &w.channels));
                    if changed || crate::clock::now() >= due {
                        channels
                            .post(
                                &notice(NoticeKind::Reminder, &host, &w, now_ms),
                                &w.channels,
                            )
                            .await;
                        due = crate::clock::now() + channels.every;
                    }
                    posted = Some(w);
                }
                None => posted = None,
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due), if posted.is_some() && !channels.list.is_empty() => {}
                r = status.changed() => if r.is_err() { return },
                r = configs.changed() => {
                    if r.is_err() { return }
                    channels = Channels::of(&configs.borrow_and_update());
                    due = crate::clock::now();
                }
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::snapshot::{IncidentStatus, ProbeStatus};

    fn snap(state: SystemState, failing: &[&str]) -> StatusSnapshot {
        let mut s = StatusSnapshot::new(1_000);
        s.state = state;
        for name in ["a", "b"] {
            let mut p = ProbeStatus::pending(name, "script", true);
            p.output = format!("{name} is down");
            s.probes.push(p);
        }
        s.incident = Some(IncidentStatus {
            id: "7".into(),
            started_unix: 900,
            failing_probes: failing.iter().map(|f| f.to_string()).collect(),
            acknowledged: false,
            acked_by: None,
            acked_at_unix: None,
            timeline: Vec::new(),
            paged_channels: None,
            paged_at_unix: None,
            heals: 0,
            agents: 0,
        });
        s
    }

    #[test]
    fn fires_only_in_sos_with_the_incidents_probes() {
        assert_eq!(firing(&snap(SystemState::Critical, &["a"])), None);
        let f = firing(&snap(SystemState::Sos, &["a", "b"])).unwrap();
        assert_eq!(f.incident, "7");
        assert_eq!(f.since_ms, 900_000);
        assert_eq!(f.probes["b"], "b is down");
        let mut closed = snap(SystemState::Sos, &["a"]);
        closed.incident = None;
        assert_eq!(firing(&closed), None);
        let n = notice(NoticeKind::Reminder, "web-1", &f, 5_000);
        assert_eq!(n.failing.len(), 2);
        assert_eq!(n.host, "web-1");
        assert_eq!(n.incident_id.as_deref(), Some("7"));
    }

    /// The task against a loopback receiver: fire both probes, resolve the one that leaves the
    /// incident at once, resolve the rest when the incident closes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fires_resolves_a_probe_that_leaves_then_the_rest() {
        crate::net::install_tls_provider();
        let (url, seen) = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            format!(
                "host = \"web-9\"\nstate_dir = \"{}\"\n[notify.am]\nkind = \"alertmanager\"\nurls = [\"{url}\"]\nrepost_secs = 3600\n",
                dir.path().join("s").display()
            ),
        )
        .unwrap();
        let cfg = super::super::boot::load(&super::super::RunOptions { config: Some(path) })
            .expect("valid config");
        let mut snapshot = snap(SystemState::Sos, &["a", "b"]);
        snapshot.host = cfg.host_name();
        let (tx, rx) = watch::channel(snapshot.clone());
        let _cfg_tx = spawn(Arc::new(cfg), rx);
        let wait = |n: usize| posts(seen.clone(), n);
        let posts = wait(1).await;
        let probes = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|a| a["labels"]["probe"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(probes(&posts[0]), ["a", "b"]);
        assert_eq!(posts[0][0]["labels"]["host"], "web-9");
        assert_eq!(posts[0][0]["labels"]["incident"], "7");
        let state =
            |v: &serde_json::Value| v[0]["annotations"]["state"].as_str().unwrap().to_string();
        // b leaves the incident: resolved at once (endsAt = now), then a, still firing, is
        // posted again (the set of firing alerts changed).
        snapshot.incident.as_mut().unwrap().failing_probes = vec!["a".into()];
        tx.send_replace(snapshot.clone());
        let posts = wait(3).await;
        assert_eq!(probes(&posts[1]), ["b"]);
        assert_eq!(state(&posts[1]), "healthy", "{posts:?}");
        let ends = posts[1][0]["endsAt"].as_str().unwrap();
        assert!(ends < posts[0][0]["endsAt"].as_str().unwrap(), "{posts:?}");
        assert_eq!(probes(&posts[2]), ["a"]);
        assert_eq!(state(&posts[2]), "sos", "{posts:?}");
        // The incident closes: a is resolved too.
        snapshot.state = SystemState::Healthy;
        snapshot.incident = None;
        tx.send_replace(snapshot);
        let posts = wait(4).await;
        assert_eq!(probes(&posts[3]), ["a"]);
        assert_eq!(state(&posts[3]), "healthy", "{posts:?}");
        assert!(
            posts[3][0]["endsAt"].as_str().unwrap() < posts[2][0]["endsAt"].as_str().unwrap(),
            "{posts:?}"
        );
        assert_eq!(posts.len(), 4, "{posts:?}");
    }

    /// The bodies a receiver was posted, in order.
    type Seen = Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

    /// Wait (up to 20 s) until `seen` holds `n` posts; all of them.
    async fn posts(seen: Seen, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..400 {
            if seen.lock().unwrap().len() >= n {
                return seen.lock().unwrap().clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} posts: {:?}", seen.lock().unwrap());
    }

    /// A loopback receiver recording each post's body.
    async fn receiver() -> (String, Seen) {
        let seen: Seen = Arc::default();
        let s2 = seen.clone();
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let s2 = s2.clone();
            async move {
                if let Ok(v) = serde_json::from_slice(&body) {
                    s2.lock().unwrap().push(v);
                }
                "{}"
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (url, seen)
    }

    /// With escalation policies, alerts are kept firing only where a reached step paged: a
    /// receiver on a later step gets nothing until that step, then fires at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reposts_follow_the_steps_reached() {
        crate::net::install_tls_provider();
        let (url1, seen1) = receiver().await;
        let (url2, seen2) = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            format!(
                "state_dir = \"{}\"\n\
                 [notify.am1]\nkind = \"alertmanager\"\nurl = \"{url1}\"\nrepost_secs = 3600\n\
                 [notify.am2]\nkind = \"alertmanager\"\nurl = \"{url2}\"\nrepost_secs = 3600\n",
                dir.path().join("s").display()
            ),
        )
        .unwrap();
        let cfg = super::super::boot::load(&super::super::RunOptions { config: Some(path) })
            .expect("valid config");
        let count = |s: &Seen| s.lock().unwrap().len();
        let wait = posts;
        // In sos, no step reached yet: nothing fires anywhere.
        let mut snapshot = snap(SystemState::Sos, &["a"]);
        snapshot.incident.as_mut().unwrap().paged_channels = Some(vec![]);
        let (tx, rx) = watch::channel(snapshot.clone());
        let _cfg_tx = spawn(Arc::new(cfg), rx);
        // Step 1 pages am1.
        snapshot.incident.as_mut().unwrap().paged_channels = Some(vec!["am1".into()]);
        tx.send_replace(snapshot.clone());
        let posts = wait(seen1.clone(), 1).await;
        assert_eq!(posts[0][0]["annotations"]["state"], "sos");
        // Step 2 adds am2: it fires there at once (and am1 gets the same set again).
        snapshot.incident.as_mut().unwrap().paged_channels = Some(vec!["am1".into(), "am2".into()]);
        tx.send_replace(snapshot.clone());
        let posts2 = wait(seen2.clone(), 1).await;
        assert_eq!(posts2[0][0]["labels"]["probe"], "a");
        assert_eq!(posts2[0][0]["annotations"]["state"], "sos");
        // Closed: resolved at both.
        snapshot.state = SystemState::Healthy;
        snapshot.incident = None;
        tx.send_replace(snapshot);
        let r2 = wait(seen2.clone(), 2).await;
        assert_eq!(r2[1][0]["annotations"]["state"], "healthy");
        let r1 = wait(seen1.clone(), 3).await;
        assert_eq!(r1[2][0]["annotations"]["state"], "healthy");
        // am2 saw nothing before its step: its first post was step 2's firing.
        assert_eq!((count(&seen1), count(&seen2)), (3, 2), "{r1:?} {r2:?}");
    }
}
