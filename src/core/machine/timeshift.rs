//! A clock step: the runtime saw the wall clock jump by `delta` ms against monotonic time (an
//! NTP step, `date -s`, a resume from suspend) and sends [`Event::ClockStep`]. Every time the
//! core keeps is a wall-clock instant compared against later event times, so each is moved by
//! `delta`: re-expressed in the new time scale, every cooldown, threshold, debounce and flap
//! window, reminder, retry, approval expiry, silence, run-time maintenance window and daily
//! budget keeps exactly the time it had left. Without this a step forward would make every
//! deadline within `delta` due at once and a step back would make them wait `|delta|` longer
//! (the clamp in `Core::step` only limits that to one full cooldown).
//!
//! Records already emitted keep the times they were stamped with (history is not rewritten).

use super::*;

fn shift(t: &mut Millis, delta: Millis) {
    *t = t.saturating_add(delta);
}

fn shift_opt(t: &mut Option<Millis>, delta: Millis) {
    if let Some(t) = t {
        shift(t, delta);
    }
}

fn shift_running(r: &mut Running, delta: Millis) {
    shift(&mut r.started_at, delta);
}

fn shift_notification(n: &mut Notification, delta: Millis) {
    shift(&mut n.created_at, delta);
    shift(&mut n.incident_opened_at, delta);
    for f in &mut n.failing {
        shift_opt(&mut f.since, delta);
    }
}

impl Core {
    /// Move every stored time by `delta` ms (see the module docs).
    pub(super) fn shift_times(&mut self, delta: Millis) {
        let s = &mut self.s;
        shift(&mut s.since, delta);
        shift_opt(&mut s.last_heal_at, delta);
        shift_opt(&mut s.last_agent_at, delta);
        shift_opt(&mut s.last_sos_at, delta);
        for t in s.probes.values_mut() {
            shift_opt(&mut t.failing_since, delta);
            for c in &mut t.changes {
                shift(c, delta);
            }
            if let Some(l) = &mut t.last {
                shift(&mut l.at, delta);
            }
            shift_opt(&mut t.silenced_until, delta);
        }
        if let Some(inc) = &mut s.incident {
            shift(&mut inc.opened_at, delta);
            shift(&mut inc.stage_since, delta);
            shift_opt(&mut inc.critical_since, delta);
            if let Some(r) = &mut inc.running {
                shift_running(r, delta);
            }
            if let Some(v) = &mut inc.verify {
                shift(&mut v.due, delta);
            }
            shift_opt(&mut inc.paged_at, delta);
            shift_opt(&mut inc.last_page_at, delta);
            shift_opt(&mut inc.acked_at, delta);
            for a in &mut inc.approvals {
                shift(&mut a.created_at, delta);
                shift(&mut a.expires_at, delta);
            }
            shift_opt(&mut inc.sos_at, delta);
        }
        for p in &mut s.pending {
            shift(&mut p.next_attempt_at, delta);
            shift_notification(&mut p.notification, delta);
        }
        if let Some(r) = &mut s.orphan {
            shift_running(r, delta);
        }
        for t in &mut s.agent_runs {
            shift(t, delta);
        }
        for r in &mut s.action_runs {
            shift(&mut r.at, delta);
        }
        for w in &mut s.maintenance {
            shift(&mut w.start, delta);
            shift(&mut w.end, delta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::guard::{ActionRun, PendingApproval};

    const T: Millis = 1_700_000_000_000;

    /// A state with every time field set, each to a different value ≥ `T`. Written with full
    /// struct literals (no `..Default::default()`), so a new field in any of these structs
    /// fails to compile here until it is given a value — and, when it is a time, a place in
    /// [`Core::shift_times`].
    fn full_state() -> PersistedState {
        let mut n = 0;
        let mut t = || {
            n += 1;
            T + n * 1000
        };
        let running = |t: Millis| Running {
            id: 7,
            kind: ActionKind::Heal,
            tier: None,
            started_at: t,
            probes: vec!["api".into()],
            lost: false,
            name: None,
        };
        let track = ProbeTrack {
            fail_streak: 3,
            pass_streak: 0,
            failing: true,
            failing_since: Some(t()),
            flapping: false,
            changes: vec![t(), t()],
            last: Some(LastResult {
                status: Status::Fail,
                output: "down".into(),
                at: t(),
            }),
            silenced_until: Some(t()),
            state: Some(ProbeState::Failing),
        };
        let notification = Notification {
            id: 9,
            incident: 1,
            kind: NotifyKind::Sos,
            created_at: t(),
            attempt: 1,
            state: SystemState::Sos,
            incident_opened_at: t(),
            failing: vec![FailingProbe {
                name: "api".into(),
                status: Some(Status::Fail),
                output: "down".into(),
                since: Some(t()),
            }],
            last_action: None,
            tried: Vec::new(),
            text: "SOS".into(),
            channels: None,
        };
        let incident = Incident {
            id: 1,
            opened_at: t(),
            probes: ["api".to_string()].into_iter().collect(),
            stage: SystemState::Sos,
            stage_since: t(),
            heals: 1,
            agents: 1,
            critical_since: Some(t()),
            running: Some(running(t())),
            verify: Some(Verify {
                action: 7,
                kind: ActionKind::Heal,
                probes: vec!["api".into()],
                due: t(),
                requested: true,
            }),
            hold: None,
            held_action: None,
            paged_at: Some(t()),
            last_page_at: Some(t()),
            acked_at: Some(t()),
            last_action: None,
            tried: Vec::new(),
            approvals: vec![PendingApproval {
                id: 1,
                incident: 1,
                agent: 8,
                name: "restart-db".into(),
                reason: "db down".into(),
                created_at: t(),
                expires_at: t(),
            }],
            queue: Vec::new(),
            episode: Some(8),
            diagnosis: None,
            agent_attempts: 1,
            sos_at: Some(t()),
            steps: BTreeMap::new(),
        };
        PersistedState {
            version: 1,
            state: SystemState::Sos,
            since: t(),
            probes: [("api".to_string(), track)].into_iter().collect(),
            incident: Some(incident),
            last_heal_at: Some(t()),
            last_agent_at: Some(t()),
            last_sos_at: Some(t()),
            pending: vec![Pending {
                notification,
                in_flight: false,
                next_attempt_at: t(),
            }],
            orphan: Some(running(t())),
            last_incident: 1,
            last_action: 9,
            agent_runs: vec![t()],
            action_runs: vec![ActionRun {
                name: "restart-db".into(),
                at: t(),
            }],
            agent_misses: 1,
            breaker_open: false,
            last_approval: 1,
            maintenance: vec![ManualWindow {
                name: "deploy".into(),
                probes: vec!["api".into()],
                start: t(),
                end: t(),
                heal: false,
            }],
        }
    }

    /// Every number of `before` that is a time (≥ `T`) is `delta` more in `after`; every other
    /// number is unchanged. Returns how many times were checked.
    fn moved(before: &serde_json::Value, after: &serde_json::Value, delta: i64) -> usize {
        use serde_json::Value;
        match (before, after) {
            (Value::Number(b), Value::Number(a)) => {
                let (b, a) = (b.as_i64().unwrap(), a.as_i64().unwrap());
                if b >= T {
                    assert_eq!(a, b + delta, "a time did not move by {delta}");
                    1
                } else {
                    assert_eq!(a, b, "a number that is no time moved");
                    0
                }
            }
            (Value::Array(b), Value::Array(a)) => {
                assert_eq!(b.len(), a.len());
                b.iter().zip(a).map(|(b, a)| moved(b, a, delta)).sum()
            }
            (Value::Object(b), Value::Object(a)) => {
                assert_eq!(b.len(), a.len());
                b.iter().map(|(k, b)| moved(b, &a[k], delta)).sum()
            }
            (b, a) => {
                assert_eq!(b, a);
                0
            }
        }
    }

    #[test]
    fn every_stored_time_moves_by_the_step_and_nothing_else_does() {
        let before = full_state();
        let json = serde_json::to_value(&before).unwrap();
        for delta in [3_600_000, -3_600_000] {
            let mut core = Core {
                cfg: CoreConfig::default(),
                s: before.clone(),
            };
            core.shift_times(delta);
            let after = serde_json::to_value(&core.s).unwrap();
            assert_eq!(
                moved(&json, &after, delta),
                29,
                "every time field was set and moved"
            );
            // Back again: exactly the state before.
            core.shift_times(-delta);
            assert_eq!(core.s, before);
        }
    }
}
