//! Every default of the main config, in one table: the value a key takes when the file leaves it
//! out. The builder fills missing keys from here, [`crate::core::CoreConfig::default`] is made
//! of these values, `config/default.toml` (the embedded default and what `talon init` writes)
//! shows them, and `docs/config.md` documents them; `tests/it/defaults.rs` checks that the text
//! `talon init` writes, the documented defaults and `talon config` of an empty file all agree.
//!
//! A probe or channel kind's own keys (`method = "GET"` of an HTTP probe, …) keep their defaults
//! beside their spec, in `config/probe/<kind>.rs` and `config/channel/<kind>.rs`, one file per
//! kind.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn count(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("a default count is at least 1"),
    }
}

const MIB: u64 = 1024 * 1024;

/// `check_interval_secs`: time between probe runs.
pub const CHECK_INTERVAL: Duration = secs(60);
/// `heal_timeout_secs`.
pub const HEAL_TIMEOUT: Duration = secs(300);
/// `redact_builtin`: the built-in secret patterns apply.
pub const REDACT_BUILTIN: bool = true;

/// The main config file: `$XDG_CONFIG_HOME/talon/config.toml`, else
/// `~/.config/talon/config.toml`.
pub fn config_path(home: Option<&Path>) -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("talon/config.toml"));
    }
    home.map(|h| h.join(".config/talon/config.toml"))
}

/// `services_file`: `~/.config/talon/services.toml` (`services.toml` in the current directory
/// without a home).
pub fn services_file(home: Option<&Path>) -> PathBuf {
    home.map(|h| h.join(".config/talon/services.toml"))
        .unwrap_or_else(|| PathBuf::from("services.toml"))
}

/// `state_dir`: `$XDG_STATE_HOME/talon`, else `~/.local/state/talon` (`/var/lib/talon` without
/// a home).
pub fn state_dir(home: Option<&Path>) -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("talon");
    }
    match home {
        Some(h) => h.join(".local/state/talon"),
        None => PathBuf::from("/var/lib/talon"),
    }
}

/// `[worker]`.
pub mod worker {
    use super::*;
    pub const RECLAIM_PORT: bool = true;
    pub const LOG_MAX_BYTES: u64 = 10 * MIB;
    /// Files kept per worker log, the live one included.
    pub const LOG_MAX_FILES: u32 = 5;
    /// `[worker.secrets.NAME] timeout_secs`.
    pub const SECRET_TIMEOUT: Duration = secs(10);
    pub const DRAIN_TIMEOUT: Duration = secs(5);
    pub const HEALTH_INTERVAL: Duration = secs(30);
    /// Failed health checks after a spawn that do not count (Kubernetes' startup probe); 0: none.
    pub const HEALTH_START_GRACE: Duration = Duration::ZERO;
    pub const HEALTH_FAILURES_BEFORE_RESTART: NonZeroU32 = count(3);
    pub const RESTART_BACKOFF_MAX: Duration = secs(30);
    pub const STARTUP_SYNC_DELAY: Duration = secs(5);
    pub const SYNC_ATTEMPTS: NonZeroU32 = count(5);
    pub const HTTP_TIMEOUT: Duration = secs(5);
    pub const MIN_UPTIME: Duration = secs(1);
    pub const BACKOFF_RESET: Duration = secs(60);
    pub const MAX_RESTARTS: NonZeroU32 = count(5);
    pub const RESTART_WINDOW: Duration = secs(300);
    pub const OWNER_CHECK: Duration = secs(30);
}

/// `[escalation]`.
pub mod escalation {
    use super::*;
    pub const AGENT_COOLDOWN: Duration = secs(600);
    pub const SOS_COOLDOWN: Duration = secs(4 * 3600);
    pub const CRITICAL_THRESHOLD: Duration = secs(900);
    pub const HEAL_COOLDOWN: Duration = secs(300);
    pub const MAX_HEALS_PER_INCIDENT: NonZeroU32 = count(3);
    pub const HEAL_SETTLE: Duration = secs(10);
    pub const FLAP_THRESHOLD: NonZeroU32 = count(6);
    pub const FLAP_WINDOW: Duration = secs(600);
    /// First retry delay of an undelivered notification (it doubles per attempt, capped).
    pub const NOTIFY_RETRY: Duration = secs(30);
}

/// `[agent]`.
pub mod agent {
    use super::*;
    pub const TIMEOUT: Duration = secs(600);
    pub const LOG_TAIL_LINES: NonZeroU32 = count(100);
    pub const MAX_PROMPT_BYTES: NonZeroU32 = count(64 * 1024);
    /// `mode` when the key is left out: today's behaviour (with a `talon validate` warning).
    pub const MODE: crate::config::AgentMode = crate::config::AgentMode::Autonomous;
    /// `mode` that `talon init` writes.
    pub const INIT_MODE: crate::config::AgentMode = crate::config::AgentMode::Propose;
    /// How long a proposed `approval = "human"` action waits for a human.
    pub const APPROVAL_TIMEOUT: Duration = secs(1800);
    pub const MAX_RUNS_PER_INCIDENT: NonZeroU32 = count(3);
    /// Agent runs per rolling 24 hours, across incidents (persisted).
    pub const MAX_RUNS_PER_DAY: NonZeroU32 = count(20);
    /// Agent runs in a row that fixed nothing before the circuit breaker opens.
    pub const BREAKER_AFTER: NonZeroU32 = count(3);
}

/// `[actions.NAME]`.
pub mod actions {
    use super::*;
    pub const APPROVAL: crate::config::Approval = crate::config::Approval::Human;
    pub const TIMEOUT: Duration = secs(120);
    /// Runs of one action per rolling 24 hours.
    pub const MAX_PER_DAY: NonZeroU32 = count(5);
}

/// `[probes]`, and the keys every probe accepts.
pub mod probes {
    use super::*;
    pub const SERVICE_TIMEOUT: Duration = secs(5);
    pub const CRITICAL_AFTER_CONSECUTIVE_FAILURES: NonZeroU32 = count(2);
    pub const CONSECUTIVE_FAILURES_BEFORE_ESCALATE: NonZeroU32 = count(3);
    pub const K8S_TIMEOUT: Duration = secs(10);
    pub const CONCURRENCY: NonZeroU32 = count(64);
    /// `detail_bytes`: how much of a failing run's output its result keeps.
    pub const DETAIL_BYTES: u32 = 4096;
    /// The most `detail_bytes` may be.
    pub const MAX_DETAIL_BYTES: u32 = 1024 * 1024;
    /// A probe's `critical`.
    pub const CRITICAL: bool = false;
    /// A probe's `recover_after`.
    pub const RECOVER_AFTER: NonZeroU32 = count(1);
}

/// `[health]`.
pub mod health {
    use super::*;
    pub const ENABLED: bool = true;
    pub const BIND: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9999));
    pub const ALLOW_REMOTE: bool = false;
}

/// `[log]`.
pub mod log {
    use super::*;
    pub const LEVEL: &str = "info";
    /// `file`: this name in the state dir.
    pub const FILE_NAME: &str = "talon.log";
    pub const MAX_BYTES: u64 = 10 * MIB;
    /// Files kept, the live one included.
    pub const MAX_FILES: u32 = 5;
}

/// `[store]`.
pub mod store {
    /// `retention_days`.
    pub const RETENTION_DAYS: u64 = 7;
}

/// `[heartbeat]`.
pub mod heartbeat {
    use super::*;
    pub const INTERVAL: Duration = secs(60);
}

/// `[digest]`.
pub mod digest {
    /// `always`: send the digest even when there is nothing to say.
    pub const ALWAYS: bool = false;
}
