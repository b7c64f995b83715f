//! Raw structs → the validated [`Config`]: the [`Builder`] with its checks for values
//! (positive durations, counts, URLs, paths), and the top level of the main config. Each
//! section's own builder is an `impl Builder` block in that section's file.

use super::channel::{self, ChannelConfig};
use super::diag::{Diagnostics, Source};
use super::path::SearchPath;
use super::probes::ProbeDraft;
use super::raw::{RawMain, Secs};
use super::tomlx::{self, Value};
use super::{Config, Sources, defaults, expand_path};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Builds one [`Config`]: reports every problem against the main config's text (probes report
/// against their own file) and fills every missing key from [`defaults`].
pub(super) struct Builder<'a, 'i> {
    pub(super) src: &'a Source,
    pub(super) root: &'a Value<'i>,
    pub(super) diags: &'a mut Diagnostics,
    pub(super) home: Option<&'a Path>,
    /// The main config's directory: relative paths are taken from there.
    pub(super) base: Option<&'a Path>,
}

impl Builder<'_, '_> {
    pub(super) fn err(&mut self, key: &str, msg: impl Into<String>) {
        let span = tomlx::nearest_span(self.root, key);
        self.diags.error(self.src, span, key, msg);
    }

    pub(super) fn warn(&mut self, key: &str, msg: impl Into<String>) {
        let span = tomlx::nearest_span(self.root, key);
        self.diags.warning(self.src, span, key, msg);
    }

    /// A positive duration, or the default.
    pub(super) fn secs(&mut self, key: &str, v: Option<Secs>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(Secs(s)) if s.is_finite() && s > 0.0 && s < 1e9 => Duration::from_secs_f64(s),
            Some(Secs(s)) => {
                self.err(
                    key,
                    format!("must be a positive number of seconds, got {s}"),
                );
                default
            }
        }
    }

    /// A count of at least 1, or the default.
    pub(super) fn count(&mut self, key: &str, v: Option<i64>, default: NonZeroU32) -> NonZeroU32 {
        match v {
            None => default,
            Some(n) if n >= 1 && n <= u32::MAX as i64 => {
                NonZeroU32::new(n as u32).unwrap_or(default)
            }
            Some(n) => {
                self.err(key, format!("must be at least 1, got {n}"));
                default
            }
        }
    }

    /// A path key: `~` expanded, relative to the main config's directory.
    pub(super) fn path(&self, p: &str) -> PathBuf {
        expand_path(p, self.home, self.base)
    }

    pub(super) fn url(&mut self, key: &str, u: &str) {
        match reqwest::Url::parse(u) {
            Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {}
            Ok(_) => self.err(
                key,
                format!("`{u}` must be an http:// or https:// URL with a host"),
            ),
            Err(e) => self.err(key, format!("`{u}` is not a valid URL: {e}")),
        }
    }

    /// The whole config: the top-level keys here, then every section (in the order their
    /// problems have always been reported).
    pub(super) fn build(
        &mut self,
        raw: RawMain,
        drafts: Vec<ProbeDraft>,
        notify: Vec<ChannelConfig>,
        sources: Sources,
        inherited_path: Option<&str>,
    ) -> Config {
        let check_interval = self.secs(
            "check_interval_secs",
            raw.check_interval_secs,
            defaults::CHECK_INTERVAL,
        );
        let heal_timeout = self.secs(
            "heal_timeout_secs",
            raw.heal_timeout_secs,
            defaults::HEAL_TIMEOUT,
        );
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
        let redact = self.redact(raw.redact.unwrap_or_default());
        let state_dir = raw
            .state_dir
            .as_deref()
            .map(|p| self.path(p))
            .unwrap_or_else(|| defaults::state_dir(self.home));

        let probe_defaults = self.probe_defaults(raw.probes.unwrap_or_default());
        let escalation = self.escalation(raw.escalation.unwrap_or_default());
        let agent = self.agent(raw.agent.unwrap_or_default());
        let health = self.health(raw.health.unwrap_or_default());
        let log = self.log(raw.log.unwrap_or_default(), &state_dir);
        let store = self.store(raw.store.unwrap_or_default());
        let heartbeat = raw.heartbeat.map(|hb| self.heartbeat(hb));
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

    /// `redact = [...]`: the patterns that compile.
    fn redact(&mut self, patterns: Vec<String>) -> Vec<String> {
        let mut redact = Vec::new();
        for r in patterns {
            match regex::Regex::new(&r) {
                Ok(_) => redact.push(r),
                Err(e) => self.err("redact", format!("invalid regular expression `{r}`: {e}")),
            }
        }
        redact
    }
}
