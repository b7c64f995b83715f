//! Configuration: two TOML files (the main config and the probes file) → one validated [`Config`].
//!
//! Loading never stops at the first problem: every section is checked on its own and every
//! problem is reported with file, line, column and key path. `talon validate` and hot reload call
//! the same [`load`].

pub mod channel;
pub mod diag;
pub mod envfile;
pub mod path;
pub mod probe;
pub mod raw;
pub mod tomlx;

use crate::redact::{Redactor, is_secret_name};
use channel::ChannelConfig;
use diag::{Diagnostics, Source, suggest};
use path::{SearchPath, program_of_shell};
use probe::{COMMON_KEYS, Check, Heal, KINDS, ProbeConfig, RawCommon};
use raw::{RawMain, Secs};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tomlx::Value;

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
    pub worker: Option<WorkerConfig>,
    pub escalation: EscalationConfig,
    pub agent: AgentConfig,
    #[serde(rename = "probes")]
    pub probe_defaults: ProbeDefaults,
    pub health: HealthConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub heartbeat: Option<HeartbeatConfig>,
    pub notify: Vec<ChannelConfig>,
    #[serde(rename = "probe")]
    pub probes: Vec<ProbeConfig>,
}

impl Config {
    /// The [`Redactor`] for everything the config itself knows: the `redact` patterns, every probe's secrets
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
        match Redactor::new(secrets.clone(), &self.redact) {
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerConfig {
    pub dir: Option<PathBuf>,
    pub command: Vec<String>,
    pub external_launchd_label: Option<String>,
    pub external_systemd_unit: Option<String>,
    pub port: Option<u16>,
    /// Stop a stale listener on `port` before spawning (never clients).
    pub reclaim_port: bool,
    pub health_endpoint: Option<String>,
    pub sync_endpoint: Option<String>,
    pub log_stdout: Option<PathBuf>,
    pub log_stderr: Option<PathBuf>,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    pub env_file: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, SecretConfig>,
    #[serde(serialize_with = "ser_secs", rename = "drain_timeout_secs")]
    pub drain_timeout: Duration,
    #[serde(serialize_with = "ser_secs", rename = "health_interval_secs")]
    pub health_interval: Duration,
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretConfig {
    pub command: String,
    pub optional: bool,
    #[serde(serialize_with = "ser_secs", rename = "timeout_secs")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationConfig {
    #[serde(serialize_with = "ser_secs", rename = "agent_cooldown_secs")]
    pub agent_cooldown: Duration,
    #[serde(serialize_with = "ser_secs", rename = "sos_cooldown_secs")]
    pub sos_cooldown: Duration,
    #[serde(serialize_with = "ser_secs", rename = "critical_threshold_secs")]
    pub critical_threshold: Duration,
    pub sos_recipient: Option<String>,
    pub sos_telegram_chat_id: Option<String>,
    pub sos_telegram_secret_name: Option<String>,
    #[serde(serialize_with = "ser_secs", rename = "heal_cooldown_secs")]
    pub heal_cooldown: Duration,
    pub max_heals_per_incident: NonZeroU32,
    #[serde(serialize_with = "ser_secs", rename = "heal_settle_secs")]
    pub heal_settle: Duration,
    /// State changes within `flap_window` that make a probe `flapping`.
    pub flap_threshold: NonZeroU32,
    #[serde(serialize_with = "ser_secs", rename = "flap_window_secs")]
    pub flap_window: Duration,
    /// First retry delay of an undelivered notification (doubles per attempt, capped).
    #[serde(serialize_with = "ser_secs", rename = "notify_retry_secs")]
    pub notify_retry: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentConfig {
    pub cloud_command: Option<String>,
    pub local_command: Option<String>,
    #[serde(serialize_with = "ser_secs", rename = "timeout_secs")]
    pub timeout: Duration,
    pub guardrails: Option<String>,
    pub log_tail_lines: u32,
    pub max_prompt_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeDefaults {
    #[serde(serialize_with = "ser_secs", rename = "service_timeout_secs")]
    pub service_timeout: Duration,
    pub critical_after_consecutive_failures: NonZeroU32,
    pub consecutive_failures_before_escalate: NonZeroU32,
    #[serde(serialize_with = "ser_secs", rename = "k8s_timeout_secs")]
    pub k8s_timeout: Duration,
    /// Probes run at once at most.
    pub concurrency: NonZeroU32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthConfig {
    pub enabled: bool,
    pub bind: SocketAddr,
    pub allow_remote: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogConfig {
    pub level: String,
    pub file: PathBuf,
    pub max_bytes: u64,
    pub max_files: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreConfig {
    #[serde(serialize_with = "ser_secs")]
    pub retention: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeartbeatConfig {
    pub url: String,
    #[serde(serialize_with = "ser_secs", rename = "interval_secs")]
    pub interval: Duration,
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

/// Default main config path: `~/.config/talon/config.toml` (XDG_CONFIG_HOME respected).
pub fn default_config_path(home: Option<&Path>) -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("talon/config.toml"));
    }
    home.map(|h| h.join(".config/talon/config.toml"))
}

/// Default state dir: `$XDG_STATE_HOME/talon` or `~/.local/state/talon`.
pub fn default_state_dir(home: Option<&Path>) -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("talon");
    }
    match home {
        Some(h) => h.join(".local/state/talon"),
        None => PathBuf::from("/var/lib/talon"),
    }
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

/// Read a config file, turning every way it can be unreadable into one diagnostic.
fn read_source(path: &Path, diags: &mut Diagnostics) -> Option<Source> {
    let name = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            diags.file_error(&name, "is a directory, not a config file");
            return None;
        }
        Ok(_) => {}
        Err(e) => {
            diags.file_error(&name, format!("cannot read: {}", io_reason(&e)));
            return None;
        }
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(Source::file(path, text)),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let text = String::from_utf8_lossy(&e.into_bytes()[..at]).into_owned();
                let src = Source::file(path, text);
                let end = src.text.len();
                diags.error(&src, Some(end..end), "", "file is not valid UTF-8 text");
                None
            }
        },
        Err(e) => {
            diags.file_error(&name, format!("cannot read: {}", io_reason(&e)));
            None
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

/// Find, read, parse and validate both config files.
pub fn load(opts: &LoadOptions) -> Loaded {
    let home = opts
        .home
        .clone()
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from));
    let home = home.as_deref();
    let inherited = opts
        .inherited_path
        .clone()
        .or_else(|| std::env::var("PATH").ok());
    let mut diags = Diagnostics::default();
    let mut loaded = Loaded {
        config: None,
        diags: Diagnostics::default(),
        main_path: None,
        services_path: None,
        programs: Vec::new(),
    };

    // 1. The main config: explicit (must exist), else the default path if present, else embedded.
    let main_src = match &opts.config {
        Some(p) => {
            loaded.main_path = Some(p.clone());
            if !p.exists() && std::fs::symlink_metadata(p).is_err() {
                diags.file_error(
                    &p.display().to_string(),
                    "config file does not exist (create one with `talon init`, or drop --config/$TALON_CONFIG to use the embedded default)",
                );
                None
            } else {
                read_source(p, &mut diags)
            }
        }
        None => match default_config_path(home).filter(|p| p.exists()) {
            Some(p) => {
                loaded.main_path = Some(p.clone());
                read_source(&p, &mut diags)
            }
            None => Some(Source::embedded(EMBEDDED_NAME, DEFAULT_CONFIG)),
        },
    };
    let Some(main_src) = main_src else {
        loaded.diags = diags;
        return loaded;
    };
    // Shared, not copied, by every probe defined in the file.
    let main_src = std::sync::Arc::new(main_src);
    let Some(main_doc) = tomlx::parse(&main_src, &mut diags) else {
        loaded.diags = diags;
        return loaded;
    };
    let main_base = main_src
        .path
        .as_ref()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf);

    // 2. Split the main doc into probe sections, notify channels and the rest.
    let mut probes_raw: Vec<ProbeDraft> = Vec::new();
    let mut channels: Vec<ChannelConfig> = Vec::new();
    let mut rest_entries = Vec::new();
    if let toml::de::DeValue::Table(t) = main_doc.get_ref() {
        for (k, v) in t.iter() {
            let key: &str = k.get_ref();
            if KINDS.contains(&key) {
                parse_probe_kind(&main_src, key, v, &mut probes_raw, &mut diags);
            } else if key == "notify" {
                parse_notify(&main_src, v, &mut channels, &mut diags);
            } else {
                // Deserialize each top-level entry alone so one bad section does not hide another.
                let one = tomlx::table_of(v.span(), vec![(k.clone(), v.clone())]);
                if tomlx::section::<RawMain>(&main_src, "", &one, KINDS, &mut diags).is_some() {
                    rest_entries.push((k.clone(), v.clone()));
                }
            }
        }
    }
    let rest = tomlx::table_of(main_doc.span(), rest_entries);
    let raw: RawMain = tomlx::section(&main_src, "", &rest, &[], &mut diags).unwrap_or_default();
    let main_root = &main_doc;

    // 3. The probes file.
    let services_path = match &raw.services_file {
        Some(s) => expand_path(s, home, main_base.as_deref()),
        None => home
            .map(|h| h.join(".config/talon/services.toml"))
            .unwrap_or_else(|| PathBuf::from("services.toml")),
    };
    loaded.services_path = Some(services_path.clone());
    let services_exists = services_path.exists();
    let services_src = if services_exists {
        read_source(&services_path, &mut diags).map(std::sync::Arc::new)
    } else {
        if raw.services_file.is_some() {
            let span = tomlx::path_span(main_root, "services_file");
            diags.warning(
                &main_src,
                span,
                "services_file",
                format!(
                    "{} does not exist yet; no probes are loaded from it until it does",
                    services_path.display()
                ),
            );
        }
        None
    };
    if let Some(src) = &services_src
        && let Some(doc) = tomlx::parse(src, &mut diags)
        && let toml::de::DeValue::Table(t) = doc.get_ref()
    {
        for (k, v) in t.iter() {
            let key: &str = k.get_ref();
            if KINDS.contains(&key) {
                parse_probe_kind(src, key, v, &mut probes_raw, &mut diags);
            } else {
                let mut msg = format!(
                    "unknown section `{key}`: a probes file holds only probe kinds ({})",
                    KINDS.join(", ")
                );
                if let Some(s) = suggest(key, KINDS.iter().copied()) {
                    msg = format!("unknown probe kind `{key}` (did you mean `{s}`?)");
                }
                diags.error(src, Some(k.span()), key, msg);
            }
        }
    }

    // 4. Build and validate.
    let mut b = Builder {
        src: &main_src,
        root: main_root,
        diags: &mut diags,
        home,
        base: main_base.as_deref(),
    };
    let config = b.build(
        raw,
        probes_raw,
        channels,
        Sources {
            main: loaded.main_path.clone(),
            services: services_path,
            services_exists,
        },
        inherited.as_deref(),
    );
    let services_doc_src = services_src;
    if opts.resolve {
        loaded.programs = resolve_programs(
            &config,
            &main_src,
            main_root,
            services_doc_src.as_deref(),
            &mut diags,
        );
    }
    diags.sort();
    loaded.config = (!diags.has_errors()).then_some(config);
    loaded.diags = diags;
    loaded
}

/// A probe as parsed, before defaults and cross-probe checks.
struct ProbeDraft {
    name: String,
    kind_name: String,
    common: RawCommon,
    kind: probe::ProbeKind,
    src: std::sync::Arc<Source>,
    span: std::ops::Range<usize>,
    /// Owned copy of the section, for key positions in later checks.
    section_text_spans: BTreeMap<String, std::ops::Range<usize>>,
}

impl ProbeDraft {
    fn key_span(&self, key: &str) -> Option<std::ops::Range<usize>> {
        self.section_text_spans
            .get(key)
            .cloned()
            .or(Some(self.span.clone()))
    }
    fn path(&self) -> String {
        format!("{}.{}", self.kind_name, self.name)
    }
}

fn parse_probe_kind(
    src: &std::sync::Arc<Source>,
    kind: &str,
    v: &Value<'_>,
    out: &mut Vec<ProbeDraft>,
    diags: &mut Diagnostics,
) {
    let toml::de::DeValue::Table(t) = v.get_ref() else {
        diags.error(
            src,
            Some(v.span()),
            kind,
            format!("`{kind}` must be a table of probes, e.g. [{kind}.NAME]"),
        );
        return;
    };
    for (name, section) in t.iter() {
        let name_s: &str = name.get_ref();
        let path = format!("{kind}.{name_s}");
        let toml::de::DeValue::Table(st) = section.get_ref() else {
            diags.error(
                src,
                Some(section.span()),
                &path,
                format!("must be a table: [{path}]"),
            );
            continue;
        };
        if name_s.is_empty()
            || !name_s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            diags.error(
                src,
                Some(name.span()),
                &path,
                "probe names use letters, digits, `_`, `-` and `.` only",
            );
            continue;
        }
        let (common_v, rest_v) = tomlx::split_table(section, COMMON_KEYS);
        let common: Option<RawCommon> = tomlx::section(src, &path, &common_v, &[], diags);
        let kind_spec = probe::parse_kind(kind, src, &path, &rest_v, diags);
        let spans = st
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), v.span()))
            .collect();
        if let (Some(common), Some(kind_spec)) = (common, kind_spec) {
            let mut check = Check {
                src,
                path: path.clone(),
                value: section,
                diags,
            };
            kind_spec.validate(&mut check);
            out.push(ProbeDraft {
                name: name_s.to_string(),
                kind_name: kind.to_string(),
                common,
                kind: kind_spec,
                src: src.clone(),
                span: name.span(),
                section_text_spans: spans,
            });
        }
    }
}

fn parse_notify(
    src: &Source,
    v: &Value<'_>,
    out: &mut Vec<ChannelConfig>,
    diags: &mut Diagnostics,
) {
    let toml::de::DeValue::Table(t) = v.get_ref() else {
        diags.error(
            src,
            Some(v.span()),
            "notify",
            "`notify` must be a table of channels, e.g. [notify.NAME]",
        );
        return;
    };
    for (name, section) in t.iter() {
        let path = format!("notify.{}", name.get_ref());
        if let Some(c) = channel::parse_channel(src, &path, name.get_ref(), section, diags) {
            out.push(c);
        }
    }
}

struct Builder<'a, 'i> {
    src: &'a Source,
    root: &'a Value<'i>,
    diags: &'a mut Diagnostics,
    home: Option<&'a Path>,
    base: Option<&'a Path>,
}

impl Builder<'_, '_> {
    fn err(&mut self, key: &str, msg: impl Into<String>) {
        let span = tomlx::nearest_span(self.root, key);
        self.diags.error(self.src, span, key, msg);
    }

    fn warn(&mut self, key: &str, msg: impl Into<String>) {
        let span = tomlx::nearest_span(self.root, key);
        self.diags.warning(self.src, span, key, msg);
    }

    /// A positive duration, or the default.
    fn secs(&mut self, key: &str, v: Option<Secs>, default: f64) -> Duration {
        match v {
            None => Duration::from_secs_f64(default),
            Some(Secs(s)) if s.is_finite() && s > 0.0 && s < 1e9 => Duration::from_secs_f64(s),
            Some(Secs(s)) => {
                self.err(
                    key,
                    format!("must be a positive number of seconds, got {s}"),
                );
                Duration::from_secs_f64(default)
            }
        }
    }

    /// A count of at least 1, or the default.
    fn count(&mut self, key: &str, v: Option<i64>, default: u32) -> NonZeroU32 {
        let d = NonZeroU32::new(default).expect("defaults are at least 1");
        match v {
            None => d,
            Some(n) if n >= 1 && n <= u32::MAX as i64 => NonZeroU32::new(n as u32).unwrap_or(d),
            Some(n) => {
                self.err(key, format!("must be at least 1, got {n}"));
                d
            }
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        expand_path(p, self.home, self.base)
    }

    fn url(&mut self, key: &str, u: &str) {
        match reqwest::Url::parse(u) {
            Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {}
            Ok(_) => self.err(
                key,
                format!("`{u}` must be an http:// or https:// URL with a host"),
            ),
            Err(e) => self.err(key, format!("`{u}` is not a valid URL: {e}")),
        }
    }

    fn build(
        &mut self,
        raw: RawMain,
        drafts: Vec<ProbeDraft>,
        notify: Vec<ChannelConfig>,
        sources: Sources,
        inherited_path: Option<&str>,
    ) -> Config {
        let check_interval = self.secs("check_interval_secs", raw.check_interval_secs, 60.0);
        let heal_timeout = self.secs("heal_timeout_secs", raw.heal_timeout_secs, 300.0);
        for (key, v) in [
            ("heal_script", &raw.heal_script),
            ("bridge_heal", &raw.bridge_heal),
        ] {
            if v.as_ref().is_some_and(|s| s.trim().is_empty()) {
                self.err(key, "must not be empty (leave the key out instead)");
            }
        }
        let extra: Vec<PathBuf> = raw.path.iter().flatten().map(|p| self.path(p)).collect();
        let search_path = SearchPath::compile(&extra, self.home, inherited_path);
        let mut redact = Vec::new();
        for r in raw.redact.iter().flatten() {
            match regex::Regex::new(r) {
                Ok(_) => redact.push(r.clone()),
                Err(e) => self.err("redact", format!("invalid regular expression `{r}`: {e}")),
            }
        }
        let state_dir = raw
            .state_dir
            .as_deref()
            .map(|p| self.path(p))
            .unwrap_or_else(|| default_state_dir(self.home));

        let p = raw.probes.unwrap_or_default();
        if p.colima_timeout_secs.is_some() {
            self.warn(
                "probes.colima_timeout_secs",
                "deprecated: use k8s_timeout_secs or a probe's own timeout_secs",
            );
        }
        let probe_defaults = ProbeDefaults {
            service_timeout: self.secs("probes.service_timeout_secs", p.service_timeout_secs, 5.0),
            critical_after_consecutive_failures: self.count(
                "probes.critical_after_consecutive_failures",
                p.critical_after_consecutive_failures,
                2,
            ),
            consecutive_failures_before_escalate: self.count(
                "probes.consecutive_failures_before_escalate",
                p.consecutive_failures_before_escalate,
                3,
            ),
            k8s_timeout: self.secs(
                "probes.k8s_timeout_secs",
                p.k8s_timeout_secs.or(p.colima_timeout_secs),
                10.0,
            ),
            concurrency: self.count("probes.concurrency", p.concurrency, 64),
        };

        let e = raw.escalation.unwrap_or_default();
        let escalation = EscalationConfig {
            agent_cooldown: self.secs(
                "escalation.agent_cooldown_secs",
                e.agent_cooldown_secs,
                600.0,
            ),
            sos_cooldown: self.secs("escalation.sos_cooldown_secs", e.sos_cooldown_secs, 14400.0),
            critical_threshold: self.secs(
                "escalation.critical_threshold_secs",
                e.critical_threshold_secs,
                900.0,
            ),
            sos_recipient: e.sos_recipient,
            sos_telegram_chat_id: e.sos_telegram_chat_id,
            sos_telegram_secret_name: e.sos_telegram_secret_name,
            heal_cooldown: self.secs("escalation.heal_cooldown_secs", e.heal_cooldown_secs, 300.0),
            max_heals_per_incident: self.count(
                "escalation.max_heals_per_incident",
                e.max_heals_per_incident,
                3,
            ),
            heal_settle: self.secs("escalation.heal_settle_secs", e.heal_settle_secs, 10.0),
            flap_threshold: self.count("escalation.flap_threshold", e.flap_threshold, 6),
            flap_window: self.secs("escalation.flap_window_secs", e.flap_window_secs, 600.0),
            notify_retry: self.secs("escalation.notify_retry_secs", e.notify_retry_secs, 30.0),
        };

        let a = raw.agent.unwrap_or_default();
        let agent = AgentConfig {
            cloud_command: a.cloud_command,
            local_command: a.local_command,
            timeout: self.secs("agent.timeout_secs", a.timeout_secs, 600.0),
            guardrails: a.guardrails,
            log_tail_lines: self
                .count("agent.log_tail_lines", a.log_tail_lines, 100)
                .get(),
            max_prompt_bytes: self
                .count("agent.max_prompt_bytes", a.max_prompt_bytes, 64 * 1024)
                .get(),
        };

        let h = raw.health.unwrap_or_default();
        let bind_s = h.bind.unwrap_or_else(|| "127.0.0.1:9999".to_string());
        let allow_remote = h.allow_remote.unwrap_or(false);
        let bind = match bind_s.parse::<SocketAddr>() {
            Ok(b) => {
                if !b.ip().is_loopback() && !allow_remote {
                    self.err(
                        "health.bind",
                        format!("`{bind_s}` is not a loopback address; set health.allow_remote = true to expose it"),
                    );
                }
                b
            }
            Err(_) => {
                self.err(
                    "health.bind",
                    format!("`{bind_s}` is not an address like 127.0.0.1:9999"),
                );
                SocketAddr::from(([127, 0, 0, 1], 9999))
            }
        };
        let health = HealthConfig {
            enabled: h.enabled.unwrap_or(true),
            bind,
            allow_remote,
        };

        let l = raw.log.unwrap_or_default();
        let level = l.level.unwrap_or_else(|| "info".to_string());
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
                .unwrap_or_else(|| state_dir.join("talon.log")),
            max_bytes: l.max_bytes.unwrap_or(10 * 1024 * 1024),
            max_files: l.max_files.unwrap_or(5),
        };
        if log.max_bytes == 0 {
            self.err("log.max_bytes", "must be at least 1");
        }
        let s = raw.store.unwrap_or_default();
        let store = StoreConfig {
            retention: Duration::from_secs_f64(
                self.secs("store.retention_days", s.retention_days, 7.0)
                    .as_secs_f64()
                    * 86400.0,
            ),
        };
        let heartbeat = raw.heartbeat.map(|hb| {
            self.url("heartbeat.url", &hb.url);
            HeartbeatConfig {
                interval: self.secs("heartbeat.interval_secs", hb.interval_secs, 60.0),
                url: hb.url,
            }
        });

        let worker = raw.worker.map(|w| self.worker(w));
        let probes = self.probes(drafts, &probe_defaults, check_interval);
        // The original's `[escalation]` SOS keys become channels.
        let notify = channel::with_legacy(notify, &escalation);

        Config {
            sources,
            check_interval,
            heal_script: raw.heal_script,
            heal_timeout,
            bridge_heal: raw.bridge_heal,
            state_dir,
            search_path,
            redact,
            worker,
            escalation,
            agent,
            probe_defaults,
            health,
            log,
            store,
            heartbeat,
            notify,
            probes,
        }
    }

    fn worker(&mut self, w: raw::RawWorker) -> WorkerConfig {
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
        for (key, u) in [
            ("worker.health_endpoint", &w.health_endpoint),
            ("worker.sync_endpoint", &w.sync_endpoint),
        ] {
            if let Some(u) = u {
                self.url(key, u);
            }
        }
        let mut forward = Vec::new();
        for s in w.forward_signals.iter().flatten() {
            let norm = s.trim_start_matches("SIG").to_ascii_uppercase();
            match norm.as_str() {
                "USR1" | "USR2" | "WINCH" | "QUIT" | "CONT" | "TSTP" | "ALRM" => forward.push(norm),
                "HUP" => self.err("worker.forward_signals", "HUP is Talon's own reload signal and is not forwarded"),
                "TERM" | "INT" => self.warn("worker.forward_signals", format!("{norm} is always forwarded; no need to list it")),
                _ => self.err("worker.forward_signals", format!("`{s}` is not a signal Talon forwards (USR1, USR2, WINCH, QUIT, CONT, TSTP, ALRM)")),
            }
        }
        let mut secrets = BTreeMap::new();
        for (name, s) in w.secrets.unwrap_or_default() {
            let key = format!("worker.secrets.{name}");
            if s.command.trim().is_empty() {
                self.err(&format!("{key}.command"), "must not be empty");
            }
            let timeout = self.secs(&format!("{key}.timeout_secs"), s.timeout_secs, 10.0);
            secrets.insert(
                name,
                SecretConfig {
                    command: s.command,
                    optional: s.optional,
                    timeout,
                },
            );
        }
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
            reclaim_port: w.reclaim_port.unwrap_or(true),
            health_endpoint: w.health_endpoint,
            sync_endpoint: w.sync_endpoint,
            log_stdout: w.log_stdout.as_deref().map(|p| self.path(p)),
            log_stderr: w.log_stderr.as_deref().map(|p| self.path(p)),
            log_max_bytes: w.log_max_bytes.unwrap_or(10 * 1024 * 1024),
            log_max_files: w.log_max_files.unwrap_or(5),
            env_file,
            env,
            secrets,
            drain_timeout: self.secs("worker.drain_timeout_secs", w.drain_timeout_secs, 5.0),
            health_interval: self.secs("worker.health_interval_secs", w.health_interval_secs, 30.0),
            health_failures_before_restart: self.count(
                "worker.health_failures_before_restart",
                w.health_failures_before_restart,
                3,
            ),
            restart_backoff_max: self.secs(
                "worker.restart_backoff_max_secs",
                w.restart_backoff_max_secs,
                30.0,
            ),
            startup_sync_delay: self.secs(
                "worker.startup_sync_delay_secs",
                w.startup_sync_delay_secs,
                5.0,
            ),
            sync_attempts: self.count("worker.sync_attempts", w.sync_attempts, 5),
            http_timeout: self.secs("worker.http_timeout_secs", w.http_timeout_secs, 5.0),
            min_uptime: self.secs("worker.min_uptime_secs", w.min_uptime_secs, 1.0),
            backoff_reset: self.secs("worker.backoff_reset_secs", w.backoff_reset_secs, 60.0),
            max_restarts: self.count("worker.max_restarts", w.max_restarts, 5),
            restart_window: self.secs("worker.restart_window_secs", w.restart_window_secs, 300.0),
            forward_signals: forward,
            owner_check: self.secs("worker.owner_check_secs", w.owner_check_secs, 30.0),
        }
    }

    fn probes(
        &mut self,
        drafts: Vec<ProbeDraft>,
        d: &ProbeDefaults,
        check_interval: Duration,
    ) -> Vec<ProbeConfig> {
        let mut out: Vec<ProbeConfig> = Vec::new();
        // The same NAME may be used by several kinds (the seed has [launchd.voice_agent] and
        // [http.voice_agent]); such probes are called KIND.NAME, others just NAME. References may
        // always use KIND.NAME, and NAME when it is unambiguous.
        let mut kinds_of: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &drafts {
            *kinds_of.entry(p.name.as_str()).or_default() += 1;
        }
        let canonical = |p: &ProbeDraft| {
            if kinds_of.get(p.name.as_str()).copied().unwrap_or(0) > 1 {
                p.path()
            } else {
                p.name.clone()
            }
        };
        let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
        for (i, p) in drafts.iter().enumerate() {
            if let Some(&j) = by_name.get(&p.path()) {
                let other = &drafts[j];
                let (l, _) = other.src.line_col(other.span.start);
                self.diags.error(
                    &p.src,
                    Some(p.span.clone()),
                    &p.path(),
                    format!(
                        "duplicate probe name `{}`: already defined as [{}] at {}:{l}",
                        p.name,
                        other.path(),
                        other.src.name
                    ),
                );
                continue;
            }
            by_name.insert(p.path(), i);
        }
        // Every name a reference may use → the canonical name (None when ambiguous).
        let mut refs: BTreeMap<String, Option<String>> = BTreeMap::new();
        for &i in by_name.values() {
            let p = &drafts[i];
            refs.insert(p.path(), Some(canonical(p)));
            refs.entry(p.name.clone())
                .and_modify(|v| *v = None)
                .or_insert_with(|| Some(canonical(p)));
        }
        let resolve = |r: &str, errs: &mut Vec<(String, String)>, key: &str| -> Option<String> {
            match refs.get(r) {
                Some(Some(c)) => Some(c.clone()),
                Some(None) => {
                    let options: Vec<&String> = refs
                        .keys()
                        .filter(|k| k.ends_with(&format!(".{r}")))
                        .collect();
                    let options: Vec<String> = options.iter().map(|s| format!("`{s}`")).collect();
                    errs.push((
                        key.into(),
                        format!("`{r}` is ambiguous: say {}", options.join(" or ")),
                    ));
                    None
                }
                None => {
                    let hint = suggest(r, refs.keys().map(String::as_str))
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    errs.push((key.into(), format!("no probe named `{r}`{hint}")));
                    None
                }
            }
        };
        for (i, p) in drafts.iter().enumerate() {
            if by_name.get(&p.path()) != Some(&i) {
                continue;
            }
            let name = canonical(p);
            let path = p.path();
            let mut errs: Vec<(String, String)> = Vec::new();
            let secs = |key: &str,
                        v: Option<Secs>,
                        default: Duration,
                        errs: &mut Vec<(String, String)>| match v {
                None => default,
                Some(Secs(s)) if s.is_finite() && s > 0.0 && s < 1e9 => Duration::from_secs_f64(s),
                Some(Secs(s)) => {
                    errs.push((
                        key.to_string(),
                        format!("must be a positive number of seconds, got {s}"),
                    ));
                    default
                }
            };
            let default_timeout = if p.kind_name == "k8s" {
                d.k8s_timeout
            } else {
                d.service_timeout
            };
            let timeout = secs(
                "timeout_secs",
                p.common.timeout_secs,
                default_timeout,
                &mut errs,
            );
            let interval = secs(
                "interval_secs",
                p.common.interval_secs,
                check_interval,
                &mut errs,
            );
            if timeout > interval
                && (p.common.timeout_secs.is_some() || p.common.interval_secs.is_some())
            {
                errs.push((
                    "timeout_secs".to_string(),
                    format!(
                        "timeout ({}s) is longer than the probe's interval ({}s)",
                        timeout.as_secs_f64(),
                        interval.as_secs_f64()
                    ),
                ));
            }
            let critical = p.common.critical.unwrap_or(false);
            let count = |key: &str,
                         v: Option<i64>,
                         default: NonZeroU32,
                         errs: &mut Vec<(String, String)>| match v {
                None => default,
                Some(n) if n >= 1 && n <= u32::MAX as i64 => {
                    NonZeroU32::new(n as u32).unwrap_or(default)
                }
                Some(n) => {
                    errs.push((key.to_string(), format!("must be at least 1, got {n}")));
                    default
                }
            };
            let default_after = if critical {
                d.critical_after_consecutive_failures
            } else {
                d.consecutive_failures_before_escalate
            };
            let fail_after = count(
                "critical_after_consecutive_failures",
                p.common.critical_after_consecutive_failures,
                default_after,
                &mut errs,
            );
            let recover_after = count(
                "recover_after",
                p.common.recover_after,
                NonZeroU32::MIN,
                &mut errs,
            );
            let mut depends_on = Vec::new();
            for dep in p.common.depends_on.iter().flatten() {
                if let Some(d) = resolve(dep, &mut errs, "depends_on") {
                    if d == name {
                        errs.push((
                            "depends_on".into(),
                            "a probe cannot depend on itself".into(),
                        ));
                    } else {
                        depends_on.push(d);
                    }
                }
            }
            let mut witness = None;
            if let Some(w) = &p.common.witness
                && let Some(w) = resolve(w, &mut errs, "witness")
            {
                if w == name {
                    errs.push(("witness".into(), "a probe cannot witness itself".into()));
                } else {
                    witness = Some(w);
                }
            }
            let heal = match p.common.heal.as_deref() {
                None => None,
                Some(h) if h.trim().is_empty() => {
                    errs.push(("heal".into(), "must not be empty".into()));
                    None
                }
                Some("restart") if matches!(p.kind_name.as_str(), "launchd" | "systemd") => {
                    Some(Heal::Restart)
                }
                Some("restart") => {
                    errs.push((
                        "heal".into(),
                        "`restart` is only for launchd and systemd probes; give a command instead"
                            .into(),
                    ));
                    None
                }
                Some(cmd) => Some(Heal::Command(cmd.to_string())),
            };
            for (key, msg) in errs {
                self.diags
                    .error(&p.src, p.key_span(&key), &format!("{path}.{key}"), msg);
            }
            let (line, _) = p.src.line_col(p.span.start);
            out.push(ProbeConfig {
                name,
                kind: p.kind.clone(),
                critical,
                timeout,
                interval,
                critical_after: fail_after,
                recover_after,
                depends_on,
                runbook: p.common.runbook.clone(),
                heal,
                witness,
                defined_at: format!("{}:{line}", p.src.name),
            });
        }
        // Dependency cycles.
        if let Some(cycle) = find_cycle(&out)
            && let Some(p) = out.iter().find(|p| p.name == cycle[0])
            && let Some(d) = drafts.iter().find(|d| canonical(d) == p.name)
        {
            self.diags.error(
                &d.src,
                d.key_span("depends_on"),
                &format!("{}.depends_on", d.path()),
                format!("dependency cycle: {}", cycle.join(" → ")),
            );
        }
        out
    }
}

/// A cycle in `depends_on`, as the list of names around it (first repeated at the end).
pub fn find_cycle(probes: &[ProbeConfig]) -> Option<Vec<String>> {
    let idx: BTreeMap<&str, &ProbeConfig> = probes.iter().map(|p| (p.name.as_str(), p)).collect();
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        n: &'a str,
        idx: &BTreeMap<&'a str, &'a ProbeConfig>,
        mark: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match mark.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut c: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        mark.insert(n, 1);
        stack.push(n);
        if let Some(p) = idx.get(n) {
            for d in &p.depends_on {
                if idx.contains_key(d.as_str())
                    && let Some(c) = visit(d.as_str(), idx, mark, stack)
                {
                    return Some(c);
                }
            }
        }
        stack.pop();
        mark.insert(n, 2);
        None
    }
    for p in probes {
        let mut stack = Vec::new();
        if let Some(c) = visit(p.name.as_str(), &idx, &mut mark, &mut stack) {
            return Some(c);
        }
    }
    None
}

/// Every program Talon will run, resolved on the compiled PATH; a missing one is an error naming
/// the program, the key and the PATH searched. Platform availability is checked here too.
fn resolve_programs(
    c: &Config,
    main_src: &Source,
    main_root: &Value<'_>,
    services_src: Option<&Source>,
    diags: &mut Diagnostics,
) -> Vec<ResolvedProgram> {
    // (program, key, where: Some(file:span) for main keys; probes report at defined_at)
    let mut wanted: Vec<(String, String)> = Vec::new();
    if let Some(w) = &c.worker
        && let Some(p) = w.command.first()
        && !p.trim().is_empty()
    {
        wanted.push((p.clone(), "worker.command".into()));
        for (n, s) in &w.secrets {
            if let Some(p) = program_of_shell(&s.command) {
                wanted.push((p, format!("worker.secrets.{n}.command")));
            }
        }
    }
    for (key, cmd) in [
        ("heal_script", &c.heal_script),
        ("bridge_heal", &c.bridge_heal),
        ("agent.cloud_command", &c.agent.cloud_command),
        ("agent.local_command", &c.agent.local_command),
    ] {
        if let Some(p) = cmd.as_deref().and_then(program_of_shell) {
            wanted.push((p, key.into()));
        }
    }
    for ch in &c.notify {
        for (p, k) in ch.programs() {
            wanted.push((p, format!("notify.{}.{k}", ch.name)));
        }
    }
    let mut out = Vec::new();
    let path_env = c.search_path.to_env();
    for (program, key) in wanted {
        let found = c.search_path.resolve(&program);
        if found.is_none() {
            let span = tomlx::path_span(main_root, &key)
                .or_else(|| tomlx::path_span(main_root, key.split('.').next().unwrap_or("")));
            let msg = if program == "osascript"
                && key.starts_with("notify.")
                && !cfg!(target_os = "macos")
            {
                "iMessage channels send only on macOS (through osascript); use --no-resolve to check a macOS host's config".to_string()
            } else {
                format!(
                    "program `{program}` not found on Talon's PATH ({path_env}); add its directory to `path = [...]`"
                )
            };
            diags.error(main_src, span, &key, msg);
        }
        out.push(ResolvedProgram {
            program,
            key,
            path: found,
        });
    }
    for p in &c.probes {
        let src = if p.defined_at.starts_with(&main_src.name) {
            Some(main_src)
        } else {
            services_src
        };
        let path = format!("{}.{}", p.kind.name(), p.name);
        let line = p
            .defined_at
            .rsplit(':')
            .next()
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(0);
        let file = src
            .map(|s| s.name.clone())
            .unwrap_or_else(|| p.defined_at.clone());
        let push = |diags: &mut Diagnostics, key: String, msg: String| {
            diags.items.push(diag::Diagnostic {
                severity: diag::Severity::Error,
                file: file.clone(),
                line,
                column: 1,
                key,
                message: msg,
            })
        };
        if let Err(reason) = p.kind.available() {
            push(
                diags,
                path.clone(),
                format!(
                    "unavailable on this platform: {reason} (use --no-resolve to check a config for another host)"
                ),
            );
            continue;
        }
        let mut progs = p.kind.programs();
        if let Some(Heal::Command(h)) = &p.heal
            && let Some(prog) = program_of_shell(h)
        {
            progs.push((prog, "heal"));
        }
        for (program, k) in progs {
            let key = format!("{path}.{k}");
            let found = c.search_path.resolve(&program);
            if found.is_none() {
                push(
                    diags,
                    key.clone(),
                    format!(
                        "program `{program}` not found on Talon's PATH ({path_env}); add its directory to `path = [...]`"
                    ),
                );
            }
            out.push(ResolvedProgram {
                program,
                key,
                path: found,
            });
        }
    }
    out
}
