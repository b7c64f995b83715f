//! The escalation ladder through the real runtime, as tables in paused time.
//!
//! The config is the documented defaults (probes every 60 s, and `[escalation]`: heal_settle
//! 10 s, heal_cooldown 300 s, 3 heals per incident, agent_cooldown 600 s, critical_threshold
//! 900 s, sos_cooldown 4 h, notify_retry 30 s) with a debounce of 2, so the times in the tables
//! are the times an operator would see. With the probe failing from the start:
//!
//! | t       | what |
//! |---------|------|
//! | 0 s     | first failure: degraded (debouncing) |
//! | 60 s    | second failure: incident 1 opens (failed), tier 1 heal |
//! | 70 s    | re-probe after heal_settle fails: investigating, cloud agent fails, local agent at once |
//! | 80 s    | re-probe fails again: critical (`critical_since`) |
//! | 980 s   | critical_threshold later: sos, SOS on every channel |
//! | +4 h    | a reminder per sos_cooldown until acknowledged |

use super::Plan::{Fail as Refused, Hang, Ok as Taken, Panic};
use super::Step::*;
use super::Want::*;
use super::{Rig, secs};
use crate::core::AgentTier::{Cloud, Local};
use crate::core::NotifyKind::{Reminder, Resolved, Sos};
use crate::core::SystemState::{Critical, Degraded, Failed, Healthy, Investigating};
use crate::supervise::WorkerEvent;
use std::time::Duration;

/// When the SOS goes out: critical at 80 s + critical_threshold.
const SOS_AT: u64 = 980;
/// sos_cooldown (the default).
const H4: u64 = 4 * 3600;

/// The first scheduled run after `t` seconds (runs are every 60 s from 0).
fn next_run(t: u64) -> u64 {
    (t / 60 + 1) * 60
}

/// The ladder's config: `escalation` lines go into `[escalation]`, `extra` at the end.
pub(super) fn config(escalation: &str, extra: &str) -> String {
    format!(
        r#"state_dir = "state"

[escalation]
{escalation}

[agent]
cloud_command = "cloud-agent --diagnose"
local_command = "local-agent --diagnose"

[script.target]
command = "check-target"
critical = true
critical_after_consecutive_failures = 2
heal = "restart-target"

[notify.ops]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
{extra}
"#
    )
}

/// The table every paging test starts with: the probe fails until the SOS is delivered.
pub(super) fn up_to_sos() -> Vec<super::Step> {
    vec![
        Fail("target"),
        Start,
        At(secs(0), State(Degraded)),
        At(secs(60), Opened),
        At(secs(60), State(Failed)),
        At(secs(60), Heal),
        At(secs(70), State(Investigating)),
        At(secs(70), Agent(Cloud)),
        At(secs(70), Agent(Local)),
        At(secs(80), State(Critical)),
    ]
}

#[tokio::test(start_paused = true)]
async fn ladder_heal_agents_sos_reminder_ack_then_resolved() {
    let mut rig = Rig::new(&config("", ""));
    let end = SOS_AT + 2 * H4 + 60;
    let mut table = up_to_sos();
    table.extend([
        // Critical is no dead end: heals again at heal_cooldown within the budget of 3, the
        // agent again at agent_cooldown (after the heal's verification).
        At(secs(360), Heal),
        At(secs(660), Heal),
        At(secs(670), Agent(Cloud)),
        At(secs(670), Agent(Local)),
        At(secs(SOS_AT), State(crate::core::SystemState::Sos)),
        At(secs(SOS_AT), Notify(Sos, Some(0), Taken)),
        At(secs(SOS_AT), Paged),
        At(secs(SOS_AT + H4), Notify(Reminder, Some(0), Taken)),
        // `talon ack` stops the reminders.
        Ack,
        At(secs(SOS_AT + H4), Acked),
        Quiet(secs(SOS_AT + H4), secs(end), AnyNotify(Reminder)),
        // The heal budget (3 per incident) is spent.
        Quiet(secs(661), secs(end), Heal),
        // The probe passes: the incident closes and, since it paged, "resolved" goes out.
        Pass("target"),
        At(secs(next_run(end)), Closed),
        At(secs(next_run(end)), State(Healthy)),
        At(secs(next_run(end)), Notify(Resolved, Some(0), Taken)),
        StateIs(Healthy),
        IncidentIs(None),
    ]);
    let matched = rig.run(table).await;
    let pages: Vec<_> = matched
        .iter()
        .filter_map(|e| match &e.seen {
            super::Seen::Notify { id, incident, .. } => Some((*id, *incident)),
            _ => None,
        })
        .collect();
    assert_eq!(pages.len(), 3, "SOS, reminder, resolved");
    assert!(pages.iter().all(|(_, incident)| *incident == 1));
    assert!(
        pages[0].0 < pages[1].0 && pages[1].0 < pages[2].0,
        "{pages:?}"
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn crash_after_paging_resumes_without_a_second_page() {
    let mut rig = Rig::new(&config("", ""));
    let mut table = up_to_sos();
    table.extend([
        At(secs(SOS_AT), Notify(Sos, Some(0), Taken)),
        At(secs(SOS_AT), Paged),
        Until(secs(1000)),
        Crash,
        Start,
        // The store gave the new runtime the same incident, still paging…
        IncidentIs(Some("1")),
        StateIs(crate::core::SystemState::Sos),
        // …which it does not page again, nor open anew…
        Quiet(secs(1000), secs(SOS_AT + H4 - 30), AnyNotify(Sos)),
        Quiet(secs(61), secs(SOS_AT + H4 - 30), Opened),
        // …and whose reminder keeps the schedule of the SOS paged before the crash.
        At(secs(SOS_AT + H4), Notify(Reminder, Some(0), Taken)),
    ]);
    rig.run(table).await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn crash_while_paging_pages_once_after_the_restart() {
    let mut rig = Rig::new(&config("", ""));
    let mut table = vec![Deliveries(vec![Hang])];
    table.extend(up_to_sos());
    table.extend([
        // The SOS is handed to the channels and Talon dies before any answer.
        At(secs(SOS_AT), Notify(Sos, Some(0), Hang)),
        Until(secs(1000)),
        Crash,
        Start,
        // The restored runtime sends the page it does not know was delivered, at once…
        At(secs(1000), Notify(Sos, None, Taken)),
        At(secs(1000), Paged),
        // …once.
        Quiet(secs(1000), secs(SOS_AT + H4 - 30), AnyNotify(Sos)),
    ]);
    let matched = rig.run(table).await;
    let ids: Vec<_> = matched
        .iter()
        .filter_map(|e| match &e.seen {
            super::Seen::Notify { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1], "the same notification, sent again");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn undelivered_sos_is_retried_with_backoff_and_reminders_keep_their_schedule() {
    let mut rig = Rig::new(&config("", ""));
    let mut table = vec![Deliveries(vec![Refused, Refused])];
    table.extend(up_to_sos());
    table.extend([
        At(secs(SOS_AT), Notify(Sos, Some(0), Refused)),
        // Retried after notify_retry (30 s), then after twice that.
        At(secs(SOS_AT + 30), Notify(Sos, Some(1), Refused)),
        At(secs(SOS_AT + 90), Notify(Sos, Some(2), Taken)),
        At(secs(SOS_AT + 90), Paged),
        // The retries were not reminders: the first is due sos_cooldown after the SOS was made.
        Quiet(secs(SOS_AT), secs(SOS_AT + H4 - 30), AnyNotify(Reminder)),
        At(secs(SOS_AT + H4), Notify(Reminder, Some(0), Taken)),
    ]);
    rig.run(table).await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_while_an_incident_is_open_keeps_it_under_the_new_config() {
    let mut rig = Rig::new(&config("", ""));
    let extra = "[script.extra]\ncommand = \"check-extra\"\n";
    let mut table = up_to_sos();
    table.extend([
        At(secs(SOS_AT), Notify(Sos, Some(0), Taken)),
        Until(secs(1000)),
        // A shorter sos_cooldown and one more probe.
        Reload(config("sos_cooldown_secs = 3600", extra)),
        ConfigError(false),
        StateIs(crate::core::SystemState::Sos),
        IncidentIs(Some("1")),
        // The open incident goes on under the new config: the next reminder is an hour after
        // the SOS, not four.
        At(secs(SOS_AT + 3600), Notify(Reminder, Some(0), Taken)),
        // A broken file never replaces the running config; the error is shown.
        Reload("check_interval_secs = = 30\n".into()),
        ConfigError(true),
        StateIs(crate::core::SystemState::Sos),
        Quiet(secs(61), secs(SOS_AT + 3600), Opened),
        Quiet(secs(SOS_AT), secs(SOS_AT + 3600), AnyNotify(Sos)),
        // Still the reloaded config underneath: recovery resolves the same incident.
        Pass("target"),
        At(secs(next_run(SOS_AT + 3600)), Closed),
        At(
            secs(next_run(SOS_AT + 3600)),
            Notify(Resolved, Some(0), Taken),
        ),
    ]);
    rig.run(table).await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn worker_crash_loop_is_healed_by_a_restart_through_the_real_heal_runner() {
    let worker = "[worker]\ncommand = [\"my-worker\", \"--serve\"]\n";
    let mut rig = Rig::new(&config("", worker)).real_heal();
    let table = vec![
        Start,
        Worker(WorkerEvent::CrashLoop {
            deaths: 5,
            window: Duration::from_secs(60),
            last_error: Some("exit 1".into()),
        }),
        // The `worker` pseudo-probe fails at once (the supervisor already debounced it): an
        // incident, and its own heal, a graceful restart of the worker.
        At(secs(0), Opened),
        At(secs(0), State(Failed)),
        At(secs(0), WorkerRestart),
        Worker(WorkerEvent::Healthy { pid: 42 }),
        At(secs(0), Closed),
        StateIs(Healthy),
        // It never paged, so nothing is sent.
        Quiet(secs(0), secs(SOS_AT + 60), AnyNotify(Resolved)),
        Quiet(secs(0), secs(SOS_AT + 60), AnyNotify(Sos)),
    ];
    rig.run(table).await;
    rig.stop().await;
}

/// Commands from chat enter the same inbox: a stranger's `/ack` changes nothing, the allowed
/// chat's stops the reminders, and an update seen twice (a poller restarted by a reload asks
/// again) is applied once.
#[tokio::test(start_paused = true)]
async fn chat_ack_from_the_allowed_chat_only() {
    let tg = "[notify.tg]\nkind = \"telegram\"\nchat_id = 42\ntoken_env = \"TALON_TEST_NO_SUCH_TOKEN\"\ncommands = true\n";
    let mut rig = Rig::new(&config("", tg));
    let mut table = up_to_sos();
    table.extend([
        At(secs(SOS_AT), Notify(Sos, Some(0), Taken)),
        At(secs(SOS_AT), Paged),
        Chat(100, 999, "/ack"),
        At(secs(SOS_AT + H4), Notify(Reminder, Some(0), Taken)),
        Quiet(secs(0), secs(SOS_AT + H4 + 1), Acked),
        Chat(101, 42, "/ack@talon_bot"),
        At(secs(SOS_AT + H4), Acked),
        Chat(101, 42, "/silence target 1h"),
        Quiet(
            secs(SOS_AT + H4),
            secs(SOS_AT + 3 * H4),
            AnyNotify(Reminder),
        ),
    ]);
    rig.run(table).await;
    let snap = rig.running().board.get();
    let inc = snap.incident.expect("open");
    assert_eq!(inc.acked_by.as_deref(), Some("telegram:42 (op)"));
    let target = snap.probes.iter().find(|p| p.name == "target").unwrap();
    assert!(
        target.silenced.is_none(),
        "update 101 seen twice is applied once"
    );
}

/// A heal whose task panics is answered as a heal that could not run: no settle wait, the
/// agents at once, critical and the SOS on time (before, the core waited for the heal's answer
/// forever and nothing after it happened).
#[tokio::test(start_paused = true)]
async fn a_heal_that_panics_counts_as_failed_and_the_ladder_goes_on() {
    let mut rig = Rig::new(&config("", ""));
    rig.run(vec![
        HealsPanic,
        Fail("target"),
        Start,
        At(secs(60), Opened),
        At(secs(60), Heal),
        At(secs(60), State(Investigating)),
        At(secs(60), Agent(Cloud)),
        At(secs(60), Agent(Local)),
        At(secs(70), State(Critical)),
        At(secs(970), Notify(Sos, Some(0), Taken)),
        At(secs(970), Paged),
    ])
    .await;
    rig.stop().await;
}

/// A delivery whose task panics is not delivered: retried after notify_retry like a refusal.
#[tokio::test(start_paused = true)]
async fn a_delivery_that_panics_is_retried_like_a_refused_one() {
    let mut rig = Rig::new(&config("", ""));
    let mut table = vec![Deliveries(vec![Panic])];
    table.extend(up_to_sos());
    table.extend([
        At(secs(SOS_AT), Notify(Sos, Some(0), Panic)),
        At(secs(SOS_AT + 30), Notify(Sos, Some(1), Taken)),
        At(secs(SOS_AT + 30), Paged),
    ]);
    rig.run(table).await;
    rig.stop().await;
}

/// A probe run whose task panics gives each of its probes an `error` result: the probe is
/// scheduled again and its failures count (before, it was never run again).
#[tokio::test(start_paused = true)]
async fn a_probe_run_that_panics_fails_its_probes_and_they_run_again() {
    let mut rig = Rig::new(&config("", ""));
    rig.run(vec![
        ProbesPanic,
        Start,
        At(secs(0), State(Degraded)),
        At(secs(60), Opened),
        At(secs(60), Heal),
        // The verification re-probe panics too: a failure, so the ladder goes on.
        At(secs(70), State(Investigating)),
    ])
    .await;
    rig.stop().await;
}
