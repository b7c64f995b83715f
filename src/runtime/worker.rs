//! The supervised worker as the runtime sees it: started, reconfigured and stopped through the
//! [`super::effects::Workers`] effect; its events become the `worker` pseudo-probe's results.

use super::Runtime;
use super::inbox::Msg;
use crate::core::ProbeResult;
use crate::core::{Event, Millis, Record, Transition, WORKER_PROBE};
use crate::server::control::ControlReply;
use crate::server::snapshot::OperatorAction;
use crate::store::{Batch, TransitionRow};
use crate::supervise::{ControlResult, WorkerAction, WorkerEvent, WorkerStatus};
use nix::sys::signal::Signal;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;

/// The store's `kv` key that says the worker was stopped on purpose (`talon worker stop`).
pub const WORKER_STOPPED_KEY: &str = "worker.stopped";

/// Did an operator leave the worker stopped (the store in `state_dir` says so)?
pub(super) fn stopped_on_purpose(state_dir: &Path) -> bool {
    match crate::store::Store::open_existing(state_dir) {
        Ok(Some(s)) => match s.kv_get(WORKER_STOPPED_KEY) {
            Ok(v) => v.is_some(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read whether the worker was stopped on purpose; starting it");
                false
            }
        },
        Ok(None) => false,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the store to read whether the worker was stopped on purpose; starting it");
            false
        }
    }
}

/// How many of the newest operator actions on the worker `/status` shows.
pub const OPERATOR_ACTIONS_SHOWN: usize = 10;

/// The `kv` write that keeps (`held`) or ends a stop on purpose.
pub(super) fn held_batch(at: Millis, held: bool, by: &str) -> Batch {
    let value = held.then(|| serde_json::json!({ "at": at, "by": by }).to_string());
    Batch::kv(at, WORKER_STOPPED_KEY, value)
}

/// An operator's `talon worker restart|stop|start` and what came of it, as a history row of the
/// `worker` subject: `to` is `"<action> by <who>"`, the reason the result (`failed: …` when it
/// could not be done). `talon history` shows it beside the `worker` probe's own transitions:
/// `02:13:05Z  worker  stop by cli  worker stopped: pid 4242 (signal 15)`.
pub(super) fn operator_record(
    at: Millis,
    action: WorkerAction,
    by: &str,
    result: &ControlResult,
) -> Record {
    let reason = match result {
        Ok(m) => m.clone(),
        Err(e) => format!("failed: {e}"),
    };
    Record::Transition(Transition {
        at,
        subject: WORKER_PROBE.to_string(),
        from: String::new(),
        to: format!("{} by {by}", action.as_str()),
        reason,
        incident: None,
    })
}

/// The `/status` form of an operator action (a row written by [`operator_record`]).
pub(super) fn operator_action(at: Millis, to: &str, reason: &str) -> Option<OperatorAction> {
    let (action, by) = to.split_once(" by ")?;
    let (ok, result) = match reason.strip_prefix("failed: ") {
        Some(e) => (false, e.to_string()),
        None => (true, reason.to_string()),
    };
    Some(OperatorAction {
        at_unix: at.div_euclid(1000),
        action: action.to_string(),
        by: by.to_string(),
        ok,
        result,
    })
}

/// The newest operator actions on the worker kept in the store in `state_dir` (none when there
/// is no store yet or it cannot be read).
pub(super) fn stored_operator_actions(state_dir: &Path) -> Vec<OperatorAction> {
    let rows = match crate::store::Store::open_existing(state_dir) {
        Ok(Some(s)) => s.operator_transitions(WORKER_PROBE, OPERATOR_ACTIONS_SHOWN),
        Ok(None) => return Vec::new(),
        Err(e) => Err(e),
    };
    match rows {
        Ok(rows) => rows
            .iter()
            .filter_map(|r: &TransitionRow| operator_action(r.at, &r.to, &r.reason))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the operator actions on the worker from the store");
            Vec::new()
        }
    }
}

/// Keep the newest [`OPERATOR_ACTIONS_SHOWN`] actions.
pub(super) fn push_operator_action(list: &mut Vec<OperatorAction>, a: OperatorAction) {
    list.push(a);
    let excess = list.len().saturating_sub(OPERATOR_ACTIONS_SHOWN);
    list.drain(..excess);
}

/// The worker as `/status` shows it.
pub(super) fn snapshot_worker(
    st: &WorkerStatus,
    actions: &[OperatorAction],
) -> crate::server::snapshot::WorkerStatus {
    crate::server::snapshot::WorkerStatus {
        pid: st.pid,
        state: format!("{:?}", st.state).to_lowercase(),
        restarts: st.restarts,
        last_exit: st.last_exit.map(|e| e.to_string()),
        since_unix: st
            .started_at
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64),
        operator_actions: actions.to_vec(),
    }
}

/// `talon worker status`: one line per fact.
pub(super) fn status_text(st: &WorkerStatus) -> String {
    let state = serde_json::to_value(st.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut out = format!("worker: {state}");
    if let Some(pid) = st.pid {
        out.push_str(&format!(", pid {pid}"));
    }
    if let Some(t) = st.started_at
        && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
    {
        out.push_str(&format!(
            " (started {})",
            crate::format::utc(d.as_millis() as i64)
        ));
    }
    out.push_str(&format!(
        "\nrestarts: {}, deaths in the restart window: {}{}",
        st.restarts,
        st.deaths_in_window,
        if st.crash_loop { " (crash loop)" } else { "" }
    ));
    if st.consecutive_health_failures > 0 {
        out.push_str(&format!(
            "\nhealth checks failed in a row: {}",
            st.consecutive_health_failures
        ));
    }
    if let Some(e) = st.last_exit {
        out.push_str(&format!("\nlast exit: {e}"));
    }
    if let Some(e) = &st.last_error {
        out.push_str(&format!("\nlast error: {e}"));
    }
    if let Some(o) = &st.external_owner {
        out.push_str(&format!("\nexternal owner: {o} (Talon stands aside)"));
    }
    out
}

impl Runtime {
    pub(super) fn start_worker(&mut self) {
        if let Some(w) = &self.cfg.worker {
            let handle = self.effects.workers.start(
                w.clone(),
                self.cfg.search_path.clone(),
                self.worker.events.clone(),
                self.worker.held,
            );
            if self.worker.held {
                tracing::warn!(
                    "the worker was stopped on purpose (`talon worker stop`) and stays stopped until `talon worker start`"
                );
            }
            self.worker.handle = Some(handle);
        }
    }

    pub(super) async fn stop_worker(&mut self, sig: Signal) {
        if let Some(h) = self.worker.handle.take() {
            h.shutdown(sig).await;
        }
    }

    /// `[worker]` (or the compiled PATH) changed in a reload.
    pub(super) fn reconfigure_worker(&mut self) {
        match (&self.worker.handle, self.cfg.worker.clone()) {
            (Some(h), Some(w)) => {
                tracing::info!("[worker] changed: restarting the worker with the new config");
                let h = Arc::clone(h);
                let search = self.cfg.search_path.clone();
                self.tasks
                    .spawn(async move { h.reconfigure(w, search).await });
            }
            (None, Some(_)) => self.start_worker(),
            (Some(_), None) => {
                tracing::info!("[worker] removed: stopping the worker");
                if let Some(h) = self.worker.handle.take() {
                    self.tasks.spawn(h.shutdown(Signal::SIGTERM));
                }
            }
            (None, None) => {}
        }
    }

    /// A worker event: its health, as the `worker` pseudo-probe, goes to the core.
    pub(super) fn on_worker(&mut self, ev: WorkerEvent) {
        if let Some(h) = &self.worker.handle {
            self.worker.restarts = h.status().restarts;
            // Secrets the worker got from `[worker.secrets]` commands are redacted like the
            // config's own (its stderr reaches the agent prompt).
            for v in h.secret_values() {
                self.redactor.learn(v);
            }
        }
        if let WorkerEvent::Restarting { .. } = &ev {
            self.surfaces.metrics.worker_restart();
        }
        // The supervisor debounces health itself (`health_failures_before_restart`, then a
        // graceful restart). A failed check below that count is logged, not escalated: the
        // ladder's own heal for `worker` is a restart, and it would cut the configured
        // tolerance down to a single missed check.
        if let WorkerEvent::HealthFailed { consecutive, .. } = &ev
            && let Some(w) = &self.cfg.worker
            && *consecutive < w.health_failures_before_restart.get()
        {
            return;
        }
        let Some(outcome) = ev.probe_outcome() else {
            return;
        };
        let now = self.clock.wall_ms();
        let result = ProbeResult {
            name: WORKER_PROBE.to_string(),
            kind: "worker".to_string(),
            passed: outcome.status.passed(),
            status: outcome.status,
            output: outcome.output,
            detail: String::new(),
            duration_ms: 0,
            started_at: now,
        };
        let changed = self.last.get(WORKER_PROBE).map(|r| (r.status, &r.output))
            != Some((result.status, &result.output));
        self.last.insert(result.name.clone(), result.clone());
        if changed || !result.passed {
            self.step(Event::ProbeResults {
                at: now,
                results: vec![result],
            });
        }
    }

    /// `talon worker status|restart|stop|start` (`POST /worker`). Status is answered at once;
    /// the others by a task once the supervisor has done them (a graceful stop takes up to
    /// `drain_timeout_secs`), so the loop never waits. A stop is written to the store first,
    /// so a Talon restart keeps the worker stopped; `start` and `restart` clear it.
    pub(super) fn worker_control(
        &mut self,
        action: WorkerAction,
        by: String,
        reply: oneshot::Sender<ControlReply>,
    ) {
        let Some(h) = self.worker.handle.clone() else {
            let msg = if self.cfg.worker.is_some() {
                "the worker is not supervised right now"
            } else {
                "no [worker] is configured"
            };
            let _ = reply.send(ControlReply::NotFound(msg.into()));
            return;
        };
        match action {
            WorkerAction::Status => {
                let _ = reply.send(ControlReply::Done(status_text(&h.status())));
                return;
            }
            WorkerAction::Stop => self.set_held(true, &by),
            WorkerAction::Start | WorkerAction::Restart => self.set_held(false, &by),
        }
        tracing::info!(
            action = action.as_str(),
            by = %by,
            "operator: talon worker {}",
            action.as_str()
        );
        let inbox = self.inbox.clone();
        self.tasks.spawn(async move {
            let result = h.control(action).await;
            // Recorded (and answered) by the loop: `Msg::WorkerControlled`.
            inbox.send(Msg::WorkerControlled {
                action,
                by,
                result,
                reply,
            });
        });
    }

    /// An operator's worker command is done: record it in history (who, what, the result),
    /// show it in `/status`, then answer the caller.
    pub(super) fn worker_controlled(
        &mut self,
        action: WorkerAction,
        by: &str,
        result: ControlResult,
        reply: oneshot::Sender<ControlReply>,
    ) {
        match &result {
            Ok(m) => {
                tracing::info!(action = action.as_str(), by = %by, result = %m, "operator's worker command done")
            }
            Err(m) => {
                tracing::warn!(action = action.as_str(), by = %by, error = %m, "operator's worker command failed")
            }
        }
        let now = self.clock.wall_ms();
        let record = operator_record(now, action, by, &result);
        if let Record::Transition(t) = &record
            && let Some(a) = operator_action(t.at, &t.to, &t.reason)
        {
            push_operator_action(&mut self.worker.operator_actions, a);
        }
        if let Some(h) = &self.history {
            h.write(Batch {
                at: now,
                records: vec![record],
                ..Batch::default()
            });
        }
        let _ = reply.send(match result {
            Ok(m) => ControlReply::Done(m),
            Err(m) => ControlReply::Rejected(m),
        });
    }

    /// Remember (in memory and in the store) whether the worker is stopped on purpose.
    fn set_held(&mut self, held: bool, by: &str) {
        self.worker.held = held;
        let now = self.clock.wall_ms();
        if let Some(h) = &self.history {
            h.write(held_batch(now, held, by));
        }
    }

    /// `worker.forward_signals`: pass the signal on to the worker's group.
    pub(super) fn forward(&self, sig: Signal) {
        if let Some(h) = &self.worker.handle {
            match h.forward(sig) {
                Ok(()) => tracing::info!(signal = sig.as_str(), "forwarded to the worker's group"),
                Err(e) => tracing::warn!(signal = sig.as_str(), "not forwarded: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_on_purpose_is_read_back_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!stopped_on_purpose(dir.path()), "no store yet: not stopped");
        let mut store = crate::store::Store::open(dir.path()).unwrap();
        assert!(!stopped_on_purpose(dir.path()));
        store
            .apply(&Batch::kv(1, WORKER_STOPPED_KEY, Some("{}".into())))
            .unwrap();
        assert!(stopped_on_purpose(dir.path()));
        store
            .apply(&Batch::kv(2, WORKER_STOPPED_KEY, None))
            .unwrap();
        assert!(!stopped_on_purpose(dir.path()));
    }

    #[test]
    fn operator_actions_are_history_rows_read_back_newest_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::store::Store::open(dir.path()).unwrap();
        let probe_row = Record::Transition(Transition {
            at: 500,
            subject: WORKER_PROBE.into(),
            from: "passing".into(),
            to: "failing".into(),
            reason: "worker health check failed".into(),
            incident: None,
        });
        let mut records = vec![probe_row];
        for i in 0..(OPERATOR_ACTIONS_SHOWN as i64 + 2) {
            let result = if i == 1 {
                Err("the worker supervisor has stopped".to_string())
            } else {
                Ok(format!(
                    "worker restarted: pid {i} (killed by SIGTERM) → pid {}",
                    i + 1
                ))
            };
            records.push(operator_record(
                1_000 * (i + 1),
                WorkerAction::Restart,
                if i % 2 == 0 { "cli" } else { "http" },
                &result,
            ));
        }
        store
            .apply(&Batch {
                at: 1,
                records,
                ..Batch::default()
            })
            .unwrap();
        drop(store);
        let acts = stored_operator_actions(dir.path());
        assert_eq!(
            acts.len(),
            OPERATOR_ACTIONS_SHOWN,
            "the newest only: {acts:?}"
        );
        assert_eq!(acts[0].at_unix, 3, "the two oldest are left out");
        assert_eq!(acts.last().unwrap().at_unix, 12);
        assert!(acts.iter().all(|a| a.action == "restart"));
        assert_eq!((acts[0].by.as_str(), acts[1].by.as_str()), ("cli", "http"));
        assert!(
            acts.iter()
                .all(|a| a.ok && a.result.starts_with("worker restarted: pid "))
        );
        // A failure reads back as not ok, with the reason.
        let failed = operator_record(9, WorkerAction::Stop, "cli", &Err("no".into()));
        let Record::Transition(t) = failed else {
            panic!()
        };
        assert_eq!(
            (t.to.as_str(), t.reason.as_str()),
            ("stop by cli", "failed: no")
        );
        let a = operator_action(t.at, &t.to, &t.reason).unwrap();
        assert_eq!((a.ok, a.result.as_str()), (false, "no"));
        assert_eq!(
            operator_action(1, "failing", "x"),
            None,
            "a probe transition is not one"
        );
    }

    #[test]
    fn status_text_names_state_pid_and_the_last_error() {
        let st = WorkerStatus {
            state: crate::supervise::WorkerState::StoppedOnPurpose,
            restarts: 2,
            last_error: Some("health check failed".into()),
            ..WorkerStatus::default()
        };
        let t = status_text(&st);
        assert!(
            t.starts_with("worker: stopped_on_purpose\nrestarts: 2"),
            "{t}"
        );
        assert!(t.contains("last error: health check failed"), "{t}");
    }
}
