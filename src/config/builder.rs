//! The [`Builder`]: where a section's problems are reported (against the main config's text) and
//! the checks every section uses for values — positive durations, counts, URLs, paths. Each
//! section's builder is an `impl Builder` block in that section's file; `build.rs` assembles
//! them into a [`super::Config`].

use super::diag::{Diagnostics, Source};
use super::expand_path;
use super::raw::Secs;
use super::tomlx::{self, Value};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Builds one [`super::Config`]: reports every problem against the main config's text (probes
/// report against their own file) and fills every missing key from [`super::defaults`].
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

    /// A duration of zero or more seconds, or the default.
    pub(super) fn secs_or_zero(
        &mut self,
        key: &str,
        v: Option<Secs>,
        default: Duration,
    ) -> Duration {
        match v {
            Some(Secs(0.0)) => Duration::ZERO,
            v => self.secs(key, v, default),
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
}
