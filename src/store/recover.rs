//! Corrupt state at start: a database that cannot be read is set aside, never deleted and never
//! allowed to stop the watchdog.
//!
//! [`Store::open_recovering`] opens the database and runs SQLite's `quick_check`. A file that is
//! not a database (garbage, a half-written copy), a malformed one, or one that fails the check
//! is renamed `talon.db.corrupt-<time>` (its `-wal`/`-shm` follow under the same new name, so
//! `sqlite3 talon.db.corrupt-<time>` still sees what the WAL held) and a fresh database is
//! created. A torn WAL is not corruption: SQLite ignores frames whose checksum does not match,
//! so what was committed before the tear is kept.
//!
//! With the database gone, the open incident is taken from `state.json` when that file parses
//! ([`incident_from_snapshot`]); half a `state.json` is ignored (and said so).

use super::layout::{DB_FILE, DB_SHM_FILE, DB_WAL_FILE, QUARANTINE_INFIX, STATE_FILE};
use super::snapshot::StateFile;
use super::{Store, StoreError};
use crate::core::{Incident, Millis, PersistedState, SystemState};
use std::path::{Path, PathBuf};

/// What [`Store::open_recovering`] had to do to open a database.
#[derive(Debug, Clone)]
pub struct Quarantine {
    /// Why the old database could not be used.
    pub reason: String,
    /// Where the old files went (the database first).
    pub moved_to: Vec<PathBuf>,
}

impl std::fmt::Display for Quarantine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{DB_FILE} could not be read ({}); set aside as {} and started with an empty history",
            self.reason,
            self.moved_to
                .first()
                .map_or_else(String::new, |p| p.display().to_string())
        )
    }
}

impl StoreError {
    /// The database's content is unreadable (not a database, malformed, fails its check), as
    /// opposed to the disk refusing access or a schema from a newer Talon.
    pub fn is_corruption(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Corrupt { .. } => true,
            StoreError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => matches!(e.code, C::NotADatabase | C::DatabaseCorrupt),
            _ => false,
        }
    }
}

impl Store {
    /// [`Store::open`], then `PRAGMA quick_check`; an unreadable database is quarantined and a
    /// fresh one opened. `now` (unix ms) names the quarantined files.
    pub fn open_recovering(
        state_dir: &Path,
        now: Millis,
    ) -> Result<(Store, Option<Quarantine>), StoreError> {
        let first = Store::open(state_dir).and_then(|s| s.quick_check().map(|()| s));
        match first {
            Ok(s) => Ok((s, None)),
            Err(e) if e.is_corruption() => {
                let reason = match &e {
                    StoreError::Sqlite { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                let moved_to = quarantine(state_dir, now).map_err(|source| StoreError::Io {
                    path: state_dir.join(DB_FILE),
                    source,
                })?;
                let s = Store::open(state_dir)?;
                Ok((s, Some(Quarantine { reason, moved_to })))
            }
            Err(e) => Err(e),
        }
    }

    /// SQLite's `quick_check` (structure, not index content): `Err(Corrupt)` unless `ok`.
    pub fn quick_check(&self) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA quick_check(5)")
            .map_err(self.err())?;
        let lines: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        if lines.len() == 1 && lines[0] == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                path: self.path.clone(),
                detail: lines.join("; "),
            })
        }
    }
}

/// A file-name-safe UTC stamp: `20261202T190512.345Z`.
fn stamp(now: Millis) -> String {
    crate::format::rfc3339(now).replace([':', '-'], "")
}

/// Rename the database and its WAL/shm files to `talon.db.corrupt-<time>[-wal|-shm]`.
fn quarantine(state_dir: &Path, now: Millis) -> std::io::Result<Vec<PathBuf>> {
    let base = format!("{DB_FILE}{QUARANTINE_INFIX}{}", stamp(now));
    let mut moved = Vec::new();
    for (file, suffix) in [(DB_FILE, ""), (DB_WAL_FILE, "-wal"), (DB_SHM_FILE, "-shm")] {
        let from = state_dir.join(file);
        if from.exists() {
            let to = state_dir.join(format!("{base}{suffix}"));
            std::fs::rename(&from, &to)?;
            moved.push(to);
        }
    }
    Ok(moved)
}

/// The open incident as `state.json` recorded it, as a core state to restore: `Ok(None)` when the
/// file is missing or shows no incident, `Err` (with the reason) when it does not parse.
pub fn incident_from_snapshot(state_dir: &Path) -> Result<Option<PersistedState>, String> {
    let path = state_dir.join(STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let file: StateFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(inc) = file.incident else {
        return Ok(None);
    };
    // The incident's probes are failing (else a first tick would close it as recovered).
    let probes = inc
        .probes
        .iter()
        .map(|n| {
            let last = file.last_probe_results.get(n);
            let track = crate::core::ProbeTrack {
                fail_streak: file
                    .consecutive_failures
                    .get(n)
                    .copied()
                    .unwrap_or(1)
                    .max(1),
                failing: true,
                failing_since: Some(inc.opened_at_ms),
                last: Some(crate::core::LastResult {
                    status: last
                        .map(|l| l.status)
                        .filter(|s| !s.passed())
                        .unwrap_or(crate::core::Status::Fail),
                    output: last.map(|l| l.output.clone()).unwrap_or_default(),
                    at: last.map_or(file.updated_at_ms, |l| (l.time * 1000.0) as Millis),
                }),
                state: Some(crate::core::ProbeState::Failing),
                ..Default::default()
            };
            (n.clone(), track)
        })
        .collect();
    let stage = SystemState::parse(&file.current_state)
        .filter(|s| !s.is_ok())
        .unwrap_or(SystemState::Failed);
    let ms = |secs: Option<f64>| secs.map(|s| (s * 1000.0) as Millis);
    let last_sos = ms(file.last_sos_time);
    let incident = Incident {
        id: inc.id,
        opened_at: inc.opened_at_ms,
        probes: inc.probes.into_iter().collect(),
        stage,
        stage_since: file.state_since_ms,
        heals: 0,
        agents: 0,
        critical_since: matches!(stage, SystemState::Critical | SystemState::Sos)
            .then_some(file.state_since_ms),
        running: None,
        verify: None,
        hold: None,
        held_action: None,
        paged_at: inc.paged.then(|| last_sos.unwrap_or(inc.opened_at_ms)),
        last_page_at: inc.paged.then(|| last_sos.unwrap_or(inc.opened_at_ms)),
        acked_at: inc.acknowledged.then_some(file.updated_at_ms),
        last_action: None,
        tried: Vec::new(),
        sos_at: matches!(stage, SystemState::Sos).then(|| last_sos.unwrap_or(file.state_since_ms)),
        // The snapshot does not say which policy steps were reached: a chain starts over (a
        // page repeated after a lost database, never a page skipped).
        steps: Default::default(),
        approvals: Vec::new(),
        queue: Vec::new(),
        episode: None,
        diagnosis: None,
        agent_attempts: 0,
    };
    Ok(Some(PersistedState {
        state: stage,
        since: file.state_since_ms,
        last_heal_at: ms(file.last_heal_time),
        last_agent_at: ms(file.last_agent_time),
        last_sos_at: last_sos,
        last_incident: inc.id,
        incident: Some(incident),
        probes,
        ..PersistedState::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_quarantined_and_a_fresh_database_opens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0x42u8; 64 * 1024]).unwrap();
        std::fs::write(dir.path().join(DB_WAL_FILE), b"junk").unwrap();
        let (s, q) = Store::open_recovering(dir.path(), 1_796_237_963_123).unwrap();
        let q = q.expect("quarantined");
        assert_eq!(s.integrity_check().unwrap(), "ok");
        assert!(q.reason.contains("not a database"), "{}", q.reason);
        let names: Vec<String> = q
            .moved_to
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names[0].starts_with("talon.db.corrupt-20"), "{names:?}");
        assert_eq!(
            std::fs::read(&q.moved_to[0]).unwrap(),
            vec![0x42u8; 64 * 1024],
            "kept as it was"
        );
    }

    #[test]
    fn the_open_incident_comes_back_from_state_json_with_its_probes_failing() {
        let dir = tempfile::tempdir().unwrap();
        let track = crate::core::ProbeTrack {
            fail_streak: 4,
            ..Default::default()
        };
        let snap_state: PersistedState = serde_json::from_value(serde_json::json!({
            "version": 1, "state": "critical", "since": 1000, "probes": {},
            "incident": {"id": 7, "opened_at": 900, "probes": ["api"], "stage": "critical",
                "stage_since": 1000, "heals": 1, "agents": 0, "critical_since": 1000,
                "running": null, "verify": null, "hold": null, "held_action": null,
                "paged_at": null, "last_page_at": null, "acked_at": null, "last_action": null},
            "last_heal_at": null, "last_agent_at": null, "last_sos_at": null, "pending": [],
            "last_incident": 7, "last_action": 3
        }))
        .unwrap();
        let mut s = snap_state;
        s.probes.insert("api".into(), track);
        super::super::Snapshot::new(&s, 0, None, 2000)
            .write(dir.path())
            .unwrap();
        let got = incident_from_snapshot(dir.path()).unwrap().unwrap();
        let inc = got.incident.as_ref().unwrap();
        assert_eq!((inc.id, got.last_incident), (7, 7));
        assert_eq!(inc.stage, SystemState::Critical);
        let t = &got.probes["api"];
        assert!(t.failing && t.last.is_some() && t.fail_streak == 4, "{t:?}");
    }

    #[test]
    fn a_good_database_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let (_, q) = Store::open_recovering(dir.path(), 0).unwrap();
        assert!(q.is_none());
    }

    #[test]
    fn half_a_state_file_is_an_error_and_no_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(incident_from_snapshot(dir.path()), Ok(None));
        std::fs::write(dir.path().join(STATE_FILE), "{\"current_state\": \"so").unwrap();
        assert!(incident_from_snapshot(dir.path()).is_err());
    }
}
