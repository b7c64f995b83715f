//! Raw config: serde structs that mirror the main config file key for key.
//! Only [`super::Config`] (validated) is used at run time.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// A number of seconds as written in the file: an integer or a float (`0.5`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Secs(pub f64);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secs, E> {
                Ok(Secs(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secs, E> {
                Ok(Secs(v as f64))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secs, E> {
                Ok(Secs(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The main config file's top level (probe sections such as `[http.NAME]` are parsed apart).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMain {
    /// The name Talon shows for this host (alerts, notices, `/status`, the agent's prompt);
    /// unset = the system's host name.
    pub host: Option<String>,
    pub check_interval_secs: Option<Secs>,
    pub heal_script: Option<String>,
    pub heal_timeout_secs: Option<Secs>,
    pub bridge_heal: Option<String>,
    pub services_file: Option<String>,
    pub state_dir: Option<String>,
    /// Extra directories searched before the platform defaults and the inherited PATH.
    pub path: Option<Vec<String>>,
    /// Regular expressions whose matches are redacted everywhere Talon hands text over.
    pub redact: Option<Vec<String>>,
    /// `false` turns the built-in secret patterns off (with a warning).
    pub redact_builtin: Option<bool>,
    pub worker: Option<RawWorker>,
    pub escalation: Option<RawEscalation>,
    pub agent: Option<RawAgent>,
    pub probes: Option<RawProbeDefaults>,
    pub health: Option<RawHealth>,
    pub log: Option<RawLog>,
    pub store: Option<RawStore>,
    pub heartbeat: Option<RawHeartbeat>,
    /// `[limits]` rlimits for children.
    pub limits: Option<RawLimits>,
    pub digest: Option<RawDigest>,
    /// `[actions.NAME]`: the catalogue an agent in `propose` mode chooses from.
    pub actions: Option<BTreeMap<String, RawAction>>,
    /// `[policy.NAME]` escalation policies.
    pub policy: Option<BTreeMap<String, RawPolicy>>,
    /// `[[maintenance]]` windows.
    pub maintenance: Option<Vec<RawMaintenance>>,
}

/// `[policy.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub step: Option<Vec<RawStep>>,
}

/// `[[policy.NAME.step]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub after_secs: Option<Secs>,
    pub channels: Option<Vec<String>>,
}

/// One string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `[[maintenance]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    pub name: Option<String>,
    pub probes: Option<Vec<String>>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub schedule: Option<OneOrMany>,
    pub heal: Option<bool>,
}

/// Top-level keys of the main file, for did-you-mean suggestions.
pub const MAIN_KEYS: &[&str] = &[
    "host",
    "check_interval_secs",
    "heal_script",
    "heal_timeout_secs",
    "bridge_heal",
    "services_file",
    "state_dir",
    "path",
    "redact",
    "redact_builtin",
    "worker",
    "escalation",
    "agent",
    "probes",
    "health",
    "log",
    "store",
    "heartbeat",
    "limits",
    "digest",
    "notify",
    "actions",
    "policy",
    "maintenance",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorker {
    pub dir: Option<String>,
    pub command: Option<Vec<String>>,
    pub external_launchd_label: Option<String>,
    pub external_systemd_unit: Option<String>,
    pub port: Option<i64>,
    pub reclaim_port: Option<bool>,
    pub health_endpoint: Option<String>,
    pub sync_endpoint: Option<String>,
    pub log_stdout: Option<String>,
    pub log_stderr: Option<String>,
    pub log_max_bytes: Option<u64>,
    /// Files kept per worker log, the live one included.
    pub log_max_files: Option<u32>,
    pub env_file: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    pub secrets: Option<BTreeMap<String, RawSecret>>,
    pub drain_timeout_secs: Option<Secs>,
    pub health_interval_secs: Option<Secs>,
    pub health_start_grace_secs: Option<Secs>,
    pub health_failures_before_restart: Option<i64>,
    pub restart_backoff_max_secs: Option<Secs>,
    pub startup_sync_delay_secs: Option<Secs>,
    pub sync_attempts: Option<i64>,
    pub http_timeout_secs: Option<Secs>,
    pub min_uptime_secs: Option<Secs>,
    pub backoff_reset_secs: Option<Secs>,
    pub max_restarts: Option<i64>,
    pub restart_window_secs: Option<Secs>,
    pub forward_signals: Option<Vec<String>>,
    pub owner_check_secs: Option<Secs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub command: String,
    #[serde(default)]
    pub optional: bool,
    pub timeout_secs: Option<Secs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEscalation {
    pub agent_cooldown_secs: Option<Secs>,
    pub sos_cooldown_secs: Option<Secs>,
    pub critical_threshold_secs: Option<Secs>,
    pub sos_recipient: Option<String>,
    pub sos_telegram_chat_id: Option<String>,
    pub sos_telegram_secret_name: Option<String>,
    pub heal_cooldown_secs: Option<Secs>,
    pub max_heals_per_incident: Option<i64>,
    pub heal_settle_secs: Option<Secs>,
    pub flap_threshold: Option<i64>,
    pub flap_window_secs: Option<Secs>,
    pub notify_retry_secs: Option<Secs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub cloud_command: Option<String>,
    pub local_command: Option<String>,
    pub timeout_secs: Option<Secs>,
    pub guardrails: Option<String>,
    pub log_tail_lines: Option<i64>,
    pub max_prompt_bytes: Option<i64>,
    /// `"diagnose"`, `"propose"` or `"autonomous"`.
    pub mode: Option<String>,
    pub approval_timeout_secs: Option<Secs>,
    pub max_runs_per_incident: Option<i64>,
    pub max_runs_per_day: Option<i64>,
    /// Agent runs in a row that fixed nothing before the agent tier is skipped.
    pub breaker_after: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    pub command: String,
    pub description: Option<String>,
    #[serde(rename = "for")]
    pub for_: Option<Vec<String>>,
    pub approval: Option<String>,
    pub timeout_secs: Option<Secs>,
    pub max_per_day: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbeDefaults {
    pub service_timeout_secs: Option<Secs>,
    pub critical_after_consecutive_failures: Option<i64>,
    pub consecutive_failures_before_escalate: Option<i64>,
    pub k8s_timeout_secs: Option<Secs>,
    pub colima_timeout_secs: Option<Secs>,
    pub concurrency: Option<i64>,
    pub detail_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub enabled: Option<bool>,
    pub bind: Option<String>,
    pub allow_remote: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
    pub file: Option<String>,
    pub max_bytes: Option<u64>,
    /// Files kept, the live one included.
    pub max_files: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub retention_days: Option<Secs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    pub url: String,
    pub interval_secs: Option<Secs>,
}

/// `[limits]` (see `config::limits`).
/// One set of limits as written (`[limits]` or `[limits.<kind>]`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimitSet {
    pub memory_mb: Option<i64>,
    pub processes: Option<i64>,
    pub open_files: Option<i64>,
    pub cpu_secs: Option<i64>,
}

/// `[limits]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub memory_mb: Option<i64>,
    pub processes: Option<i64>,
    pub open_files: Option<i64>,
    pub cpu_secs: Option<i64>,
    pub script: Option<RawLimitSet>,
    pub heal: Option<RawLimitSet>,
    pub agent: Option<RawLimitSet>,
    pub action: Option<RawLimitSet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDigest {
    pub at: String,
    pub channels: Option<Vec<String>>,
    pub always: Option<bool>,
}
