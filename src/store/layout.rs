//! The state dir's layout: the name of every file Talon keeps in `<state_dir>` and the modes that
//! keep them private. This is the one place those names and modes are spelled; the store, the
//! lock, the snapshots, the API token (`server::control`), the CLI and the agent's context files
//! take them from here.
//!
//! It holds data only and imports nothing, so anything may depend on it without a circle.
//!
//! ```text
//! <state_dir>/                 DIR_MODE (0700)
//!   talon.db                   DB_FILE          SQLite database (WAL)
//!   talon.db-wal, -shm         DB_WAL_FILE, DB_SHM_FILE   SQLite's, named after DB_FILE
//!   talon.db-journal           DB_JOURNAL_FILE  SQLite's rollback journal (older databases)
//!   talon.lock                 LOCK_FILE        single-instance flock, holds the owner's pid
//!   state.json                 STATE_FILE       snapshot for tools that read files
//!   last-probe.json            LAST_PROBE_FILE  the newest scheduled cycle
//!   api.token                  TOKEN_FILE       bearer token of the control API (push probes'
//!                                               ping tokens are derived from it)
//!   tmp/                       TMP_DIR          context files handed to heals and agents
//!   talon.log[.N]                               the log, when `log.file` is left at its
//!                                               default (a config default, see `config`)
//! ```
//!
//! Every file above is `FILE_MODE` (0600). The log's default path is chosen by the config
//! (`[log] file`, default `<state_dir>/talon.log`): config sits below the store and does not import
//! it, so the runtime hands the log's paths to [`super::perms::secure_state_dir`] as extras.

/// Mode of the state dir (and of the directories Talon creates in it).
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file Talon writes in the state dir: the database and its WAL files, the lock,
/// the snapshots, the API token, context files and the log.
pub const FILE_MODE: u32 = 0o600;

/// The SQLite database.
pub const DB_FILE: &str = "talon.db";
/// SQLite's write-ahead log beside [`DB_FILE`] (SQLite names it `<db>-wal`).
pub const DB_WAL_FILE: &str = "talon.db-wal";
/// SQLite's shared-memory index beside [`DB_FILE`] (`<db>-shm`).
pub const DB_SHM_FILE: &str = "talon.db-shm";
/// SQLite's rollback journal beside [`DB_FILE`] (`<db>-journal`; not used in WAL mode, but a
/// database that was ever opened without WAL may leave one).
pub const DB_JOURNAL_FILE: &str = "talon.db-journal";
/// The single-instance lock (an exclusive `flock`; holds the owner's pid).
pub const LOCK_FILE: &str = "talon.lock";
/// `state.json`: the current state for tools that read files.
pub const STATE_FILE: &str = "state.json";
/// `last-probe.json`: the newest scheduled probe cycle.
pub const LAST_PROBE_FILE: &str = "last-probe.json";
/// The control API's bearer token.
pub const TOKEN_FILE: &str = "api.token";
/// Directory of the context files handed to heals and agents.
pub const TMP_DIR: &str = "tmp";

/// The files in the state dir that must be private (those present are checked at start).
pub const PRIVATE_FILES: &[&str] = &[
    DB_FILE,
    DB_WAL_FILE,
    DB_SHM_FILE,
    DB_JOURNAL_FILE,
    TOKEN_FILE,
    STATE_FILE,
    LAST_PROBE_FILE,
    LOCK_FILE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_side_files_are_named_after_the_database() {
        for (file, suffix) in [
            (DB_WAL_FILE, "-wal"),
            (DB_SHM_FILE, "-shm"),
            (DB_JOURNAL_FILE, "-journal"),
        ] {
            assert_eq!(file, format!("{DB_FILE}{suffix}"));
        }
    }

    #[test]
    fn names_are_distinct_plain_file_names() {
        let mut all: Vec<&str> = PRIVATE_FILES.to_vec();
        all.push(TMP_DIR);
        for n in &all {
            assert!(!n.is_empty() && !n.contains('/'), "{n}");
        }
        let before = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), before, "a name is used twice");
    }

    #[test]
    fn modes_are_private() {
        assert_eq!(DIR_MODE & 0o077, 0);
        assert_eq!(FILE_MODE & 0o077, 0);
        assert_eq!(FILE_MODE & 0o111, 0, "no state file is executable");
    }
}
