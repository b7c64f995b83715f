//! When each next rung of the ladder is due. The ladder acts on these and the outlook
//! (`talon status`, `/status`) shows them, so each is computed here once; the two used to
//! compute the heal and SOS deadlines separately, with different fallbacks.
//!
//! The fallbacks, and why (`docs/state-machine.md`):
//! - **Never healed / never ran an agent**: `Millis::MIN`, due since forever. In critical the
//!   earlier due goes first (heal on a tie), so a heal that never ran goes before an overdue
//!   agent. The outlook shows a past deadline as "now" (`max(at)`), which is display only.
//! - **Critical without `critical_since`** (a state saved before it was recorded): the SOS is
//!   due `critical_threshold` after the stage began (`stage_since`), as the ladder always did.
//!   The outlook used to count from "now", a deadline that moved with every look.
//!   Not critical yet (failed, investigating): not before now + threshold.
//! - **In sos without a page recorded** (restored so): the page is due now, as the ladder
//!   always did; the outlook used to show no time.

use super::*;

/// When a cooldown since `last` ends. Times were clamped to the event time first, so a clock
/// that jumped backwards never makes the wait longer than `cooldown`.
fn due_after(last: Option<Millis>, cooldown: Millis) -> Millis {
    last.map_or(Millis::MIN, |l| l.saturating_add(cooldown))
}

/// When the incident's critical stage began (or, before it, the earliest it can: `at`).
pub(super) fn critical_since(inc: &Incident, at: Millis) -> Millis {
    match inc.critical_since {
        Some(t) => t,
        None if matches!(inc.stage, SystemState::Critical | SystemState::Sos) => inc.stage_since,
        None => at,
    }
}

impl Core {
    /// When the next heal may start: `heal_cooldown` after the last one started (any incident).
    pub(super) fn heal_due(&self) -> Millis {
        due_after(self.s.last_heal_at, self.cfg.heal_cooldown)
    }

    /// When the next agent attempt may start: `agent_cooldown` after the last one started.
    pub(super) fn agent_due(&self) -> Millis {
        due_after(self.s.last_agent_at, self.cfg.agent_cooldown)
    }

    /// When the incident goes from critical to sos: `critical_threshold` after it became critical.
    pub(super) fn sos_due(&self, inc: &Incident, at: Millis) -> Millis {
        critical_since(inc, at).saturating_add(self.cfg.critical_threshold)
    }

    /// When the incident's next page is due in sos: `sos_cooldown` after the previous SOS or
    /// reminder was created; now when none was.
    pub(super) fn reminder_due(&self, inc: &Incident, at: Millis) -> Millis {
        inc.last_page_at
            .map_or(at, |l| l.saturating_add(self.cfg.sos_cooldown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Millis = 1_700_000_000_000;
    const S: Millis = 1000;

    fn incident(
        stage: SystemState,
        critical_since: Option<Millis>,
        stage_since: Millis,
    ) -> Incident {
        Incident {
            id: 1,
            opened_at: T - 3600 * S,
            probes: ["api".to_string()].into_iter().collect(),
            stage,
            stage_since,
            heals: 1,
            agents: 1,
            critical_since,
            running: None,
            verify: None,
            hold: None,
            held_action: None,
            paged_at: None,
            last_page_at: None,
            acked_at: None,
            last_action: None,
            tried: Vec::new(),
            sos_at: None,
            steps: BTreeMap::new(),
        }
    }

    /// Cooldowns of `CoreConfig::default()`: heal 300 s, agent 600 s, critical threshold 900 s,
    /// reminders every 4 h.
    fn core(last_heal_at: Option<Millis>, last_agent_at: Option<Millis>) -> Core {
        let mut c = Core::new(CoreConfig::default());
        c.s.last_heal_at = last_heal_at;
        c.s.last_agent_at = last_agent_at;
        c
    }

    #[test]
    fn cooldown_deadlines() {
        // (last start, what the ladder compares against, what the outlook shows at T)
        let rows: [(Option<Millis>, Millis, Millis); 4] = [
            (None, Millis::MIN, T),
            (Some(T - 10 * S), T + 290 * S, T + 290 * S),
            (Some(T - 300 * S), T, T),
            (Some(T - 400 * S), T - 100 * S, T),
        ];
        for (last, due, shown) in rows {
            let c = core(last, None);
            assert_eq!(c.heal_due(), due, "heal, last {last:?}");
            assert_eq!(c.heal_due().max(T), shown, "heal shown, last {last:?}");
            // The agent's cooldown is 600 s.
            let c = core(None, last);
            let due = last.map_or(Millis::MIN, |l| l + 600 * S);
            assert_eq!(c.agent_due(), due, "agent, last {last:?}");
        }
    }

    #[test]
    fn sos_and_reminder_deadlines() {
        use SystemState::{Critical, Failed, Investigating, Sos};
        let c = core(None, None);
        // (stage, critical_since, stage_since) -> SOS due, threshold 900 s, asked at T.
        let rows = [
            (Critical, Some(T - 100 * S), T - 50 * S, T + 800 * S),
            (Sos, Some(T - 2000 * S), T - 1100 * S, T - 1100 * S),
            // Saved before critical_since was recorded: from the stage's start, not from now.
            (Critical, None, T - 50 * S, T + 850 * S),
            // Not critical yet: the earliest is now + threshold.
            (Failed, None, T - 50 * S, T + 900 * S),
            (Investigating, None, T - 50 * S, T + 900 * S),
        ];
        for (stage, since, stage_since, due) in rows {
            let inc = incident(stage, since, stage_since);
            assert_eq!(c.sos_due(&inc, T), due, "{stage} {since:?}");
        }
        // Reminders: 4 h after the previous page; now when none was recorded.
        let mut inc = incident(Sos, Some(T - 2000 * S), T - 1100 * S);
        assert_eq!(c.reminder_due(&inc, T), T);
        inc.last_page_at = Some(T - 60 * S);
        assert_eq!(c.reminder_due(&inc, T), T - 60 * S + 14_400 * S);
    }

    /// What `talon status` promises is what the ladder does: restored in critical without
    /// `critical_since`, the outlook names the time the SOS is sent, and it is sent then.
    #[test]
    fn the_outlook_shows_the_deadline_the_ladder_acts_on() {
        let mut cfg = CoreConfig {
            channels: vec!["tg".into()],
            ..CoreConfig::default()
        };
        cfg.probes.insert(
            "api".into(),
            ProbeRule {
                critical: true,
                fail_after: 1,
                recover_after: 1,
                depends_on: Vec::new(),
                witness: None,
                heal: None,
            },
        );
        let mut s = PersistedState {
            state: SystemState::Critical,
            since: T - 50 * S,
            incident: Some(incident(SystemState::Critical, None, T - 50 * S)),
            last_incident: 1,
            ..PersistedState::default()
        };
        s.probes.insert(
            "api".into(),
            ProbeTrack {
                fail_streak: 5,
                failing: true,
                failing_since: Some(T - 3600 * S),
                last: Some(LastResult {
                    status: Status::Fail,
                    output: "down".into(),
                    at: T,
                }),
                state: Some(ProbeState::Failing),
                ..ProbeTrack::default()
            },
        );
        let mut core = Core::restore(cfg, s);
        let next = core.outlook(T).next.expect("a next step");
        assert_eq!(next.what, "SOS to every channel");
        let due = T + 850 * S;
        assert_eq!(next.due, Some(due));
        let pages = |a: &[Action]| {
            a.iter()
                .filter(|x| matches!(x, Action::Notify(n) if n.kind == NotifyKind::Sos))
                .count()
        };
        assert_eq!(pages(&core.step(Event::Tick { at: due - 1 })), 0);
        assert_eq!(pages(&core.step(Event::Tick { at: due })), 1);
    }
}
