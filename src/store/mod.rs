//! Persisted state and history: SQLite at `<state_dir>/talon.db` (WAL), plus atomically written
//! JSON snapshots `state.json` and `last-probe.json` for tools that read files.
//!
//! - [`Store`] is the synchronous API (open, migrate, apply a [`Batch`] in one transaction,
//!   prune, read). The CLI reads through [`Store::open_existing`], which never creates anything.
//! - [`StoreWriter`] owns a `Store` on a dedicated thread fed by an unbounded channel: the async
//!   event loop calls [`StoreWriter::send`], which never blocks. Only [`StoreWriter::flush`] and
//!   [`StoreWriter::close`] wait (call them from `spawn_blocking` or at shutdown).
//! - [`lock::acquire`] is the single-instance lock (flock on `<state_dir>/talon.lock`).
//!
//! After a restart: `Store::open` → [`Store::load_core`] → [`crate::core::Core::restore`].

pub mod lock;
pub mod perms;
mod schema;
pub mod snapshot;
mod writer;

pub use schema::CURRENT as SCHEMA_VERSION;
pub use snapshot::{LastProbeFile, Snapshot, StateFile};
pub use writer::StoreWriter;

use crate::core::ProbeResult;
use crate::core::{Action, Core, Event, IncidentId, Millis, PersistedState, Record, RunOutcome};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The database file name inside the state dir.
pub const DB_FILE: &str = "talon.db";
/// The writer connection's page cache, in KiB (negative `cache_size` = KiB in SQLite).
const PAGE_CACHE_KIB: i64 = -512;

/// Why the store failed. Paths are named so the message stands on its own.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: database schema version {found} is newer than this talon understands ({supported}); upgrade talon"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "{path}: database schema version {found} is older than {supported}; start the daemon once to migrate it"
    )]
    TooOld {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: saved core state is unreadable: {source}")]
    BadState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the store writer thread has stopped")]
    WriterGone,
}

type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// A failure of the disk rather than of the data (full, I/O error, read-only, locked): the
    /// same write can succeed later, so the writer keeps it and tries again.
    pub fn is_transient(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Io { .. } => true,
            StoreError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => matches!(
                e.code,
                C::DiskFull
                    | C::SystemIoFailure
                    | C::CannotOpen
                    | C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::ReadOnly
                    | C::OutOfMemory
            ),
            _ => false,
        }
    }
}

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

    fn is_empty(&self) -> bool {
        self.results.is_empty()
            && self.reprobe_results.is_empty()
            && self.records.is_empty()
            && self.core.is_none()
    }
}

/// Rows removed by [`Store::prune`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub probe_results: usize,
    pub transitions: usize,
    pub notifications: usize,
}

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
}

/// The saved core state and when it was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedCore {
    pub at: Millis,
    pub state: PersistedState,
}

/// The database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    dir: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Open (creating the dir and database if needed), switch to WAL, migrate to the current
    /// schema. For the daemon.
    pub fn open(state_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Io {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        // SQLite would create it 0644 (minus the umask); its WAL files take the database's mode.
        perms::create_private_file(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sq)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sq)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sq)?;
        // WAL + NORMAL: a crash of Talon loses nothing committed; a power cut may lose the last
        // transactions but never corrupts.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sq)?;
        // The daemon's one long-lived connection mostly appends: SQLite's default 2 MiB page
        // cache filled up over the first minutes of an idle daemon and was an eighth of its RSS.
        conn.pragma_update(None, "cache_size", PAGE_CACHE_KIB)
            .map_err(sq)?;
        let mut store = Store {
            conn,
            path: path.clone(),
            dir: state_dir.to_path_buf(),
        };
        store.migrate(schema::CURRENT)?;
        Ok(store)
    }

    /// Open an existing database for reading, creating nothing: `Ok(None)` when there is no
    /// database yet. For the CLI.
    pub fn open_existing(state_dir: &Path) -> Result<Option<Store>> {
        let path = state_dir.join(DB_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        // Read-write without CREATE: WAL readers need the shared-memory file; nothing else is
        // written (query_only).
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .or_else(|_| {
            Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        })
        .map_err(sq)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sq)?;
        conn.pragma_update(None, "query_only", true).map_err(sq)?;
        let store = Store {
            conn,
            path: path.clone(),
            dir: state_dir.to_path_buf(),
        };
        let v = store.schema_version()?;
        if v > schema::CURRENT {
            return Err(StoreError::TooNew {
                path,
                found: v,
                supported: schema::CURRENT,
            });
        }
        if v < schema::CURRENT {
            return Err(StoreError::TooOld {
                path,
                found: v,
                supported: schema::CURRENT,
            });
        }
        Ok(Some(store))
    }

    /// Create a database at an older schema version and return it unmigrated (tests of
    /// migration).
    #[doc(hidden)]
    pub fn create_at_version(state_dir: &Path, version: u32) -> Result<Store> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Io {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let mut s = Store {
            conn,
            path,
            dir: state_dir.to_path_buf(),
        };
        s.migrate(version)?;
        Ok(s)
    }

    /// Raw SQL on the connection (tests: fill an old-schema database).
    #[doc(hidden)]
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(self.err())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state dir (snapshots are written beside the database).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn schema_version(&self) -> Result<u32> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0))
            .map_err(self.err())
    }

    fn migrate(&mut self, target: u32) -> Result<()> {
        let found = self.schema_version()?;
        if found > schema::CURRENT {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found,
                supported: schema::CURRENT,
            });
        }
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        for v in found..target {
            let tx = self.conn.transaction().map_err(sq)?;
            tx.execute_batch(schema::MIGRATIONS[v as usize])
                .map_err(sq)?;
            tx.pragma_update(None, "user_version", v + 1).map_err(sq)?;
            tx.commit().map_err(sq)?;
        }
        Ok(())
    }

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

    /// Probe results at or after `since`, oldest first; `name` filters to one probe.
    pub fn results(&self, since: Option<Millis>, name: Option<&str>) -> Result<Vec<ResultRow>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT at, name, kind, status, output, duration_ms, reprobe FROM probe_results
                 WHERE at >= ?1 AND (?2 IS NULL OR name = ?2) ORDER BY at, id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![since.unwrap_or(i64::MIN), name], |r| {
                Ok(ResultRow {
                    at: r.get(0)?,
                    name: r.get(1)?,
                    kind: r.get(2)?,
                    status: r.get(3)?,
                    output: r.get(4)?,
                    duration_ms: r.get(5)?,
                    reprobe: r.get::<_, i64>(6)? != 0,
                })
            })
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
        Ok(Some(IncidentDetail {
            incident,
            transitions,
            actions,
            notifications,
        }))
    }
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

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn apply_one(tx: &rusqlite::Transaction<'_>, b: &Batch) -> rusqlite::Result<()> {
    if b.is_empty() {
        return Ok(());
    }
    let mut ins = tx.prepare_cached(
        "INSERT INTO probe_results (at, name, kind, status, output, duration_ms, started_at, reprobe)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
            reprobe
        ])?;
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

#[cfg(test)]
mod page_cache_tests {
    use super::*;

    #[test]
    fn the_writer_connection_caps_its_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let size: i64 = store
            .conn
            .pragma_query_value(None, "cache_size", |r| r.get(0))
            .unwrap();
        assert_eq!(size, PAGE_CACHE_KIB);
    }
}
