//! [`Core`]: the state machine itself. Rules: `docs/state-machine.md`.
//!
//! This file holds the step (`Core::step`: clamp times, dispatch the event, evaluate) and the
//! state it works on. The rest is split by concern, each an `impl Core` block in `machine/`:
//!
//! - `probes.rs`: per-probe bookkeeping (streaks, flapping, silences, shown state, which probes
//!   escalate);
//! - `incident.rs`: system state, opening and closing the incident, moving up a rung;
//! - `ladder.rs`: tier 1 heal and tiers 2/3 agent, their verification re-probe;
//! - `page.rs`: SOS, reminders, resolved notices and their delivery retries;
//! - `deadline.rs`: when each next rung is due, computed once for the ladder and the outlook;
//! - `outlook.rs`: the read-only summary for `talon status` and `/status`;
//! - `timeshift.rs`: a clock step moves every stored time, so each keeps its remaining time.

use super::config::NOTIFY_RETRY_MAX;
use super::*;

mod chain;
mod deadline;
pub(super) mod guard;
mod incident;
mod ladder;
mod maintenance;
mod outlook;
mod page;
mod probes;
mod timeshift;

pub use maintenance::WindowView;
pub use outlook::{NextStep, Outlook, ProbeView};

/// A verification re-probe that has not answered this long after it was due counts as "not
/// fixed", so a lost re-probe can never stall the ladder.
pub const VERIFY_GRACE: Millis = 60_000;
/// Output kept in records (the newest bytes: errors are usually at the end).
pub const OUTPUT_EXCERPT: usize = 16 * 1024;

/// The escalation state machine. See the module docs for the runtime's contract.
#[derive(Debug, Clone)]
pub struct Core {
    cfg: CoreConfig,
    s: PersistedState,
}

/// One step's working set: the event time, what to emit, the earliest future wake-up.
struct Cx {
    at: Millis,
    out: Vec<Action>,
    wake: Option<Millis>,
    /// A scheduled run of a probe held after a passing verification failed in this step.
    hold_broken: Option<String>,
}

impl Cx {
    fn wake(&mut self, t: Millis) {
        if t > self.at {
            self.wake = Some(self.wake.map_or(t, |w| w.min(t)));
        }
    }
    fn record(&mut self, r: Record) {
        self.out.push(Action::Record(r));
    }
}

fn excerpt(s: &str) -> String {
    if s.len() <= OUTPUT_EXCERPT {
        return s.to_string();
    }
    let mut start = s.len() - OUTPUT_EXCERPT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

/// "1h 5m", "45s" ([`crate::format::duration_ms`]).
pub fn fmt_duration(ms: Millis) -> String {
    crate::format::duration_ms(ms)
}

fn clamp(t: &mut Millis, at: Millis) {
    if *t > at {
        *t = at;
    }
}

fn clamp_opt(t: &mut Option<Millis>, at: Millis) {
    if let Some(t) = t {
        clamp(t, at);
    }
}

impl Core {
    /// A fresh core: no history, healthy.
    pub fn new(cfg: CoreConfig) -> Self {
        Core {
            cfg,
            s: PersistedState::default(),
        }
    }

    /// A core resumed from saved state after a restart. Heals/agents that were running are
    /// marked lost (their results will never come), re-probes and notifications in flight are
    /// asked for again at the next step. Send a [`Event::Tick`] right after restoring.
    pub fn restore(cfg: CoreConfig, mut s: PersistedState) -> Self {
        s.probes.retain(|name, _| cfg.probes.contains_key(name));
        if let Some(inc) = &mut s.incident {
            if let Some(r) = &mut inc.running {
                r.lost = true;
            }
            if let Some(v) = &mut inc.verify {
                v.requested = false;
            }
        }
        for p in &mut s.pending {
            p.in_flight = false;
        }
        // Its result will never come, and its incident is over.
        s.orphan = None;
        Core { cfg, s }
    }

    /// What to save (on [`Action::Persist`]).
    pub fn persisted(&self) -> &PersistedState {
        &self.s
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn state(&self) -> SystemState {
        self.s.state
    }

    /// The open incident, if any.
    pub fn incident(&self) -> Option<&Incident> {
        self.s.incident.as_ref()
    }

    /// Take one event; return what to do. Pure: no clock, no I/O.
    pub fn step(&mut self, ev: Event) -> Vec<Action> {
        let at = ev.at();
        let before = self.s.clone();
        let mut cx = Cx {
            at,
            out: Vec::new(),
            wake: None,
            hold_broken: None,
        };
        if self.s.since == 0 {
            self.s.since = at;
        }
        if let Event::ClockStep { delta, .. } = ev {
            self.shift_times(delta);
        }
        self.clamp_times(at);
        match ev {
            Event::ProbeResults { results, .. } => self.on_results(results, &mut cx),
            Event::Reprobe { results, .. } => self.on_reprobe(results, &mut cx),
            Event::HealFinished {
                id,
                outcome,
                output,
                ..
            } => self.on_finished(id, outcome, output, &mut cx),
            Event::AgentFinished {
                id,
                outcome,
                output,
                ..
            } => self.on_finished(id, outcome, output, &mut cx),
            Event::NotifyResult { id, channels, .. } => {
                self.on_notify_result(id, channels, &mut cx)
            }
            Event::AgentProposed {
                id,
                outcome,
                output,
                diagnosis,
                note,
                items,
                ..
            } => self.on_proposed(id, outcome, output, diagnosis, note, items, &mut cx),
            Event::Approve { approval, by, .. } => self.on_decision(approval, by, true, &mut cx),
            Event::Deny { approval, by, .. } => self.on_decision(approval, by, false, &mut cx),
            Event::AgentReset { by, .. } => self.on_agent_reset(by, &mut cx),
            Event::Tick { .. } | Event::ClockStep { .. } => {}
            Event::Reload { config, .. } => self.on_reload(*config),
            Event::Ack { incident, .. } => self.on_ack(incident, &mut cx),
            Event::Silence { probe, until, .. } => self.on_silence(probe, until, &mut cx),
            Event::Maintenance { change, .. } => self.on_maintenance(change, &mut cx),
        }
        self.evaluate(&mut cx);
        if self.s != before {
            cx.out.push(Action::Persist);
        }
        if let Some(w) = cx.wake {
            cx.out.push(Action::WakeAt { at: w });
        }
        cx.out
    }

    /// Stored times later than `at` mean the clock jumped backwards: pull them back to `at` so
    /// no cooldown, threshold or reminder waits longer than configured.
    fn clamp_times(&mut self, at: Millis) {
        let s = &mut self.s;
        clamp_opt(&mut s.last_heal_at, at);
        clamp_opt(&mut s.last_agent_at, at);
        clamp_opt(&mut s.last_sos_at, at);
        for t in s.probes.values_mut() {
            for c in &mut t.changes {
                clamp(c, at);
            }
            clamp_opt(&mut t.failing_since, at);
        }
        if let Some(inc) = &mut s.incident {
            clamp_opt(&mut inc.critical_since, at);
            clamp_opt(&mut inc.last_page_at, at);
            clamp(&mut inc.stage_since, at);
            clamp(&mut inc.opened_at, at);
            if let Some(v) = &mut inc.verify {
                clamp(&mut v.due, at.saturating_add(self.cfg.heal_settle));
            }
        }
        for p in &mut s.pending {
            clamp(&mut p.next_attempt_at, at.saturating_add(NOTIFY_RETRY_MAX));
        }
        clamp(&mut s.since, at);
    }

    fn evaluate(&mut self, cx: &mut Cx) {
        let at = cx.at;
        self.track_probes(cx);
        self.track_windows(cx);
        // Incident.
        let failing = self.failing_critical();
        // Inside a maintenance window a probe does not escalate; with `heal = true` the ladder
        // still works on it, but nobody is paged for it.
        let mut escalating: Vec<String> = Vec::new();
        let mut healing: Vec<String> = Vec::new();
        for n in failing.iter().filter(|n| !self.silenced(n, at)) {
            match self.window_of(n, at) {
                None => escalating.push(n.clone()),
                Some((_, true, _)) => healing.push(n.clone()),
                Some((_, false, _)) => {}
            }
        }
        let pages = !escalating.is_empty();
        let mut worked: Vec<String> = escalating.clone();
        worked.extend(healing);
        worked.sort();
        let escalating = worked;
        if let Some(mut inc) = self.s.incident.take() {
            if failing.is_empty() {
                self.close(inc, cx);
            } else {
                let before = inc.probes.len();
                inc.probes.extend(failing.iter().cloned());
                if inc.probes.len() != before {
                    cx.record(Record::IncidentProbes {
                        incident: inc.id,
                        probes: inc.probes.iter().cloned().collect(),
                    });
                }
                if !escalating.is_empty() {
                    self.drive(&mut inc, &escalating, pages, cx);
                }
                self.s.incident = Some(inc);
            }
        } else if !escalating.is_empty() {
            let mut inc = self.open(&escalating, cx);
            self.drive(&mut inc, &escalating, pages, cx);
            self.s.incident = Some(inc);
        }
        if self.s.incident.is_none() {
            let not_ok: Vec<String> = self
                .s
                .probes
                .iter()
                .filter(|(_, t)| {
                    !matches!(
                        self.probe_state(t),
                        ProbeState::Passing | ProbeState::Pending
                    )
                })
                .map(|(n, _)| n.clone())
                .collect();
            if not_ok.is_empty() {
                self.set_state(SystemState::Healthy, "every probe passes", None, cx);
            } else {
                let reason = format!("not escalated: {}", self.describe_failing(&not_ok));
                self.set_state(SystemState::Degraded, &reason, None, cx);
            }
        }
        self.flush_notifications(pages, cx);
    }

    pub(super) fn on_reload(&mut self, new: CoreConfig) {
        let old = std::mem::replace(&mut self.cfg, new);
        let cfg = &self.cfg;
        self.s.probes.retain(|name, _| {
            cfg.probes.contains_key(name) && cfg.probes.get(name) == old.probes.get(name)
        });
    }
}
