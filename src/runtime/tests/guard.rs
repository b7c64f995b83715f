//! The guarded agent through the real runtime, in paused time: a proposal's `auto` action runs
//! and is verified, a `human` one waits for `approve` (or expires and the ladder goes on),
//! budgets hold, and the circuit breaker skips the agent after N runs that fixed nothing until
//! `talon agent reset`.
//!
//! Timeline (defaults, debounce 2, max 1 heal): 60 s incident + heal, 70 s the heal's re-probe
//! fails → investigating → the (cloud) agent runs; agent_cooldown 600 s; critical_threshold
//! 900 s after critical.

use super::Step::*;
use super::Want::*;
use super::{Rig, secs};
use crate::core::AgentTier::Cloud;
use crate::core::NotifyKind::{Approval, Sos};
use crate::core::SystemState::{Critical, Healthy, Sos as SosState};

fn config(agent: &str) -> String {
    format!(
        r#"state_dir = "state"

[escalation]
max_heals_per_incident = 1

[agent]
cloud_command = "stand-in-agent"
mode = "propose"
{agent}

[actions.restart-target]
command = "restart-target --hard"
description = "restart the target service"
for = ["target"]
approval = "auto"

[actions.flush-cache]
command = "flush-cache"
description = "drop the target's cache"
for = ["target"]
approval = "human"

[actions.wipe-other]
command = "wipe-other"
for = ["other"]
approval = "auto"

[script.target]
command = "check-target"
critical = true
critical_after_consecutive_failures = 2
heal = "restart-target"

[script.other]
command = "check-other"

[notify.ops]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
"#
    )
}

const AUTO: &str = "I looked.\n```talon-actions\n{\"diagnosis\": \"target hung\", \"actions\": [{\"name\": \"restart-target\", \"reason\": \"it hangs\"}]}\n```\n";
const HUMAN: &str = "```talon-actions\n{\"diagnosis\": \"stale cache\", \"actions\": [{\"name\": \"flush-cache\", \"reason\": \"cache is stale\"}]}\n```\n";
/// Proposes an action that is not in the catalogue and one that is for another probe, twice.
const RECKLESS: &str = "```talon-actions\n{\"diagnosis\": \"everything is broken\", \"actions\": [{\"name\": \"rm-rf\", \"reason\": \"start over\"}, {\"name\": \"wipe-other\", \"reason\": \"why not\"}, {\"name\": \"wipe-other\", \"reason\": \"again\"}]}\n```\n";

#[tokio::test(start_paused = true)]
async fn an_auto_action_runs_is_verified_and_the_incident_closes() {
    let mut rig = Rig::new(&config(""));
    rig.run(vec![
        Fail("target"),
        AgentSays(AUTO),
        ActionFixes("restart-target", "target"),
        Start,
        At(secs(60), Opened),
        At(secs(60), Heal),
        At(secs(70), Agent(Cloud)),
        At(secs(70), Action("restart-target")),
        At(secs(120), Closed),
        At(secs(120), State(Healthy)),
    ])
    .await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_human_action_waits_for_approve_then_runs() {
    let mut rig = Rig::new(&config(""));
    rig.run(vec![
        Fail("target"),
        AgentSays(HUMAN),
        ActionFixes("flush-cache", "target"),
        Start,
        At(secs(70), Agent(Cloud)),
        At(secs(70), ApprovalRequested),
        At(secs(70), AnyNotify(Approval)),
        // Nothing runs while it waits.
        Quiet(secs(70), secs(200), Action("flush-cache")),
        Approve(1),
        At(secs(200), ApprovalDecided(true, "tester")),
        At(secs(200), Action("flush-cache")),
        At(secs(240), Closed),
    ])
    .await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_denied_or_expired_approval_moves_the_ladder_on() {
    let mut rig = Rig::new(&config("approval_timeout_secs = 300"));
    rig.run(vec![
        Fail("target"),
        AgentSays(HUMAN),
        Start,
        At(secs(70), ApprovalRequested),
        // Unanswered: it expires after approval_timeout, is not run, and the ladder goes on.
        At(secs(370), ApprovalDecided(false, "expiry")),
        At(secs(370), State(Critical)),
        // The next agent run (agent_cooldown after 70 s) proposes it again: denied this time.
        At(secs(670), Agent(Cloud)),
        At(secs(670), ApprovalRequested),
        Until(secs(700)),
        Deny(2),
        At(secs(700), ApprovalDecided(false, "tester")),
        Quiet(secs(0), secs(1000), Action("flush-cache")),
    ])
    .await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_after_runs_that_fixed_nothing_and_reset_closes_it() {
    let mut rig = Rig::new(&config("breaker_after = 2"));
    rig.run(vec![
        Fail("target"),
        AgentSays(RECKLESS),
        Start,
        // Run 1: everything refused (unknown, for another probe, repeated): a miss.
        At(secs(70), Agent(Cloud)),
        At(secs(70), State(Critical)),
        // Run 2 at agent_cooldown: a miss again, the breaker opens.
        At(secs(670), Agent(Cloud)),
        At(secs(670), Breaker(true)),
        // Skipped from then on; the SOS still goes out at the threshold.
        At(secs(970), State(SosState)),
        At(secs(970), AnyNotify(Sos)),
        Quiet(secs(671), secs(3000), Agent(Cloud)),
        // A human closes it: the agent tier runs again at its cooldown.
        AgentReset,
        At(secs(3000), Breaker(false)),
        At(secs(3000), Agent(Cloud)),
        Quiet(secs(0), secs(3001), Action("rm-rf")),
        Quiet(secs(0), secs(3001), Action("wipe-other")),
    ])
    .await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_per_incident_budget_stops_agent_runs() {
    let mut rig = Rig::new(&config("max_runs_per_incident = 1"));
    rig.run(vec![
        Fail("target"),
        AgentSays("no block at all, just prose"),
        Start,
        At(secs(70), Agent(Cloud)),
        At(secs(70), State(Critical)),
        Quiet(secs(71), secs(2000), Agent(Cloud)),
        StateIs(SosState),
    ])
    .await;
    rig.stop().await;
}
