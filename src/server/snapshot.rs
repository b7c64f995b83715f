//! What the HTTP surfaces show: one plain, serializable picture of the daemon that the runtime
//! replaces (or edits in place) whenever something changes. Handlers only ever read a clone of
//! it, so a slow heal, a hung agent or a slow client can never hold `/health` back.
//!
//! Time fields named `*_unix` are whole seconds since the epoch; `started_at` on a probe is
//! milliseconds (the same field as [`crate::core::ProbeResult::started_at`]).

use crate::config::Config;
use crate::core::{Core, Millis, ProbeResult, ProbeState, Status, WORKER_PROBE};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The system state shown everywhere: the core's own type (`healthy → degraded → failed →
/// investigating → critical → sos`).
pub use crate::core::SystemState;

/// The whole daemon as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    /// Talon's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The host this Talon watches, as it names it everywhere (`host` in the config, else the
    /// system's host name): the first column of `talon status --remote`.
    #[serde(default)]
    pub host: String,
    pub state: SystemState,
    /// When the system entered `state`.
    pub since_unix: i64,
    /// Consecutive failed cycles (the original's field): 0 when healthy.
    pub consecutive_failures: u32,
    /// Every configured probe, by name, with its newest result.
    pub probes: Vec<ProbeStatus>,
    /// The supervised worker, when one is configured.
    pub worker: Option<WorkerStatus>,
    /// The open incident, if any.
    pub incident: Option<IncidentStatus>,
    /// Newest state transitions, oldest first (the runtime keeps a short tail).
    pub transitions: Vec<Transition>,
    /// Set while the newest edit of a config file is invalid (the last good config keeps
    /// running); cleared when a reload succeeds.
    pub config_error: Option<ConfigError>,
    /// What the escalation ladder will do next and when, if anything is pending.
    pub next_escalation: Option<NextStep>,
    /// Set while writes to the store fail (a full or read-only disk): probing and supervision
    /// go on; history waits in memory (bounded) and is written once there is space. Cleared
    /// when a write succeeds again.
    #[serde(default)]
    pub store_error: Option<String>,
    /// Store writes that failed since Talon started.
    #[serde(default)]
    pub store_write_failures: u64,
    /// Set when unreadable state was set aside at start (a quarantined database): what and where.
    #[serde(default)]
    pub store_recovered: Option<String>,
    /// Notifications no channel has taken yet (being sent, or waiting for their retry), the
    /// same objects `talon status --json` shows from the store.
    #[serde(default)]
    pub pending_notifications: Vec<crate::core::Notification>,
    /// The guarded agent: its circuit breaker and the proposed actions waiting for a human.
    #[serde(default)]
    pub agent: AgentGuard,
    /// Escalation policy steps the open incident reached (`db step 1 of 3`); empty without
    /// `[policy.*]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalation_steps: Vec<String>,
    /// Maintenance windows, configured and run-time (`talon maintenance list`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<crate::core::WindowView>,
    /// When the runtime last changed this snapshot; from the store (`talon status --json` with
    /// no daemon answering), when the daemon last saved its state.
    pub updated_at_unix: i64,
}

/// The guarded agent's state, as `talon status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentGuard {
    /// The agent tier is skipped until a run fixes something or `talon agent reset`.
    pub breaker_open: bool,
    /// Agent runs in a row that fixed nothing.
    pub misses: u32,
    /// Proposed actions waiting for `talon approve N` / `talon deny N`.
    pub approvals: Vec<crate::core::PendingApproval>,
}

impl StatusSnapshot {
    /// An empty snapshot: healthy, no probes, stamped `now_unix`.
    pub fn new(now_unix: i64) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_string(),
            host: String::new(),
            state: SystemState::Healthy,
            since_unix: now_unix,
            consecutive_failures: 0,
            probes: Vec::new(),
            worker: None,
            incident: None,
            transitions: Vec::new(),
            config_error: None,
            next_escalation: None,
            store_error: None,
            store_write_failures: 0,
            store_recovered: None,
            pending_notifications: Vec::new(),
            agent: AgentGuard::default(),
            escalation_steps: Vec::new(),
            maintenance: Vec::new(),
            updated_at_unix: now_unix,
        }
    }

    /// What the core's state and the config alone say, at `now` (wall milliseconds): state,
    /// probes (configured kind, newest result the core kept, streaks, silence), the open
    /// incident, the next escalation step, undelivered notifications, policy steps, maintenance
    /// windows and the agent guard. The daemon's `/status` starts from this and adds what only a
    /// running daemon knows (`Runtime::publish`); `talon status` shows it as is from the store.
    ///
    /// Left at their empty value here: the worker, transitions, the incident's timeline and
    /// `acked_by`, a silence's reason/by/since, `duration_ms`, `config_error` and the store
    /// fields. `started_at` is when the core took the newest result (the run's end), until the
    /// daemon overlays the result itself.
    pub fn from_core(core: &Core, cfg: &Config, now: Millis) -> Self {
        let secs = |ms: Millis| ms.div_euclid(1000);
        let o = core.outlook(now);
        let mut snap = StatusSnapshot::new(secs(now));
        snap.host = cfg.host_name();
        snap.state = o.state;
        snap.since_unix = secs(o.since);
        snap.consecutive_failures = o.probes.iter().map(|p| p.fail_streak).max().unwrap_or(0);
        // The daemon calls this after every step: one map, not a search per probe.
        let kinds: std::collections::HashMap<&str, &'static str> = cfg
            .probes
            .iter()
            .map(|p| (p.name.as_str(), p.kind.name()))
            .collect();
        snap.probes = o
            .probes
            .iter()
            .map(|v| {
                let kind = match kinds.get(v.name.as_str()) {
                    Some(k) => k,
                    None if v.name == WORKER_PROBE => "worker",
                    None => "",
                };
                let mut p = ProbeStatus::pending(&v.name, kind, v.critical);
                if let Some(st) = v.last_status {
                    p.status = Some(st);
                    p.passed = st.passed();
                }
                p.output = v.last_output.clone().unwrap_or_default();
                p.started_at = v.last_at;
                p.streak = v.fail_streak.max(v.pass_streak);
                p.flapping = v.state == ProbeState::Flapping;
                p.silenced = v.silenced_until.filter(|u| *u > now).map(|u| Silence {
                    until_unix: secs(u),
                    reason: None,
                    by: None,
                    since_unix: None,
                });
                p
            })
            .collect();
        snap.incident = o.incident.as_ref().map(|i| IncidentStatus {
            id: i.id.to_string(),
            started_unix: secs(i.opened_at),
            failing_probes: i.probes.iter().cloned().collect(),
            acknowledged: i.acked_at.is_some(),
            acked_by: None,
            acked_at_unix: i.acked_at.map(secs),
            timeline: Vec::new(),
            paged_channels: o.paged_channels.clone(),
            paged_at_unix: i.paged_at.map(secs),
            heals: i.heals,
            agents: i.agents,
        });
        snap.next_escalation = o.next.as_ref().map(|n| NextStep {
            text: n.what.clone(),
            due_unix: n.due.map(secs).unwrap_or(0),
        });
        snap.agent = AgentGuard {
            breaker_open: core.persisted().breaker_open,
            misses: core.persisted().agent_misses,
            approvals: core
                .incident()
                .map(|i| i.approvals.clone())
                .unwrap_or_default(),
        };
        snap.pending_notifications = o.pending_notifications;
        snap.escalation_steps = o.steps_reached;
        snap.maintenance = o.maintenance;
        snap
    }

    /// The probes whose newest result counts as a failure (fail/timeout/error; blocked and not
    /// yet run do not).
    pub fn failed_probes(&self) -> impl Iterator<Item = &ProbeStatus> {
        self.probes
            .iter()
            .filter(|p| p.status.is_some_and(Status::is_failure))
    }

    /// The `/health` body for this snapshot.
    pub fn health(&self) -> Health {
        let failed_probes: Vec<String> = self.failed_probes().map(|p| p.name.clone()).collect();
        Health {
            ok: self.state.is_ok(),
            state: self.state,
            consecutive_failures: self.consecutive_failures,
            probe_count: self.probes.len(),
            failed_probe_count: failed_probes.len(),
            failed_probes,
            worker_restarts: self.worker.as_ref().map_or(0, |w| w.restarts),
            updated_at_unix: self.updated_at_unix,
            config_error: self.config_error.clone(),
            incident_id: self.incident.as_ref().map(|i| i.id.clone()),
            store: if self.store_error.is_some() {
                "degraded"
            } else {
                "ok"
            }
            .into(),
        }
    }

    /// Record a probe's newest result: updates the entry of that name (keeping its config
    /// fields) or appends one. Streak: grows while the pass/fail outcome repeats, else restarts
    /// at 1 (a blocked result leaves the streak alone).
    pub fn record_probe(&mut self, r: &ProbeResult, critical: bool) {
        let idx = match self.probes.iter().position(|p| p.name == r.name) {
            Some(i) => i,
            None => {
                self.probes
                    .push(ProbeStatus::pending(&r.name, &r.kind, critical));
                self.probes.len() - 1
            }
        };
        let p = &mut self.probes[idx];
        if r.status != Status::Blocked {
            let same = p
                .status
                .is_some_and(|s| s != Status::Blocked && s.passed() == r.passed);
            p.streak = if same { p.streak.saturating_add(1) } else { 1 };
        }
        p.kind.clone_from(&r.kind);
        p.critical = critical;
        p.status = Some(r.status);
        p.passed = r.passed;
        p.output.clone_from(&r.output);
        p.duration_ms = Some(r.duration_ms);
        p.started_at = Some(r.started_at);
    }
}

/// The `/health` body: the original's fields plus `config_error` and `incident_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    pub state: SystemState,
    pub consecutive_failures: u32,
    pub probe_count: usize,
    pub failed_probe_count: usize,
    pub failed_probes: Vec<String>,
    pub worker_restarts: u32,
    pub updated_at_unix: i64,
    pub config_error: Option<ConfigError>,
    pub incident_id: Option<String>,
    /// `ok`, or `degraded` while store writes fail (full or read-only disk): Talon keeps probing
    /// and paging from memory, history is held back until the disk takes writes again.
    #[serde(default)]
    pub store: String,
}

/// One probe as shown on `/status` and the status page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeStatus {
    pub name: String,
    pub kind: String,
    pub critical: bool,
    /// Newest result's status; `None` until the probe has run once.
    pub status: Option<Status>,
    pub passed: bool,
    /// Newest result's one-line output.
    pub output: String,
    pub duration_ms: Option<u64>,
    /// Unix milliseconds when the newest run started.
    pub started_at: Option<i64>,
    /// How many results in a row had the newest result's outcome (pass or fail).
    pub streak: u32,
    pub flapping: bool,
    /// Set while an operator has silenced this probe.
    pub silenced: Option<Silence>,
}

impl ProbeStatus {
    /// A configured probe that has not run yet.
    pub fn pending(name: &str, kind: &str, critical: bool) -> Self {
        Self {
            name: name.to_string(),
            kind: kind.to_string(),
            critical,
            status: None,
            passed: false,
            output: String::new(),
            duration_ms: None,
            started_at: None,
            streak: 0,
            flapping: false,
            silenced: None,
        }
    }

    /// `pass`, `fail`, ..., or `pending` before the first run.
    pub fn status_str(&self) -> &'static str {
        self.status.map_or("pending", Status::as_str)
    }
}

/// An operator's silence on a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub until_unix: i64,
    pub reason: Option<String>,
    /// Who silenced it (`cli`, `http`, `telegram:<chat id> (<username>)`), when known.
    #[serde(default)]
    pub by: Option<String>,
    /// When it was silenced, when known.
    #[serde(default)]
    pub since_unix: Option<i64>,
}

/// The supervised worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub pid: Option<u32>,
    /// `starting`, `running`, `healthy`, `unhealthy`, `backoff`, `stopped`, `external`, ...
    pub state: String,
    pub restarts: u32,
    /// How the previous run ended, e.g. `exit 1` or `signal 9`.
    pub last_exit: Option<String>,
    pub since_unix: Option<i64>,
    /// The newest operator actions on the worker (`talon worker restart|stop|start`), oldest
    /// first; kept in the store's history, so a Talon restart shows them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator_actions: Vec<OperatorAction>,
}

/// One operator action on the worker: what, who, when, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorAction {
    pub at_unix: i64,
    /// `restart`, `stop` or `start`.
    pub action: String,
    /// `cli` or `http`.
    pub by: String,
    /// Done (`true`) or failed.
    pub ok: bool,
    /// What came of it: `worker restarted: pid A (signal 15) → pid B`, `worker stopped: …`,
    /// `worker is already stopped`, or why it failed.
    pub result: String,
}

/// The open incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentStatus {
    pub id: String,
    pub started_unix: i64,
    pub failing_probes: Vec<String>,
    pub acknowledged: bool,
    /// Who acknowledged it (`cli`, the name an HTTP caller gave or `http`, `telegram:<chat id>
    /// (<username>)`), when known.
    #[serde(default)]
    pub acked_by: Option<String>,
    /// When it was acknowledged.
    #[serde(default)]
    pub acked_at_unix: Option<i64>,
    /// Everything that happened in it, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// With escalation policies, the channels its pages have gone to so far (empty before the
    /// first step): what the Alertmanager re-poster keeps firing. Absent: every channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paged_channels: Option<Vec<String>>,
    /// When a human was first paged (the SOS), if yet.
    #[serde(default)]
    pub paged_at_unix: Option<i64>,
    /// Heals and agent runs started in it so far (what its budgets count).
    #[serde(default)]
    pub heals: u32,
    #[serde(default)]
    pub agents: u32,
}

/// One line of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at_unix: i64,
    /// `transition`, `heal`, `agent`, `notify`, `ack`, ...
    pub kind: String,
    pub text: String,
}

/// A state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at_unix: i64,
    pub from: SystemState,
    pub to: SystemState,
    pub reason: String,
}

/// Why the newest config edit was rejected: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the problem has no position (an unreadable file).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl From<&crate::config::diag::Diagnostic> for ConfigError {
    fn from(d: &crate::config::diag::Diagnostic) -> Self {
        let message = if d.key.is_empty() {
            d.message.clone()
        } else {
            format!("{}: {}", d.key, d.message)
        };
        Self {
            file: d.file.clone(),
            line: d.line,
            column: d.column,
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The next escalation step and when it is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextStep {
    /// e.g. "agent (cloud) if still failing".
    pub text: String,
    pub due_unix: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, status: Status) -> ProbeResult {
        ProbeResult {
            name: name.into(),
            kind: "tcp".into(),
            passed: status.passed(),
            status,
            output: format!("{} output", status.as_str()),
            detail: String::new(),
            duration_ms: 7,
            started_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn health_counts_only_real_failures() {
        let mut s = StatusSnapshot::new(100);
        s.record_probe(&result("a", Status::Pass), true);
        s.record_probe(&result("b", Status::Fail), true);
        s.record_probe(&result("c", Status::Blocked), false);
        s.record_probe(&result("d", Status::Timeout), false);
        s.probes.push(ProbeStatus::pending("e", "http", false));
        s.state = SystemState::Failed;
        let h = s.health();
        assert!(!h.ok);
        assert_eq!(h.probe_count, 5);
        assert_eq!(h.failed_probes, vec!["b", "d"]);
        assert_eq!(h.failed_probe_count, 2);
    }

    #[test]
    fn ok_only_in_healthy_and_degraded() {
        let oks: Vec<_> = SystemState::ALL.iter().filter(|s| s.is_ok()).collect();
        assert_eq!(oks, [&SystemState::Healthy, &SystemState::Degraded]);
    }

    #[test]
    fn streak_counts_repeats_and_restarts_on_change() {
        let mut s = StatusSnapshot::new(0);
        for st in [Status::Fail, Status::Timeout, Status::Error] {
            s.record_probe(&result("a", st), true);
        }
        assert_eq!(s.probes[0].streak, 3);
        s.record_probe(&result("a", Status::Blocked), true);
        assert_eq!(s.probes[0].streak, 3, "blocked leaves the streak alone");
        s.record_probe(&result("a", Status::Pass), true);
        assert_eq!(s.probes[0].streak, 1);
        assert_eq!(s.probes[0].output, "pass output");
        assert_eq!(s.probes.len(), 1);
    }

    #[test]
    fn from_core_fills_what_the_core_and_the_config_know() {
        use crate::core::{CoreConfig, Event};
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("c.toml");
        std::fs::write(
            &main,
            "host = \"web-1\"\n[script.api]\ncommand = \"true\"\ncritical = true\ncritical_after_consecutive_failures = 1\n[tcp.db]\naddress = \"127.0.0.1:5432\"\n",
        )
        .unwrap();
        let cfg = crate::config::load(&crate::config::LoadOptions {
            config: Some(main),
            ..Default::default()
        })
        .config
        .expect("valid");
        let mut core = Core::new(CoreConfig::from_config(&cfg));
        let t0: Millis = 1_700_000_000_000;
        let mut api = result("api", Status::Fail);
        api.kind = "script".into();
        core.step(Event::ProbeResults {
            at: t0,
            results: vec![api],
        });
        core.step(Event::Silence {
            at: t0 + 1000,
            probe: "db".into(),
            until: t0 + 600_000,
        });
        let s = StatusSnapshot::from_core(&core, &cfg, t0 + 2000);
        assert_eq!(s.host, "web-1");
        assert!(!s.state.is_ok(), "{:?}", s.state);
        assert_eq!(s.since_unix, t0 / 1000);
        assert_eq!(s.consecutive_failures, 1);
        assert_eq!(s.updated_at_unix, t0 / 1000 + 2);
        let names: Vec<(&str, &str)> = s
            .probes
            .iter()
            .map(|p| (p.name.as_str(), p.kind.as_str()))
            .collect();
        assert_eq!(names, [("api", "script"), ("db", "tcp")]);
        let (a, d) = (&s.probes[0], &s.probes[1]);
        assert_eq!(a.status, Some(Status::Fail));
        assert!(!a.passed);
        assert_eq!(a.output, "fail output");
        assert_eq!(a.started_at, Some(t0));
        assert_eq!(a.streak, 1);
        assert_eq!(d.status, None, "db has not run");
        let sl = d.silenced.as_ref().expect("db is silenced");
        assert_eq!(sl.until_unix, t0 / 1000 + 600);
        assert_eq!(sl.by, None, "who silenced it is the daemon's to say");
        let i = s.incident.as_ref().expect("an incident is open");
        assert_eq!(i.id, "1");
        assert_eq!(i.started_unix, t0 / 1000);
        assert_eq!(i.failing_probes, ["api"]);
        assert!(!i.acknowledged);
        assert!(i.timeline.is_empty());
        assert!(s.worker.is_none() && s.transitions.is_empty() && s.config_error.is_none());
    }

    #[test]
    fn state_serializes_lowercase() {
        let s = StatusSnapshot::new(0);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["state"], "healthy");
        let back: StatusSnapshot = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }
}
