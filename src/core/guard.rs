//! The guarded agent's data (all pure): a reviewed proposal, pending approvals with their
//! expiry, queued catalogue actions, and what the budgets and the circuit breaker count.
//! The rules are in `machine/guard.rs`; `docs/agent.md` describes them.

use super::{ActionId, IncidentId, Millis};
use serde::{Deserialize, Serialize};

/// What Talon made of one proposed action before the core's budgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "why", rename_all = "snake_case")]
pub enum Verdict {
    /// In the catalogue, allowed for the failing probes, `approval = "auto"`.
    Auto,
    /// Same, `approval = "human"`: it waits for `talon approve N`.
    Human,
    /// Not run, and why (unknown, not allowed for these probes, repeated, over budget).
    Refused(String),
}

/// One proposed action, reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviewed {
    pub name: String,
    /// The agent's reason (shown to the approver).
    pub reason: String,
    pub verdict: Verdict,
    /// The action's `max_per_day` (0 when it is not in the catalogue).
    pub max_per_day: u32,
}

/// An action waiting for a human, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingApproval {
    pub id: u64,
    pub incident: IncidentId,
    /// The agent run that proposed it.
    pub agent: ActionId,
    pub name: String,
    pub reason: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// An action cleared to run (auto, or approved), waiting for its turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub name: String,
    pub reason: String,
    /// `"auto"` or who approved it.
    pub approved_by: String,
}

/// One run of a catalogue action (for `max_per_day`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRun {
    pub name: String,
    pub at: Millis,
}

/// A rolling day, for the daily budgets.
pub const DAY: Millis = 86_400_000;
