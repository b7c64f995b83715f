//! The system state and the incident: its transitions, opening and closing it (with the
//! resolved notice when it paged), and moving the ladder up one rung.

use super::*;

impl Core {
    pub(super) fn set_state(
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

    pub(super) fn set_stage(
        &mut self,
        inc: &mut Incident,
        to: SystemState,
        reason: &str,
        cx: &mut Cx,
    ) {
        if to == SystemState::Critical && inc.critical_since.is_none() {
            inc.critical_since = Some(cx.at);
        }
        if inc.stage != to {
            inc.stage = to;
            inc.stage_since = cx.at;
        }
        self.set_state(to, reason, Some(inc.id), cx);
    }

    pub(super) fn open(&mut self, escalating: &[String], cx: &mut Cx) -> Incident {
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
            sos_at: None,
            steps: BTreeMap::new(),
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

    pub(super) fn close(&mut self, mut inc: Incident, cx: &mut Cx) {
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
            let mut n = self.notification(
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
            // Whoever was paged hears it is over (every channel without policies).
            n.channels = self.paged_channels(&inc);
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

    /// The last action did not fix it: move one rung up (critical and sos stay).
    pub(super) fn advance(&mut self, inc: &mut Incident, reason: &str, cx: &mut Cx) {
        match inc.stage {
            SystemState::Failed => self.set_stage(inc, SystemState::Investigating, reason, cx),
            SystemState::Investigating => self.set_stage(inc, SystemState::Critical, reason, cx),
            _ => {}
        }
    }
}
