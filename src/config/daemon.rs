//! The daemon's own surfaces: `[health]`, `[log]`, `[store]` and `[heartbeat]` — validated
//! types and their builders.

use super::builder::Builder;
use super::defaults;
use super::raw::{RawHealth, RawHeartbeat, RawLog, RawStore};
use super::ser_secs;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[health]`: the loopback HTTP server (`/health`, `/status`, `/metrics`, the status page).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthConfig {
    pub enabled: bool,
    pub bind: SocketAddr,
    pub allow_remote: bool,
}

/// `[log]`: Talon's own JSON log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogConfig {
    pub level: String,
    pub file: PathBuf,
    /// The log is rotated before a line would take it past this size (at least 1).
    pub max_bytes: u64,
    /// Files kept, the live one included (`talon.log`, `talon.log.1`, …); 0 counts as 1.
    /// See [`crate::rotate`].
    pub max_files: u32,
}

/// `[store]`: history retention.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreConfig {
    #[serde(serialize_with = "ser_secs")]
    pub retention: Duration,
}

/// `[heartbeat]`: the outbound dead-man-switch ping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeartbeatConfig {
    pub url: String,
    #[serde(serialize_with = "ser_secs", rename = "interval_secs")]
    pub interval: Duration,
}

impl Builder<'_, '_> {
    pub(super) fn health(&mut self, h: RawHealth) -> HealthConfig {
        let allow_remote = h.allow_remote.unwrap_or(defaults::health::ALLOW_REMOTE);
        let bind = match h.bind.as_deref().map(|b| (b, b.parse::<SocketAddr>())) {
            None => defaults::health::BIND,
            Some((bind_s, Ok(b))) => {
                if !b.ip().is_loopback() && !allow_remote {
                    self.err(
                        "health.bind",
                        format!("`{bind_s}` is not a loopback address; set health.allow_remote = true to expose it"),
                    );
                }
                b
            }
            Some((bind_s, Err(_))) => {
                self.err(
                    "health.bind",
                    format!(
                        "`{bind_s}` is not an address like {}",
                        defaults::health::BIND
                    ),
                );
                defaults::health::BIND
            }
        };
        HealthConfig {
            enabled: h.enabled.unwrap_or(defaults::health::ENABLED),
            bind,
            allow_remote,
        }
    }

    /// `[log]`; the file defaults to one in `state_dir`.
    pub(super) fn log(&mut self, l: RawLog, state_dir: &Path) -> LogConfig {
        let level = l.level.unwrap_or_else(|| defaults::log::LEVEL.to_string());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            self.err(
                "log.level",
                format!("`{level}` is not a log level or filter (e.g. info, debug, talon=debug)"),
            );
        }
        let log = LogConfig {
            level,
            file: l
                .file
                .as_deref()
                .map(|p| self.path(p))
                .unwrap_or_else(|| state_dir.join(defaults::log::FILE_NAME)),
            max_bytes: l.max_bytes.unwrap_or(defaults::log::MAX_BYTES),
            max_files: l.max_files.unwrap_or(defaults::log::MAX_FILES),
        };
        if log.max_bytes == 0 {
            self.err("log.max_bytes", "must be at least 1");
        }
        log
    }

    pub(super) fn store(&mut self, s: RawStore) -> StoreConfig {
        StoreConfig {
            // Validated like a number of seconds, then read as days.
            retention: Duration::from_secs_f64(
                self.secs(
                    "store.retention_days",
                    s.retention_days,
                    Duration::from_secs(defaults::store::RETENTION_DAYS),
                )
                .as_secs_f64()
                    * 86400.0,
            ),
        }
    }

    pub(super) fn heartbeat(&mut self, hb: RawHeartbeat) -> HeartbeatConfig {
        self.url("heartbeat.url", &hb.url);
        HeartbeatConfig {
            interval: self.secs(
                "heartbeat.interval_secs",
                hb.interval_secs,
                defaults::heartbeat::INTERVAL,
            ),
            url: hb.url,
        }
    }
}
