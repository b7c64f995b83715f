//! The wall clock stepping an hour forward or back under a running runtime (an NTP step,
//! `date -s`, a VM restored from a snapshot), simulated with [`Clock::shift`]: monotonic time
//! goes on, wall time jumps. Every pending wall-clock deadline keeps its remaining time: a step
//! forward fires nothing early (no burst of every timer due within the hour), a step back
//! stalls nothing (the next threshold and reminder come on time, not an hour late), probes keep
//! their cadence, and the step is counted in `talon_clock_steps_total`.
//!
//! The ladder is `ladder.rs`'s with reminders every 30 min: critical at 80 s, SOS at 980 s,
//! reminders at 2780 s, 4580 s, … (journal times are virtual time, which a step does not move).
//!
//! [`Clock::shift`]: crate::clock::Clock::shift

use super::Plan::Ok as Taken;
use super::Step::*;
use super::Want::*;
use super::ladder::{config, up_to_sos};
use super::{Rig, Seen, secs};
use crate::core::NotifyKind::{Reminder, Sos};
use crate::core::SystemState;

const HOUR_MS: i64 = 3_600_000;
const SOS_AT: u64 = 980;
/// sos_cooldown_secs in this file's config.
const COOLDOWN: u64 = 1800;

/// Scheduled runs of `target` (every 60 s) seen in the journal after `from` and up to `until`.
fn probe_runs(rig: &Rig, from: u64, until: u64) -> Vec<u64> {
    rig.journal()
        .iter()
        .filter(|e| e.seen == Seen::Probe("target".into()))
        .map(|e| e.at.as_secs())
        .filter(|t| *t > from && *t <= until)
        .collect()
}

/// Step the wall clock by `step_ms` twice: while critical (before the SOS) and while paging
/// (before the first reminder). Each deadline must come when it would have without a step.
async fn step_twice(step_ms: i64) {
    let mut rig = Rig::new(&config(&format!("sos_cooldown_secs = {COOLDOWN}"), ""));
    let mut table = up_to_sos();
    table.extend([
        // Critical since 80 s; the SOS is due 900 s later.
        Until(secs(500)),
        ClockJump(step_ms),
        At(secs(SOS_AT), State(SystemState::Sos)),
        At(secs(SOS_AT), Notify(Sos, Some(0), Taken)),
        At(secs(SOS_AT), Paged),
        // Paging; the first reminder is due 30 min after the SOS.
        Until(secs(2000)),
        ClockJump(step_ms),
        At(secs(SOS_AT + COOLDOWN), Notify(Reminder, Some(0), Taken)),
        At(
            secs(SOS_AT + 2 * COOLDOWN),
            Notify(Reminder, Some(0), Taken),
        ),
        Until(secs(SOS_AT + 2 * COOLDOWN + 10)),
    ]);
    rig.run(table).await;
    let journal = rig.journal();
    let at = |kind| -> Vec<u64> {
        journal
            .iter()
            .filter_map(|e| match &e.seen {
                Seen::Notify { kind: k, .. } if *k == kind => Some(e.at.as_secs()),
                _ => None,
            })
            .collect()
    };
    // Exactly the pages due, each once, at its time: no burst, no stall.
    assert_eq!(at(Sos), vec![SOS_AT], "{}", rig.dump());
    assert_eq!(
        at(Reminder),
        vec![SOS_AT + COOLDOWN, SOS_AT + 2 * COOLDOWN],
        "{}",
        rig.dump()
    );
    // Probes kept their 60 s cadence across both steps: one run a minute, none skipped or
    // doubled (re-probes of the ladder are over by 2000 s).
    let runs = probe_runs(&rig, 2000, SOS_AT + 2 * COOLDOWN);
    let expected: Vec<u64> = (2000 / 60 + 1..=(SOS_AT + 2 * COOLDOWN) / 60)
        .map(|n| n * 60)
        .collect();
    assert_eq!(runs, expected, "{}", rig.dump());
    // Both steps seen, each once.
    let steps = rig.metric("talon_clock_steps_total");
    assert_eq!(steps, 2.0);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_step_an_hour_forward_fires_no_timer_early() {
    step_twice(HOUR_MS).await;
}

#[tokio::test(start_paused = true)]
async fn a_step_an_hour_back_stalls_no_timer() {
    step_twice(-HOUR_MS).await;
}

/// The daily digest is a local time of day, not a deadline that keeps its remaining time: a step
/// forward past its hour sends it at once (it is that hour now), once; a step back before the
/// hour does not send it again when the hour comes round a second time; the next day's comes at
/// its hour.
#[tokio::test(start_paused = true)]
async fn the_digest_follows_the_new_time_once() {
    let (at, due) = super::digest::digest_at(std::time::Duration::from_secs(1800));
    let mut rig = Rig::new(&super::digest::config(&at, true, false));
    rig.run(vec![
        Start,
        Until(secs(600)),
        ClockJump(HOUR_MS),
        At(secs(600), Digest("Nothing happened")),
        Until(secs(900)),
        ClockJump(-HOUR_MS),
        Quiet(secs(601), secs(due + 3 * 3600), Digest("")),
        At(secs(due + 86_400), Digest("Nothing happened")),
    ])
    .await;
    let digests = rig
        .journal()
        .iter()
        .filter(|e| matches!(e.seen, Seen::Digest(_)))
        .count();
    assert_eq!(digests, 2, "{}", rig.dump());
    assert_eq!(rig.metric("talon_clock_steps_total"), 2.0);
    rig.stop().await;
}
