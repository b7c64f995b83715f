//! Persisted state and history: SQLite at `<state_dir>/talon.db` (WAL), plus atomically written
//! JSON snapshots `state.json` and `last-probe.json` for tools that read files.
//!
//! - [`Store`] is the synchronous API (open, migrate, apply a [`Batch`] in one transaction,
//!   prune, read). The CLI reads through [`Store::open_existing`], which never creates anything.
//! - [`StoreWriter`] owns a `Store` on a dedicated thread fed by an unbounded channel: the async
//!   event loop calls [`StoreWriter::send`], which never blocks. Only [`StoreWriter::flush`] and
//!   [`StoreWriter::close`] wait (call them from `spawn_blocking` or at shutdown).
//! - [`lock::acquire`] is the single-instance lock (flock on `<state_dir>/talon.lock`).
//! - [`layout`] names every file in the state dir and the modes that keep them private;
//!   [`perms`] checks and tightens them.
//!
//! Rooms: `mod.rs` opens the database and migrates it; `batch.rs` is the write side (what one
//! step stores, retention, the saved core state); `query.rs` is the read side (history,
//! incidents, counts) for the CLI and `/status`; `writer.rs` is the writer thread.
//!
//! After a restart: `Store::open` → [`Store::load_core`] → [`crate::core::Core::restore`].

mod batch;
pub mod layout;
pub mod lock;
pub mod perms;
mod query;
pub mod recover;
mod schema;
pub mod snapshot;
mod writer;

pub use batch::{Batch, Pruned, SavedCore};
pub use query::{
    ActionRow, Counts, IncidentDetail, IncidentRow, NotificationRow, ResultRow, TransitionRow,
};
pub use schema::CURRENT as SCHEMA_VERSION;
pub use snapshot::{LastProbeFile, Snapshot, StateFile};
pub use writer::{Barrier, StoreWriter};

use layout::DB_FILE;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    #[error("{path}: the database fails its check: {detail}", path = path.display())]
    Corrupt { path: PathBuf, detail: String },
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
