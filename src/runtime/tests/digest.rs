//! The daily digest in paused time: sent at its local hour with the day's incident, skipped when
//! there is nothing to say (unless `always`), neither doubled by a restart just after the hour
//! nor skipped by one just before it.

use super::Step::*;
use super::Want::*;
use super::{Rig, secs};
use crate::clock::{Clock, local_offset_ms};
use crate::runtime::digest::latest_due;
use std::time::Duration;

const DAY: u64 = 86_400;

/// `[digest] at` for a local time about `after` from now (whole minutes), and when that is
/// due, in seconds from now.
pub(super) fn digest_at(after: Duration) -> (String, u64) {
    let now = Clock::follow_tokio().wall_ms();
    let target = now + after.as_millis() as i64;
    let local = target + local_offset_ms(target);
    let minute = (local.rem_euclid(86_400_000) / 60_000) as u32;
    let due = latest_due(target, minute, local_offset_ms);
    let hhmm = format!("{:02}:{:02}", minute / 60, minute % 60);
    (hhmm, ((due - now).max(0) / 1000) as u64)
}

pub(super) fn config(at: &str, always: bool, failing_probe: bool) -> String {
    let heal = if failing_probe {
        "heal = \"restart-target\"\n"
    } else {
        ""
    };
    format!(
        r#"state_dir = "state"

[script.target]
command = "check-target"
critical = true
critical_after_consecutive_failures = 2
{heal}
[notify.ops]
kind = "webhook"
url = "http://127.0.0.1:9/hook"

[digest]
at = "{at}"
always = {always}
"#
    )
}

#[tokio::test(start_paused = true)]
async fn the_digest_comes_at_its_hour_once_even_across_restarts() {
    let (at, due) = digest_at(Duration::from_secs(3 * 3600));
    let mut rig = Rig::new(&config(&at, true, true));
    rig.run(vec![
        Fail("target"),
        Start,
        At(secs(60), Opened),
        Until(secs(590)),
        Pass("target"),
        At(secs(600), Closed),
        Quiet(secs(601), secs(due - 5), Digest("")),
        At(
            secs(due),
            Digest("Incidents: 1 opened, 1 resolved, 0 open now"),
        ),
        // A restart just after the hour does not send it again.
        Crash,
        Until(secs(due + 120)),
        Start,
        Quiet(secs(due + 1), secs(due + 3600 * 2), Digest("")),
        // A restart that misses the next day's hour by a few minutes sends it late, once.
        Crash,
        Until(secs(due + DAY + 600)),
        Start,
        At(secs(due + DAY + 600), Digest("Nothing happened")),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_quiet_day_is_skipped_unless_always() {
    let (at, due) = digest_at(Duration::from_secs(2 * 3600));
    let mut rig = Rig::new(&config(&at, false, false));
    rig.run(vec![Start, Quiet(secs(0), secs(due + 600), Digest(""))])
        .await;
    rig.stop().await;
    let mut rig = Rig::new(&config(&at, true, false));
    rig.run(vec![Start, At(secs(due), Digest("Nothing happened"))])
        .await;
}
