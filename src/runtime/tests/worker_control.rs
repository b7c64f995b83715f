//! `talon worker restart|stop|start` through the real runtime, in paused time: each is recorded
//! in history with who asked and what came of it (here: the scripted worker refuses), shown in
//! `/status`, and read back after a restart; a stop is kept in `kv` with who asked.

use super::Rig;
use super::Step::Start;
use crate::runtime::Msg;
use crate::runtime::worker::WORKER_STOPPED_KEY;
use crate::server::control::{ControlReply, ControlRequest};
use crate::server::snapshot::OperatorAction;
use crate::store::Store;
use crate::supervise::WorkerAction;
use std::time::Duration;
use tokio::sync::oneshot;

const CONFIG: &str = r#"state_dir = "state"

[script.target]
command = "check-target"

[worker]
command = ["my-worker", "--serve"]
"#;

async fn ask(rig: &Rig, action: WorkerAction, by: &str) -> ControlReply {
    let (reply, answer) = oneshot::channel();
    let req = ControlRequest::Worker {
        action,
        by: by.into(),
        reply,
    };
    assert!(rig.running().inbox.send(Msg::Control(req)));
    tokio::time::timeout(Duration::from_secs(60), answer)
        .await
        .expect("answered")
        .expect("a reply")
}

/// The operator actions `/status` shows, once there are `n`.
async fn actions(rig: &Rig, n: usize) -> Vec<OperatorAction> {
    let mut rx = rig.running().board.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let acts = rx
            .borrow_and_update()
            .worker
            .as_ref()
            .map(|w| w.operator_actions.clone())
            .unwrap_or_default();
        if acts.len() == n {
            return acts;
        }
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep_until(deadline) => panic!("never {n} operator actions: {acts:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn operator_actions_on_the_worker_are_recorded_with_who_and_the_result_across_a_restart() {
    let mut rig = Rig::new(CONFIG);
    rig.run(vec![Start]).await;
    // `status` is answered at once and is not an action.
    match ask(&rig, WorkerAction::Status, "cli").await {
        ControlReply::Done(t) => assert!(t.starts_with("worker: preparing"), "{t}"),
        other => panic!("{other:?}"),
    }
    let refused = "scripted worker: stop not scripted";
    assert_eq!(
        ask(&rig, WorkerAction::Stop, "cli").await,
        ControlReply::Rejected(refused.into())
    );
    let acts = actions(&rig, 1).await;
    assert_eq!(
        (acts[0].action.as_str(), acts[0].by.as_str(), acts[0].ok),
        ("stop", "cli", false)
    );
    assert_eq!(acts[0].result, refused);
    rig.stop().await;

    let store = Store::open_existing(&rig.state_dir()).unwrap().unwrap();
    let rows = store.operator_transitions("worker", 10).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].to, "stop by cli");
    assert_eq!(rows[0].reason, format!("failed: {refused}"));
    let held = store.kv_get(WORKER_STOPPED_KEY).unwrap().expect("kept");
    assert!(held.contains(r#""by":"cli""#), "{held}");
    drop(store);

    // A restart reads them back; the next action (over HTTP) is added after them.
    rig.run(vec![Start]).await;
    assert_eq!(actions(&rig, 1).await[0].result, refused);
    assert_eq!(
        ask(&rig, WorkerAction::Start, "http").await,
        ControlReply::Rejected("scripted worker: start not scripted".into())
    );
    let acts = actions(&rig, 2).await;
    assert_eq!(
        (acts[1].action.as_str(), acts[1].by.as_str()),
        ("start", "http")
    );
    rig.stop().await;
    let store = Store::open_existing(&rig.state_dir()).unwrap().unwrap();
    assert_eq!(
        store.kv_get(WORKER_STOPPED_KEY).unwrap(),
        None,
        "a start ends the stop"
    );
}
