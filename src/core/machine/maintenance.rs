//! Maintenance windows as data: configured ones (`[[maintenance]]`, evaluated at the event's time
//! in the zone the config resolved) and run-time ones (`talon maintenance start`, persisted).
//!
//! Inside a window a probe is still run and recorded, but it neither opens nor drives an
//! incident nor pages (with `heal = true` the ladder may heal and run agents, still without
//! paging). When the window ends, a probe that still fails escalates at once, as if it had just
//! failed; one that recovered inside the window never pages. Resolutions are never held back.

use super::*;
use serde::{Deserialize, Serialize};

/// A maintenance window as `talon maintenance list` and `/status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowView {
    pub name: String,
    pub probes: Vec<String>,
    /// `config` (`[[maintenance]]`) or `runtime` (`talon maintenance start`).
    pub source: String,
    pub heal: bool,
    /// Open now: until when.
    pub active_until: Option<Millis>,
    /// Closed now: when it opens next (within a week), if it does.
    pub next_start: Option<Millis>,
}

impl Core {
    /// The window covering `probe` at `at`: (name, heal, end). A window without `heal` wins.
    pub(super) fn window_of(&self, probe: &str, at: Millis) -> Option<(String, bool, Millis)> {
        let r = &self.cfg.routing;
        let configured = r
            .maintenance
            .iter()
            .filter(|w| w.covers(probe))
            .filter_map(|w| {
                w.active_at(at, &r.zone)
                    .map(|(_, end)| (w.name.clone(), w.heal, end))
            });
        let manual = self
            .s
            .maintenance
            .iter()
            .filter(|m| {
                m.start <= at
                    && at < m.end
                    && m.probes
                        .iter()
                        .any(|p| crate::config::policy::glob_match(p, probe))
            })
            .map(|m| (m.name.clone(), m.heal, m.end));
        configured.chain(manual).min_by_key(|(_, heal, _)| *heal)
    }

    /// Run-time windows that ended are forgotten; wake up when any window opens or closes.
    pub(super) fn track_windows(&mut self, cx: &mut Cx) {
        let at = cx.at;
        let ended: Vec<ManualWindow> = self
            .s
            .maintenance
            .iter()
            .filter(|m| m.end <= at)
            .cloned()
            .collect();
        self.s.maintenance.retain(|m| m.end > at);
        for m in ended {
            cx.record(Record::Transition(Transition {
                at,
                subject: "maintenance".into(),
                from: "on".into(),
                to: "off".into(),
                reason: format!("window {} ended", m.name),
                incident: self.s.incident.as_ref().map(|i| i.id),
            }));
        }
        for m in &self.s.maintenance {
            cx.wake(m.end);
        }
        let r = &self.cfg.routing;
        let wakes: Vec<Millis> = r
            .maintenance
            .iter()
            .filter_map(|w| w.next_change(at, &r.zone))
            .collect();
        for w in wakes {
            cx.wake(w);
        }
    }

    pub(super) fn on_maintenance(&mut self, change: MaintenanceChange, cx: &mut Cx) {
        let at = cx.at;
        let incident = self.s.incident.as_ref().map(|i| i.id);
        match change {
            MaintenanceChange::Start(w) => {
                cx.record(Record::Transition(Transition {
                    at,
                    subject: "maintenance".into(),
                    from: "off".into(),
                    to: "on".into(),
                    reason: format!(
                        "window {} for {} until {}",
                        w.name,
                        w.probes.join(", "),
                        crate::format::rfc3339(w.end)
                    ),
                    incident,
                }));
                self.s.maintenance.retain(|m| m.name != w.name);
                self.s.maintenance.push(w);
            }
            MaintenanceChange::End { name } => {
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.s.maintenance)
                    .into_iter()
                    .partition(|m| name.as_ref().is_none_or(|n| *n == m.name));
                self.s.maintenance = kept;
                for m in gone {
                    cx.record(Record::Transition(Transition {
                        at,
                        subject: "maintenance".into(),
                        from: "on".into(),
                        to: "off".into(),
                        reason: format!("window {} ended by an operator", m.name),
                        incident,
                    }));
                }
            }
        }
    }

    /// Every window: configured ones (open now or next opening) and run-time ones.
    pub fn maintenance_view(&self, at: Millis) -> Vec<WindowView> {
        let r = &self.cfg.routing;
        let mut out: Vec<WindowView> = r
            .maintenance
            .iter()
            .map(|w| {
                let active = w.active_at(at, &r.zone).map(|(_, e)| e);
                WindowView {
                    name: w.name.clone(),
                    probes: w.probes.clone(),
                    source: "config".into(),
                    heal: w.heal,
                    active_until: active,
                    next_start: if active.is_some() {
                        None
                    } else {
                        w.next_change(at, &r.zone)
                    },
                }
            })
            .collect();
        out.extend(self.s.maintenance.iter().map(|m| WindowView {
            name: m.name.clone(),
            probes: m.probes.clone(),
            source: "runtime".into(),
            heal: m.heal,
            active_until: (m.start <= at && at < m.end).then_some(m.end),
            next_start: (m.start > at).then_some(m.start),
        }));
        out
    }

    /// A run-time window of this name exists.
    pub fn has_manual_window(&self, name: &str) -> bool {
        self.s.maintenance.iter().any(|m| m.name == name)
    }
}
