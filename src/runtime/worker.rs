//! The supervised worker as the runtime sees it: started, reconfigured and stopped through the
//! [`super::effects::Workers`] effect; its events become the `worker` pseudo-probe's results.

use super::Runtime;
use crate::core::ProbeResult;
use crate::core::{Event, WORKER_PROBE};
use crate::supervise::WorkerEvent;
use nix::sys::signal::Signal;
use std::sync::Arc;

impl Runtime {
    pub(super) fn start_worker(&mut self) {
        if let Some(w) = &self.cfg.worker {
            let handle = self.effects.workers.start(
                w.clone(),
                self.cfg.search_path.clone(),
                self.worker.events.clone(),
            );
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
