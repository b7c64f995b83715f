//! The read side: history, incidents and counts, for the CLI and `/status`.

use super::{Result, Store};
use crate::core::{IncidentId, Millis, RunOutcome};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// Row counts, for tests and `talon status --json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub probe_results: u64,
    pub transitions: u64,
    pub incidents: u64,
    pub actions: u64,
    pub notifications: u64,
    /// Batches applied since the database was created.
    pub batches: u64,
}

/// A stored probe result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultRow {
    pub at: Millis,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub output: String,
    /// A failing result's detail (empty otherwise; left out of JSON when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    pub duration_ms: i64,
    /// A verification re-probe (never counted in streaks).
    pub reprobe: bool,
}

/// A stored transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransitionRow {
    pub at: Millis,
    pub subject: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub incident: Option<IncidentId>,
}

/// A stored incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentRow {
    pub id: IncidentId,
    pub opened_at: Millis,
    pub closed_at: Option<Millis>,
    pub probes: Vec<String>,
    pub close_reason: Option<String>,
    pub paged_at: Option<Millis>,
    pub acked_at: Option<Millis>,
}

/// A heal or agent run on an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionRow {
    pub id: u64,
    pub incident: IncidentId,
    pub kind: String,
    pub tier: Option<String>,
    pub detail: String,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
    /// "exit 0", "timed out", "could not start: …", "lost (…)".
    pub exit: Option<String>,
    pub output: Option<String>,
    pub verdict: Option<String>,
}

/// A notification on an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationRow {
    pub id: u64,
    pub incident: IncidentId,
    pub kind: String,
    pub created_at: Millis,
    pub text: String,
    /// Times it was handed to the channels (first send, retries, re-sends after a restart).
    pub attempts: u32,
    pub delivered_at: Option<Millis>,
    pub dropped_at: Option<Millis>,
    pub dropped_reason: Option<String>,
    /// JSON of the last per-channel results.
    pub channels: Option<serde_json::Value>,
}

/// One incident with everything that happened during it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentDetail {
    pub incident: IncidentRow,
    pub transitions: Vec<TransitionRow>,
    pub actions: Vec<ActionRow>,
    pub notifications: Vec<NotificationRow>,
    /// For each of the incident's probes, the first failing result with a detail while it was
    /// open, and the newest one when its detail differs: what the probe said went wrong.
    pub failures: Vec<ResultRow>,
}

impl Store {
    pub fn counts(&self) -> Result<Counts> {
        let n = |sql: &str| -> Result<u64> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .map_err(self.err())
        };
        Ok(Counts {
            probe_results: n("SELECT count(*) FROM probe_results")?,
            transitions: n("SELECT count(*) FROM transitions")?,
            incidents: n("SELECT count(*) FROM incidents")?,
            actions: n("SELECT count(*) FROM actions")?,
            notifications: n("SELECT count(*) FROM notifications")?,
            batches: n("SELECT coalesce(max(batches), 0) FROM core_state")?,
        })
    }

    /// `PRAGMA integrity_check` → "ok" when healthy.
    pub fn integrity_check(&self) -> Result<String> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(self.err())
    }

    /// Transitions at or after `since`, oldest first; `subject` filters to one probe (or
    /// "system").
    pub fn transitions(
        &self,
        since: Option<Millis>,
        subject: Option<&str>,
    ) -> Result<Vec<TransitionRow>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT at, subject, from_state, to_state, reason, incident FROM transitions
                 WHERE at >= ?1 AND (?2 IS NULL OR subject = ?2) ORDER BY at, id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![since.unwrap_or(i64::MIN), subject], transition_row)
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// The newest `limit` transitions of `subject` whose `to` is `"<what> by <who>"` (operator
    /// actions recorded beside a subject's states, e.g. `talon worker stop` → `stop by cli`),
    /// oldest first.
    pub fn operator_transitions(&self, subject: &str, limit: usize) -> Result<Vec<TransitionRow>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT at, subject, from_state, to_state, reason, incident FROM transitions
                 WHERE subject = ?1 AND from_state = '' AND to_state LIKE '% by %'
                 ORDER BY at DESC, id DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![subject, limit as i64], transition_row)
            .map_err(self.err())?;
        let mut v = rows
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())?;
        v.reverse();
        Ok(v)
    }

    /// Probe results at or after `since`, oldest first; `name` filters to one probe.
    pub fn results(&self, since: Option<Millis>, name: Option<&str>) -> Result<Vec<ResultRow>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT at, name, kind, status, output, duration_ms, reprobe, detail FROM probe_results
                 WHERE at >= ?1 AND (?2 IS NULL OR name = ?2) ORDER BY at, id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![since.unwrap_or(i64::MIN), name], result_row)
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Incidents, newest first.
    pub fn incidents(&self, open_only: bool) -> Result<Vec<IncidentRow>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, opened_at, closed_at, probes, close_reason, paged_at, acked_at
                 FROM incidents WHERE (?1 = 0 OR closed_at IS NULL) ORDER BY id DESC",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([open_only as i64], incident_row)
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// One incident with its transitions, actions and notifications (None: no such id).
    pub fn incident(&self, id: IncidentId) -> Result<Option<IncidentDetail>> {
        let inc = self
            .conn
            .query_row(
                "SELECT id, opened_at, closed_at, probes, close_reason, paged_at, acked_at
                 FROM incidents WHERE id = ?1",
                [id as i64],
                incident_row,
            )
            .optional()
            .map_err(self.err())?;
        let Some(incident) = inc else {
            return Ok(None);
        };
        let mut st = self
            .conn
            .prepare(
                "SELECT at, subject, from_state, to_state, reason, incident FROM transitions
                 WHERE incident = ?1 ORDER BY at, id",
            )
            .map_err(self.err())?;
        let transitions = st
            .query_map([id as i64], transition_row)
            .map_err(self.err())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.err())?;
        let mut st = self
            .conn
            .prepare(
                "SELECT id, incident, kind, tier, detail, started_at, ended_at, outcome, output,
                        verdict FROM actions WHERE incident = ?1 ORDER BY started_at, id",
            )
            .map_err(self.err())?;
        let actions = st
            .query_map([id as i64], |r| {
                let outcome: Option<String> = r.get(7)?;
                Ok(ActionRow {
                    id: r.get::<_, i64>(0)? as u64,
                    incident: r.get::<_, i64>(1)? as u64,
                    kind: r.get(2)?,
                    tier: r.get(3)?,
                    detail: r.get(4)?,
                    started_at: r.get(5)?,
                    ended_at: r.get(6)?,
                    exit: outcome.map(|o| {
                        serde_json::from_str::<RunOutcome>(&o)
                            .map(|o| o.describe())
                            .unwrap_or(o)
                    }),
                    output: r.get(8)?,
                    verdict: r.get(9)?,
                })
            })
            .map_err(self.err())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.err())?;
        let mut st = self
            .conn
            .prepare(
                "SELECT id, incident, kind, created_at, text, attempts, delivered_at, dropped_at,
                        dropped_reason, channels FROM notifications WHERE incident = ?1
                 ORDER BY created_at, id",
            )
            .map_err(self.err())?;
        let notifications = st
            .query_map([id as i64], |r| {
                let ch: Option<String> = r.get(9)?;
                Ok(NotificationRow {
                    id: r.get::<_, i64>(0)? as u64,
                    incident: r.get::<_, i64>(1)? as u64,
                    kind: r.get(2)?,
                    created_at: r.get(3)?,
                    text: r.get(4)?,
                    attempts: r.get(5)?,
                    delivered_at: r.get(6)?,
                    dropped_at: r.get(7)?,
                    dropped_reason: r.get(8)?,
                    channels: ch.and_then(|c| serde_json::from_str(&c).ok()),
                })
            })
            .map_err(self.err())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.err())?;
        let failures = self.incident_failures(&incident)?;
        Ok(Some(IncidentDetail {
            incident,
            transitions,
            actions,
            notifications,
            failures,
        }))
    }

    /// See [`IncidentDetail::failures`].
    fn incident_failures(&self, i: &IncidentRow) -> Result<Vec<ResultRow>> {
        let mut out = Vec::new();
        for order in ["ASC", "DESC"] {
            let mut st = self
                .conn
                .prepare_cached(&format!(
                    "SELECT at, name, kind, status, output, duration_ms, reprobe, detail
                     FROM probe_results
                     WHERE name = ?1 AND at >= ?2 AND at <= ?3 AND detail != ''
                       AND status IN ('fail', 'timeout', 'error')
                     ORDER BY at {order}, id {order} LIMIT 1"
                ))
                .map_err(self.err())?;
            for name in &i.probes {
                let row = st
                    .query_row(
                        params![name, i.opened_at, i.closed_at.unwrap_or(Millis::MAX)],
                        result_row,
                    )
                    .optional()
                    .map_err(self.err())?;
                if let Some(r) = row
                    && !out
                        .iter()
                        .any(|o: &ResultRow| o.name == r.name && o.detail == r.detail)
                {
                    out.push(r);
                }
            }
        }
        out.sort_by_key(|r| r.at);
        Ok(out)
    }
}

fn result_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ResultRow> {
    Ok(ResultRow {
        at: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        status: r.get(3)?,
        output: r.get(4)?,
        detail: r.get(7)?,
        duration_ms: r.get(5)?,
        reprobe: r.get::<_, i64>(6)? != 0,
    })
}

fn transition_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TransitionRow> {
    Ok(TransitionRow {
        at: r.get(0)?,
        subject: r.get(1)?,
        from: r.get(2)?,
        to: r.get(3)?,
        reason: r.get(4)?,
        incident: r.get::<_, Option<i64>>(5)?.map(|i| i as u64),
    })
}

fn incident_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IncidentRow> {
    let probes: String = r.get(3)?;
    Ok(IncidentRow {
        id: r.get::<_, i64>(0)? as u64,
        opened_at: r.get(1)?,
        closed_at: r.get(2)?,
        probes: serde_json::from_str(&probes).unwrap_or_default(),
        close_reason: r.get(4)?,
        paged_at: r.get(5)?,
        acked_at: r.get(6)?,
    })
}
