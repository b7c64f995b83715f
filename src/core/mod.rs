//! The escalation state machine, as pure logic.
//!
//! [`Core::step`] takes one [`Event`] — which carries its own time `at` (unix milliseconds, the
//! same unit as [`ProbeResult::started_at`]) — and returns the [`Action`]s to run. Nothing in here
//! reads a clock, does I/O, spawns or logs: timers are data ([`Action::WakeAt`]), cooldowns are
//! comparisons against the event's time, and everything the store must remember is returned as
//! [`Action::Record`]. The exact rules are in `docs/state-machine.md`.
//!
//! The runtime's contract:
//! - feed every scheduled probe cycle (and the worker's health, as a probe named
//!   [`WORKER_PROBE`]) as [`Event::ProbeResults`];
//! - execute [`Action::RunHeal`]/[`Action::RunAgent`]/[`Action::Notify`] concurrently and feed
//!   their results back ([`Event::HealFinished`], [`Event::AgentFinished`], [`Event::NotifyResult`]);
//! - on [`Action::Reprobe`], run those probes at (or after) `at` and feed [`Event::Reprobe`];
//! - keep ONE timer: each [`Action::WakeAt`] replaces the previous one; when it fires, send
//!   [`Event::Tick`];
//! - on [`Action::Persist`], save [`Core::persisted`] (the store's writer does it with the
//!   step's records in one transaction).

mod config;
pub mod guard;
mod machine;
pub mod outcome;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;

pub use config::{CoreConfig, GuardConfig, OwnHeal, ProbeRule, Routing, Step, WORKER_PROBE};
pub use machine::{Core, NextStep, Outlook, ProbeView, WindowView, fmt_duration};

pub use guard::{ActionRun, PendingApproval, Queued, Reviewed, Verdict};
pub use outcome::{Outcome, ProbeResult, Status};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Unix time in milliseconds. Every time in the core uses it.
pub type Millis = i64;
/// An incident's id (1, 2, 3, … for the life of the state dir).
pub type IncidentId = u64;
/// A heal, agent run or notification's id (one sequence for all three).
pub type ActionId = u64;

/// The system's state, shown everywhere.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SystemState {
    /// Every probe's latest run passed.
    #[default]
    Healthy,
    /// Something is not passing, but nothing escalates (non-critical, debouncing, blocked,
    /// silenced).
    Degraded,
    /// An incident is open; tier 1 (heal) is in progress or waiting for its cooldown.
    Failed,
    /// The heal did not fix it; tier 2/3 (agent).
    Investigating,
    /// Automation did not fix it; heal/agent are retried at their cooldowns; SOS after
    /// `critical_threshold`.
    Critical,
    /// A human was (or is being) paged; reminders per incident.
    Sos,
}

impl SystemState {
    /// Every state, in escalation order (one metric series per state).
    pub const ALL: [SystemState; 6] = [
        SystemState::Healthy,
        SystemState::Degraded,
        SystemState::Failed,
        SystemState::Investigating,
        SystemState::Critical,
        SystemState::Sos,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SystemState::Healthy => "healthy",
            SystemState::Degraded => "degraded",
            SystemState::Failed => "failed",
            SystemState::Investigating => "investigating",
            SystemState::Critical => "critical",
            SystemState::Sos => "sos",
        }
    }
    /// Healthy or degraded: nothing escalating (`/health` 200, `talon status` exit 0).
    pub fn is_ok(self) -> bool {
        matches!(self, SystemState::Healthy | SystemState::Degraded)
    }
    /// Parse the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "healthy" => SystemState::Healthy,
            "degraded" => SystemState::Degraded,
            "failed" => SystemState::Failed,
            "investigating" => SystemState::Investigating,
            "critical" => SystemState::Critical,
            "sos" => SystemState::Sos,
            _ => return None,
        })
    }
}

impl std::fmt::Display for SystemState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One probe's debounced state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    /// No scheduled result yet.
    Pending,
    Passing,
    /// Failed, but fewer than `fail_after` times in a row.
    Debouncing,
    Failing,
    /// Changed state more than `flap_threshold` times in `flap_window`; treated as failing.
    Flapping,
    /// Not run: a dependency failed. Never escalates (its root does).
    Blocked,
}

impl ProbeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeState::Pending => "pending",
            ProbeState::Passing => "passing",
            ProbeState::Debouncing => "debouncing",
            ProbeState::Failing => "failing",
            ProbeState::Flapping => "flapping",
            ProbeState::Blocked => "blocked",
        }
    }
}

/// How a heal or agent run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RunOutcome {
    Exited {
        code: i32,
    },
    TimedOut,
    SpawnFailed {
        error: String,
    },
    /// Talon restarted while it ran; its result is unknown.
    Lost,
}

impl RunOutcome {
    /// Exit 0. (Never taken as "fixed": only probes passing are.)
    pub fn succeeded(&self) -> bool {
        matches!(self, RunOutcome::Exited { code: 0 })
    }
    pub fn describe(&self) -> String {
        match self {
            RunOutcome::Exited { code } => format!("exit {code}"),
            RunOutcome::TimedOut => "timed out".into(),
            RunOutcome::SpawnFailed { error } => format!("could not start: {error}"),
            RunOutcome::Lost => "lost (Talon restarted while it ran)".into(),
        }
    }
}

/// Agent tiers: 2 = cloud command, 3 = local command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentTier {
    Cloud,
    Local,
}

impl AgentTier {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentTier::Cloud => "cloud",
            AgentTier::Local => "local",
        }
    }
    /// The ladder's tier number (2 or 3).
    pub fn number(self) -> u8 {
        match self {
            AgentTier::Cloud => 2,
            AgentTier::Local => 3,
        }
    }
}

/// One part of a heal run. The runtime runs the steps of one [`Action::RunHeal`] in order and
/// reports one [`Event::HealFinished`] (worst outcome, outputs concatenated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum HealStep {
    /// The probe's own `heal` (a command, or a launchd/systemd restart).
    Probe { probe: String },
    /// Graceful restart of the supervised worker (the `worker` pseudo-probe's heal).
    RestartWorker,
    /// `bridge_heal`: these probes fail while their witnesses pass (split-brain).
    Bridge { probes: Vec<String> },
    /// The global `heal_script`, for failing roots without a heal of their own.
    Global { probes: Vec<String> },
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    Sos,
    Reminder,
    Resolved,
    /// A proposed action waits for a human's `approve`/`deny`.
    Approval,
}

impl NotifyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Sos => "sos",
            NotifyKind::Reminder => "reminder",
            NotifyKind::Resolved => "resolved",
            NotifyKind::Approval => "approval",
        }
    }
}

/// A failing probe as a notification or the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingProbe {
    pub name: String,
    pub status: Option<Status>,
    pub output: String,
    /// When its current failure began.
    pub since: Option<Millis>,
}

/// A message for the humans. `text` is ready to send; the rest are the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: ActionId,
    pub incident: IncidentId,
    pub kind: NotifyKind,
    pub created_at: Millis,
    /// Deliveries tried so far (0 on the first send).
    pub attempt: u32,
    pub state: SystemState,
    pub incident_opened_at: Millis,
    pub failing: Vec<FailingProbe>,
    /// One line: the newest action and how it ended.
    pub last_action: Option<String>,
    /// Every action tried in the incident so far, oldest first (see [`Incident::tried`]).
    #[serde(default)]
    pub tried: Vec<String>,
    pub text: String,
    /// The channels to send on (an escalation policy's step); `None`: every channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
}

/// One channel's answer to a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelResult {
    pub channel: String,
    pub delivered: bool,
    /// Error or receipt, short.
    pub detail: String,
}

/// A state change of the system (`subject = "system"`) or of one probe (`subject` = its name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at: Millis,
    pub subject: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub incident: Option<IncidentId>,
}

/// Kind of a timeline action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Heal,
    Agent,
    /// A catalogue action an agent proposed (run automatically or approved by a human).
    Action,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Heal => "heal",
            ActionKind::Agent => "agent",
            ActionKind::Action => "action",
        }
    }
}

/// Facts for the history. The store writes them; nothing else depends on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    Transition(Transition),
    IncidentOpened {
        incident: IncidentId,
        at: Millis,
        probes: Vec<String>,
    },
    /// The set of failing probes of an open incident grew.
    IncidentProbes {
        incident: IncidentId,
        probes: Vec<String>,
    },
    IncidentClosed {
        incident: IncidentId,
        at: Millis,
        reason: String,
    },
    ActionStarted {
        incident: IncidentId,
        action: ActionId,
        kind: ActionKind,
        tier: Option<AgentTier>,
        at: Millis,
        /// What runs: heal steps, or the agent tier and probes.
        detail: String,
    },
    ActionFinished {
        action: ActionId,
        at: Millis,
        outcome: RunOutcome,
        output: String,
    },
    /// The verification re-probe's answer (or why there was none).
    ActionVerdict {
        action: ActionId,
        at: Millis,
        verdict: String,
    },
    /// A notification was handed to the channels (first send or a retry).
    NotificationSent {
        notification: Notification,
    },
    NotificationResult {
        notification: ActionId,
        at: Millis,
        delivered: bool,
        channels: Vec<ChannelResult>,
    },
    /// A notification was dropped without delivery (its incident ended or was acknowledged).
    NotificationDropped {
        notification: ActionId,
        at: Millis,
        reason: String,
    },
    /// An incident paged a human (first delivered SOS).
    Paged {
        incident: IncidentId,
        at: Millis,
    },
    Acked {
        incident: IncidentId,
        at: Millis,
    },
    Silenced {
        probe: String,
        at: Millis,
        until: Millis,
    },
    /// What an agent proposed (`propose`/`diagnose` mode) and what Talon made of each action.
    Proposal {
        incident: IncidentId,
        agent: ActionId,
        at: Millis,
        diagnosis: Option<String>,
        /// "no talon-actions block: no action", …
        note: String,
        items: Vec<Reviewed>,
    },
    /// A proposed action now waits for a human.
    ApprovalRequested {
        approval: PendingApproval,
    },
    /// A human approved or denied, or it expired (`by` = "expiry").
    ApprovalDecided {
        approval: u64,
        incident: IncidentId,
        at: Millis,
        approved: bool,
        by: String,
    },
    /// The agent's circuit breaker opened, or was reset.
    Breaker {
        at: Millis,
        open: bool,
        reason: String,
    },
}

/// Something for the runtime to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Tier 1. Answer with [`Event::HealFinished`] carrying `id`.
    RunHeal {
        id: ActionId,
        incident: IncidentId,
        steps: Vec<HealStep>,
        /// The failing roots this heal is for.
        probes: Vec<String>,
    },
    /// Tier 2 (cloud) or 3 (local). Answer with [`Event::AgentFinished`] carrying `id`.
    RunAgent {
        id: ActionId,
        incident: IncidentId,
        tier: AgentTier,
        probes: Vec<String>,
    },
    /// Run a catalogue action (proposed by an agent, cleared by approval). Answer with
    /// [`Event::HealFinished`] carrying `id`.
    RunCatalogued {
        id: ActionId,
        incident: IncidentId,
        name: String,
        /// `"auto"` or who approved it.
        approved_by: String,
        probes: Vec<String>,
    },
    /// Send on every configured channel. Answer with [`Event::NotifyResult`] carrying its id.
    Notify(Notification),
    /// Run these probes once at `at` (not before) and answer with [`Event::Reprobe`]. Their
    /// results verify a heal/agent and never advance streaks.
    Reprobe {
        incident: IncidentId,
        probes: Vec<String>,
        at: Millis,
    },
    /// Send [`Event::Tick`] at `at`. Replaces any earlier `WakeAt`.
    WakeAt { at: Millis },
    /// Store this fact.
    Record(Record),
    /// Persisted state changed: save [`Core::persisted`].
    Persist,
}

/// Everything that can happen to the core. Each carries its time `at`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Results of scheduled probe runs (a whole cycle or part of one). These, and only these,
    /// advance streaks.
    ProbeResults {
        at: Millis,
        results: Vec<ProbeResult>,
    },
    /// Results of a verification re-probe requested by [`Action::Reprobe`].
    Reprobe {
        at: Millis,
        results: Vec<ProbeResult>,
    },
    HealFinished {
        at: Millis,
        id: ActionId,
        outcome: RunOutcome,
        output: String,
    },
    AgentFinished {
        at: Millis,
        id: ActionId,
        outcome: RunOutcome,
        output: String,
    },
    NotifyResult {
        at: Millis,
        id: ActionId,
        channels: Vec<ChannelResult>,
    },
    /// An agent run in `propose` or `diagnose` mode ended (instead of [`Event::AgentFinished`]):
    /// its transcript's proposal, reviewed against the catalogue.
    AgentProposed {
        at: Millis,
        id: ActionId,
        outcome: RunOutcome,
        output: String,
        diagnosis: Option<String>,
        note: String,
        items: Vec<Reviewed>,
    },
    /// A human approved a pending action.
    Approve {
        at: Millis,
        approval: u64,
        by: String,
    },
    /// A human denied a pending action.
    Deny {
        at: Millis,
        approval: u64,
        by: String,
    },
    /// Close the agent's circuit breaker (`talon agent reset`).
    AgentReset {
        at: Millis,
        by: String,
    },
    Tick {
        at: Millis,
    },
    /// A new config; streaks of probes whose rule is unchanged are kept.
    Reload {
        at: Millis,
        config: Box<CoreConfig>,
    },
    /// Stop reminders for an incident.
    Ack {
        at: Millis,
        incident: IncidentId,
    },
    /// Probe is recorded but neither escalates nor pages until `until` (`until <= at` lifts it).
    Silence {
        at: Millis,
        probe: String,
        until: Millis,
    },
    /// Start or end a run-time maintenance window.
    Maintenance {
        at: Millis,
        change: MaintenanceChange,
    },
    /// The wall clock stepped by `delta` ms (positive: forward) against monotonic time. Every
    /// stored time moves by `delta`, so each cooldown, window and deadline keeps the time it
    /// had left; `at` is already in the new scale.
    ClockStep {
        at: Millis,
        delta: Millis,
    },
}

impl Event {
    /// The event's time.
    pub fn at(&self) -> Millis {
        match self {
            Event::ProbeResults { at, .. }
            | Event::Reprobe { at, .. }
            | Event::HealFinished { at, .. }
            | Event::AgentFinished { at, .. }
            | Event::NotifyResult { at, .. }
            | Event::AgentProposed { at, .. }
            | Event::Approve { at, .. }
            | Event::Deny { at, .. }
            | Event::AgentReset { at, .. }
            | Event::Tick { at }
            | Event::Reload { at, .. }
            | Event::Ack { at, .. }
            | Event::Silence { at, .. }
            | Event::Maintenance { at, .. }
            | Event::ClockStep { at, .. } => *at,
        }
    }
}

/// The last scheduled result of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    pub status: Status,
    pub output: String,
    pub at: Millis,
}

/// Per-probe memory: streaks, debounced state, flap history, silence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeTrack {
    /// Failures in a row (scheduled runs only).
    pub fail_streak: u32,
    /// Passes in a row (scheduled runs only).
    pub pass_streak: u32,
    /// Debounced: failed `fail_after` times in a row and not yet recovered.
    pub failing: bool,
    /// When the current failure streak began.
    pub failing_since: Option<Millis>,
    pub flapping: bool,
    /// Times of pass↔fail changes inside the flap window.
    pub changes: Vec<Millis>,
    pub last: Option<LastResult>,
    pub silenced_until: Option<Millis>,
    /// The state last recorded as a transition.
    pub state: Option<ProbeState>,
}

/// A heal or agent run in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub id: ActionId,
    pub kind: ActionKind,
    pub tier: Option<AgentTier>,
    pub started_at: Millis,
    /// The failing roots it was started for (what its verification re-probes).
    pub probes: Vec<String>,
    /// Set on restore: its result will never arrive.
    #[serde(default)]
    pub lost: bool,
    /// A catalogue action's name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A verification re-probe due after a heal/agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verify {
    pub action: ActionId,
    pub kind: ActionKind,
    pub probes: Vec<String>,
    pub due: Millis,
    /// The [`Action::Reprobe`] was emitted (reset on restore so it is asked again).
    pub requested: bool,
}

/// The open incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub opened_at: Millis,
    /// Every probe that failed during the incident.
    pub probes: BTreeSet<String>,
    /// Failed, Investigating, Critical or Sos.
    pub stage: SystemState,
    pub stage_since: Millis,
    pub heals: u32,
    /// Agent attempts started (a tier-3 fallback counts in its attempt).
    pub agents: u32,
    pub critical_since: Option<Millis>,
    pub running: Option<Running>,
    pub verify: Option<Verify>,
    /// A verification passed: hold the ladder until a scheduled run of these probes fails.
    pub hold: Option<Vec<String>>,
    /// The action whose verification passed (for its final verdict).
    pub held_action: Option<ActionId>,
    /// First delivered SOS.
    pub paged_at: Option<Millis>,
    /// Last SOS/reminder created (reminders are due `sos_cooldown` after it).
    pub last_page_at: Option<Millis>,
    pub acked_at: Option<Millis>,
    /// Newest action and how it ended, for messages.
    pub last_action: Option<String>,
    /// Every action that ended during the incident, oldest first, one line each (the newest
    /// [`TRIED_KEEP`] are kept), for the "Tried:" section of messages.
    #[serde(default)]
    pub tried: Vec<String>,
    /// Proposed actions waiting for a human.
    #[serde(default)]
    pub approvals: Vec<PendingApproval>,
    /// Cleared actions waiting to run, in order.
    #[serde(default)]
    pub queue: Vec<Queued>,
    /// The agent run whose proposal is being worked through (its actions, approvals).
    #[serde(default)]
    pub episode: Option<ActionId>,
    /// The newest agent diagnosis.
    #[serde(default)]
    pub diagnosis: Option<String>,
    /// Agent attempts started for `agent.max_runs_per_incident` (a tier-3 fallback belongs to
    /// its attempt).
    #[serde(default)]
    pub agent_attempts: u32,
    /// When the incident went to `sos` (escalation policies count their steps from here).
    #[serde(default)]
    pub sos_at: Option<Millis>,
    /// Escalation policy → how many of its steps were reached (`*`: every channel at once, for
    /// probes without a policy). Persisted, so a restart neither repeats nor skips a step.
    #[serde(default)]
    pub steps: BTreeMap<String, u32>,
}

/// How many ended actions an incident keeps for its messages.
pub const TRIED_KEEP: usize = 8;

/// A notification not yet delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub notification: Notification,
    /// Sent and no result yet (reset on restore so it is sent again).
    pub in_flight: bool,
    /// Next delivery attempt (after a failed one).
    pub next_attempt_at: Millis,
}

/// Everything the core remembers; saved on [`Action::Persist`] and handed back to
/// [`Core::restore`] after a restart. Times are wall-clock unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    pub version: u32,
    pub state: SystemState,
    pub since: Millis,
    pub probes: BTreeMap<String, ProbeTrack>,
    pub incident: Option<Incident>,
    pub last_heal_at: Option<Millis>,
    pub last_agent_at: Option<Millis>,
    pub last_sos_at: Option<Millis>,
    pub pending: Vec<Pending>,
    /// A heal/agent still running after its incident closed: no new one starts until it ends
    /// (one action at a time, whatever the incident).
    #[serde(default)]
    pub orphan: Option<Running>,
    /// The last incident's id (0 = none yet).
    pub last_incident: IncidentId,
    /// The last heal/agent/notification id.
    pub last_action: ActionId,
    /// Starts of agent runs in the last day (`agent.max_runs_per_day`).
    #[serde(default)]
    pub agent_runs: Vec<Millis>,
    /// Catalogue action runs in the last day (`max_per_day`).
    #[serde(default)]
    pub action_runs: Vec<ActionRun>,
    /// Agent runs in a row that fixed nothing (the circuit breaker opens at
    /// `agent.breaker_after`).
    #[serde(default)]
    pub agent_misses: u32,
    /// The breaker is open: the agent tier is skipped until a run succeeds or a human resets it.
    #[serde(default)]
    pub breaker_open: bool,
    /// The last approval id.
    #[serde(default)]
    pub last_approval: u64,
    /// Maintenance windows started at run time (`talon maintenance start`).
    #[serde(default)]
    pub maintenance: Vec<ManualWindow>,
}

/// A maintenance window started at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualWindow {
    pub name: String,
    /// Probe names or globs.
    pub probes: Vec<String>,
    pub start: Millis,
    pub end: Millis,
    /// Heal and run agents inside the window (never page).
    #[serde(default)]
    pub heal: bool,
}

/// Start or end a run-time maintenance window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaintenanceChange {
    Start(ManualWindow),
    /// End the named run-time window (`None`: every run-time window).
    End {
        name: Option<String>,
    },
}

impl Default for PersistedState {
    fn default() -> Self {
        PersistedState {
            version: 1,
            state: SystemState::Healthy,
            since: 0,
            probes: BTreeMap::new(),
            incident: None,
            last_heal_at: None,
            last_agent_at: None,
            last_sos_at: None,
            pending: Vec::new(),
            orphan: None,
            last_incident: 0,
            last_action: 0,
            agent_runs: Vec::new(),
            action_runs: Vec::new(),
            agent_misses: 0,
            breaker_open: false,
            last_approval: 0,
            maintenance: Vec::new(),
        }
    }
}
