//! The supervised worker as the runtime sees it: started, reconfigured and stopped through the
//! [`super::effects::Workers`] effect; its events become the `worker` pseudo-probe's results.

use super::Runtime;
use crate::core::ProbeResult;
use crate::core::{Event, WORKER_PROBE};
use crate::server::control::ControlReply;
use crate::store::Batch;
use crate::supervise::{WorkerAction, WorkerEvent, WorkerStatus};
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

/// `talon worker status`: one line per fact.
fn status_text(st: &WorkerStatus) -> String {
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
            WorkerAction::Stop => self.set_held(true),
            WorkerAction::Start | WorkerAction::Restart => self.set_held(false),
        }
        tracing::info!(
            action = action.as_str(),
            "operator: talon worker {}",
            action.as_str()
        );
        self.tasks.spawn(async move {
            let answer = match h.control(action).await {
                Ok(m) => {
                    tracing::info!(action = action.as_str(), result = %m, "operator's worker command done");
                    ControlReply::Done(m)
                }
                Err(m) => {
                    tracing::warn!(action = action.as_str(), error = %m, "operator's worker command failed");
                    ControlReply::Rejected(m)
                }
            };
            let _ = reply.send(answer);
        });
    }

    /// Remember (in memory and in the store) whether the worker is stopped on purpose.
    fn set_held(&mut self, held: bool) {
        self.worker.held = held;
        let now = self.clock.wall_ms();
        if let Some(h) = &self.history {
            let value = held
                .then(|| serde_json::json!({ "at": now, "by": "talon worker stop" }).to_string());
            h.write(Batch::kv(now, WORKER_STOPPED_KEY, value));
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
