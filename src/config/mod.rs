//! Configuration: two TOML files (the main config and the probes file) → one validated [`Config`].
//!
//! Loading never stops at the first problem: every section is checked on its own and every
//! problem is reported with file, line, column and key path. `talon validate` and hot reload call
//! the same [`load`].
//!
//! Where things are: [`load`] (`load.rs`) finds, reads and splits the files and runs the build;
//! `build.rs` turns the raw structs ([`raw`]) into a [`Config`] section by section with the
//! checks of `builder.rs`, each section's validated type and builder in its own file —
//! `worker.rs`, `escalation.rs` (`[escalation]`, `[agent]`), `probes.rs` (`[probes]` and the
//! probe set: names, references, cycles), `daemon.rs` (`[health]`, `[log]`, `[store]`,
//! `[heartbeat]`), `digest.rs` (`[digest]`); `programs.rs` resolves every program on the compiled PATH ([`path`]). Every
//! default is in [`defaults`]; probe and channel kinds' specs are in [`probe`] and [`channel`].

mod actions;
mod build;
mod builder;
pub mod channel;
pub mod cron;
mod daemon;
pub mod defaults;
pub mod diag;
pub mod digest;
pub mod envfile;
mod escalation;
pub mod limits;
mod load;
pub mod path;
pub mod policy;
pub mod probe;
mod probes;
mod programs;
pub mod raw;
pub mod tomlx;
mod worker;

pub use actions::{
    ActionConfig, AgentMode, Approval, BUILTIN_PREFIXES, RESTART_WORKER, pattern_covers,
};
pub use daemon::{HealthConfig, HeartbeatConfig, LogConfig, StoreConfig};
pub use defaults::{config_path as default_config_path, state_dir as default_state_dir};
pub use digest::DigestConfig;
pub use escalation::{AgentConfig, EscalationConfig};
pub use load::load;
pub use probes::{ProbeDefaults, find_cycle};
pub use worker::{SecretConfig, WorkerConfig};

use crate::redact::{Redactor, is_secret_name};
use channel::ChannelConfig;
use diag::Diagnostics;
use path::SearchPath;
use probe::ProbeConfig;
use serde::{Serialize, Serializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default config, embedded so that bare `talon` always has something to run. `talon init`
/// writes this very text.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");
/// The default probes file written by `talon init`.
pub const DEFAULT_SERVICES: &str = include_str!("../../config/services.toml");
/// Name shown for the embedded default config in messages.
pub const EMBEDDED_NAME: &str = "<embedded default config>";

/// Serialize a `Duration` as seconds (for `talon config` and JSON output).
pub fn ser_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Where the config came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sources {
    /// The main config file; `None` when the embedded default is in use.
    pub main: Option<PathBuf>,
    /// The probes file (it may not exist yet).
    pub services: PathBuf,
    pub services_exists: bool,
}

/// The validated configuration. Only this type is used at run time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub sources: Sources,
    /// `host = "name"`: the name Talon shows for this host everywhere (notices, Alertmanager's
    /// `host` label, `/status`, the agent's prompt); `None` = the system's host name
    /// ([`Config::host_name`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(serialize_with = "ser_secs", rename = "check_interval_secs")]
    pub check_interval: Duration,
    pub heal_script: Option<String>,
    #[serde(serialize_with = "ser_secs", rename = "heal_timeout_secs")]
    pub heal_timeout: Duration,
    /// Heal run when a witness classifies a failure as a bridge/split-brain fault.
    pub bridge_heal: Option<String>,
    pub state_dir: PathBuf,
    pub search_path: SearchPath,
    /// Regular expressions whose matches are redacted (validated).
    pub redact: Vec<String>,
    /// Whether the built-in secret patterns (`redact::BUILTIN_KINDS`) apply too (default on).
    pub redact_builtin: bool,
    pub worker: Option<WorkerConfig>,
    pub escalation: EscalationConfig,
    pub agent: AgentConfig,
    #[serde(rename = "probes")]
    pub probe_defaults: ProbeDefaults,
    pub health: HealthConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub heartbeat: Option<HeartbeatConfig>,
    /// `[limits]`: rlimits for the commands Talon runs (left out of `talon config` when empty).
    #[serde(skip_serializing_if = "limits::LimitsConfig::is_empty")]
    pub limits: limits::LimitsConfig,
    pub digest: Option<DigestConfig>,
    pub notify: Vec<ChannelConfig>,
    /// `[actions.NAME]` (the built-ins are derived: `crate::escalate::catalogue`).
    pub actions: Vec<ActionConfig>,
    #[serde(rename = "probe")]
    pub probes: Vec<ProbeConfig>,
    /// `[policy.*]`, probes' `policy`/`severity`, `[[maintenance]]` (`docs/notify.md`).
    #[serde(flatten)]
    pub policy: policy::PolicyConfig,
}

/// The system's host name (`gethostname`), `unknown-host` when it cannot be read.
pub fn system_host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

impl Config {
    /// The name Talon shows for this host: `host` when set (`"${VAR}"`: that environment
    /// variable, when it is set and not empty), else the system's host name.
    pub fn host_name(&self) -> String {
        match self.host.as_deref() {
            Some(h) => match envfile::env_ref(h) {
                Some(var) => std::env::var(var)
                    .ok()
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(system_host_name),
                None => h.to_string(),
            },
            None => system_host_name(),
        }
    }

    /// The [`Redactor`] for everything the config itself knows: the `redact` patterns (and the
    /// built-in secret patterns unless `redact_builtin = false`), every probe's secrets
    /// (`ProbeKind::secrets`: Redis passwords, secret-named HTTP header values), the secrets
    /// notifier channels can resolve without running anything (`token_env`, `token_file`,
    /// `hmac_secret_env`, the Slack webhook URL) and secret-named `[worker.env]` values. The
    /// worker's `[worker.secrets]` values are learned when the supervisor resolves them. Tokens fetched by a
    /// `token_command` are learned when they are fetched.
    pub fn redactor(&self) -> Redactor {
        let mut secrets: Vec<String> = Vec::new();
        for p in &self.probes {
            secrets.extend(p.kind.secrets());
        }
        for ch in &self.notify {
            secrets.extend(ch.known_secrets());
        }
        if let Some(w) = &self.worker {
            secrets.extend(
                w.env
                    .iter()
                    .filter(|(k, _)| is_secret_name(k))
                    .map(|(_, v)| v.clone()),
            );
        }
        // Patterns were validated when the config was loaded; an invalid one cannot get here,
        // but if it did, dropping it would silently leak, so fall back to each valid one.
        let r = match Redactor::new(secrets.clone(), &self.redact) {
            Ok(r) => r,
            Err(_) => {
                let valid: Vec<String> = self
                    .redact
                    .iter()
                    .filter(|p| regex::Regex::new(p).is_ok())
                    .cloned()
                    .collect();
                Redactor::new(secrets, &valid).unwrap_or_default()
            }
        };
        r.with_builtin(self.redact_builtin)
    }
}

/// How to find and check the config.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config` or `$TALON_CONFIG`: must exist when given.
    pub config: Option<PathBuf>,
    /// Check what depends on this host: PATH resolution, platform availability, dirs.
    pub resolve: bool,
    /// PATH inherited from the environment (None = read `$PATH`).
    pub inherited_path: Option<String>,
    /// Home directory (None = `$HOME`).
    pub home: Option<PathBuf>,
}

/// The result of a load: a config when there were no errors, and every diagnostic.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Option<Config>,
    pub diags: Diagnostics,
    pub main_path: Option<PathBuf>,
    pub services_path: Option<PathBuf>,
    /// Resolved programs: (program, key, resolved path or None).
    pub programs: Vec<ResolvedProgram>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedProgram {
    pub program: String,
    pub key: String,
    pub path: Option<PathBuf>,
}

/// `~` and `~/...` expand to the home dir; relative paths are taken from `base` (the config's dir).
pub fn expand_path(p: &str, home: Option<&Path>, base: Option<&Path>) -> PathBuf {
    let expanded = if p == "~" {
        home.map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(p))
    } else if let Some(rest) = p.strip_prefix("~/") {
        match home {
            Some(h) => h.join(rest),
            None => PathBuf::from(p),
        }
    } else {
        PathBuf::from(p)
    };
    match base {
        Some(b) if expanded.is_relative() => b.join(expanded),
        _ => expanded,
    }
}
