//! `[limits]`: optional resource limits for the commands Talon runs, per kind overridable.
//!
//! ```toml
//! [limits]            # every kind
//! memory_mb = 512
//! cpu_secs = 60
//! [limits.script]     # script probes: these keys replace the ones above
//! memory_mb = 128
//! ```
//!
//! Applied as rlimits by the subprocess runner (`proc::limits`, which says where a limit does
//! not hold: `processes` is ignored for root), to `script` probes, heals, agent commands
//! and catalogue actions: `[limits.script]`, `[limits.heal]`, `[limits.agent]` and
//! `[limits.action]` each override the common keys for their kind.

use super::builder::Builder;
use super::raw::{RawLimitSet, RawLimits};
use serde::Serialize;

/// Validated limits for one kind of command (`None` = not limited).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimitSet {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_secs: Option<u64>,
}

impl LimitSet {
    /// `other`'s keys where set, else this one's.
    fn overlay(self, other: LimitSet) -> LimitSet {
        LimitSet {
            memory_mb: other.memory_mb.or(self.memory_mb),
            processes: other.processes.or(self.processes),
            open_files: other.open_files.or(self.open_files),
            cpu_secs: other.cpu_secs.or(self.cpu_secs),
        }
    }
}

/// `[limits]`, resolved per kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimitsConfig {
    /// For `script` probes (`[limits]` overlaid with `[limits.script]`).
    pub script: LimitSet,
    /// For `command` heals (`[limits.heal]`; not the systemctl/launchctl calls).
    pub heal: LimitSet,
    /// For agent commands, cloud and local (`[limits.agent]`).
    pub agent: LimitSet,
    /// For catalogue actions (`[limits.action]`); an action that runs a heal uses these too.
    pub action: LimitSet,
}

impl LimitsConfig {
    /// Nothing limited (the section is then left out of `talon config`).
    pub fn is_empty(&self) -> bool {
        *self == LimitsConfig::default()
    }
}

impl Builder<'_, '_> {
    fn limit(&mut self, key: &str, v: Option<i64>) -> Option<u64> {
        let v = v?;
        if v < 1 {
            self.err(key, "must be at least 1 (leave the key out for no limit)");
            return None;
        }
        Some(v as u64)
    }

    fn limit_set(&mut self, prefix: &str, r: RawLimitSet) -> LimitSet {
        LimitSet {
            memory_mb: self.limit(&format!("{prefix}memory_mb"), r.memory_mb),
            processes: self.limit(&format!("{prefix}processes"), r.processes),
            open_files: self.limit(&format!("{prefix}open_files"), r.open_files),
            cpu_secs: self.limit(&format!("{prefix}cpu_secs"), r.cpu_secs),
        }
    }

    pub(super) fn limits(&mut self, raw: RawLimits) -> LimitsConfig {
        let all = self.limit_set(
            "limits.",
            RawLimitSet {
                memory_mb: raw.memory_mb,
                processes: raw.processes,
                open_files: raw.open_files,
                cpu_secs: raw.cpu_secs,
            },
        );
        let mut kind = |name: &str, r: Option<RawLimitSet>| {
            let set = self.limit_set(&format!("limits.{name}."), r.unwrap_or_default());
            all.overlay(set)
        };
        LimitsConfig {
            script: kind("script", raw.script),
            heal: kind("heal", raw.heal),
            agent: kind("agent", raw.agent),
            action: kind("action", raw.action),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> crate::config::Loaded {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("c.toml");
        std::fs::write(&main, format!("{text}\n[script.a]\ncommand = \"true\"\n")).unwrap();
        crate::config::load(&crate::config::LoadOptions {
            config: Some(main),
            ..Default::default()
        })
    }

    #[test]
    fn kind_tables_override_the_common_one() {
        let c = load("[limits]\nmemory_mb = 512\ncpu_secs = 60\n[limits.script]\nmemory_mb = 128")
            .config
            .expect("valid");
        assert_eq!(
            c.limits.script,
            LimitSet {
                memory_mb: Some(128),
                cpu_secs: Some(60),
                ..LimitSet::default()
            }
        );
        assert!(load("").config.unwrap().limits.is_empty());
        let c = load(
            "[limits]\nmemory_mb = 512\n[limits.heal]\nmemory_mb = 64\n\
             [limits.agent]\ncpu_secs = 9\n[limits.action]\nopen_files = 32",
        )
        .config
        .expect("valid");
        assert_eq!(c.limits.heal.memory_mb, Some(64));
        assert_eq!(c.limits.script.memory_mb, Some(512));
        assert_eq!(
            (c.limits.agent.memory_mb, c.limits.agent.cpu_secs),
            (Some(512), Some(9))
        );
        assert_eq!(
            (c.limits.action.memory_mb, c.limits.action.open_files),
            (Some(512), Some(32))
        );
    }

    #[test]
    fn zero_and_typos_are_rejected_with_the_key() {
        let l = load("[limits]\nmemory_mb = 0");
        assert!(l.config.is_none());
        assert!(
            l.diags.to_string().contains("limits.memory_mb"),
            "{}",
            l.diags
        );
        let l = load("[limits.script]\nmemroy_mb = 1");
        assert!(l.config.is_none());
        assert!(l.diags.to_string().contains("memroy_mb"), "{}", l.diags);
        let l = load("[limits.agent]\ncpu_secs = 0");
        assert!(l.config.is_none());
        assert!(
            l.diags.to_string().contains("limits.agent.cpu_secs"),
            "{}",
            l.diags
        );
        let l = load("[limits.heals]\nmemory_mb = 1");
        assert!(l.config.is_none(), "an unknown kind table is rejected");
    }
}
