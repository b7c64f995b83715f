//! Write endpoints (`POST /ack`, `POST /silence`, `POST /maintenance`, `POST /approve`,
//! `POST /deny`, `POST /agent/reset`, `POST /worker`, and the `push` probes' `POST /ping/NAME`):
//! authenticated with a bearer token read from `<state_dir>/api.token` (mode 0600), forwarded to
//! the runtime over an mpsc channel, answered
//! from the runtime's reply.

use crate::store::layout::{FILE_MODE, TOKEN_FILE};
use serde::Deserialize;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;

/// A request from an operator to the runtime. The runtime answers on `reply`.
#[derive(Debug)]
pub enum ControlRequest {
    /// Acknowledge an incident (stop its reminders). `None` = the open incident.
    Ack {
        incident: Option<String>,
        /// Who asked: `cli`, `http`, `telegram:<chat id> (<username>)`.
        by: String,
        reply: oneshot::Sender<ControlReply>,
    },
    /// Silence a probe's alerts for a while (a zero duration lifts a silence).
    Silence {
        probe: String,
        duration: Duration,
        reason: Option<String>,
        /// Who asked (as for `Ack`).
        by: String,
        reply: oneshot::Sender<ControlReply>,
    },
    /// Approve a pending agent-proposed action (`talon approve N`, `/approve N`).
    Approve {
        approval: u64,
        by: String,
        reply: oneshot::Sender<ControlReply>,
    },
    /// Deny a pending agent-proposed action (`talon deny N`, `/deny N`).
    Deny {
        approval: u64,
        by: String,
        reply: oneshot::Sender<ControlReply>,
    },
    /// Close the agent's circuit breaker (`talon agent reset`).
    AgentReset {
        by: String,
        reply: oneshot::Sender<ControlReply>,
    },
    /// `talon worker status|restart|stop|start`; answered when the action is done.
    Worker {
        action: crate::supervise::WorkerAction,
        /// Who asked (`cli` or `http`, as for `Ack`); recorded with the action in history.
        by: String,
        reply: oneshot::Sender<ControlReply>,
    },
    /// A `push` probe's job reported (`POST /ping/NAME[/start|/fail]`; the token was checked).
    Push {
        probe: String,
        event: crate::probe::push::PushEvent,
        /// The request body (the job's output, for a failure), at most
        /// [`crate::probe::push::MAX_PING_BODY`] bytes.
        body: String,
        reply: oneshot::Sender<ControlReply>,
    },
    /// Start, end or list maintenance windows.
    Maintenance {
        op: MaintenanceOp,
        reply: oneshot::Sender<ControlReply>,
    },
}

/// What `POST /maintenance` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaintenanceOp {
    /// Start a run-time window now: a configured `[[maintenance]]` window by `name`, or `probes`
    /// (names or globs) under `name` (or a generated one).
    Start {
        name: Option<String>,
        probes: Vec<String>,
        duration: Duration,
        heal: bool,
    },
    /// End the named run-time window (`None`: every run-time window).
    End { name: Option<String> },
    /// Every window, configured and run-time.
    List,
}

/// `POST /maintenance` body: `{"action": "start", "name": "db-upgrade", "probes": ["db*"],
/// "for": "2h", "heal": false}`, `{"action": "end", "name": "db-upgrade"}`, `{"action": "list"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceBody {
    pub action: String,
    pub name: Option<String>,
    pub probes: Option<Vec<String>>,
    #[serde(rename = "for")]
    pub duration: Option<DurationArg>,
    pub heal: Option<bool>,
}

impl MaintenanceBody {
    /// The operation, or what is wrong with the body.
    pub fn op(self) -> Result<MaintenanceOp, String> {
        match self.action.as_str() {
            "start" => {
                let Some(d) = self.duration else {
                    return Err("`for` is required to start a window (e.g. \"2h\")".into());
                };
                let probes = self.probes.unwrap_or_default();
                if self.name.is_none() && probes.is_empty() {
                    return Err("name a configured window or give `probes`".into());
                }
                Ok(MaintenanceOp::Start {
                    name: self.name,
                    probes,
                    duration: d.to_duration()?,
                    heal: self.heal.unwrap_or(false),
                })
            }
            "end" => Ok(MaintenanceOp::End { name: self.name }),
            "list" => Ok(MaintenanceOp::List),
            other => Err(format!(
                "`action` must be start, end or list, got {other:?}"
            )),
        }
    }
}

/// `POST /approve` and `POST /deny` body: `{"approval": 3, "by": "alice"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub approval: u64,
    pub by: Option<String>,
}

/// `POST /agent/reset` body (may be empty): `{"by": "alice"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    pub by: Option<String>,
}
/// `POST /worker` body: `{"action": "status" | "restart" | "stop" | "start", "by": "cli"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerBody {
    pub action: crate::supervise::WorkerAction,
    /// As [`AckBody::by`].
    pub by: Option<String>,
}

/// How long `POST /worker` waits for the runtime: a graceful stop takes up to the worker's
/// `drain_timeout_secs`, a start its preparation (secrets, port reclaim).
pub const WORKER_CONTROL_TIMEOUT: Duration = Duration::from_secs(120);

/// The runtime's answer to a [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlReply {
    /// Done; a short human message (`"incident 42 acknowledged"`). HTTP 200.
    Done(String),
    /// The incident or probe does not exist. HTTP 404.
    NotFound(String),
    /// The request cannot be applied (e.g. no open incident). HTTP 409.
    Rejected(String),
}

/// `POST /ack` body (may be empty or `{}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    pub incident: Option<String>,
    /// Who acknowledges, for the record ([`http_caller`]): `"cli"` from `talon ack`.
    pub by: Option<String>,
}

/// Who sent a control request over HTTP, for the record — one rule for every write endpoint:
/// the name the body gives in `by` (trimmed, control characters dropped, at most 64
/// characters), else `http`. The CLI sends `cli` (`talon ack`, `silence`, `worker`) or the
/// deciding person (`talon approve --by`, default `$USER`). The token is what authenticates;
/// the name is what its holder says it is.
pub fn http_caller(by: Option<&str>) -> String {
    let name: String = by
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if name.is_empty() { "http".into() } else { name }
}

/// `POST /silence` body: `{"probe": "api", "for": "30m", "reason": "deploy"}`. `for` is seconds
/// (a number) or a string with a unit: `90s`, `30m`, `2h`, `1d`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    pub probe: String,
    #[serde(rename = "for")]
    pub duration: DurationArg,
    pub reason: Option<String>,
    /// As [`AckBody::by`].
    pub by: Option<String>,
}

/// A duration given as seconds or as `<n><unit>`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DurationArg {
    Secs(u64),
    Text(String),
}

/// Longest silence accepted: 30 days.
pub const MAX_SILENCE: Duration = Duration::from_secs(30 * 86_400);

impl DurationArg {
    /// The duration, or a message saying what is wrong with it.
    pub fn to_duration(&self) -> Result<Duration, String> {
        let d = match self {
            DurationArg::Secs(s) => Duration::from_secs(*s),
            DurationArg::Text(t) => parse_duration(t)?,
        };
        if d.is_zero() {
            return Err("`for` must be longer than 0".into());
        }
        if d > MAX_SILENCE {
            return Err("`for` is longer than 30 days".into());
        }
        Ok(d)
    }
}

fn parse_duration(t: &str) -> Result<Duration, String> {
    let t = t.trim();
    let bad =
        || format!("`for`: {t:?} is not a duration (e.g. 90, \"90s\", \"30m\", \"2h\", \"1d\")");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).map(Duration::from_secs).ok_or_else(bad)
}

/// Why the API token could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: mode {mode:04o} lets other users read the API token; run `chmod 600 {path}`")]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("{path}: the API token file is empty")]
    Empty { path: PathBuf },
}

/// Read `<state_dir>/api.token`, creating it (mode 0600, a fresh random token) when missing.
/// A token file readable by group or others is refused, not silently used.
pub fn ensure_token(state_dir: &Path) -> Result<String, TokenError> {
    let path = state_dir.join(TOKEN_FILE);
    let io_err = |source| TokenError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(TokenError::InsecurePermissions { path, mode });
            }
            let mut text = String::new();
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(io_err)?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(TokenError::Empty { path });
            }
            Ok(token)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(state_dir).map_err(|source| TokenError::Io {
                path: state_dir.to_path_buf(),
                source,
            })?;
            let token = random_token().map_err(io_err)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io_err)?;
            f.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io_err)?;
            Ok(token)
        }
        Err(e) => Err(io_err(e)),
    }
}

/// 32 random bytes from the OS, hex-encoded.
fn random_token() -> io::Result<String> {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Does an `Authorization` header value carry this token? Compared in constant time.
pub fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |t: &str| DurationArg::Text(t.into()).to_duration();
        assert_eq!(d("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(d("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(d("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(d("45"), Ok(Duration::from_secs(45)));
        assert!(d("5x").unwrap_err().contains("not a duration"));
        assert!(d("").is_err());
        assert!(d("0m").unwrap_err().contains("longer than 0"));
        assert!(d("31d").unwrap_err().contains("30 days"));
        assert!(d("99999999999999999999h").is_err());
        assert_eq!(
            DurationArg::Secs(60).to_duration(),
            Ok(Duration::from_secs(60))
        );
    }

    #[test]
    fn token_is_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let t1 = ensure_token(&state).unwrap();
        assert_eq!(t1.len(), 64);
        let mode = std::fs::metadata(state.join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(ensure_token(&state).unwrap(), t1);
        assert_ne!(
            ensure_token(dir.path()).unwrap(),
            t1,
            "a fresh token each time"
        );
    }

    #[test]
    fn readable_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(TOKEN_FILE);
        std::fs::write(&p, "secret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ensure_token(dir.path()).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(ensure_token(dir.path()).unwrap(), "secret");
        std::fs::write(&p, "  \n").unwrap();
        assert!(matches!(
            ensure_token(dir.path()),
            Err(TokenError::Empty { .. })
        ));
    }

    #[test]
    fn bearer() {
        assert!(bearer_matches(Some("Bearer abc"), "abc"));
        assert!(!bearer_matches(Some("Bearer abd"), "abc"));
        assert!(!bearer_matches(Some("Bearer ab"), "abc"));
        assert!(!bearer_matches(Some("abc"), "abc"));
        assert!(!bearer_matches(Some("Basic abc"), "abc"));
        assert!(!bearer_matches(None, "abc"));
    }
}
