//! The write side: what one [`Core::step`] stores ([`Batch`]), written in one transaction; the
//! retention prune; the saved core state that [`Store::load_core`] hands back after a restart.

use super::snapshot::Snapshot;
use super::{Result, Store, StoreError};
use crate::core::{Action, Core, Event, Millis, PersistedState, ProbeResult, Record};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use std::time::Duration;

/// Everything one [`Core::step`] produced that must be stored, written in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Scheduled probe results.
    pub results: Vec<ProbeResult>,
    /// Verification re-probe results (stored with `reprobe = 1`).
    pub reprobe_results: Vec<ProbeResult>,
    pub records: Vec<Record>,
    /// The core's state after the step (when it changed).
    pub core: Option<PersistedState>,
    /// Time of the step.
    pub at: Millis,
    /// Also write `state.json` (and `last-probe.json` when there are scheduled results).
    pub snapshot: Option<Snapshot>,
    /// Key-value writes (the `kv` table): `Some(json)` sets the key, `None` deletes it.
    pub kv: Vec<(String, Option<String>)>,
}

impl Batch {
    /// Collect what to store from one step: the event's probe results, the actions' records,
    /// the core's state when it asked to persist, and the snapshots.
    pub fn from_step(
        event: &Event,
        actions: &[Action],
        core: &Core,
        worker_restarts: u32,
    ) -> Batch {
        let mut b = Batch {
            at: event.at(),
            ..Batch::default()
        };
        match event {
            Event::ProbeResults { results, .. } => b.results = results.clone(),
            Event::Reprobe { results, .. } => b.reprobe_results = results.clone(),
            _ => {}
        }
        for a in actions {
            if let Action::Record(r) = a {
                b.records.push(r.clone());
            }
        }
        if actions.contains(&Action::Persist) {
            b.core = Some(core.persisted().clone());
            let last = (!b.results.is_empty()).then_some(b.results.as_slice());
            b.snapshot = Some(Snapshot::new(core.persisted(), worker_restarts, last, b.at));
        }
        b
    }

    pub(super) fn is_empty(&self) -> bool {
        self.results.is_empty()
            && self.reprobe_results.is_empty()
            && self.records.is_empty()
            && self.core.is_none()
            && self.kv.is_empty()
    }

    /// A batch that only sets (`Some`) or deletes (`None`) one key of the `kv` table.
    pub fn kv(at: Millis, key: impl Into<String>, value: Option<String>) -> Batch {
        Batch {
            at,
            kv: vec![(key.into(), value)],
            ..Batch::default()
        }
    }
}

/// Rows removed by [`Store::prune`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub probe_results: usize,
    pub transitions: usize,
    pub notifications: usize,
}

/// The saved core state and when it was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedCore {
    pub at: Millis,
    pub state: PersistedState,
}

impl Store {
    /// Write a batch in one transaction.
    pub fn apply(&mut self, batch: &Batch) -> Result<()> {
        self.apply_all(std::slice::from_ref(batch))
    }

    /// Write several batches in one transaction (the writer coalesces what queued up).
    pub fn apply_all(&mut self, batches: &[Batch]) -> Result<()> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        for b in batches {
            apply_one(&tx, b).map_err(sq)?;
        }
        tx.commit().map_err(sq)
    }

    /// One value of the `kv` table (JSON text), if the key is set.
    pub fn kv_get(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.err())
    }

    /// Every `(key, value)` of the `kv` table whose key starts with `prefix`, in key order.
    pub fn kv_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT key, value FROM kv WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    /// The core's saved state (None on a fresh database).
    pub fn load_core(&self) -> Result<Option<SavedCore>> {
        let row: Option<(Millis, String)> = self
            .conn
            .query_row("SELECT at, json FROM core_state WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(self.err())?;
        match row {
            None => Ok(None),
            Some((at, json)) => {
                let state = serde_json::from_str(&json).map_err(|source| StoreError::BadState {
                    path: self.path.clone(),
                    source,
                })?;
                Ok(Some(SavedCore { at, state }))
            }
        }
    }

    /// Delete raw probe results, probe transitions and finished notifications older than
    /// `retention` before `now`. Incidents, their actions and system transitions are kept.
    pub fn prune(&mut self, now: Millis, retention: Duration) -> Result<Pruned> {
        let cutoff = now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        let probe_results = tx
            .execute("DELETE FROM probe_results WHERE at < ?1", [cutoff])
            .map_err(sq)?;
        let transitions = tx
            .execute(
                "DELETE FROM transitions WHERE at < ?1 AND subject <> 'system'",
                [cutoff],
            )
            .map_err(sq)?;
        let notifications = tx
            .execute(
                "DELETE FROM notifications WHERE created_at < ?1
                 AND (delivered_at IS NOT NULL OR dropped_at IS NOT NULL)",
                [cutoff],
            )
            .map_err(sq)?;
        tx.commit().map_err(sq)?;
        Ok(Pruned {
            probe_results,
            transitions,
            notifications,
        })
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn apply_one(tx: &rusqlite::Transaction<'_>, b: &Batch) -> rusqlite::Result<()> {
    if b.is_empty() {
        return Ok(());
    }
    let mut ins = tx.prepare_cached(
        "INSERT INTO probe_results (at, name, kind, status, output, duration_ms, started_at, reprobe, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (r, reprobe) in b
        .results
        .iter()
        .map(|r| (r, false))
        .chain(b.reprobe_results.iter().map(|r| (r, true)))
    {
        ins.execute(params![
            b.at,
            r.name,
            r.kind,
            r.status.as_str(),
            r.output,
            r.duration_ms as i64,
            r.started_at,
            reprobe,
            r.detail
        ])?;
    }
    for (key, value) in &b.kv {
        match value {
            Some(v) => tx.execute(
                "INSERT INTO kv (key, value, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, at = excluded.at",
                params![key, v, b.at],
            )?,
            None => tx.execute("DELETE FROM kv WHERE key = ?1", [key])?,
        };
    }
    for rec in &b.records {
        match rec {
            Record::Transition(t) => {
                tx.execute(
                    "INSERT INTO transitions (at, subject, from_state, to_state, reason, incident)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        t.at,
                        t.subject,
                        t.from,
                        t.to,
                        t.reason,
                        t.incident.map(|i| i as i64)
                    ],
                )?;
            }
            Record::IncidentOpened {
                incident,
                at,
                probes,
            } => {
                tx.execute(
                    "INSERT OR REPLACE INTO incidents (id, opened_at, probes) VALUES (?1, ?2, ?3)",
                    params![*incident as i64, at, json(probes)],
                )?;
            }
            Record::IncidentProbes { incident, probes } => {
                tx.execute(
                    "UPDATE incidents SET probes = ?2 WHERE id = ?1",
                    params![*incident as i64, json(probes)],
                )?;
            }
            Record::IncidentClosed {
                incident,
                at,
                reason,
            } => {
                tx.execute(
                    "UPDATE incidents SET closed_at = ?2, close_reason = ?3 WHERE id = ?1",
                    params![*incident as i64, at, reason],
                )?;
            }
            Record::ActionStarted {
                incident,
                action,
                kind,
                tier,
                at,
                detail,
            } => {
                tx.execute(
                    "INSERT OR REPLACE INTO actions (id, incident, kind, tier, detail, started_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        *action as i64,
                        *incident as i64,
                        kind.as_str(),
                        tier.map(|t| t.as_str()),
                        detail,
                        at
                    ],
                )?;
            }
            Record::ActionFinished {
                action,
                at,
                outcome,
                output,
            } => {
                tx.execute(
                    "UPDATE actions SET ended_at = ?2, outcome = ?3, output = ?4 WHERE id = ?1",
                    params![*action as i64, at, json(outcome), output],
                )?;
            }
            Record::ActionVerdict {
                action,
                at,
                verdict,
            } => {
                tx.execute(
                    "UPDATE actions SET verdict = ?2, verdict_at = ?3 WHERE id = ?1",
                    params![*action as i64, verdict, at],
                )?;
            }
            Record::NotificationSent { notification: n } => {
                tx.execute(
                    "INSERT INTO notifications (id, incident, kind, created_at, text, attempts)
                     VALUES (?1, ?2, ?3, ?4, ?5, 1)
                     ON CONFLICT(id) DO UPDATE SET attempts = attempts + 1",
                    params![
                        n.id as i64,
                        n.incident as i64,
                        n.kind.as_str(),
                        n.created_at,
                        n.text
                    ],
                )?;
            }
            Record::NotificationResult {
                notification,
                at,
                delivered,
                channels,
            } => {
                tx.execute(
                    "UPDATE notifications SET channels = ?2,
                        delivered_at = CASE WHEN ?3 THEN ?4 ELSE delivered_at END
                     WHERE id = ?1",
                    params![*notification as i64, json(channels), delivered, at],
                )?;
            }
            Record::NotificationDropped {
                notification,
                at,
                reason,
            } => {
                tx.execute(
                    "UPDATE notifications SET dropped_at = ?2, dropped_reason = ?3 WHERE id = ?1",
                    params![*notification as i64, at, reason],
                )?;
            }
            Record::Paged { incident, at } => {
                tx.execute(
                    "UPDATE incidents SET paged_at = coalesce(paged_at, ?2) WHERE id = ?1",
                    params![*incident as i64, at],
                )?;
            }
            Record::Acked { incident, at } => {
                tx.execute(
                    "UPDATE incidents SET acked_at = coalesce(acked_at, ?2) WHERE id = ?1",
                    params![*incident as i64, at],
                )?;
            }
            Record::Proposal {
                incident,
                agent,
                at,
                diagnosis,
                note,
                items,
            } => {
                let mut reason = format!("agent #{agent}: {note}");
                if let Some(d) = diagnosis {
                    reason.push_str(&format!("; diagnosis: {d}"));
                }
                for it in items {
                    let v = match &it.verdict {
                        crate::core::Verdict::Auto => "auto".to_string(),
                        crate::core::Verdict::Human => "needs approval".to_string(),
                        crate::core::Verdict::Refused(why) => format!("refused: {why}"),
                    };
                    reason.push_str(&format!("; `{}` ({v}) — {}", it.name, it.reason));
                }
                guard_row(tx, *at, "agent", "proposal", &reason, Some(*incident))?;
            }
            Record::ApprovalRequested { approval: a } => {
                let reason = format!(
                    "`{}` proposed by agent #{}: {} (expires {})",
                    a.name,
                    a.agent,
                    a.reason,
                    crate::format::rfc3339(a.expires_at)
                );
                let subject = format!("approval #{}", a.id);
                guard_row(
                    tx,
                    a.created_at,
                    &subject,
                    "pending",
                    &reason,
                    Some(a.incident),
                )?;
            }
            Record::ApprovalDecided {
                approval,
                incident,
                at,
                approved,
                by,
            } => {
                let to = match (approved, by.as_str()) {
                    (true, _) => "approved",
                    (false, "expiry") => "expired",
                    (false, _) => "denied",
                };
                let subject = format!("approval #{approval}");
                guard_row(tx, *at, &subject, to, &format!("by {by}"), Some(*incident))?;
            }
            Record::Breaker { at, open, reason } => {
                let to = if *open {
                    "breaker open"
                } else {
                    "breaker closed"
                };
                guard_row(tx, *at, "agent", to, reason, None)?;
            }
            Record::Silenced { probe, at, until } => {
                let (to, reason) = if until > at {
                    ("silenced", format!("silenced until {until} (unix ms)"))
                } else {
                    ("unsilenced", "silence lifted".to_string())
                };
                tx.execute(
                    "INSERT INTO transitions (at, subject, from_state, to_state, reason, incident)
                     VALUES (?1, ?2, '', ?3, ?4, NULL)",
                    params![at, probe, to, reason],
                )?;
            }
        }
    }
    let prev: i64 = tx
        .query_row("SELECT batches FROM core_state WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0);
    match &b.core {
        Some(core) => {
            tx.execute(
                "INSERT INTO core_state (id, at, state, batches, json) VALUES (1, ?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET at = excluded.at, state = excluded.state,
                    batches = excluded.batches, json = excluded.json",
                params![b.at, core.state.as_str(), prev + 1, json(core)],
            )?;
        }
        None => {
            tx.execute(
                "UPDATE core_state SET batches = batches + 1 WHERE id = 1",
                [],
            )?;
        }
    }
    Ok(())
}

/// The guarded agent's records (proposals, approvals, the breaker) go into the incident's
/// timeline as transitions of their subject.
fn guard_row(
    tx: &rusqlite::Transaction<'_>,
    at: i64,
    subject: &str,
    to: &str,
    reason: &str,
    incident: Option<u64>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO transitions (at, subject, from_state, to_state, reason, incident)
         VALUES (?1, ?2, '', ?3, ?4, ?5)",
        rusqlite::params![at, subject, to, reason, incident.map(|i| i as i64)],
    )?;
    Ok(())
}
