//! What a probe is in config: the fields every kind shares, and one spec type per kind.
//! A kind plugs in as one file (`src/probe/<kind>.rs`) plus one arm in [`parse_kind`].

use crate::config::diag::{Diagnostics, Source};
use crate::config::raw::Secs;
use crate::config::tomlx::{self, Value};
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
];

/// Every probe kind, by its section name.
pub const KINDS: &[&str] = &[
    "http", "tcp", "script", "redis", "launchd", "systemd", "disk", "process", "k8s",
];

/// A probe's kind and its kind-specific settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProbeKind {
    Http(super::http::HttpSpec),
    Tcp(super::tcp::TcpSpec),
    Script(super::script::ScriptSpec),
    Redis(super::redis::RedisSpec),
    Launchd(super::launchd::LaunchdSpec),
    Systemd(super::systemd::SystemdSpec),
    Disk(super::disk::DiskSpec),
    Process(super::process::ProcessSpec),
    #[cfg(feature = "k8s")]
    K8s(super::k8s::K8sSpec),
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
            #[cfg(feature = "k8s")]
            ProbeKind::K8s(_) => "k8s",
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
            #[cfg(feature = "k8s")]
            ProbeKind::K8s(s) => s,
        }
    }

    /// Run this probe's check once. The engine bounds it by the probe's timeout (see
    /// [`ProbeKind::bounds_itself`]) and answers `error` first when the kind is unavailable here.
    pub async fn check(&self, ctx: &super::engine::ProbeCtx) -> super::Outcome {
        match self {
            ProbeKind::Http(s) => super::http::check(s, ctx).await,
            ProbeKind::Tcp(s) => super::tcp::check(s, ctx).await,
            ProbeKind::Script(s) => super::script::check(s, ctx).await,
            ProbeKind::Redis(s) => super::redis::check(s, ctx).await,
            ProbeKind::Launchd(s) => super::launchd::check(s, ctx).await,
            ProbeKind::Systemd(s) => super::systemd::check(s, ctx).await,
            ProbeKind::Disk(s) => super::disk::check(s, ctx).await,
            ProbeKind::Process(s) => super::process::check(s, ctx).await,
            #[cfg(feature = "k8s")]
            ProbeKind::K8s(s) => s.check(ctx.k8s(), ctx.timeout).await,
        }
    }

    /// Kinds that run a subprocess enforce the timeout themselves through [`crate::proc`] (which
    /// stops the whole process group); the engine then only adds a backstop, because dropping a
    /// running subprocess future would leave the group behind.
    pub fn bounds_itself(&self) -> bool {
        matches!(
            self,
            ProbeKind::Script(_) | ProbeKind::Launchd(_) | ProbeKind::Systemd(_)
        ) || self.is_k8s()
            || (cfg!(not(target_os = "linux")) && matches!(self, ProbeKind::Process(_)))
    }

    /// `k8s` checks apply the timeout themselves, with a more specific message.
    fn is_k8s(&self) -> bool {
        #[cfg(feature = "k8s")]
        if matches!(self, ProbeKind::K8s(_)) {
            return true;
        }
        false
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

/// Deserialize the kind-specific part of a `[KIND.NAME]` section.
pub fn parse_kind(
    kind: &str,
    src: &Source,
    path: &str,
    rest: &Value<'_>,
    diags: &mut Diagnostics,
) -> Option<ProbeKind> {
    let extra = COMMON_KEYS;
    match kind {
        "http" => tomlx::section(src, path, rest, extra, diags).map(ProbeKind::Http),
        "tcp" => tomlx::section(src, path, rest, extra, diags).map(ProbeKind::Tcp),
        "script" => tomlx::section(src, path, rest, extra, diags).map(ProbeKind::Script),
        "redis" => tomlx::section(src, path, rest, extra, diags).map(ProbeKind::Redis),
        "launchd" => tomlx::section(src, path, rest, extra, diags).map(ProbeKind::Launchd),
        "systemd" => tomlx::section(src, path, rest, extra, diags).map(ProbeKind::Systemd),
        "disk" => tomlx::section(src, path, rest, extra, diags).map(ProbeKind::Disk),
        "process" => tomlx::section(src, path, rest, extra, diags).map(ProbeKind::Process),
        #[cfg(feature = "k8s")]
        "k8s" => tomlx::section(src, path, rest, extra, diags).map(ProbeKind::K8s),
        other => {
            diags.error(
                src,
                Some(rest.span()),
                path,
                format!("probe kind `{other}` is not built into this binary"),
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
