//! Paging a human: critical → sos after the threshold, reminders per incident, and delivery of
//! every notification with retries (SOS, reminder, resolved).

use super::*;

impl Core {
    /// Critical → sos after `critical_threshold`; reminders per incident every `sos_cooldown`.
    pub(super) fn sos_clock(&mut self, inc: &mut Incident, cx: &mut Cx) {
        let at = cx.at;
        match inc.stage {
            SystemState::Critical => {
                let since = deadline::critical_since(inc, at);
                let due = self.sos_due(inc, at);
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
                if self.chained() {
                    inc.sos_at = Some(at);
                    self.chain(inc, cx);
                } else {
                    self.page(inc, NotifyKind::Sos, cx);
                }
            }
            SystemState::Sos => {
                if inc.acked_at.is_some() {
                    return;
                }
                if self.chained() {
                    self.chain(inc, cx);
                    return;
                }
                if self.s.pending.iter().any(|p| {
                    p.notification.incident == inc.id && p.notification.kind != NotifyKind::Resolved
                }) {
                    return; // still being delivered; retries are not reminders
                }
                // Restored in sos without a page recorded: due now.
                let due = self.reminder_due(inc, at);
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
        self.page_to(inc, kind, None, None, cx);
    }

    /// Page `channels` (`None`: every channel); `step` names the escalation step(s) it is.
    pub(super) fn page_to(
        &mut self,
        inc: &mut Incident,
        kind: NotifyKind,
        channels: Option<Vec<String>>,
        step: Option<String>,
        cx: &mut Cx,
    ) {
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
        let text = match step {
            Some(step) => format!("{text} (escalation: {step})"),
            None => text,
        };
        inc.last_page_at = Some(cx.at);
        let mut n = self.notification(
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
        n.channels = channels;
        self.queue(n);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn notification(
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
            channels: None,
        }
    }

    pub(super) fn queue(&mut self, n: Notification) {
        let at = n.created_at;
        self.s.pending.push(Pending {
            notification: n,
            in_flight: false,
            next_attempt_at: at,
        });
    }

    /// Send what is due; drop pages that no longer have a reason (incident over, acknowledged).
    pub(super) fn flush_notifications(&mut self, escalating: bool, cx: &mut Cx) {
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

    pub(super) fn on_notify_result(
        &mut self,
        id: ActionId,
        channels: Vec<ChannelResult>,
        cx: &mut Cx,
    ) {
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
                    let mut resolved = resolved;
                    resolved.channels = n.channels.clone();
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

    pub(super) fn on_ack(&mut self, incident: IncidentId, cx: &mut Cx) {
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
}
