//! The action catalogue: what an agent in `propose` mode may ask Talon to run. The operator's
//! `[actions.NAME]` plus built-ins derived from the config:
//!
//! - `restart:<probe>` for each launchd/systemd probe (the platform restart of its job/unit);
//! - `heal:<probe>` for each probe with a `heal` command;
//! - `restart-worker` when a `[worker]` is supervised (a graceful restart).
//!
//! Built-ins run what tier 1 already runs unattended, so their approval is `auto`. Every entry
//! says which probes it may be used for (`for`: names, globs or kinds); the prompt shows the
//! agent only the entries for the failing probes, and a proposal outside them is refused.

use super::heal::{HealAction, HealSource, PlannedHeal, restart_action};
use crate::config::probe::Heal;
use crate::config::{Approval, Config, RESTART_WORKER, defaults, pattern_covers};
use crate::core::WORKER_PROBE;
use serde::Serialize;
use std::time::Duration;

/// How an entry runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Runs {
    /// `[actions.NAME] command`: `sh -c`, through the one subprocess runner.
    Command { command: String },
    /// A probe's own heal or platform restart (run like a tier-1 heal).
    Heal { heal: PlannedHeal },
    /// The worker supervisor's graceful restart.
    RestartWorker,
}

/// One action of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub name: String,
    pub description: String,
    #[serde(rename = "for")]
    pub for_: Vec<String>,
    pub approval: Approval,
    #[serde(serialize_with = "crate::config::ser_secs", rename = "timeout_secs")]
    pub timeout: Duration,
    pub max_per_day: u32,
    /// Derived from the config rather than written as `[actions.NAME]`.
    pub builtin: bool,
    pub runs: Runs,
}

impl Entry {
    /// What runs, for people and receipts.
    pub fn command(&self) -> String {
        match &self.runs {
            Runs::Command { command } => command.clone(),
            Runs::Heal { heal } => heal.action.describe(),
            Runs::RestartWorker => "graceful restart of the supervised worker".into(),
        }
    }

    /// May it be used for this probe?
    pub fn covers(&self, probe: &str, kind: &str) -> bool {
        self.for_.iter().any(|p| pattern_covers(p, probe, kind))
    }
}

/// The whole catalogue of a config.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Catalogue {
    pub entries: Vec<Entry>,
}

impl Catalogue {
    pub fn from_config(cfg: &Config) -> Self {
        let mut entries = Vec::new();
        for a in &cfg.actions {
            entries.push(Entry {
                name: a.name.clone(),
                description: a.description.clone(),
                for_: a.for_.clone(),
                approval: a.approval,
                timeout: a.timeout,
                max_per_day: a.max_per_day,
                builtin: false,
                runs: Runs::Command {
                    command: a.command.clone(),
                },
            });
        }
        let builtin = |name: String, description: String, probe: &str, runs: Runs| Entry {
            name,
            description,
            for_: vec![probe.to_string()],
            approval: Approval::Auto,
            timeout: cfg.heal_timeout,
            max_per_day: defaults::actions::MAX_PER_DAY.get(),
            builtin: true,
            runs,
        };
        for p in &cfg.probes {
            if let Some(action) = restart_action(&p.kind) {
                let what = match &action {
                    HealAction::LaunchdRestart { label } => format!("launchd job {label}"),
                    HealAction::SystemdRestart { unit, .. } => format!("systemd unit {unit}"),
                    HealAction::Command { .. } => String::new(),
                };
                entries.push(builtin(
                    format!("restart:{}", p.name),
                    format!("restart the {what} that probe {} watches", p.name),
                    &p.name,
                    Runs::Heal {
                        heal: PlannedHeal {
                            source: HealSource::Probe(p.name.clone()),
                            action,
                            for_probes: vec![p.name.clone()],
                        },
                    },
                ));
            }
            if let Some(Heal::Command(c)) = &p.heal {
                entries.push(builtin(
                    format!("heal:{}", p.name),
                    format!("run probe {}'s configured heal command", p.name),
                    &p.name,
                    Runs::Heal {
                        heal: PlannedHeal {
                            source: HealSource::Probe(p.name.clone()),
                            action: HealAction::Command { command: c.clone() },
                            for_probes: vec![p.name.clone()],
                        },
                    },
                ));
            }
        }
        if cfg.worker.is_some() {
            entries.push(builtin(
                RESTART_WORKER.into(),
                "gracefully restart the supervised worker (drain, stop, start, sync)".into(),
                WORKER_PROBE,
                Runs::RestartWorker,
            ));
        }
        Catalogue { entries }
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Entries usable for at least one of these probes (`(name, kind)` pairs).
    pub fn for_probes<'a>(&'a self, probes: &[(String, String)]) -> Vec<&'a Entry> {
        self.entries
            .iter()
            .filter(|e| probes.iter().any(|(n, k)| e.covers(n, k)))
            .collect()
    }
}

/// `(name, kind)` of each failing probe, as [`Catalogue::for_probes`] takes them.
pub fn probe_kinds(cfg: &Config, names: &[String]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| {
            let kind = if n == WORKER_PROBE {
                "worker".to_string()
            } else {
                cfg.probes
                    .iter()
                    .find(|p| &p.name == n)
                    .map(|p| p.kind.name().to_string())
                    .unwrap_or_default()
            };
            (n.clone(), kind)
        })
        .collect()
}
