//! `[worker]`: the validated type and its builder.

use super::builder::Builder;
use super::defaults;
use super::raw::{RawSecret, RawWorker};
use super::ser_secs;
use serde::Serialize;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

/// `[worker]`: the process Talon supervises.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerConfig {
    pub dir: Option<PathBuf>,
    pub command: Vec<String>,
    pub external_launchd_label: Option<String>,
    pub external_systemd_unit: Option<String>,
    pub port: Option<u16>,
    /// Stop a stale listener on `port` before spawning (never clients).
    pub reclaim_port: bool,
    /// The health URL, resolved: a path in the file (`/api/inngest`, the original's form) is
    /// `http://127.0.0.1:<port><path>` here.
    pub health_endpoint: Option<String>,
    /// The sync URL, resolved like `health_endpoint`.
    pub sync_endpoint: Option<String>,
    pub log_stdout: Option<PathBuf>,
    pub log_stderr: Option<PathBuf>,
    /// A log file is rotated before a write would take it past this size; 0 = never.
    pub log_max_bytes: u64,
    /// Files kept per log, the live one included (`out.log`, `out.log.1`, …); 0 counts as 1.
    /// See [`crate::rotate`].
    pub log_max_files: u32,
    pub env_file: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, SecretConfig>,
    #[serde(serialize_with = "ser_secs", rename = "drain_timeout_secs")]
    pub drain_timeout: Duration,
    /// Checks start this far apart, start to start, whatever the previous one took.
    #[serde(serialize_with = "ser_secs", rename = "health_interval_secs")]
    pub health_interval: Duration,
    /// After a spawn, failed checks do not count for this long (a pass ends it early); 0: none.
    #[serde(serialize_with = "ser_secs", rename = "health_start_grace_secs")]
    pub health_start_grace: Duration,
    pub health_failures_before_restart: NonZeroU32,
    #[serde(serialize_with = "ser_secs", rename = "restart_backoff_max_secs")]
    pub restart_backoff_max: Duration,
    #[serde(serialize_with = "ser_secs", rename = "startup_sync_delay_secs")]
    pub startup_sync_delay: Duration,
    pub sync_attempts: NonZeroU32,
    #[serde(serialize_with = "ser_secs", rename = "http_timeout_secs")]
    pub http_timeout: Duration,
    #[serde(serialize_with = "ser_secs", rename = "min_uptime_secs")]
    pub min_uptime: Duration,
    #[serde(serialize_with = "ser_secs", rename = "backoff_reset_secs")]
    pub backoff_reset: Duration,
    pub max_restarts: NonZeroU32,
    #[serde(serialize_with = "ser_secs", rename = "restart_window_secs")]
    pub restart_window: Duration,
    /// Signals (besides TERM/INT) forwarded to the worker's group, e.g. `USR1`.
    pub forward_signals: Vec<String>,
    #[serde(serialize_with = "ser_secs", rename = "owner_check_secs")]
    pub owner_check: Duration,
}

/// `[worker.secrets.NAME]`: a command whose first non-empty stdout line is the value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretConfig {
    pub command: String,
    pub optional: bool,
    #[serde(serialize_with = "ser_secs", rename = "timeout_secs")]
    pub timeout: Duration,
}

/// Signals `forward_signals` may name (besides TERM and INT, which are always forwarded).
const FORWARDABLE: &[&str] = &["USR1", "USR2", "WINCH", "QUIT", "CONT", "TSTP", "ALRM"];

impl Builder<'_, '_> {
    pub(super) fn worker(&mut self, w: RawWorker) -> WorkerConfig {
        use defaults::worker as dw;
        let command = w.command.unwrap_or_default();
        if command.is_empty() || command[0].trim().is_empty() {
            self.err(
                "worker.command",
                "must name a program to run, e.g. command = [\"bun\", \"run\", \"worker.ts\"]",
            );
        }
        let port = match w.port {
            None => None,
            Some(p) if (1..=65535).contains(&p) => Some(p as u16),
            Some(p) => {
                self.err("worker.port", format!("{p} is not a TCP port (1-65535)"));
                None
            }
        };
        let port_given = w.port.is_some();
        let health_endpoint = w
            .health_endpoint
            .as_deref()
            .and_then(|u| self.endpoint("worker.health_endpoint", u, port, port_given));
        let sync_endpoint = w
            .sync_endpoint
            .as_deref()
            .and_then(|u| self.endpoint("worker.sync_endpoint", u, port, port_given));
        let forward = self.forward_signals(w.forward_signals.unwrap_or_default());
        let secrets = self.secrets(w.secrets.unwrap_or_default());
        let env = w.env.unwrap_or_default();
        for k in env.keys().chain(secrets.keys()) {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                self.err(
                    "worker.env",
                    format!("`{k}` is not a valid environment variable name"),
                );
            }
        }
        let env_file = w.env_file.as_deref().map(|p| self.path(p));
        if let Some(p) = env_file.as_ref().filter(|p| p.is_file())
            && let Err(e) = crate::config::envfile::load(p)
        {
            self.err("worker.env_file", e.to_string());
        }
        WorkerConfig {
            dir: w.dir.as_deref().map(|p| self.path(p)),
            command,
            external_launchd_label: w.external_launchd_label,
            external_systemd_unit: w.external_systemd_unit,
            port,
            reclaim_port: w.reclaim_port.unwrap_or(dw::RECLAIM_PORT),
            health_endpoint,
            sync_endpoint,
            log_stdout: w.log_stdout.as_deref().map(|p| self.path(p)),
            log_stderr: w.log_stderr.as_deref().map(|p| self.path(p)),
            log_max_bytes: w.log_max_bytes.unwrap_or(dw::LOG_MAX_BYTES),
            log_max_files: w.log_max_files.unwrap_or(dw::LOG_MAX_FILES),
            env_file,
            env,
            secrets,
            drain_timeout: self.secs(
                "worker.drain_timeout_secs",
                w.drain_timeout_secs,
                dw::DRAIN_TIMEOUT,
            ),
            health_interval: self.secs(
                "worker.health_interval_secs",
                w.health_interval_secs,
                dw::HEALTH_INTERVAL,
            ),
            health_start_grace: self.secs_or_zero(
                "worker.health_start_grace_secs",
                w.health_start_grace_secs,
                dw::HEALTH_START_GRACE,
            ),
            health_failures_before_restart: self.count(
                "worker.health_failures_before_restart",
                w.health_failures_before_restart,
                dw::HEALTH_FAILURES_BEFORE_RESTART,
            ),
            restart_backoff_max: self.secs(
                "worker.restart_backoff_max_secs",
                w.restart_backoff_max_secs,
                dw::RESTART_BACKOFF_MAX,
            ),
            startup_sync_delay: self.secs(
                "worker.startup_sync_delay_secs",
                w.startup_sync_delay_secs,
                dw::STARTUP_SYNC_DELAY,
            ),
            sync_attempts: self.count("worker.sync_attempts", w.sync_attempts, dw::SYNC_ATTEMPTS),
            http_timeout: self.secs(
                "worker.http_timeout_secs",
                w.http_timeout_secs,
                dw::HTTP_TIMEOUT,
            ),
            min_uptime: self.secs("worker.min_uptime_secs", w.min_uptime_secs, dw::MIN_UPTIME),
            backoff_reset: self.secs(
                "worker.backoff_reset_secs",
                w.backoff_reset_secs,
                dw::BACKOFF_RESET,
            ),
            max_restarts: self.count("worker.max_restarts", w.max_restarts, dw::MAX_RESTARTS),
            restart_window: self.secs(
                "worker.restart_window_secs",
                w.restart_window_secs,
                dw::RESTART_WINDOW,
            ),
            forward_signals: forward,
            owner_check: self.secs(
                "worker.owner_check_secs",
                w.owner_check_secs,
                dw::OWNER_CHECK,
            ),
        }
    }

    /// A health or sync endpoint: a full http(s) URL, or — as the original Talon wrote them — a
    /// path on the worker's own port (`/api/inngest` → `http://127.0.0.1:<port>/api/inngest`).
    fn endpoint(
        &mut self,
        key: &str,
        u: &str,
        port: Option<u16>,
        port_given: bool,
    ) -> Option<String> {
        if !u.starts_with('/') {
            self.url(key, u);
            return Some(u.to_string());
        }
        match port {
            Some(p) => {
                let url = format!("http://127.0.0.1:{p}{u}");
                self.url(key, &url);
                Some(url)
            }
            // A bad `port` is reported where it is; one problem, one line.
            None if port_given => None,
            None => {
                self.err(
                    key,
                    format!(
                        "`{u}` is a path on the worker's own port, but worker.port is not set; \
                         set `port = ...` or write a full URL (http://host:port{u})"
                    ),
                );
                None
            }
        }
    }

    /// `forward_signals`, normalized (`SIGUSR1` → `USR1`).
    fn forward_signals(&mut self, signals: Vec<String>) -> Vec<String> {
        let mut forward = Vec::new();
        for s in signals {
            let norm = s.trim_start_matches("SIG").to_ascii_uppercase();
            match norm.as_str() {
                n if FORWARDABLE.contains(&n) => forward.push(norm),
                "HUP" => self.err(
                    "worker.forward_signals",
                    "HUP is Talon's own reload signal and is not forwarded",
                ),
                "TERM" | "INT" => self.warn(
                    "worker.forward_signals",
                    format!("{norm} is always forwarded; no need to list it"),
                ),
                _ => self.err(
                    "worker.forward_signals",
                    format!(
                        "`{s}` is not a signal Talon forwards ({})",
                        FORWARDABLE.join(", ")
                    ),
                ),
            }
        }
        forward
    }

    /// `[worker.secrets]`.
    fn secrets(&mut self, raw: BTreeMap<String, RawSecret>) -> BTreeMap<String, SecretConfig> {
        let mut secrets = BTreeMap::new();
        for (name, s) in raw {
            let key = format!("worker.secrets.{name}");
            if s.command.trim().is_empty() {
                self.err(&format!("{key}.command"), "must not be empty");
            }
            let timeout = self.secs(
                &format!("{key}.timeout_secs"),
                s.timeout_secs,
                defaults::worker::SECRET_TIMEOUT,
            );
            secrets.insert(
                name,
                SecretConfig {
                    command: s.command,
                    optional: s.optional,
                    timeout,
                },
            );
        }
        secrets
    }
}
