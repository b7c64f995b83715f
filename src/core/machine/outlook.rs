//! The read-only summary for `talon status` and `/status`: state, open incident, failing
//! probes and the next rung with when it is due.

use super::*;
use serde::Serialize;

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
    /// Escalation policy steps reached by the open incident (`db step 1 of 3`); empty without
    /// policies.
    pub steps_reached: Vec<String>,
    /// Maintenance windows, configured and run-time.
    pub maintenance: Vec<WindowView>,
    /// The channels the open incident's pages have gone to: `None` for every channel (no
    /// policies, or a probe without one), else the reached steps' channels (empty before the
    /// first step). `None` without an incident.
    pub paged_channels: Option<Vec<String>>,
}

impl Core {
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
            steps_reached: match &self.s.incident {
                Some(inc) if self.chained() => self.chain_outlook(inc, at).0,
                _ => Vec::new(),
            },
            maintenance: self.maintenance_view(at),
            paged_channels: self
                .s
                .incident
                .as_ref()
                .and_then(|inc| self.pages_went_to(inc)),
        }
    }

    fn next_step(&self, at: Millis, failing: &[String]) -> Option<NextStep> {
        let inc = self.s.incident.as_ref()?;
        let step = |what: String, due: Option<Millis>| Some(NextStep { what, due });
        let quiet: Vec<(String, Millis)> = failing
            .iter()
            .filter(|n| !self.silenced(n, at))
            .filter_map(|n| self.window_of(n, at).filter(|w| !w.1).map(|w| (w.0, w.2)))
            .collect();
        if !quiet.is_empty()
            && failing
                .iter()
                .all(|n| self.silenced(n, at) || self.window_of(n, at).is_some_and(|w| !w.1))
        {
            let mut names: Vec<String> = quiet.iter().map(|w| w.0.clone()).collect();
            names.sort();
            names.dedup();
            let until = quiet.iter().map(|w| w.1).max();
            return step(
                format!("paused: maintenance window {}", names.join(", ")),
                until,
            );
        }
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
        // A deadline already past is shown as now.
        let heal_due = self.heal_due().max(at);
        let agent_due = self.agent_due().max(at);
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
            SystemState::Failed | SystemState::Investigating | SystemState::Critical
                if self.chained() =>
            {
                let sos = self.sos_due(inc, at);
                let first = self.chain_outlook(inc, sos).1;
                match first {
                    Some((what, due)) => step(format!("SOS: {what}"), Some(due.max(sos))),
                    None => step("SOS".into(), Some(sos)),
                }
            }
            SystemState::Failed | SystemState::Investigating | SystemState::Critical => {
                step("SOS to every channel".into(), Some(self.sos_due(inc, at)))
            }
            SystemState::Sos if inc.acked_at.is_some() => {
                step("none: acknowledged, no reminders".into(), None)
            }
            SystemState::Sos if self.chained() => match self.chain_outlook(inc, at).1 {
                Some((what, due)) => step(format!("escalation: {what}"), Some(due.max(at))),
                None => step(
                    "SOS reminder (last step reached)".into(),
                    Some(self.reminder_due(inc, at)),
                ),
            },
            SystemState::Sos => step("SOS reminder".into(), Some(self.reminder_due(inc, at))),
            _ => None,
        }
    }
}
