//! What a probe is in config: the fields every kind shares, and one spec type per kind.
//!
//! A kind's spec (its `*Spec` struct, its validation and its [`Kind`] entry) is one file here,
//! `src/config/probe/<kind>.rs`; its check is one file in `src/probe/<kind>.rs`, which this
//! room never imports. Adding a kind: the spec file, its variant in [`ProbeKind`], its entry in
//! [`REGISTRY`] (and its name in [`KINDS`]), and the check's arm in `probe::engine`.

use crate::config::diag::{Diagnostics, Source};
use crate::config::raw::Secs;
use crate::config::tomlx::{self, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::time::Duration;

/// Keys every probe accepts, whatever its kind.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommon {
    pub critical: Option<bool>,
    pub timeout_secs: Option<Secs>,
    pub interval_secs: Option<Secs>,
    pub critical_after_consecutive_failures: Option<i64>,
    pub recover_after: Option<i64>,
    pub depends_on: Option<Vec<String>>,
    pub runbook: Option<String>,
    pub heal: Option<String>,
    pub witness: Option<String>,
    /// `[policy.NAME]` this probe pages through (default: `policy.default`).
    pub policy: Option<String>,
    /// `page` (default) or `ticket`.
    pub severity: Option<String>,
}

pub const COMMON_KEYS: &[&str] = &[
    "critical",
    "timeout_secs",
    "interval_secs",
    "critical_after_consecutive_failures",
    "recover_after",
    "depends_on",
    "runbook",
    "heal",
    "witness",
    "policy",
    "severity",
];

pub mod disk;
pub mod dns;
pub mod http;
#[cfg(feature = "k8s")]
pub mod k8s;
pub mod launchd;
pub mod logfile;
pub mod ping;
pub mod process;
pub mod push;
pub mod redis;
pub mod script;
pub mod systemd;
pub mod tcp;
pub mod tls;

/// Every probe kind the config format knows, by its section name (built into this binary or
/// not: see [`REGISTRY`]).
pub const KINDS: &[&str] = &[
    "http", "tcp", "script", "redis", "launchd", "systemd", "disk", "process", "k8s", "tls", "dns",
    "ping", "logfile", "push",
];

/// A probe's kind and its kind-specific settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProbeKind {
    Http(http::HttpSpec),
    Tcp(tcp::TcpSpec),
    Script(script::ScriptSpec),
    Redis(redis::RedisSpec),
    Launchd(launchd::LaunchdSpec),
    Systemd(systemd::SystemdSpec),
    Disk(disk::DiskSpec),
    Process(process::ProcessSpec),
    Push(push::PushSpec),
    #[cfg(feature = "k8s")]
    K8s(k8s::K8sSpec),
    Tls(tls::TlsSpec),
    Dns(dns::DnsSpec),
    Ping(ping::PingSpec),
    Logfile(logfile::LogfileSpec),
}

impl ProbeKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::Http(_) => "http",
            ProbeKind::Tcp(_) => "tcp",
            ProbeKind::Script(_) => "script",
            ProbeKind::Redis(_) => "redis",
            ProbeKind::Launchd(_) => "launchd",
            ProbeKind::Systemd(_) => "systemd",
            ProbeKind::Disk(_) => "disk",
            ProbeKind::Process(_) => "process",
            ProbeKind::Push(_) => "push",
            #[cfg(feature = "k8s")]
            ProbeKind::K8s(_) => "k8s",
            ProbeKind::Tls(_) => "tls",
            ProbeKind::Dns(_) => "dns",
            ProbeKind::Ping(_) => "ping",
            ProbeKind::Logfile(_) => "logfile",
        }
    }

    fn spec(&self) -> &dyn KindSpec {
        match self {
            ProbeKind::Http(s) => s,
            ProbeKind::Tcp(s) => s,
            ProbeKind::Script(s) => s,
            ProbeKind::Redis(s) => s,
            ProbeKind::Launchd(s) => s,
            ProbeKind::Systemd(s) => s,
            ProbeKind::Disk(s) => s,
            ProbeKind::Process(s) => s,
            ProbeKind::Push(s) => s,
            #[cfg(feature = "k8s")]
            ProbeKind::K8s(s) => s,
            ProbeKind::Tls(s) => s,
            ProbeKind::Dns(s) => s,
            ProbeKind::Ping(s) => s,
            ProbeKind::Logfile(s) => s,
        }
    }

    pub fn validate(&self, c: &mut Check<'_>) {
        self.spec().validate(c)
    }

    pub fn programs(&self) -> Vec<(String, &'static str)> {
        self.spec().programs()
    }

    pub fn available(&self) -> Result<(), String> {
        self.spec().available()
    }

    /// Secret values this probe knows (passwords), for redaction.
    pub fn secrets(&self) -> Vec<String> {
        self.spec().secrets()
    }
}

/// One built-in probe kind: its section name and the parser of its kind-specific keys. Each
/// kind's file defines its own (`tcp::KIND`, …).
pub struct Kind {
    pub name: &'static str,
    pub parse: fn(&Source, &str, &Value<'_>, &mut Diagnostics) -> Option<ProbeKind>,
}

/// The kinds built into this binary.
pub const REGISTRY: &[Kind] = &[
    http::KIND,
    tcp::KIND,
    script::KIND,
    redis::KIND,
    launchd::KIND,
    systemd::KIND,
    disk::KIND,
    process::KIND,
    push::KIND,
    #[cfg(feature = "k8s")]
    k8s::KIND,
    tls::KIND,
    dns::KIND,
    ping::KIND,
    logfile::KIND,
];

/// Deserialize a kind's own keys from a `[KIND.NAME]` section (the common keys are allowed
/// beside them and read separately).
pub fn section<T: DeserializeOwned>(
    src: &Source,
    path: &str,
    rest: &Value<'_>,
    diags: &mut Diagnostics,
) -> Option<T> {
    tomlx::section(src, path, rest, COMMON_KEYS, diags)
}

/// Deserialize the kind-specific part of a `[KIND.NAME]` section.
pub fn parse_kind(
    kind: &str,
    src: &Source,
    path: &str,
    rest: &Value<'_>,
    diags: &mut Diagnostics,
) -> Option<ProbeKind> {
    match REGISTRY.iter().find(|k| k.name == kind) {
        Some(k) => (k.parse)(src, path, rest, diags),
        None => {
            diags.error(
                src,
                Some(rest.span()),
                path,
                format!("probe kind `{kind}` is not built into this binary"),
            );
            None
        }
    }
}

/// Behaviour each kind's spec provides to validation.
pub trait KindSpec {
    /// Semantic checks beyond types; report through `c`.
    fn validate(&self, c: &mut Check<'_>);
    /// Programs this probe runs, with the key that names them, for PATH resolution.
    fn programs(&self) -> Vec<(String, &'static str)> {
        Vec::new()
    }
    /// `Err(reason)` when this probe cannot run on this platform.
    fn available(&self) -> Result<(), String> {
        Ok(())
    }
    /// Secret values (passwords, tokens) this spec carries or reads, for redaction.
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Reports problems at the position of a key inside one probe's section.
pub struct Check<'a> {
    pub src: &'a Source,
    pub path: String,
    pub value: &'a Value<'a>,
    pub diags: &'a mut Diagnostics,
}

impl Check<'_> {
    pub fn error(&mut self, key: &str, msg: impl Into<String>) {
        let span = tomlx::key_span(self.value, key);
        self.diags
            .error(self.src, Some(span), &tomlx::join(&self.path, key), msg);
    }
    pub fn warning(&mut self, key: &str, msg: impl Into<String>) {
        let span = tomlx::key_span(self.value, key);
        self.diags
            .warning(self.src, Some(span), &tomlx::join(&self.path, key), msg);
    }
}

/// What a probe's heal is: a shell command, or the platform's restart of a launchd/systemd job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Heal {
    Command(String),
    Restart,
}

/// A validated probe, as the engine runs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeConfig {
    /// Unique across all kinds and files; what `depends_on`, `witness` and the CLI use.
    pub name: String,
    #[serde(flatten)]
    pub kind: ProbeKind,
    pub critical: bool,
    #[serde(serialize_with = "crate::config::ser_secs", rename = "timeout_secs")]
    pub timeout: Duration,
    #[serde(serialize_with = "crate::config::ser_secs", rename = "interval_secs")]
    pub interval: Duration,
    /// Failures in a row before this probe counts as failing (debounce).
    #[serde(rename = "critical_after_consecutive_failures")]
    pub critical_after: NonZeroU32,
    /// Passes in a row before a failing probe counts as passing again.
    pub recover_after: NonZeroU32,
    pub depends_on: Vec<String>,
    pub runbook: Option<String>,
    pub heal: Option<Heal>,
    pub witness: Option<String>,
    /// `file:line` where the probe is defined, for messages.
    pub defined_at: String,
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    #[test]
    fn every_built_in_kind_is_registered_once_under_a_known_name() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|k| k.name).collect();
        for n in &names {
            assert!(KINDS.contains(n), "{n} is registered but not in KINDS");
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len(), "a kind is registered twice");
        let built = if cfg!(feature = "k8s") {
            KINDS.len()
        } else {
            KINDS.len() - 1
        };
        assert_eq!(REGISTRY.len(), built);
    }
}
