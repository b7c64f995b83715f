//! `push` pings through the real runtime in paused time: recorded for push probes only,
//! persisted in the store's `kv` table, and neither the first deadline nor a failure is lost
//! across a crash.

use super::Step::*;
use super::{Rig, secs};
use crate::probe::push::{KV_PREFIX, PushEvent, PushRecord};
use crate::store::Store;

const CONFIG: &str = r#"state_dir = "state"

[push.nightly]
period_secs = 86400

[script.target]
command = "check-target"
"#;

fn record(rig: &Rig) -> PushRecord {
    let store = Store::open_existing(&rig.state_dir())
        .unwrap()
        .expect("the store exists");
    let raw = store
        .kv_get(&format!("{KV_PREFIX}nightly"))
        .unwrap()
        .expect("a push record");
    serde_json::from_str(&raw).unwrap()
}

#[tokio::test(start_paused = true)]
async fn pings_are_recorded_for_push_probes_and_survive_a_crash() {
    let mut rig = Rig::new(CONFIG);
    rig.run(vec![
        Start,
        Until(secs(30)),
        Ping("nightly", PushEvent::Start, "", true),
        Until(secs(40)),
        Ping("nightly", PushEvent::Fail, "disk full", true),
        // Only push probes take pings.
        Ping("target", PushEvent::Success, "", false),
        Ping("missing", PushEvent::Success, "", false),
        Until(secs(50)),
        Crash,
        Start,
        Until(secs(60)),
    ])
    .await;
    rig.stop().await;
    let r = record(&rig);
    let since = r.watching_since;
    assert_eq!(r.last_start.map(|s| s - since), Some(30_000), "{r:?}");
    assert_eq!(r.last_fail.map(|s| s - since), Some(40_000), "{r:?}");
    assert_eq!(r.last_duration_ms, Some(10_000));
    assert_eq!(r.fail_body.as_deref(), Some("disk full"));
    assert_eq!(r.last_ping, None);
}
