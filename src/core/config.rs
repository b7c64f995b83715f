//! What the core needs to know from the config: timings, which heals/agents/channels exist, and
//! each probe's escalation rule. Built once per (re)load by [`CoreConfig::from_config`].

use crate::config::Config;
use crate::config::policy::{
    DEFAULT_POLICY, MaintenanceWindow, PolicyConfig, ProbeRoute, Severity, TICKET_POLICY,
};
use crate::config::probe::Heal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use super::Millis;

/// The name of the pseudo-probe that carries the supervised worker's health. The runtime feeds
/// worker health to the core as [`crate::core::ProbeResult`]s with this name.
pub const WORKER_PROBE: &str = "worker";

/// Default first retry delay of an undelivered notification (`escalation.notify_retry_secs`);
/// doubles per attempt up to [`NOTIFY_RETRY_MAX`].
pub const NOTIFY_RETRY_BASE: Millis =
    crate::config::defaults::escalation::NOTIFY_RETRY.as_millis() as Millis;
/// The longest wait between two delivery attempts of a notification.
pub const NOTIFY_RETRY_MAX: Millis = 900_000;

/// A probe's own heal, as far as the core cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnHeal {
    /// `heal = "<command>"` on the probe.
    Command,
    /// `heal = "restart"` on a launchd/systemd probe.
    Restart,
    /// The worker pseudo-probe: a graceful restart of the supervised worker.
    RestartWorker,
}

/// One probe's escalation rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRule {
    /// A failing critical probe opens an incident; a failing non-critical one only degrades.
    pub critical: bool,
    /// Failures in a row (scheduled runs only) before the probe counts as failing.
    pub fail_after: u32,
    /// Passes in a row before a failing probe counts as passing again.
    pub recover_after: u32,
    /// Probes this one depends on (a failing dependency makes it `blocked`).
    pub depends_on: Vec<String>,
    /// A probe that witnesses this one: target failing + witness passing = split-brain.
    pub witness: Option<String>,
    /// The probe's own heal, if any.
    pub heal: Option<OwnHeal>,
}

/// The core's configuration. Durations are milliseconds, like every time in the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreConfig {
    /// Minimum time between the starts of two heals (any incident).
    pub heal_cooldown: Millis,
    /// Heals per incident at most.
    pub max_heals_per_incident: u32,
    /// Delay after a heal/agent ends before its verification re-probe.
    pub heal_settle: Millis,
    /// Minimum time between the starts of two agent attempts (a tier-3 fallback belongs to the
    /// attempt that failed and is not delayed).
    pub agent_cooldown: Millis,
    /// Time in `critical` before the SOS.
    pub critical_threshold: Millis,
    /// Reminder interval per incident while in `sos`.
    pub sos_cooldown: Millis,
    /// State changes within `flap_window` above which a probe is `flapping`.
    pub flap_threshold: u32,
    pub flap_window: Millis,
    /// First retry delay of an undelivered notification; doubles per attempt up to
    /// `NOTIFY_RETRY_MAX`.
    #[serde(default = "default_notify_retry")]
    pub notify_retry: Millis,
    /// `heal_script` is configured.
    pub global_heal: bool,
    /// `bridge_heal` is configured.
    pub bridge_heal: bool,
    /// `agent.cloud_command` is configured (tier 2).
    pub agent_cloud: bool,
    /// `agent.local_command` is configured (tier 3).
    pub agent_local: bool,
    /// Names of the notification channels (SOS fan-out goes to all of them).
    pub channels: Vec<String>,
    /// Every probe by name, including [`WORKER_PROBE`] when a worker is configured.
    pub probes: BTreeMap<String, ProbeRule>,
    /// Escalation policies and maintenance windows (empty: every channel at once, as always).
    #[serde(default)]
    pub routing: Routing,
}

/// One rung of an escalation policy, as the core uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// After the SOS.
    pub after: Millis,
    pub channels: Vec<String>,
}

/// Who is paged when (`[policy.*]`, probes' `policy`/`severity`) and when nobody is
/// (`[[maintenance]]`). Rules: `docs/notify.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    /// Policy name → its steps, in order of `after`.
    pub policies: BTreeMap<String, Vec<Step>>,
    /// Probe → the policy it pages through (its own, `ticket` for `severity = "ticket"`,
    /// else `default` when that exists). A probe not listed pages every channel at once.
    pub probe_policy: BTreeMap<String, String>,
    /// Configured maintenance windows (evaluated at each event's time in `zone`).
    #[serde(skip)]
    pub maintenance: Vec<MaintenanceWindow>,
    #[serde(skip, default = "utc")]
    pub zone: jiff::tz::TimeZone,
}

fn utc() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::UTC
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            policies: BTreeMap::new(),
            probe_policy: BTreeMap::new(),
            maintenance: Vec::new(),
            zone: utc(),
        }
    }
}

impl Routing {
    /// From the validated `[policy.*]`, probe routes and `[[maintenance]]`.
    pub fn from_config(p: &PolicyConfig, probes: impl Iterator<Item = String>) -> Routing {
        let policies: BTreeMap<String, Vec<Step>> = p
            .policies
            .iter()
            .map(|(name, pol)| {
                let steps = pol
                    .steps
                    .iter()
                    .map(|s| Step {
                        after: ms(s.after),
                        channels: s.channels.clone(),
                    })
                    .collect();
                (name.clone(), steps)
            })
            .collect();
        let mut probe_policy = BTreeMap::new();
        for name in probes {
            let route = p.routes.get(&name);
            let policy = match route {
                Some(r) if r.severity == Severity::Ticket => Some(TICKET_POLICY.to_string()),
                Some(ProbeRoute {
                    policy: Some(pol), ..
                }) => Some(pol.clone()),
                _ => policies
                    .contains_key(DEFAULT_POLICY)
                    .then(|| DEFAULT_POLICY.to_string()),
            };
            if let Some(pol) = policy.filter(|pol| policies.contains_key(pol)) {
                probe_policy.insert(name, pol);
            }
        }
        Routing {
            policies,
            probe_policy,
            maintenance: p.maintenance.clone(),
            zone: p.zone.clone(),
        }
    }
}

fn default_notify_retry() -> Millis {
    NOTIFY_RETRY_BASE
}

fn ms(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl CoreConfig {
    /// Derive the core's view of a validated config.
    pub fn from_config(c: &Config) -> Self {
        let e = &c.escalation;
        let mut probes = BTreeMap::new();
        for p in &c.probes {
            probes.insert(
                p.name.clone(),
                ProbeRule {
                    critical: p.critical,
                    fail_after: p.critical_after.get(),
                    recover_after: p.recover_after.get(),
                    depends_on: p.depends_on.clone(),
                    witness: p.witness.clone(),
                    heal: p.heal.as_ref().map(|h| match h {
                        Heal::Command(_) => OwnHeal::Command,
                        Heal::Restart => OwnHeal::Restart,
                    }),
                },
            );
        }
        if c.worker.is_some() {
            // The supervisor already debounces health (health_failures_before_restart) and
            // restarts with backoff; what reaches the core is "the worker is unhealthy now".
            probes.entry(WORKER_PROBE.to_string()).or_insert(ProbeRule {
                critical: true,
                fail_after: 1,
                recover_after: 1,
                depends_on: Vec::new(),
                witness: None,
                heal: Some(OwnHeal::RestartWorker),
            });
        }
        CoreConfig {
            heal_cooldown: ms(e.heal_cooldown),
            max_heals_per_incident: e.max_heals_per_incident.get(),
            heal_settle: ms(e.heal_settle),
            agent_cooldown: ms(e.agent_cooldown),
            critical_threshold: ms(e.critical_threshold),
            sos_cooldown: ms(e.sos_cooldown),
            flap_threshold: e.flap_threshold.get(),
            flap_window: ms(e.flap_window),
            notify_retry: ms(e.notify_retry),
            global_heal: c.heal_script.is_some(),
            bridge_heal: c.bridge_heal.is_some(),
            agent_cloud: c.agent.cloud_command.is_some(),
            agent_local: c.agent.local_command.is_some(),
            channels: c.notify.iter().map(|n| n.name.clone()).collect(),
            routing: Routing::from_config(&c.policy, probes.keys().cloned()),
            probes,
        }
    }
}

impl Default for CoreConfig {
    /// The config defaults (`[escalation]`, from [`crate::config::defaults`]), no heals,
    /// agents, channels or probes.
    fn default() -> Self {
        use crate::config::defaults::escalation as d;
        CoreConfig {
            heal_cooldown: ms(d::HEAL_COOLDOWN),
            max_heals_per_incident: d::MAX_HEALS_PER_INCIDENT.get(),
            heal_settle: ms(d::HEAL_SETTLE),
            agent_cooldown: ms(d::AGENT_COOLDOWN),
            critical_threshold: ms(d::CRITICAL_THRESHOLD),
            sos_cooldown: ms(d::SOS_COOLDOWN),
            flap_threshold: d::FLAP_THRESHOLD.get(),
            flap_window: ms(d::FLAP_WINDOW),
            notify_retry: NOTIFY_RETRY_BASE,
            global_heal: false,
            bridge_heal: false,
            agent_cloud: false,
            agent_local: false,
            channels: Vec::new(),
            probes: BTreeMap::new(),
            routing: Routing::default(),
        }
    }
}
