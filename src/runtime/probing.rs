//! Probe runs: the scheduled cycles (per-probe intervals, a probe never running twice at once)
//! and the verification re-probes the core asks for. Both run as effect tasks.

use super::Runtime;
use super::inbox::Msg;
use crate::clock::Instant;
use crate::config::probe::ProbeConfig;
use crate::core::ProbeResult;
use crate::core::{Event, IncidentId, Millis, WORKER_PROBE};

impl Runtime {
    /// Start the probes that are due (and not already running) as one run.
    pub(super) fn launch_due(&mut self, now: Instant) {
        let due = self.timers.schedule.take_due(now);
        if due.is_empty() {
            return;
        }
        let (run, blocked) = self.partition_blocked(&due);
        let ran = failed_runs(&run, self.clock.clone());
        let cycle = self.effects.probes.run(run);
        self.spawn_effect(
            async move {
                let mut results = blocked;
                results.extend(cycle.await);
                Msg::CycleDone(results)
            },
            // Every probe of the run gets its result, so each is scheduled again.
            move |why| Msg::CycleDone(ran(&why)),
        );
    }

    /// Probes whose dependency is outside this run and last did not pass are `blocked` now,
    /// without running; the rest run (the engine handles dependencies inside the run).
    fn partition_blocked(&self, names: &[String]) -> (Vec<ProbeConfig>, Vec<ProbeResult>) {
        let mut run = Vec::new();
        let mut blocked = Vec::new();
        for p in self.cfg.probes.iter().filter(|p| names.contains(&p.name)) {
            let outside_failing = p
                .depends_on
                .iter()
                .filter(|d| !names.contains(d))
                .filter_map(|d| self.last.get(d))
                .find(|r| !r.passed);
            match outside_failing {
                Some(dep) => blocked.push(crate::probe::engine::blocked(p, dep)),
                None => run.push(p.clone()),
            }
        }
        (run, blocked)
    }

    /// A scheduled run finished: redact, count, remember, and give the core the results of the
    /// probes still configured (a reload may have removed some mid-run).
    pub(super) fn on_cycle(&mut self, mut results: Vec<ProbeResult>) {
        for r in &mut results {
            r.redact(&self.redactor);
        }
        for r in &results {
            let critical = self
                .cfg
                .probes
                .iter()
                .any(|p| p.name == r.name && p.critical);
            self.surfaces.metrics.observe_probe(r, critical);
            self.timers.schedule.finished(&r.name);
            self.last.insert(r.name.clone(), r.clone());
        }
        let results: Vec<ProbeResult> = results
            .into_iter()
            .filter(|r| self.cfg.probes.iter().any(|p| p.name == r.name))
            .collect();
        if !results.is_empty() {
            self.step(Event::ProbeResults {
                at: self.clock.wall_ms(),
                results,
            });
        }
        // The cycle's checks are done and dropped: give the heap they used back until the next
        // one (see `memory::trim_heap_every`).
        crate::memory::trim_heap_every(std::time::Duration::from_secs(5));
    }

    /// [`crate::core::Action::Reprobe`]: run `probes` once, not before `at`. The worker's
    /// pseudo-probe is not run: its newest health result answers for it.
    pub(super) fn launch_reprobe(&mut self, incident: IncidentId, probes: Vec<String>, at: Millis) {
        let configs: Vec<ProbeConfig> = self
            .cfg
            .probes
            .iter()
            .filter(|p| probes.contains(&p.name))
            .cloned()
            .collect();
        let worker_last = probes
            .iter()
            .any(|p| p == WORKER_PROBE)
            .then(|| self.last.get(WORKER_PROBE).cloned())
            .flatten();
        let wait = self.clock.until(at);
        let ran = failed_runs(&configs, self.clock.clone());
        let run = self.effects.probes.run(configs);
        let names = probes.clone();
        self.spawn_effect(
            async move {
                tokio::time::sleep(wait).await;
                let mut results = run.await;
                results.extend(worker_last);
                Msg::ReprobeDone {
                    incident,
                    probes,
                    results,
                }
            },
            move |why| Msg::ReprobeDone {
                incident,
                probes: names,
                results: ran(&why),
            },
        );
    }
}

/// For a run whose task panicked: an `error` result for each probe of `run`, saying why.
fn failed_runs(
    run: &[ProbeConfig],
    clock: crate::clock::Clock,
) -> impl FnOnce(&str) -> Vec<ProbeResult> + Send + 'static {
    let which: Vec<(String, String)> = run
        .iter()
        .map(|p| (p.name.clone(), p.kind.name().to_string()))
        .collect();
    move |why| {
        let at = clock.wall_ms();
        which
            .into_iter()
            .map(|(name, kind)| ProbeResult {
                name,
                kind,
                passed: false,
                status: crate::core::Status::Error,
                output: why.to_string(),
                detail: String::new(),
                duration_ms: 0,
                started_at: at,
            })
            .collect()
    }
}
