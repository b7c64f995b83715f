//! The daemon's outward surfaces, fed from the loop: the status board behind `/health`,
//! `/status` and `/`, metrics, the HTTP server, the log, and the operator commands (`ack`,
//! `silence`) coming back in.

use super::Runtime;
use crate::core::{Event, IncidentId, MaintenanceChange, ManualWindow, Record};
use crate::server::control::{ControlReply, ControlRequest, MaintenanceOp};
use crate::server::snapshot::{StatusSnapshot, Transition};
use std::sync::Arc;
use std::time::Duration;

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

impl Runtime {
    /// Rebuild the snapshot from the core and the newest results. Cheap; called after each step.
    /// What the core and config know comes from [`StatusSnapshot::from_core`] (the same view
    /// `talon status` shows from the store); on top go what only the running daemon knows.
    pub(super) fn publish(&mut self) {
        let now = self.clock.wall_ms();
        let mut snap = StatusSnapshot::from_core(&self.core, &self.cfg, now);
        for p in &mut snap.probes {
            if let Some(r) = self.last.get(&p.name) {
                p.kind.clone_from(&r.kind);
                p.status = Some(r.status);
                p.passed = r.passed;
                p.output.clone_from(&r.output);
                p.duration_ms = Some(r.duration_ms);
                p.started_at = Some(r.started_at);
            }
            if let (Some(sl), Some(who)) = (&mut p.silenced, self.chat.silences.get(&p.name)) {
                sl.reason.clone_from(&who.reason);
                sl.by = Some(who.by.clone());
                sl.since_unix = Some(secs(who.at));
            }
        }
        if let Some(w) = &self.worker.handle {
            snap.worker = Some(super::worker::snapshot_worker(
                &w.status(),
                &self.worker.operator_actions,
            ));
        }
        if let (Some(i), Some(open)) = (&mut snap.incident, self.core.incident()) {
            i.acked_by = self.chat.acked.get(&open.id).map(|w| w.by.clone());
            i.timeline = self.surfaces.timeline.clone();
        }
        snap.transitions = self.surfaces.transitions.clone();
        snap.config_error = self.surfaces.config_error_detail.clone();
        let sf = &mut self.surfaces;
        snap.store_recovered.clone_from(&sf.store_notice);
        if let Some(h) = &self.history {
            let failures = h.failures();
            sf.metrics
                .store_write_failed(failures.saturating_sub(sf.store_failures_seen));
            sf.store_failures_seen = failures;
            snap.store_write_failures = failures;
            snap.store_error = h.current_error();
        }
        sf.metrics
            .set_pending_notifications(snap.pending_notifications.len());
        sf.metrics.set_state(snap.state);
        sf.board.replace(snap);
    }

    /// Keep the recent transitions and the open incident's timeline for the surfaces.
    pub(super) fn note_record(&mut self, r: &Record) {
        use crate::server::snapshot::TimelineEntry;
        let sf = &mut self.surfaces;
        let entry = |at: i64, kind: &str, text: String| TimelineEntry {
            at_unix: secs(at),
            kind: kind.to_string(),
            text,
        };
        match r {
            Record::Transition(t) if t.subject == "system" => {
                let state = |s: &str| crate::core::SystemState::parse(s).unwrap_or_default();
                sf.transitions.push(Transition {
                    at_unix: secs(t.at),
                    from: state(&t.from),
                    to: state(&t.to),
                    reason: t.reason.clone(),
                });
                let excess = sf.transitions.len().saturating_sub(50);
                sf.transitions.drain(..excess);
                if t.incident.is_some() {
                    sf.timeline.push(entry(
                        t.at,
                        "transition",
                        format!("{} → {}: {}", t.from, t.to, t.reason),
                    ));
                }
            }
            Record::IncidentOpened { at, probes, .. } => {
                sf.timeline.clear();
                sf.timeline.push(entry(
                    *at,
                    "opened",
                    format!("failing: {}", probes.join(", ")),
                ));
            }
            Record::ActionStarted {
                at, kind, detail, ..
            } => sf
                .timeline
                .push(entry(*at, kind.as_str(), format!("started: {detail}"))),
            Record::ActionFinished { at, outcome, .. } => {
                sf.timeline.push(entry(*at, "result", outcome.describe()))
            }
            Record::ActionVerdict { at, verdict, .. } => {
                sf.timeline.push(entry(*at, "verdict", verdict.clone()))
            }
            Record::NotificationResult {
                at,
                delivered,
                channels,
                ..
            } => {
                for c in channels {
                    sf.metrics.notification(&c.channel, c.delivered);
                }
                let what = if *delivered {
                    "delivered"
                } else {
                    "not delivered (will retry)"
                };
                sf.timeline.push(entry(*at, "notify", what.to_string()));
            }
            Record::Acked { at, .. } => sf.timeline.push(entry(*at, "ack", "acknowledged".into())),
            _ => {}
        }
        let excess = sf.timeline.len().saturating_sub(200);
        sf.timeline.drain(..excess);
    }

    /// An `ack`, `silence`, `approve` or `deny` from the HTTP control endpoints (the CLI uses
    /// them too) or from chat (`commands.rs`).
    pub(super) fn on_control(&mut self, req: ControlRequest) {
        match req {
            ControlRequest::Ack {
                incident,
                by,
                reply,
            } => {
                let _ = reply.send(self.ack(incident.as_deref(), &by));
            }
            ControlRequest::Silence {
                probe,
                duration,
                reason,
                by,
                reply,
            } => {
                let _ = reply.send(self.silence(&probe, duration, reason.as_deref(), &by));
            }
            ControlRequest::Approve {
                approval,
                by,
                reply,
            } => {
                let _ = reply.send(self.decide(approval, by, true));
            }
            ControlRequest::Deny {
                approval,
                by,
                reply,
            } => {
                let _ = reply.send(self.decide(approval, by, false));
            }
            ControlRequest::AgentReset { by, reply } => {
                let was = self.core.persisted().breaker_open;
                self.step(Event::AgentReset {
                    at: self.clock.wall_ms(),
                    by,
                });
                let _ = reply.send(ControlReply::Done(if was {
                    "agent circuit breaker closed: the agent tier runs again".into()
                } else {
                    "agent circuit breaker was closed; its miss count is reset".into()
                }));
            }
            ControlRequest::Worker { action, by, reply } => self.worker_control(action, by, reply),
            ControlRequest::Push {
                probe,
                event,
                body,
                reply,
            } => {
                let _ = reply.send(self.on_push(&probe, event, &body));
            }
            ControlRequest::Maintenance { op, reply } => {
                let _ = reply.send(self.maintenance(op));
            }
        }
    }

    /// Start, end or list maintenance windows (`talon maintenance`).
    pub(super) fn maintenance(&mut self, op: MaintenanceOp) -> ControlReply {
        let now = self.clock.wall_ms();
        match op {
            MaintenanceOp::List => {
                let views = self.core.maintenance_view(now);
                if views.is_empty() {
                    return ControlReply::Done("no maintenance windows".into());
                }
                let lines: Vec<String> = views
                    .iter()
                    .map(|w| {
                        let when = match (w.active_until, w.next_start) {
                            (Some(u), _) => format!("OPEN until {}", crate::format::utc(u)),
                            (None, Some(n)) => format!("next opens {}", crate::format::utc(n)),
                            (None, None) => "closed".to_string(),
                        };
                        format!(
                            "{} ({}{}): {} — {when}",
                            w.name,
                            w.source,
                            if w.heal { ", heal" } else { "" },
                            w.probes.join(", ")
                        )
                    })
                    .collect();
                ControlReply::Done(lines.join("\n"))
            }
            MaintenanceOp::End { name } => {
                if let Some(n) = &name
                    && !self.core.has_manual_window(n)
                {
                    return ControlReply::NotFound(format!(
                        "no run-time maintenance window named `{n}` (configured windows end on their own schedule)"
                    ));
                }
                if name.is_none()
                    && self
                        .core
                        .maintenance_view(now)
                        .iter()
                        .all(|w| w.source != "runtime")
                {
                    return ControlReply::Rejected("no run-time maintenance window is open".into());
                }
                tracing::info!(window = ?name, "maintenance ended by an operator");
                self.step(Event::Maintenance {
                    at: now,
                    change: MaintenanceChange::End { name: name.clone() },
                });
                ControlReply::Done(match name {
                    Some(n) => format!("maintenance window {n} ended"),
                    None => "every run-time maintenance window ended".into(),
                })
            }
            MaintenanceOp::Start {
                name,
                probes,
                duration,
                heal,
            } => {
                let configured = name
                    .as_ref()
                    .and_then(|n| self.cfg.policy.maintenance.iter().find(|w| &w.name == n));
                let (probes, heal) = match (probes.is_empty(), configured) {
                    (false, _) => (probes, heal),
                    (true, Some(w)) => (w.probes.clone(), heal || w.heal),
                    (true, None) => {
                        return ControlReply::NotFound(format!(
                            "no [[maintenance]] window named `{}`; give --probes",
                            name.unwrap_or_default()
                        ));
                    }
                };
                let names: Vec<&String> = self.core.config().probes.keys().collect();
                for p in &probes {
                    if !names
                        .iter()
                        .any(|n| crate::config::policy::glob_match(p, n))
                    {
                        return ControlReply::NotFound(format!("`{p}` matches no probe"));
                    }
                }
                let name = name.unwrap_or_else(|| {
                    (1..)
                        .map(|i| format!("manual-{i}"))
                        .find(|n| !self.core.has_manual_window(n))
                        .expect("a free name")
                });
                let end = now.saturating_add(duration.as_millis() as i64);
                tracing::info!(window = %name, probes = ?probes, end, heal, "maintenance started");
                self.step(Event::Maintenance {
                    at: now,
                    change: MaintenanceChange::Start(ManualWindow {
                        name: name.clone(),
                        probes: probes.clone(),
                        start: now,
                        end,
                        heal,
                    }),
                });
                ControlReply::Done(format!(
                    "maintenance window {name} open for {} ({}): probes still run, nothing pages",
                    crate::core::fmt_duration(duration.as_millis() as i64),
                    probes.join(", ")
                ))
            }
        }
    }

    /// Approve or deny a pending agent-proposed action.
    pub(super) fn decide(&mut self, approval: u64, by: String, approved: bool) -> ControlReply {
        let pending = self
            .core
            .incident()
            .and_then(|i| i.approvals.iter().find(|a| a.id == approval))
            .cloned();
        let Some(a) = pending else {
            return ControlReply::NotFound(format!(
                "no pending approval #{approval} (it was decided, expired, or its incident ended)"
            ));
        };
        tracing::warn!(approval, by = %by, approved, action = %a.name, "approval decided");
        self.step(if approved {
            Event::Approve {
                at: self.clock.wall_ms(),
                approval,
                by: by.clone(),
            }
        } else {
            Event::Deny {
                at: self.clock.wall_ms(),
                approval,
                by: by.clone(),
            }
        });
        ControlReply::Done(if approved {
            format!(
                "approval #{approval} approved by {by}: `{}` runs now",
                a.name
            )
        } else {
            format!(
                "approval #{approval} denied by {by}: `{}` is not run",
                a.name
            )
        })
    }

    /// Acknowledge the open incident (`wanted`: its id, `#` optional; `None`: whichever is open).
    /// Who (`by`) and when are recorded in the incident's timeline and shown by `/status`.
    pub(super) fn ack(&mut self, wanted: Option<&str>, by: &str) -> ControlReply {
        let open = self.core.incident().map(|i| i.id);
        let id: Option<IncidentId> = match wanted {
            None => open,
            Some(s) => s.trim_start_matches('#').parse().ok(),
        };
        match (open, id) {
            (None, _) => ControlReply::Rejected("no incident is open".into()),
            (Some(o), Some(w)) if o == w => {
                let at = self.clock.wall_ms();
                if let Some(prev) = self.chat.acked.get(&w) {
                    return ControlReply::Done(format!(
                        "incident {w} was already acknowledged by {} at {}: {}",
                        prev.by,
                        crate::format::utc(prev.at),
                        self.incident_summary()
                    ));
                }
                self.step(Event::Ack { at, incident: w });
                self.noted_ack(w, by, at);
                ControlReply::Done(format!(
                    "incident {w} acknowledged by {by} at {}: no more reminders. {}",
                    crate::format::utc(at),
                    self.incident_summary()
                ))
            }
            (Some(o), _) => ControlReply::NotFound(format!(
                "incident {} is not open (the open one is {o})",
                wanted.unwrap_or_default()
            )),
        }
    }

    /// Silence a probe's alerts for `duration` (zero: lift its silence).
    pub(super) fn silence(
        &mut self,
        probe: &str,
        duration: Duration,
        reason: Option<&str>,
        by: &str,
    ) -> ControlReply {
        if !self.core.config().probes.contains_key(probe) {
            return ControlReply::NotFound(format!("no probe named `{probe}`"));
        }
        let now = self.clock.wall_ms();
        let until = now + duration.as_millis() as i64;
        tracing::info!(probe = %probe, until, reason = ?reason, by = %by, "probe silenced");
        self.step(Event::Silence {
            at: now,
            probe: probe.to_string(),
            until,
        });
        self.noted_silence(probe, duration, reason, by, now);
        if duration.is_zero() {
            return ControlReply::Done(format!("{probe}: silence lifted by {by}"));
        }
        ControlReply::Done(format!(
            "{probe} silenced for {} by {by} (until {})",
            crate::core::fmt_duration(duration.as_millis() as i64),
            crate::format::utc(until)
        ))
    }

    fn server_state(&self) -> crate::server::ServerState {
        let token = match crate::server::control::ensure_token(&self.cfg.state_dir) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "no API token: ack/silence over HTTP are disabled");
                None
            }
        };
        crate::server::ServerState::new(self.surfaces.board.clone(), self.surfaces.metrics.clone())
            .with_control(self.surfaces.control.clone(), token)
    }

    pub(super) async fn start_server(&mut self) {
        if !self.cfg.health.enabled {
            return;
        }
        let bind = self.cfg.health.bind;
        match crate::server::serve(bind, self.server_state(), Default::default()).await {
            Ok(h) => {
                tracing::info!(addr = %h.addr(), "serving /health, /status, /metrics and the status page");
                self.surfaces.server = Some(h);
            }
            Err(e) => {
                tracing::error!(bind = %bind, error = %e, "cannot serve /health; probing and supervision go on")
            }
        }
    }

    /// `[health]` changed: serve on the new address (the old server stays if that fails).
    pub(super) async fn rebind_server(&mut self) {
        let enabled = self.cfg.health.enabled;
        let bind = self.cfg.health.bind;
        match (self.surfaces.server.take(), enabled) {
            (Some(h), true) => match h.rebind(bind).await {
                Ok(h) => {
                    tracing::info!(addr = %h.addr(), "HTTP server rebound");
                    self.surfaces.server = Some(h);
                }
                Err((old, e)) => {
                    tracing::error!(bind = %bind, error = %e, "cannot rebind; still serving on the old address");
                    self.surfaces.server = Some(old);
                }
            },
            (Some(h), false) => h.shutdown().await,
            (None, true) => self.start_server().await,
            (None, false) => {}
        }
    }

    /// The log follows `[log] level` and redacts every secret Talon knows.
    pub(super) fn update_log(&self) {
        if let Some(g) = &self.surfaces.log {
            let r = self.redactor.clone();
            g.set_redactor(Some(Arc::new(move |line: &str| r.clean(line))));
            if let Err(e) = g.set_level(&self.cfg.log.level) {
                tracing::warn!(error = %e, "log level not changed");
            }
        }
    }
}
