//! `[actions.NAME]` (the catalogue of typed actions an agent may propose) and the guarded
//! agent's `[agent]` keys (`mode`, budgets, the circuit breaker): validated types and builders.
//! The whole catalogue, built-ins included, is assembled by `crate::escalate::catalogue`.

use super::builder::Builder;
use super::defaults;
use super::diag::suggest;
use super::probe::ProbeConfig;
use super::raw::RawAction;
use super::ser_secs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `[agent] mode`: what an agent run may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AgentMode {
    /// Read-only: the agent's diagnosis is stored and goes into the SOS.
    Diagnose,
    /// The agent proposes actions from the catalogue; Talon validates and runs them.
    Propose,
    /// The agent acts with its own tools (the behaviour before modes existed).
    #[default]
    Autonomous,
}

impl AgentMode {
    pub const NAMES: [&'static str; 3] = ["diagnose", "propose", "autonomous"];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentMode::Diagnose => "diagnose",
            AgentMode::Propose => "propose",
            AgentMode::Autonomous => "autonomous",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "diagnose" => AgentMode::Diagnose,
            "propose" => AgentMode::Propose,
            "autonomous" => AgentMode::Autonomous,
            _ => return None,
        })
    }
}

/// `[actions.NAME] approval`: who lets an action run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// Talon runs it as soon as it is proposed (and valid, and within budget).
    Auto,
    /// A human must `talon approve N` (or `/approve N`) before `approval_timeout_secs`.
    Human,
}

impl Approval {
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Auto => "auto",
            Approval::Human => "human",
        }
    }
}

/// One `[actions.NAME]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionConfig {
    pub name: String,
    /// A shell command run by the one subprocess runner (`proc::Cmd`), in its own group.
    pub command: String,
    /// Shown to the agent.
    pub description: String,
    /// Probe names, globs (`redis-*`) or probe kinds (`systemd`) it may be used for.
    #[serde(rename = "for")]
    pub for_: Vec<String>,
    pub approval: Approval,
    #[serde(serialize_with = "ser_secs", rename = "timeout_secs")]
    pub timeout: Duration,
    pub max_per_day: u32,
}

/// Does one `for` pattern cover this probe? A probe name, a glob (`*`, `?`) over names, or a
/// probe kind's name.
pub fn pattern_covers(pattern: &str, probe: &str, kind: &str) -> bool {
    pattern == probe || pattern == kind || glob(pattern.as_bytes(), probe.as_bytes())
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Names of actions Talon derives from the config itself (`restart-worker`, `restart:<probe>`,
/// `heal:<probe>`): a `[actions.NAME]` may not take them.
pub const BUILTIN_PREFIXES: [&str; 2] = ["restart:", "heal:"];
pub const RESTART_WORKER: &str = "restart-worker";

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl Builder<'_, '_> {
    /// `[actions.NAME]`: every problem reported at its key.
    pub(super) fn actions(
        &mut self,
        raw: BTreeMap<String, RawAction>,
        probes: &[ProbeConfig],
    ) -> Vec<ActionConfig> {
        use defaults::actions as da;
        let mut out = Vec::new();
        for (name, a) in raw {
            let key = format!("actions.{name}");
            if !valid_name(&name) {
                self.err(
                    &key,
                    format!(
                        "action name `{name}` must be 1-64 letters, digits, `-`, `_` or `.` \
                         (`restart:…` and `heal:…` are the built-ins' names)"
                    ),
                );
                continue;
            }
            if name == RESTART_WORKER {
                self.err(
                    &key,
                    "`restart-worker` is a built-in action (derived from [worker]); pick another name",
                );
                continue;
            }
            if a.command.trim().is_empty() {
                self.err(&format!("{key}.command"), "must not be empty");
            }
            let approval = match a.approval.as_deref() {
                None => da::APPROVAL,
                Some("auto") => Approval::Auto,
                Some("human") => Approval::Human,
                Some(other) => {
                    let hint = suggest(other, ["auto", "human"])
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    self.err(
                        &format!("{key}.approval"),
                        format!("`{other}` is not an approval: use \"auto\" or \"human\"{hint}"),
                    );
                    da::APPROVAL
                }
            };
            let for_ = a.for_.unwrap_or_default();
            if for_.is_empty() {
                self.err(
                    &format!("{key}.for"),
                    "name at least one probe, glob (`redis-*`) or probe kind it may be used for",
                );
            }
            for pat in &for_ {
                let covers = probes
                    .iter()
                    .any(|p| pattern_covers(pat, &p.name, p.kind.name()))
                    // The supervised worker's pseudo-probe (`core::WORKER_PROBE`).
                    || pattern_covers(pat, "worker", "worker");
                if !covers && !pat.contains(['*', '?']) {
                    let names = probes.iter().map(|p| p.name.as_str());
                    let hint = suggest(pat, names)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    self.warn(
                        &format!("{key}.for"),
                        format!("`{pat}` matches no probe name or kind{hint}; the action is never offered for it"),
                    );
                }
            }
            let timeout = self.secs(&format!("{key}.timeout_secs"), a.timeout_secs, da::TIMEOUT);
            let max_per_day = self
                .count(
                    &format!("{key}.max_per_day"),
                    a.max_per_day,
                    da::MAX_PER_DAY,
                )
                .get();
            out.push(ActionConfig {
                command: a.command,
                description: a.description.unwrap_or_default(),
                for_,
                approval,
                timeout,
                max_per_day,
                name,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_covers("redis", "redis", "redis"));
        assert!(pattern_covers("redis-*", "redis-main", "tcp"));
        assert!(pattern_covers("systemd", "nginx", "systemd"));
        assert!(pattern_covers("*", "x", "tcp"));
        assert!(pattern_covers("a?c", "abc", "tcp"));
        assert!(!pattern_covers("redis-*", "api", "http"));
        assert!(!pattern_covers("a?c", "ac", "tcp"));
    }
}
