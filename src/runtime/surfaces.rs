//! The daemon's outward surfaces, fed from the loop: the status board behind `/health`,
//! `/status` and `/`, metrics, and the control requests (`ack`, `silence`) coming back in.

use super::Runtime;
use crate::core::{Event, IncidentId, Record};
use crate::probe::engine::now_ms;
use crate::server::control::{ControlReply, ControlRequest};
use crate::server::snapshot::{
    IncidentStatus, NextStep, ProbeStatus, Silence, StatusSnapshot, Transition, WorkerStatus,
};

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

impl Runtime {
    /// Rebuild the snapshot from the core and the newest results. Cheap; called after each step.
    pub(super) fn publish(&mut self) {
        let now = now_ms();
        let o = self.core.outlook(now);
        let mut snap = StatusSnapshot::new(secs(now));
        snap.state = o.state;
        snap.since_unix = secs(o.since);
        snap.consecutive_failures = o.probes.iter().map(|p| p.fail_streak).max().unwrap_or(0);
        for v in &o.probes {
            let mut p = ProbeStatus::pending(&v.name, "", v.critical);
            if let Some(r) = self.last.get(&v.name) {
                p.kind.clone_from(&r.kind);
                p.status = Some(r.status);
                p.passed = r.passed;
                p.output.clone_from(&r.output);
                p.duration_ms = Some(r.duration_ms);
                p.started_at = Some(r.started_at);
            }
            p.streak = v.fail_streak.max(v.pass_streak);
            p.flapping = v.state.as_str() == "flapping";
            p.silenced = v.silenced_until.filter(|u| *u > now).map(|u| Silence {
                until_unix: secs(u),
                reason: None,
            });
            snap.probes.push(p);
        }
        if let Some(w) = &self.worker {
            let st = w.status();
            snap.worker = Some(WorkerStatus {
                pid: st.pid,
                state: format!("{:?}", st.state).to_lowercase(),
                restarts: st.restarts,
                last_exit: st.last_exit.map(|e| e.to_string()),
                since_unix: st
                    .started_at
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64),
            });
        }
        if let Some(i) = &o.incident {
            snap.incident = Some(IncidentStatus {
                id: i.id.to_string(),
                started_unix: secs(i.opened_at),
                failing_probes: i.probes.iter().cloned().collect(),
                acknowledged: i.acked_at.is_some(),
                timeline: self.timeline.clone(),
            });
        }
        snap.transitions = self.transitions.clone();
        snap.config_error = self.config_error_detail.clone();
        snap.next_escalation = o.next.as_ref().map(|n| NextStep {
            text: n.what.clone(),
            due_unix: n.due.map(secs).unwrap_or(0),
        });
        if let Some(w) = &self.store {
            let failures = w.failures();
            self.metrics
                .store_write_failed(failures.saturating_sub(self.store_failures_seen));
            self.store_failures_seen = failures;
            snap.store_write_failures = failures;
            snap.store_error = w.current_error();
        }
        self.metrics
            .set_pending_notifications(o.pending_notifications.len());
        snap.pending_notifications = o.pending_notifications;
        self.metrics.set_state(snap.state);
        self.board.replace(snap);
    }

    /// Keep the recent transitions and the open incident's timeline for the surfaces.
    pub(super) fn note_record(&mut self, r: &Record) {
        use crate::server::snapshot::TimelineEntry;
        let entry = |at: i64, kind: &str, text: String| TimelineEntry {
            at_unix: secs(at),
            kind: kind.to_string(),
            text,
        };
        match r {
            Record::Transition(t) if t.subject == "system" => {
                let state = |s: &str| crate::core::SystemState::parse(s).unwrap_or_default();
                self.transitions.push(Transition {
                    at_unix: secs(t.at),
                    from: state(&t.from),
                    to: state(&t.to),
                    reason: t.reason.clone(),
                });
                let excess = self.transitions.len().saturating_sub(50);
                self.transitions.drain(..excess);
                if t.incident.is_some() {
                    self.timeline.push(entry(
                        t.at,
                        "transition",
                        format!("{} → {}: {}", t.from, t.to, t.reason),
                    ));
                }
            }
            Record::IncidentOpened { at, probes, .. } => {
                self.timeline.clear();
                self.timeline.push(entry(
                    *at,
                    "opened",
                    format!("failing: {}", probes.join(", ")),
                ));
            }
            Record::ActionStarted {
                at, kind, detail, ..
            } => self
                .timeline
                .push(entry(*at, kind.as_str(), format!("started: {detail}"))),
            Record::ActionFinished { at, outcome, .. } => {
                self.timeline.push(entry(*at, "result", outcome.describe()))
            }
            Record::ActionVerdict { at, verdict, .. } => {
                self.timeline.push(entry(*at, "verdict", verdict.clone()))
            }
            Record::NotificationResult {
                at,
                delivered,
                channels,
                ..
            } => {
                for c in channels {
                    self.metrics.notification(&c.channel, c.delivered);
                }
                let what = if *delivered {
                    "delivered"
                } else {
                    "not delivered (will retry)"
                };
                self.timeline.push(entry(*at, "notify", what.to_string()));
            }
            Record::Acked { at, .. } => {
                self.timeline.push(entry(*at, "ack", "acknowledged".into()))
            }
            _ => {}
        }
        let excess = self.timeline.len().saturating_sub(200);
        self.timeline.drain(..excess);
    }

    /// An `ack` or `silence` from the HTTP control endpoints.
    pub(super) fn on_control(&mut self, req: ControlRequest) {
        match req {
            ControlRequest::Ack { incident, reply } => {
                let open = self.core.incident().map(|i| i.id);
                let wanted: Option<IncidentId> = match incident.as_deref() {
                    None => open,
                    Some(s) => s.trim_start_matches('#').parse().ok(),
                };
                let answer = match (open, wanted) {
                    (None, _) => ControlReply::Rejected("no incident is open".into()),
                    (Some(o), Some(w)) if o == w => {
                        self.step(Event::Ack {
                            at: now_ms(),
                            incident: w,
                        });
                        ControlReply::Done(format!("incident {w} acknowledged: no more reminders"))
                    }
                    (Some(o), _) => ControlReply::NotFound(format!(
                        "incident {} is not open (the open one is {o})",
                        incident.unwrap_or_default()
                    )),
                };
                let _ = reply.send(answer);
            }
            ControlRequest::Silence {
                probe,
                duration,
                reason,
                reply,
            } => {
                let answer = if self.core.config().probes.contains_key(&probe) {
                    let until = now_ms() + duration.as_millis() as i64;
                    tracing::info!(probe = %probe, until, reason = ?reason, "probe silenced");
                    self.step(Event::Silence {
                        at: now_ms(),
                        probe: probe.clone(),
                        until,
                    });
                    ControlReply::Done(format!(
                        "{probe} silenced for {}",
                        crate::core::fmt_duration(duration.as_millis() as i64)
                    ))
                } else {
                    ControlReply::NotFound(format!("no probe named `{probe}`"))
                };
                let _ = reply.send(answer);
            }
        }
        self.publish();
    }
}
