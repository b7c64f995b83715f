//! What a probe run produces. Failure of a probe is data, not `Err`: `Err` is reserved for
//! Talon itself being broken.

use serde::{Deserialize, Serialize};

/// How one probe run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The check passed.
    Pass,
    /// The check ran and the target is unhealthy.
    Fail,
    /// The check did not finish within its timeout.
    Timeout,
    /// The check could not run (unavailable on this platform, bad credentials file, ...).
    Error,
    /// Not run: a probe it depends on failed in the same cycle.
    Blocked,
}

impl Status {
    pub fn passed(self) -> bool {
        self == Status::Pass
    }
    /// A failure that counts toward escalation (blocked never does: its root cause does).
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Fail | Status::Timeout | Status::Error)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Timeout => "timeout",
            Status::Error => "error",
            Status::Blocked => "blocked",
        }
    }
}

/// What a kind's check returns: a status, a short, specific line of output
/// ("HTTP 503 from http://127.0.0.1:3018/health in 12 ms", "connection refused") and, for a
/// failure, the detail it was judged from (see [`ProbeResult::detail`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub output: String,
    /// Empty when the kind has nothing to add to `output`.
    pub detail: String,
}

impl Outcome {
    pub fn pass(output: impl Into<String>) -> Self {
        Self {
            status: Status::Pass,
            output: output.into(),
            detail: String::new(),
        }
    }
    pub fn fail(output: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            output: output.into(),
            detail: String::new(),
        }
    }
    pub fn error(output: impl Into<String>) -> Self {
        Self {
            status: Status::Error,
            output: output.into(),
            detail: String::new(),
        }
    }
    pub fn timeout(output: impl Into<String>) -> Self {
        Self {
            status: Status::Timeout,
            output: output.into(),
            detail: String::new(),
        }
    }
    /// The same outcome with this detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// One probe's result in a cycle, as reported by `talon check --json`, stored and shown.
/// Field names `name`, `passed`, `output`, `duration_ms` are the original Talon's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub name: String,
    pub kind: String,
    pub passed: bool,
    pub status: Status,
    /// One line, for tables, messages and the log.
    pub output: String,
    /// For a failure (`fail`, `timeout`, `error`) only: what the run printed or was judged from,
    /// newest part, at most about `[probes] detail_bytes` — a script's output (stdout then
    /// stderr), an HTTP answer's status line, headers and start of body, the properties or
    /// objects a systemd, Redis or Kubernetes verdict was computed from. Empty for a pass, and
    /// left out of JSON when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    pub duration_ms: u64,
    /// Unix time in milliseconds when the run started.
    pub started_at: i64,
}

impl ProbeResult {
    /// Mask secrets in what the probe printed (`output` and `detail`) — done once, as a result
    /// arrives, before anything stores, shows or hands it on.
    pub fn redact(&mut self, r: &crate::redact::Redactor) {
        self.output = r.clean(&self.output);
        self.detail = r.clean(&self.detail);
    }
}
