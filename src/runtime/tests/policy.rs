//! Escalation policies and maintenance windows through the real runtime and store, in paused
//! time: the chain's steps on their channels, a crash mid-chain, an ack between steps, and a
//! run-time maintenance window (`talon maintenance start`) that ends with the probe failing.
//!
//! No heal or agent is configured, so a failing probe is critical at once (at its second failed
//! run, 60 s) and the SOS is `critical_threshold` (900 s) later: at 960 s.

use super::Step::*;
use super::Want::*;
use super::{Rig, secs};
use crate::core::NotifyKind::{Reminder, Resolved, Sos};
use crate::core::SystemState::{Critical, Degraded, Healthy};
use crate::server::control::MaintenanceOp;
use std::time::Duration;

const SOS_AT: u64 = 960;

fn config(extra: &str) -> String {
    format!(
        r#"state_dir = "state"

[script.target]
command = "check-target"
critical = true
critical_after_consecutive_failures = 2

[notify.ops]
kind = "webhook"
url = "http://127.0.0.1:9/ops"

[notify.boss]
kind = "webhook"
url = "http://127.0.0.1:9/boss"

{extra}
"#
    )
}

const CHAIN: &str = r#"
[[policy.default.step]]
after_secs = 0
channels = ["ops"]

[[policy.default.step]]
after_secs = 600
channels = ["boss"]

[[policy.default.step]]
after_secs = 1800
channels = ["ops", "boss"]
"#;

fn to_sos() -> Vec<super::Step> {
    vec![
        Fail("target"),
        Start,
        At(secs(0), State(Degraded)),
        At(secs(60), Opened),
        At(secs(60), State(Critical)),
        At(secs(SOS_AT), NotifyTo(Sos, Some(vec!["ops"]))),
        At(secs(SOS_AT), Paged),
    ]
}

#[tokio::test(start_paused = true)]
async fn a_crash_mid_chain_neither_repeats_nor_skips_a_step() {
    let mut rig = Rig::new(&config(CHAIN));
    let mut table = to_sos();
    table.extend([
        // Down from 1000 s to 1700 s: step 2 (due at 1560 s) falls due meanwhile.
        Until(secs(1000)),
        Crash,
        Until(secs(1700)),
        Start,
        At(secs(1700), NotifyTo(Sos, Some(vec!["boss"]))),
        Quiet(secs(1000), secs(2700), NotifyTo(Sos, Some(vec!["ops"]))),
        At(
            secs(SOS_AT + 1800),
            NotifyTo(Sos, Some(vec!["boss", "ops"])),
        ),
        // Reminders follow the last step reached.
        At(
            secs(SOS_AT + 1800 + 4 * 3600),
            NotifyTo(Reminder, Some(vec!["boss", "ops"])),
        ),
        // Probes run every 60 s from the restart at 1700 s: the next after 17160 s is 17180 s.
        Pass("target"),
        At(secs(17_180), Closed),
        At(secs(17_180), NotifyTo(Resolved, Some(vec!["boss", "ops"]))),
    ]);
    let matched = rig.run(table).await;
    let sos = matched
        .iter()
        .filter(|e| matches!(&e.seen, super::Seen::Notify { kind: Sos, .. }))
        .count();
    assert_eq!(sos, 3, "one page per step: {matched:?}");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_ack_between_two_steps_stops_the_chain() {
    let mut rig = Rig::new(&config(CHAIN));
    let mut table = to_sos();
    table.extend([
        Until(secs(SOS_AT + 60)),
        Ack,
        At(secs(SOS_AT + 60), Acked),
        Quiet(secs(SOS_AT + 1), secs(SOS_AT + 6 * 3600), AnyNotify(Sos)),
        Quiet(
            secs(SOS_AT + 1),
            secs(SOS_AT + 6 * 3600),
            AnyNotify(Reminder),
        ),
    ]);
    rig.run(table).await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn without_a_policy_the_sos_goes_to_every_channel() {
    let mut rig = Rig::new(&config(""));
    rig.run(vec![
        Fail("target"),
        Start,
        At(secs(60), Opened),
        At(secs(SOS_AT), NotifyTo(Sos, None)),
        At(secs(SOS_AT), Paged),
    ])
    .await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_maintenance_window_ends_with_the_probe_failing_and_its_incident_opens_then() {
    let mut rig = Rig::new(&config(""));
    rig.run(vec![
        Start,
        Maintenance(MaintenanceOp::Start {
            name: Some("upgrade".into()),
            probes: vec!["targ*".into()],
            duration: Duration::from_secs(7200),
            heal: false,
        }),
        Fail("target"),
        At(secs(60), State(Degraded)),
        // Probed and recorded, but no incident and no page inside the window.
        Quiet(secs(0), secs(7190), Opened),
        // The window ends at 7200 s: the incident opens at once.
        At(secs(7200), Opened),
        At(secs(7200), State(Critical)),
        At(secs(7200 + 900), NotifyTo(Sos, None)),
        Pass("target"),
        At(secs(8160), Closed),
        At(secs(8160), State(Healthy)),
    ])
    .await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_window_started_during_an_incident_stops_paging_but_not_the_resolution() {
    let mut rig = Rig::new(&config(CHAIN));
    let mut table = to_sos();
    table.extend([
        Until(secs(SOS_AT + 30)),
        Maintenance(MaintenanceOp::Start {
            name: None,
            probes: vec!["target".into()],
            duration: Duration::from_secs(3 * 3600),
            heal: false,
        }),
        IncidentIs(Some("1")),
        Quiet(secs(SOS_AT + 1), secs(SOS_AT + 2000), AnyNotify(Sos)),
        Pass("target"),
        At(secs(SOS_AT + 2040), Closed),
        At(secs(SOS_AT + 2040), NotifyTo(Resolved, Some(vec!["ops"]))),
    ]);
    rig.run(table).await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_bad_policy_on_reload_keeps_the_last_good_chain() {
    let mut rig = Rig::new(&config(CHAIN));
    let mut table = to_sos();
    table.extend([
        Reload(config(&CHAIN.replace("[\"boss\"]", "[\"nobody\"]"))),
        ConfigError(true),
        At(secs(SOS_AT + 600), NotifyTo(Sos, Some(vec!["boss"]))),
    ]);
    rig.run(table).await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn resolving_between_two_steps_stops_the_chain_and_tells_the_paged_channel() {
    let mut rig = Rig::new(&config(CHAIN));
    let mut table = to_sos();
    table.extend([
        Until(secs(SOS_AT + 100)),
        Pass("target"),
        At(secs(SOS_AT + 120), Closed),
        At(secs(SOS_AT + 120), NotifyTo(Resolved, Some(vec!["ops"]))),
        Quiet(secs(SOS_AT + 1), secs(SOS_AT + 3 * 3600), AnyNotify(Sos)),
        Quiet(
            secs(SOS_AT + 1),
            secs(SOS_AT + 3 * 3600),
            AnyNotify(Reminder),
        ),
        StateIs(Healthy),
    ]);
    rig.run(table).await;
    rig.stop().await;
}
