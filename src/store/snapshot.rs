//! `state.json` and `last-probe.json`: snapshots for tools that read files, with the original
//! Talon's field names. Written atomically: temp file in the same dir, fsync, rename, fsync dir —
//! a reader sees the old file or the new one, never a truncated one.
//!
//! Times with the original's names (`last_heal_time`, …) are unix seconds (floats), as the
//! original wrote them; times with `_ms` are unix milliseconds.

use crate::core::{Millis, PersistedState};
use crate::core::{ProbeResult, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::layout::{FILE_MODE, LAST_PROBE_FILE, STATE_FILE};

/// A probe's newest scheduled result, as `state.json` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastProbe {
    pub passed: bool,
    pub status: Status,
    pub output: String,
    /// Unix seconds.
    pub time: f64,
}

/// The incident summary in `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentSummary {
    pub id: u64,
    pub opened_at_ms: Millis,
    pub probes: Vec<String>,
    pub paged: bool,
    pub acknowledged: bool,
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// healthy | degraded | failed | investigating | critical | sos
    pub current_state: String,
    /// Failures in a row per probe.
    pub consecutive_failures: BTreeMap<String, u32>,
    pub last_heal_time: Option<f64>,
    pub last_agent_time: Option<f64>,
    pub last_sos_time: Option<f64>,
    pub last_probe_results: BTreeMap<String, LastProbe>,
    pub worker_restarts: u32,
    pub state_since_ms: Millis,
    pub incident: Option<IncidentSummary>,
    pub updated_at_ms: Millis,
}

/// `last-probe.json`: the newest scheduled cycle as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastProbeFile {
    pub updated_at_ms: Millis,
    pub last_probe_results: Vec<ProbeResult>,
}

/// Both snapshots (the second only when the step had scheduled results).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub state: StateFile,
    pub last_probe: Option<LastProbeFile>,
}

fn secs(ms: Option<Millis>) -> Option<f64> {
    ms.map(|m| m as f64 / 1000.0)
}

impl Snapshot {
    pub fn new(
        s: &PersistedState,
        worker_restarts: u32,
        last_cycle: Option<&[ProbeResult]>,
        at: Millis,
    ) -> Snapshot {
        let state = StateFile {
            current_state: s.state.as_str().to_string(),
            consecutive_failures: s
                .probes
                .iter()
                .map(|(n, t)| (n.clone(), t.fail_streak))
                .collect(),
            last_heal_time: secs(s.last_heal_at),
            last_agent_time: secs(s.last_agent_at),
            last_sos_time: secs(s.last_sos_at),
            last_probe_results: s
                .probes
                .iter()
                .filter_map(|(n, t)| {
                    t.last.as_ref().map(|l| {
                        (
                            n.clone(),
                            LastProbe {
                                passed: l.status.passed(),
                                status: l.status,
                                output: l.output.clone(),
                                time: l.at as f64 / 1000.0,
                            },
                        )
                    })
                })
                .collect(),
            worker_restarts,
            state_since_ms: s.since,
            incident: s.incident.as_ref().map(|i| IncidentSummary {
                id: i.id,
                opened_at_ms: i.opened_at,
                probes: i.probes.iter().cloned().collect(),
                paged: i.paged_at.is_some(),
                acknowledged: i.acked_at.is_some(),
            }),
            updated_at_ms: at,
        };
        Snapshot {
            state,
            last_probe: last_cycle.map(|r| LastProbeFile {
                updated_at_ms: at,
                last_probe_results: r.to_vec(),
            }),
        }
    }

    /// Write both files atomically into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        write_json_atomic(&dir.join(STATE_FILE), &self.state)?;
        if let Some(lp) = &self.last_probe {
            write_json_atomic(&dir.join(LAST_PROBE_FILE), lp)?;
        }
        Ok(())
    }
}

/// Temp file + fsync + rename + fsync of the directory.
pub fn write_json_atomic<T: Serialize>(path: &Path, v: &T) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    // Private like everything in the state dir (see `store::layout`).
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?
    };
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(FILE_MODE))?;
    serde_json::to_writer_pretty(&mut f, v)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
