//! Per-probe bookkeeping: streaks from scheduled results, silences, flap windows, the shown
//! state and its transitions, and which probes escalate (effective critical, failing, silenced).

use super::*;

impl Core {
    pub(super) fn on_results(&mut self, results: Vec<ProbeResult>, cx: &mut Cx) {
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

    pub(super) fn on_silence(&mut self, probe: String, until: Millis, cx: &mut Cx) {
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

    pub(super) fn probe_state(&self, t: &ProbeTrack) -> ProbeState {
        match &t.last {
            None => ProbeState::Pending,
            Some(l) if l.status == Status::Blocked => ProbeState::Blocked,
            Some(_) if t.flapping => ProbeState::Flapping,
            Some(_) if t.failing => ProbeState::Failing,
            Some(_) if t.fail_streak > 0 => ProbeState::Debouncing,
            Some(_) => ProbeState::Passing,
        }
    }

    pub(super) fn silenced(&self, name: &str, at: Millis) -> bool {
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
    pub(super) fn failing_critical(&self) -> Vec<String> {
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

    pub(super) fn failing_view(&self, names: &[String]) -> Vec<FailingProbe> {
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

    pub(super) fn describe_failing(&self, names: &[String]) -> String {
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

    /// Silences that ended, flap windows, and a transition record for every probe whose shown
    /// state changed.
    pub(super) fn track_probes(&mut self, cx: &mut Cx) {
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
    }
}
