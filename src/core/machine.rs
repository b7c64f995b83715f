//! [`Core`]: the state machine itself. Rules: `docs/state-machine.md`.

use super::*;
use serde::Serialize;

/// A verification re-probe that has not answered this long after it was due counts as "not
/// fixed", so a lost re-probe can never stall the ladder.
pub const VERIFY_GRACE: Millis = 60_000;
/// Default first retry delay of an undelivered notification (`escalation.notify_retry_secs`);
/// doubles per attempt up to [`NOTIFY_RETRY_MAX`].
pub const NOTIFY_RETRY_BASE: Millis =
    crate::config::defaults::escalation::NOTIFY_RETRY.as_millis() as Millis;
pub const NOTIFY_RETRY_MAX: Millis = 900_000;
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

/// A probe as `talon status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeView {
    pub name: String,
    pub critical: bool,
    pub state: ProbeState,
    pub fail_streak: u32,
    pub pass_streak: u32,
    pub last_status: Option<Status>,
    pub last_output: Option<String>,
    pub last_at: Option<Millis>,
    pub silenced_until: Option<Millis>,
}

/// What is next on the ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextStep {
    pub what: String,
    /// When it is due (None: waiting for something else to finish).
    pub due: Option<Millis>,
}

/// A read-only summary for `talon status` and `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outlook {
    pub state: SystemState,
    pub since: Millis,
    pub incident: Option<Incident>,
    pub failing: Vec<FailingProbe>,
    pub next: Option<NextStep>,
    pub pending_notifications: Vec<Notification>,
    pub probes: Vec<ProbeView>,
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

/// When a cooldown since `last` ends. Times were clamped to the event time first, so a clock
/// that jumped backwards never makes the wait longer than `cooldown`.
fn due_after(last: Option<Millis>, cooldown: Millis) -> Millis {
    last.map_or(Millis::MIN, |l| l.saturating_add(cooldown))
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
            Event::Tick { .. } => {}
            Event::Reload { config, .. } => self.on_reload(*config),
            Event::Ack { incident, .. } => self.on_ack(incident, &mut cx),
            Event::Silence { probe, until, .. } => self.on_silence(probe, until, &mut cx),
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

    fn on_results(&mut self, results: Vec<ProbeResult>, cx: &mut Cx) {
        let at = cx.at;
        let held: Vec<String> = self
            .s
            .incident
            .as_ref()
            .and_then(|i| i.hold.clone())
            .unwrap_or_default();
        for r in results {
            let Some(rule) = self.cfg.probes.get(&r.name) else {
                continue;
            };
            let t = self.s.probes.entry(r.name.clone()).or_default();
            let prev_passed = t
                .last
                .as_ref()
                .filter(|l| l.status != Status::Blocked)
                .map(|l| l.status.passed());
            match r.status {
                Status::Blocked => {}
                Status::Pass => {
                    t.pass_streak = t.pass_streak.saturating_add(1);
                    t.fail_streak = 0;
                    if t.failing && t.pass_streak >= rule.recover_after {
                        t.failing = false;
                    }
                    if !t.failing {
                        t.failing_since = None;
                    }
                }
                Status::Fail | Status::Timeout | Status::Error => {
                    t.fail_streak = t.fail_streak.saturating_add(1);
                    t.pass_streak = 0;
                    if t.failing_since.is_none() {
                        t.failing_since = Some(at);
                    }
                    if t.fail_streak >= rule.fail_after {
                        t.failing = true;
                    }
                    if held.contains(&r.name) {
                        cx.hold_broken = Some(r.name.clone());
                    }
                }
            }
            if r.status != Status::Blocked
                && let Some(p) = prev_passed
                && p != r.status.passed()
            {
                t.changes.push(at);
            }
            t.last = Some(LastResult {
                status: r.status,
                output: excerpt(&r.output),
                at,
            });
        }
    }

    fn on_reprobe(&mut self, results: Vec<ProbeResult>, cx: &mut Cx) {
        let Some(mut inc) = self.s.incident.take() else {
            return;
        };
        if let Some(v) = inc.verify.clone() {
            let relevant: Vec<&ProbeResult> = results
                .iter()
                .filter(|r| v.probes.contains(&r.name))
                .collect();
            if !relevant.is_empty() {
                let fixed = v
                    .probes
                    .iter()
                    .all(|p| relevant.iter().any(|r| &r.name == p && r.status.passed()));
                inc.verify = None;
                if fixed {
                    cx.record(Record::ActionVerdict {
                        action: v.action,
                        at: cx.at,
                        verdict: format!("fixed? re-probe passed: {}", v.probes.join(", ")),
                    });
                    inc.hold = Some(v.probes.clone());
                    inc.held_action = Some(v.action);
                } else {
                    let failing: Vec<String> = relevant
                        .iter()
                        .filter(|r| !r.status.passed())
                        .map(|r| format!("{} {}: {}", r.name, r.status.as_str(), r.output))
                        .collect();
                    let verdict = if failing.is_empty() {
                        "not fixed: re-probe incomplete".to_string()
                    } else {
                        format!("not fixed: {}", failing.join("; "))
                    };
                    cx.record(Record::ActionVerdict {
                        action: v.action,
                        at: cx.at,
                        verdict: verdict.clone(),
                    });
                    self.advance(
                        &mut inc,
                        &format!("{} #{} {verdict}", v.kind.as_str(), v.action),
                        cx,
                    );
                }
            }
        }
        self.s.incident = Some(inc);
    }

    fn on_finished(&mut self, id: ActionId, outcome: RunOutcome, output: String, cx: &mut Cx) {
        cx.record(Record::ActionFinished {
            action: id,
            at: cx.at,
            outcome: outcome.clone(),
            output: excerpt(&output),
        });
        if self.s.orphan.as_ref().is_some_and(|r| r.id == id) {
            self.s.orphan = None;
        }
        let Some(mut inc) = self.s.incident.take() else {
            return;
        };
        if inc.running.as_ref().is_some_and(|r| r.id == id) {
            let r = inc.running.take().expect("checked above");
            self.finish(&mut inc, r, outcome, cx);
        }
        self.s.incident = Some(inc);
    }

    /// A heal/agent ended: fall back to tier 3, or verify by re-probe after the settle delay.
    fn finish(&mut self, inc: &mut Incident, r: Running, outcome: RunOutcome, cx: &mut Cx) {
        let label = match r.tier {
            Some(t) => format!("agent #{} (tier {} {})", r.id, t.number(), t.as_str()),
            None => format!("heal #{}", r.id),
        };
        let line = format!("{label}: {}", outcome.describe());
        inc.tried.push(line.clone());
        if inc.tried.len() > TRIED_KEEP {
            inc.tried.remove(0);
        }
        inc.last_action = Some(line);
        if r.kind == ActionKind::Agent
            && r.tier == Some(AgentTier::Cloud)
            && self.cfg.agent_local
            && !outcome.succeeded()
        {
            cx.record(Record::ActionVerdict {
                action: r.id,
                at: cx.at,
                verdict: format!("failed ({}): falling back to tier 3", outcome.describe()),
            });
            self.start_agent(inc, AgentTier::Local, r.probes, cx);
            return;
        }
        if let RunOutcome::SpawnFailed { error } = &outcome {
            let verdict = format!("not fixed: could not start: {error}");
            cx.record(Record::ActionVerdict {
                action: r.id,
                at: cx.at,
                verdict: verdict.clone(),
            });
            self.advance(inc, &format!("{label} {verdict}"), cx);
            return;
        }
        let due = if outcome == RunOutcome::Lost {
            cx.at
        } else {
            cx.at.saturating_add(self.cfg.heal_settle)
        };
        inc.verify = Some(Verify {
            action: r.id,
            kind: r.kind,
            probes: r.probes,
            due,
            requested: false,
        });
    }

    /// The last action did not fix it: move one rung up (critical and sos stay).
    fn advance(&mut self, inc: &mut Incident, reason: &str, cx: &mut Cx) {
        match inc.stage {
            SystemState::Failed => self.set_stage(inc, SystemState::Investigating, reason, cx),
            SystemState::Investigating => self.set_stage(inc, SystemState::Critical, reason, cx),
            _ => {}
        }
    }

    fn on_notify_result(&mut self, id: ActionId, channels: Vec<ChannelResult>, cx: &mut Cx) {
        let delivered = channels.iter().any(|c| c.delivered);
        cx.record(Record::NotificationResult {
            notification: id,
            at: cx.at,
            delivered,
            channels,
        });
        let Some(idx) = self.s.pending.iter().position(|p| p.notification.id == id) else {
            return;
        };
        let open = self.s.incident.as_ref().map(|i| i.id);
        let n = self.s.pending[idx].notification.clone();
        let paging = matches!(n.kind, NotifyKind::Sos | NotifyKind::Reminder);
        if delivered {
            self.s.pending.remove(idx);
            if paging {
                self.s.last_sos_at = Some(cx.at);
                if open == Some(n.incident) {
                    let inc = self.s.incident.as_mut().expect("open");
                    if inc.paged_at.is_none() {
                        inc.paged_at = Some(cx.at);
                        cx.record(Record::Paged {
                            incident: n.incident,
                            at: cx.at,
                        });
                    }
                } else if n.kind == NotifyKind::Sos {
                    // Delivered after the incident ended: it paged someone, so they must hear
                    // it is over.
                    cx.record(Record::Paged {
                        incident: n.incident,
                        at: cx.at,
                    });
                    let resolved = self.notification(
                        NotifyKind::Resolved,
                        n.incident,
                        n.incident_opened_at,
                        SystemState::Healthy,
                        n.failing.clone(),
                        None,
                        n.tried.clone(),
                        format!(
                            "Resolved: incident #{} recovered (it had already ended when this page was delivered).",
                            n.incident
                        ),
                        cx,
                    );
                    self.queue(resolved);
                }
            }
        } else {
            let p = &mut self.s.pending[idx];
            p.in_flight = false;
            p.notification.attempt = p.notification.attempt.saturating_add(1);
            let shift = p.notification.attempt.min(10);
            let base = self.cfg.notify_retry.clamp(1, NOTIFY_RETRY_MAX);
            let delay = (base << shift.saturating_sub(1)).min(NOTIFY_RETRY_MAX);
            p.next_attempt_at = cx.at.saturating_add(delay);
        }
    }

    fn on_reload(&mut self, new: CoreConfig) {
        let old = std::mem::replace(&mut self.cfg, new);
        let cfg = &self.cfg;
        self.s.probes.retain(|name, _| {
            cfg.probes.contains_key(name) && cfg.probes.get(name) == old.probes.get(name)
        });
    }

    fn on_ack(&mut self, incident: IncidentId, cx: &mut Cx) {
        if let Some(inc) = &mut self.s.incident
            && inc.id == incident
            && inc.acked_at.is_none()
        {
            inc.acked_at = Some(cx.at);
            cx.record(Record::Acked {
                incident,
                at: cx.at,
            });
        }
    }

    fn on_silence(&mut self, probe: String, until: Millis, cx: &mut Cx) {
        if !self.cfg.probes.contains_key(&probe) {
            return;
        }
        let t = self.s.probes.entry(probe.clone()).or_default();
        t.silenced_until = (until > cx.at).then_some(until);
        cx.record(Record::Silenced {
            probe,
            at: cx.at,
            until,
        });
    }

    fn probe_state(&self, t: &ProbeTrack) -> ProbeState {
        match &t.last {
            None => ProbeState::Pending,
            Some(l) if l.status == Status::Blocked => ProbeState::Blocked,
            Some(_) if t.flapping => ProbeState::Flapping,
            Some(_) if t.failing => ProbeState::Failing,
            Some(_) if t.fail_streak > 0 => ProbeState::Debouncing,
            Some(_) => ProbeState::Passing,
        }
    }

    fn silenced(&self, name: &str, at: Millis) -> bool {
        self.s
            .probes
            .get(name)
            .and_then(|t| t.silenced_until)
            .is_some_and(|u| u > at)
    }

    /// Critical probes, plus every dependency of a critical probe that is currently blocked:
    /// when a critical probe is blocked, its root escalates in its place.
    fn effective_critical(&self) -> BTreeSet<String> {
        let mut crit: BTreeSet<String> = self
            .cfg
            .probes
            .iter()
            .filter(|(_, r)| r.critical)
            .map(|(n, _)| n.clone())
            .collect();
        let mut stack: Vec<String> = crit
            .iter()
            .filter(|n| {
                self.s
                    .probes
                    .get(*n)
                    .is_some_and(|t| self.probe_state(t) == ProbeState::Blocked)
            })
            .cloned()
            .collect();
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            if let Some(rule) = self.cfg.probes.get(&n) {
                for d in &rule.depends_on {
                    crit.insert(d.clone());
                    stack.push(d.clone());
                }
            }
        }
        crit
    }

    /// Critical probes failing (or flapping), not blocked: what keeps an incident open.
    fn failing_critical(&self) -> Vec<String> {
        let crit = self.effective_critical();
        crit.into_iter()
            .filter(|n| {
                self.s.probes.get(n).is_some_and(|t| {
                    matches!(
                        self.probe_state(t),
                        ProbeState::Failing | ProbeState::Flapping
                    )
                })
            })
            .collect()
    }

    fn failing_view(&self, names: &[String]) -> Vec<FailingProbe> {
        names
            .iter()
            .map(|n| {
                let t = self.s.probes.get(n);
                FailingProbe {
                    name: n.clone(),
                    status: t.and_then(|t| t.last.as_ref()).map(|l| l.status),
                    output: t
                        .and_then(|t| t.last.as_ref())
                        .map(|l| l.output.clone())
                        .unwrap_or_default(),
                    since: t.and_then(|t| t.failing_since),
                }
            })
            .collect()
    }

    fn describe_failing(&self, names: &[String]) -> String {
        self.failing_view(names)
            .iter()
            .map(|f| {
                let st = f.status.map(|s| s.as_str()).unwrap_or("?");
                if f.output.is_empty() {
                    format!("{} ({st})", f.name)
                } else {
                    let line = f.output.lines().next().unwrap_or("");
                    format!("{} ({st}: {line})", f.name)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn evaluate(&mut self, cx: &mut Cx) {
        let at = cx.at;
        // Silences that ended; flap windows.
        let window = self.cfg.flap_window;
        let threshold = self.cfg.flap_threshold as usize;
        for t in self.s.probes.values_mut() {
            if let Some(u) = t.silenced_until {
                if u <= at {
                    t.silenced_until = None;
                } else {
                    cx.wake(u);
                }
            }
            t.changes.retain(|c| *c > at.saturating_sub(window));
            t.flapping = t.changes.len() > threshold;
            if let Some(first) = t.changes.first()
                && t.flapping
            {
                cx.wake(first.saturating_add(window));
            }
        }
        // Probe transitions.
        let names: Vec<String> = self.s.probes.keys().cloned().collect();
        for name in &names {
            let t = &self.s.probes[name];
            let st = self.probe_state(t);
            if t.state != Some(st) {
                let fail_after = self.cfg.probes.get(name).map_or(1, |r| r.fail_after);
                let out = t
                    .last
                    .as_ref()
                    .map(|l| l.output.lines().next().unwrap_or("").to_string())
                    .unwrap_or_default();
                let reason = match st {
                    ProbeState::Pending => "no result yet".to_string(),
                    ProbeState::Passing => format!("passed: {out}"),
                    ProbeState::Debouncing => format!(
                        "failed {} of {} times in a row: {out}",
                        t.fail_streak, fail_after
                    ),
                    ProbeState::Failing => {
                        format!("failed {} times in a row: {out}", t.fail_streak)
                    }
                    ProbeState::Flapping => format!(
                        "changed state {} times in {}",
                        t.changes.len(),
                        fmt_duration(window)
                    ),
                    ProbeState::Blocked => format!("blocked: {out}"),
                };
                let from = t.state.unwrap_or(ProbeState::Pending).as_str().to_string();
                cx.record(Record::Transition(Transition {
                    at,
                    subject: name.clone(),
                    from,
                    to: st.as_str().to_string(),
                    reason,
                    incident: self.s.incident.as_ref().map(|i| i.id),
                }));
                self.s.probes.get_mut(name).expect("exists").state = Some(st);
            }
        }
        // Incident.
        let failing = self.failing_critical();
        let escalating: Vec<String> = failing
            .iter()
            .filter(|n| !self.silenced(n, at))
            .cloned()
            .collect();
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
                    self.drive(&mut inc, &escalating, cx);
                }
                self.s.incident = Some(inc);
            }
        } else if !escalating.is_empty() {
            let mut inc = self.open(&escalating, cx);
            self.drive(&mut inc, &escalating, cx);
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
        self.flush_notifications(!escalating.is_empty(), cx);
    }

    fn set_state(
        &mut self,
        to: SystemState,
        reason: &str,
        incident: Option<IncidentId>,
        cx: &mut Cx,
    ) {
        if self.s.state != to {
            cx.record(Record::Transition(Transition {
                at: cx.at,
                subject: "system".into(),
                from: self.s.state.as_str().into(),
                to: to.as_str().into(),
                reason: reason.into(),
                incident,
            }));
            self.s.state = to;
            self.s.since = cx.at;
        }
    }

    fn set_stage(&mut self, inc: &mut Incident, to: SystemState, reason: &str, cx: &mut Cx) {
        if to == SystemState::Critical && inc.critical_since.is_none() {
            inc.critical_since = Some(cx.at);
        }
        if inc.stage != to {
            inc.stage = to;
            inc.stage_since = cx.at;
        }
        self.set_state(to, reason, Some(inc.id), cx);
    }

    fn open(&mut self, escalating: &[String], cx: &mut Cx) -> Incident {
        self.s.last_incident += 1;
        let id = self.s.last_incident;
        let mut inc = Incident {
            id,
            opened_at: cx.at,
            probes: escalating.iter().cloned().collect(),
            stage: SystemState::Failed,
            stage_since: cx.at,
            heals: 0,
            agents: 0,
            critical_since: None,
            running: None,
            verify: None,
            hold: None,
            held_action: None,
            paged_at: None,
            last_page_at: None,
            acked_at: None,
            last_action: None,
            tried: Vec::new(),
        };
        cx.record(Record::IncidentOpened {
            incident: id,
            at: cx.at,
            probes: escalating.to_vec(),
        });
        let reason = format!(
            "critical probe failing: {}",
            self.describe_failing(escalating)
        );
        self.set_stage(&mut inc, SystemState::Failed, &reason, cx);
        inc
    }

    fn close(&mut self, mut inc: Incident, cx: &mut Cx) {
        if let Some(r) = inc.running.take() {
            self.s.orphan = Some(r);
        }
        let reason = format!(
            "recovered: every critical probe passes (incident open {})",
            fmt_duration(cx.at - inc.opened_at)
        );
        if let Some(v) = &inc.verify {
            cx.record(Record::ActionVerdict {
                action: v.action,
                at: cx.at,
                verdict: "fixed: probes recovered".into(),
            });
        } else if inc.hold.is_some()
            && let Some(a) = inc.held_action
        {
            cx.record(Record::ActionVerdict {
                action: a,
                at: cx.at,
                verdict: "fixed: probes recovered".into(),
            });
        }
        cx.record(Record::IncidentClosed {
            incident: inc.id,
            at: cx.at,
            reason: reason.clone(),
        });
        if inc.paged_at.is_some() {
            let text = format!(
                "Resolved: incident #{} ({}) recovered after {}.",
                inc.id,
                inc.probes.iter().cloned().collect::<Vec<_>>().join(", "),
                fmt_duration(cx.at - inc.opened_at)
            );
            // The probes that had failed, with their newest (passing) results: channels that
            // track alerts per probe (Alertmanager) resolve exactly those.
            let had_failed = self.failing_view(&inc.probes.iter().cloned().collect::<Vec<_>>());
            let n = self.notification(
                NotifyKind::Resolved,
                inc.id,
                inc.opened_at,
                SystemState::Healthy,
                had_failed,
                inc.last_action.clone(),
                inc.tried.clone(),
                text,
                cx,
            );
            self.queue(n);
        }
        // Healthy/degraded is set by the caller; name the incident in the transition.
        let to = if self.s.probes.values().all(|t| {
            matches!(
                self.probe_state(t),
                ProbeState::Passing | ProbeState::Pending
            )
        }) {
            SystemState::Healthy
        } else {
            SystemState::Degraded
        };
        self.set_state(to, &reason, Some(inc.id), cx);
    }

    /// Tier 1's plan for these failing roots. A witness that passes while its target fails marks
    /// a split-brain, which takes the bridge heal (not the target's full heal); otherwise the
    /// probe's own heal; otherwise the global `heal_script`.
    fn heal_plan(&self, roots: &[String]) -> Vec<HealStep> {
        let mut steps = Vec::new();
        let mut bridge = Vec::new();
        let mut global = Vec::new();
        for r in roots {
            let Some(rule) = self.cfg.probes.get(r) else {
                continue;
            };
            let split = rule.witness.as_ref().is_some_and(|w| {
                self.s.probes.get(w).is_some_and(|t| {
                    self.probe_state(t) == ProbeState::Passing
                        && t.last.as_ref().is_some_and(|l| l.status == Status::Pass)
                })
            });
            if split && self.cfg.bridge_heal {
                bridge.push(r.clone());
                continue;
            }
            match rule.heal {
                Some(OwnHeal::RestartWorker) => steps.push(HealStep::RestartWorker),
                Some(OwnHeal::Command | OwnHeal::Restart) => {
                    steps.push(HealStep::Probe { probe: r.clone() })
                }
                None if self.cfg.global_heal => global.push(r.clone()),
                None => {}
            }
        }
        if !bridge.is_empty() {
            steps.push(HealStep::Bridge { probes: bridge });
        }
        if !global.is_empty() {
            steps.push(HealStep::Global { probes: global });
        }
        steps
    }

    fn agents_configured(&self) -> bool {
        self.cfg.agent_cloud || self.cfg.agent_local
    }

    fn first_tier(&self) -> AgentTier {
        if self.cfg.agent_cloud {
            AgentTier::Cloud
        } else {
            AgentTier::Local
        }
    }

    /// Move the open incident's ladder as far as the event time allows.
    fn drive(&mut self, inc: &mut Incident, roots: &[String], cx: &mut Cx) {
        self.ladder(inc, roots, cx);
        self.sos_clock(inc, cx);
    }

    fn ladder(&mut self, inc: &mut Incident, roots: &[String], cx: &mut Cx) {
        let at = cx.at;
        if inc.running.as_ref().is_some_and(|r| r.lost) {
            let r = inc.running.take().expect("checked");
            cx.record(Record::ActionFinished {
                action: r.id,
                at,
                outcome: RunOutcome::Lost,
                output: String::new(),
            });
            self.finish(inc, r, RunOutcome::Lost, cx);
        }
        // A held fix whose probes all left the escalating set (recovered) while other probes
        // keep the incident open: those were never worked on, so the ladder resumes where it is.
        if inc
            .hold
            .as_ref()
            .is_some_and(|h| !h.iter().any(|p| roots.contains(p)))
        {
            inc.hold = None;
            inc.held_action = None;
        }
        if inc.hold.is_some()
            && let Some(p) = cx.hold_broken.take()
        {
            inc.hold = None;
            inc.held_action = None;
            let reason = format!("re-probe had passed, but the next scheduled run of {p} failed");
            self.advance(inc, &reason, cx);
        }
        if inc.running.is_some() || self.s.orphan.is_some() {
            return;
        }
        if let Some(v) = &mut inc.verify {
            if !v.requested {
                v.requested = true;
                cx.out.push(Action::Reprobe {
                    incident: inc.id,
                    probes: v.probes.clone(),
                    at: v.due,
                });
            }
            let deadline = v.due.saturating_add(VERIFY_GRACE);
            if at >= deadline {
                let v = inc.verify.take().expect("checked");
                let verdict = "not fixed: no re-probe result arrived".to_string();
                cx.record(Record::ActionVerdict {
                    action: v.action,
                    at,
                    verdict: verdict.clone(),
                });
                self.advance(
                    inc,
                    &format!("{} #{} {verdict}", v.kind.as_str(), v.action),
                    cx,
                );
            } else {
                cx.wake(deadline);
                return;
            }
        }
        if inc.hold.is_some() {
            return;
        }
        let max = self.cfg.max_heals_per_incident;
        for _ in 0..3 {
            let plan = self.heal_plan(roots);
            let heal_due = due_after(self.s.last_heal_at, self.cfg.heal_cooldown);
            let agent_due = due_after(self.s.last_agent_at, self.cfg.agent_cooldown);
            match inc.stage {
                SystemState::Failed => {
                    if plan.is_empty() {
                        let reason = format!("no heal configured for {}", roots.join(", "));
                        self.set_stage(inc, SystemState::Investigating, &reason, cx);
                        continue;
                    }
                    if inc.heals >= max {
                        let reason = format!("heal budget spent ({} of {max})", inc.heals);
                        self.set_stage(inc, SystemState::Investigating, &reason, cx);
                        continue;
                    }
                    if heal_due <= at {
                        self.start_heal(inc, plan, roots, cx);
                    } else {
                        cx.wake(heal_due);
                    }
                    return;
                }
                SystemState::Investigating => {
                    if !self.agents_configured() {
                        self.set_stage(inc, SystemState::Critical, "no agent configured", cx);
                        continue;
                    }
                    if agent_due <= at {
                        let tier = self.first_tier();
                        self.start_agent(inc, tier, roots.to_vec(), cx);
                    } else {
                        cx.wake(agent_due);
                    }
                    return;
                }
                SystemState::Critical | SystemState::Sos => {
                    let heal = (!plan.is_empty() && inc.heals < max).then_some(heal_due);
                    let agent = self.agents_configured().then_some(agent_due);
                    match (heal, agent) {
                        (Some(h), a) if h <= at && a.is_none_or(|a| h <= a) => {
                            self.start_heal(inc, plan, roots, cx)
                        }
                        (_, Some(a)) if a <= at => {
                            let tier = self.first_tier();
                            self.start_agent(inc, tier, roots.to_vec(), cx)
                        }
                        (h, a) => {
                            for t in [h, a].into_iter().flatten() {
                                cx.wake(t);
                            }
                        }
                    }
                    return;
                }
                SystemState::Healthy | SystemState::Degraded => return,
            }
        }
    }

    /// Critical → sos after `critical_threshold`; reminders per incident every `sos_cooldown`.
    fn sos_clock(&mut self, inc: &mut Incident, cx: &mut Cx) {
        let at = cx.at;
        match inc.stage {
            SystemState::Critical => {
                let since = inc.critical_since.unwrap_or(inc.stage_since);
                let due = since.saturating_add(self.cfg.critical_threshold);
                if at < due {
                    cx.wake(due);
                    return;
                }
                let reason = format!(
                    "critical for {} (threshold {})",
                    fmt_duration(at - since),
                    fmt_duration(self.cfg.critical_threshold)
                );
                self.set_stage(inc, SystemState::Sos, &reason, cx);
                self.page(inc, NotifyKind::Sos, cx);
            }
            SystemState::Sos => {
                if inc.acked_at.is_some() {
                    return;
                }
                if self.s.pending.iter().any(|p| {
                    p.notification.incident == inc.id && p.notification.kind != NotifyKind::Resolved
                }) {
                    return; // still being delivered; retries are not reminders
                }
                let due = match inc.last_page_at {
                    // Restored in sos without a page recorded: page now.
                    None => at,
                    Some(l) => l.saturating_add(self.cfg.sos_cooldown),
                };
                if at >= due {
                    let kind = if inc.last_page_at.is_none() {
                        NotifyKind::Sos
                    } else {
                        NotifyKind::Reminder
                    };
                    self.page(inc, kind, cx);
                } else {
                    cx.wake(due);
                }
            }
            _ => {}
        }
    }

    fn page(&mut self, inc: &mut Incident, kind: NotifyKind, cx: &mut Cx) {
        let probes: Vec<String> = self.failing_critical();
        let failing = self.failing_view(&probes);
        let dur = fmt_duration(cx.at - inc.opened_at);
        let last = inc
            .last_action
            .as_ref()
            .map(|l| format!(" Last action: {l}."))
            .unwrap_or_default();
        let text = match kind {
            NotifyKind::Sos => format!(
                "SOS: incident #{} — automation could not fix it; failing for {dur}: {}.{last}",
                inc.id,
                self.describe_failing(&probes)
            ),
            _ => format!(
                "Reminder: incident #{} still failing after {dur}: {}.{last}",
                inc.id,
                self.describe_failing(&probes)
            ),
        };
        inc.last_page_at = Some(cx.at);
        let n = self.notification(
            kind,
            inc.id,
            inc.opened_at,
            inc.stage,
            failing,
            inc.last_action.clone(),
            inc.tried.clone(),
            text,
            cx,
        );
        self.queue(n);
    }

    #[allow(clippy::too_many_arguments)]
    fn notification(
        &mut self,
        kind: NotifyKind,
        incident: IncidentId,
        opened_at: Millis,
        state: SystemState,
        failing: Vec<FailingProbe>,
        last_action: Option<String>,
        tried: Vec<String>,
        text: String,
        cx: &Cx,
    ) -> Notification {
        self.s.last_action += 1;
        Notification {
            id: self.s.last_action,
            incident,
            kind,
            created_at: cx.at,
            attempt: 0,
            state,
            incident_opened_at: opened_at,
            failing,
            last_action,
            tried,
            text,
        }
    }

    fn queue(&mut self, n: Notification) {
        let at = n.created_at;
        self.s.pending.push(Pending {
            notification: n,
            in_flight: false,
            next_attempt_at: at,
        });
    }

    /// Send what is due; drop pages that no longer have a reason (incident over, acknowledged).
    fn flush_notifications(&mut self, escalating: bool, cx: &mut Cx) {
        let open = self
            .s
            .incident
            .as_ref()
            .map(|i| (i.id, i.acked_at.is_some()));
        let mut dropped = Vec::new();
        self.s.pending.retain(|p| {
            let n = &p.notification;
            let paging = n.kind != NotifyKind::Resolved;
            let reason = match open {
                _ if !paging || p.in_flight => None,
                Some((id, true)) if id == n.incident => Some("incident acknowledged"),
                Some((id, false)) if id == n.incident => None,
                _ => Some("incident ended before delivery"),
            };
            if let Some(r) = reason {
                dropped.push((n.id, r));
                false
            } else {
                true
            }
        });
        for (id, reason) in dropped {
            cx.record(Record::NotificationDropped {
                notification: id,
                at: cx.at,
                reason: reason.into(),
            });
        }
        let mut sent = Vec::new();
        for p in &mut self.s.pending {
            if p.in_flight {
                continue;
            }
            let n = &p.notification;
            // A silenced incident does not page until the silence ends.
            if n.kind != NotifyKind::Resolved
                && open.is_some_and(|(id, _)| id == n.incident)
                && !escalating
            {
                continue;
            }
            if p.next_attempt_at <= cx.at {
                p.in_flight = true;
                sent.push(p.notification.clone());
            } else {
                cx.wake(p.next_attempt_at);
            }
        }
        for n in sent {
            cx.record(Record::NotificationSent {
                notification: n.clone(),
            });
            cx.out.push(Action::Notify(n));
        }
    }

    fn start_heal(
        &mut self,
        inc: &mut Incident,
        steps: Vec<HealStep>,
        roots: &[String],
        cx: &mut Cx,
    ) {
        self.s.last_action += 1;
        let id = self.s.last_action;
        inc.heals += 1;
        self.s.last_heal_at = Some(cx.at);
        inc.running = Some(Running {
            id,
            kind: ActionKind::Heal,
            tier: None,
            started_at: cx.at,
            probes: roots.to_vec(),
            lost: false,
        });
        let detail = steps
            .iter()
            .map(|s| match s {
                HealStep::Probe { probe } => format!("{probe}'s heal"),
                HealStep::RestartWorker => "worker restart".to_string(),
                HealStep::Bridge { probes } => format!("bridge_heal for {}", probes.join(", ")),
                HealStep::Global { probes } => format!("heal_script for {}", probes.join(", ")),
            })
            .collect::<Vec<_>>()
            .join("; ");
        cx.record(Record::ActionStarted {
            incident: inc.id,
            action: id,
            kind: ActionKind::Heal,
            tier: None,
            at: cx.at,
            detail: format!(
                "heal {} of {}: {detail}",
                inc.heals, self.cfg.max_heals_per_incident
            ),
        });
        cx.out.push(Action::RunHeal {
            id,
            incident: inc.id,
            steps,
            probes: roots.to_vec(),
        });
    }

    fn start_agent(
        &mut self,
        inc: &mut Incident,
        tier: AgentTier,
        roots: Vec<String>,
        cx: &mut Cx,
    ) {
        self.s.last_action += 1;
        let id = self.s.last_action;
        inc.agents += 1;
        self.s.last_agent_at = Some(cx.at);
        inc.running = Some(Running {
            id,
            kind: ActionKind::Agent,
            tier: Some(tier),
            started_at: cx.at,
            probes: roots.clone(),
            lost: false,
        });
        cx.record(Record::ActionStarted {
            incident: inc.id,
            action: id,
            kind: ActionKind::Agent,
            tier: Some(tier),
            at: cx.at,
            detail: format!(
                "tier {} ({}) agent for {}",
                tier.number(),
                tier.as_str(),
                roots.join(", ")
            ),
        });
        cx.out.push(Action::RunAgent {
            id,
            incident: inc.id,
            tier,
            probes: roots,
        });
    }

    /// A read-only summary at time `at`: state, open incident, failing probes, the next step.
    pub fn outlook(&self, at: Millis) -> Outlook {
        let failing = self.failing_critical();
        let mut probes: Vec<ProbeView> = self
            .cfg
            .probes
            .iter()
            .map(|(name, rule)| {
                let t = self.s.probes.get(name);
                ProbeView {
                    name: name.clone(),
                    critical: rule.critical,
                    state: t.map_or(ProbeState::Pending, |t| self.probe_state(t)),
                    fail_streak: t.map_or(0, |t| t.fail_streak),
                    pass_streak: t.map_or(0, |t| t.pass_streak),
                    last_status: t.and_then(|t| t.last.as_ref()).map(|l| l.status),
                    last_output: t.and_then(|t| t.last.as_ref()).map(|l| l.output.clone()),
                    last_at: t.and_then(|t| t.last.as_ref()).map(|l| l.at),
                    silenced_until: t.and_then(|t| t.silenced_until).filter(|u| *u > at),
                }
            })
            .collect();
        probes.sort_by(|a, b| a.name.cmp(&b.name));
        let failing_all: Vec<String> = probes
            .iter()
            .filter(|p| {
                !matches!(p.state, ProbeState::Passing | ProbeState::Pending)
                    || failing.contains(&p.name)
            })
            .map(|p| p.name.clone())
            .collect();
        Outlook {
            state: self.s.state,
            since: self.s.since,
            incident: self.s.incident.clone(),
            failing: self.failing_view(&failing_all),
            next: self.next_step(at, &failing),
            pending_notifications: self
                .s
                .pending
                .iter()
                .map(|p| p.notification.clone())
                .collect(),
            probes,
        }
    }

    fn next_step(&self, at: Millis, failing: &[String]) -> Option<NextStep> {
        let inc = self.s.incident.as_ref()?;
        let step = |what: String, due: Option<Millis>| Some(NextStep { what, due });
        if failing.iter().all(|n| self.silenced(n, at)) {
            let until = failing
                .iter()
                .filter_map(|n| self.s.probes.get(n).and_then(|t| t.silenced_until))
                .min();
            return step("paused: every failing probe is silenced".into(), until);
        }
        if let Some(r) = inc.running.as_ref().or(self.s.orphan.as_ref()) {
            let what = match r.tier {
                Some(t) => format!(
                    "waiting for agent #{} (tier {} {})",
                    r.id,
                    t.number(),
                    t.as_str()
                ),
                None => format!("waiting for heal #{}", r.id),
            };
            return step(what, None);
        }
        if let Some(v) = &inc.verify {
            return step(
                format!("verification re-probe of {}", v.probes.join(", ")),
                Some(v.due),
            );
        }
        if let Some(h) = &inc.hold {
            return step(
                format!(
                    "waiting for the next scheduled run of {} to confirm the fix",
                    h.join(", ")
                ),
                None,
            );
        }
        let roots: Vec<String> = failing.to_vec();
        let plan = self.heal_plan(&roots);
        let max = self.cfg.max_heals_per_incident;
        let heal_due = due_after(self.s.last_heal_at, self.cfg.heal_cooldown).max(at);
        let agent_due = due_after(self.s.last_agent_at, self.cfg.agent_cooldown).max(at);
        let agent_name = if self.cfg.agent_cloud {
            "agent (tier 2 cloud)"
        } else {
            "agent (tier 3 local)"
        };
        match inc.stage {
            SystemState::Failed if !plan.is_empty() && inc.heals < max => step(
                format!("heal (tier 1), {} of {max}", inc.heals + 1),
                Some(heal_due),
            ),
            SystemState::Failed | SystemState::Investigating if self.agents_configured() => {
                step(agent_name.into(), Some(agent_due))
            }
            SystemState::Failed | SystemState::Investigating | SystemState::Critical => {
                let since = inc.critical_since.unwrap_or(at);
                step(
                    "SOS to every channel".into(),
                    Some(since.saturating_add(self.cfg.critical_threshold)),
                )
            }
            SystemState::Sos if inc.acked_at.is_some() => {
                step("none: acknowledged, no reminders".into(), None)
            }
            SystemState::Sos => step(
                "SOS reminder".into(),
                inc.last_page_at
                    .map(|l| l.saturating_add(self.cfg.sos_cooldown)),
            ),
            _ => None,
        }
    }
}
