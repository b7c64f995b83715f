//! `talon run --worker-only`: the worker supervised without probes, escalation or notices — and
//! with the same operator controls as the daemon. It takes the state dir's single-instance lock
//! (two supervisors of one worker would fight over it), keeps the store only for the worker's own
//! durable bits (`worker.stopped` in `kv`, the operator actions in history), and serves the HTTP
//! surfaces on `[health] bind`: `POST /worker` (token-protected, what `talon worker` calls),
//! `/health` and `/status` (the worker alone). The other write endpoints answer 409: there are no
//! probes or incidents here. SIGTERM/SIGINT go on to the worker's group, drained; SIGHUP re-reads
//! `[worker]`.

use super::worker::{
    held_batch, operator_action, operator_record, push_operator_action, snapshot_worker,
    status_text, stopped_on_purpose, stored_operator_actions,
};
use crate::config::{self, Config, LoadOptions, WorkerConfig};
use crate::core::{Record, SystemState};
use crate::server::control::{ControlReply, ControlRequest};
use crate::server::snapshot::{OperatorAction, StatusSnapshot};
use crate::server::{ServerHandle, ServerState, StatusBoard};
use crate::store::{Batch, Store, StoreWriter};
use crate::supervise::{
    ControlResult, Supervisor, SupervisorHandle, WorkerAction, WorkerState, WorkerStatus, owner,
};
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// What the other write endpoints answer in this mode.
const NOT_HERE: &str = "`talon run --worker-only` supervises the worker only: no probes, incidents, maintenance or agent here";

/// An operator's worker command that finished on its task.
type Done = (
    WorkerAction,
    String,
    ControlResult,
    oneshot::Sender<ControlReply>,
);

/// Run until SIGTERM or SIGINT. `Err` is a reason not to start (exit 2): the worker is owned by
/// an external supervisor, the state dir cannot be made, another Talon holds its lock.
pub async fn run(
    cfg_path: Option<PathBuf>,
    config: Config,
    worker: WorkerConfig,
) -> anyhow::Result<Result<(), String>> {
    if owner::configured(&worker)
        && let owner::Ownership::External(o) = owner::check(&worker, &config.search_path).await
    {
        return Ok(Err(format!(
            "the worker is owned by {o}; not supervising it (stop that service, or remove external_* from [worker])"
        )));
    }
    let state_dir = config.state_dir.clone();
    // The state dir as the daemon makes it: created 0700, writable, nothing in it readable by
    // others (the store and the API token live there).
    if let Err(e) = super::boot::create_private_dir(&state_dir)
        .and_then(|()| super::boot::check_writable(&state_dir))
        .and_then(|()| super::boot::secure_state(&config))
    {
        return Ok(Err(e.to_string()));
    }
    let _lock = match crate::store::lock::acquire(&state_dir) {
        Ok(l) => l,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let held = stopped_on_purpose(&state_dir);
    let mut actions = stored_operator_actions(&state_dir);
    let writer = match Store::open(&state_dir).map(StoreWriter::spawn) {
        Ok(Ok(w)) => Some(w),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot start the store writer: `talon worker stop` will not outlive this Talon");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot open the store: `talon worker stop` will not outlive this Talon");
            None
        }
    };

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (fwd_tx, mut fwd_rx) = mpsc::channel::<Signal>(8);
    for name in &worker.forward_signals {
        let Ok(sig) = Signal::from_str(&format!("SIG{name}")) else {
            continue;
        };
        let mut stream = signal(SignalKind::from_raw(sig as i32))?;
        let tx = fwd_tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(sig).await.is_err() {
                    return;
                }
            }
        });
    }
    let (ev_tx, mut ev_rx) = mpsc::channel(64);
    // Events are already logged by the supervisor; with no state machine here, drain them.
    tokio::spawn(async move { while ev_rx.recv().await.is_some() {} });
    let mut current = worker.clone();
    let handle = Arc::new(Supervisor::start_held(
        worker,
        config.search_path.clone(),
        ev_tx,
        held,
    ));
    if held {
        tracing::warn!(
            "the worker was stopped on purpose (`talon worker stop`) and stays stopped until `talon worker start`"
        );
    }
    let mut status_rx = handle.subscribe();
    let mut board = Board::new(&config);
    board.publish(&handle.status(), &actions);
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlRequest>(16);
    let server = serve(&config, &board.board, ctl_tx).await;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut tasks = JoinSet::new();
    // Give start-up memory back once things settle, and again after each SIGHUP (room `memory`).
    let trim = tokio::time::sleep(super::actor::TRIM_AFTER);
    tokio::pin!(trim);
    let mut trimmed = false;

    let first = loop {
        tokio::select! {
            _ = &mut trim, if !trimmed => {
                trimmed = true;
                tokio::task::spawn_blocking(|| {
                    let t = crate::memory::after_start();
                    tracing::info!(
                        code_bytes = t.code_bytes,
                        rss_before_kib = t.rss_before_kib,
                        rss_after_kib = t.rss_after_kib,
                        "start-up memory given back"
                    );
                });
            }
            _ = term.recv() => break Signal::SIGTERM,
            _ = int.recv() => break Signal::SIGINT,
            _ = hup.recv() => {
                trim.as_mut().reset(crate::clock::now() + super::actor::TRIM_AFTER);
                trimmed = false;
                let loaded = config::load(&LoadOptions {
                    config: cfg_path.clone(),
                    resolve: false,
                    ..Default::default()
                });
                match loaded.config.and_then(|c| c.worker.map(|w| (w, c.search_path))) {
                    Some((w, sp)) if w != current => {
                        current = w.clone();
                        handle.reconfigure(w, sp).await;
                    }
                    Some(_) => tracing::info!("SIGHUP: worker config unchanged"),
                    None => {
                        for d in loaded.diags.errors() {
                            tracing::error!(problem = %d, "SIGHUP: config rejected; keeping the running one");
                        }
                        if !loaded.diags.has_errors() {
                            tracing::error!("SIGHUP: the new config has no [worker]; keeping the running one");
                        }
                    }
                }
            }
            Some(sig) = fwd_rx.recv() => {
                if let Err(e) = handle.forward(sig) {
                    tracing::warn!(signal = sig.as_str(), error = %e, "signal not forwarded");
                }
            }
            Ok(()) = status_rx.changed() => board.publish(&handle.status(), &actions),
            Some(req) = ctl_rx.recv() => {
                on_request(req, &handle, writer.as_ref(), &mut tasks, &done_tx);
            }
            Some((action, by, result, reply)) = done_rx.recv() => {
                let now = crate::clock::wall_ms();
                record(writer.as_ref(), &mut actions, now, action, &by, &result);
                board.publish(&handle.status(), &actions);
                let _ = reply.send(match result {
                    Ok(m) => ControlReply::Done(m),
                    Err(m) => ControlReply::Rejected(m),
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    };
    tracing::info!(
        signal = first.as_str(),
        "stopping: draining the worker's group"
    );
    if let Some(s) = server {
        s.shutdown().await;
    }
    // An operator's command still running holds the handle: drop it (the supervisor finishes
    // or drops the command), so this is the last handle and the drain below is awaited.
    tasks.shutdown().await;
    super::effects::Worker::shutdown(handle, first).await;
    if let Some(w) = writer
        && let Err(e) = tokio::task::spawn_blocking(move || w.close()).await?
    {
        tracing::error!(error = %e, "the store could not be flushed");
    }
    Ok(Ok(()))
}

/// `[health]` enabled: serve the surfaces with the write endpoints going to `ctl`.
async fn serve(
    config: &Config,
    board: &StatusBoard,
    ctl: mpsc::Sender<ControlRequest>,
) -> Option<ServerHandle> {
    if !config.health.enabled {
        tracing::info!("[health] is disabled: no HTTP server, so no `talon worker` controls");
        return None;
    }
    let token = match crate::server::control::ensure_token(&config.state_dir) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(error = %e, "no API token: `talon worker` controls are disabled");
            None
        }
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let state = ServerState::new(board.clone(), metrics).with_control(ctl, token);
    let bind = config.health.bind;
    match crate::server::serve(bind, state, Default::default()).await {
        Ok(h) => {
            tracing::info!(addr = %h.addr(), "serving `talon worker` controls, /health and /status");
            Some(h)
        }
        Err(e) => {
            tracing::error!(bind = %bind, error = %e, "cannot serve: `talon worker` controls are unavailable; supervision goes on");
            None
        }
    }
}

/// One control request: the worker's are done on a task (a graceful stop takes up to
/// `drain_timeout_secs`) and come back as [`Done`]; everything else is not served here.
fn on_request(
    req: ControlRequest,
    handle: &Arc<SupervisorHandle>,
    writer: Option<&StoreWriter>,
    tasks: &mut JoinSet<()>,
    done: &mpsc::UnboundedSender<Done>,
) {
    match req {
        ControlRequest::Worker { action, by, reply } => {
            let now = crate::clock::wall_ms();
            match action {
                WorkerAction::Status => {
                    let _ = reply.send(ControlReply::Done(status_text(&handle.status())));
                    return;
                }
                WorkerAction::Stop => write(writer, held_batch(now, true, &by)),
                WorkerAction::Start | WorkerAction::Restart => {
                    write(writer, held_batch(now, false, &by))
                }
            }
            tracing::info!(action = action.as_str(), by = %by, "operator: talon worker {}", action.as_str());
            let h = Arc::clone(handle);
            let done = done.clone();
            tasks.spawn(async move {
                let result = super::effects::Worker::control(&*h, action).await;
                let _ = done.send((action, by, result, reply));
            });
        }
        ControlRequest::Ack { reply, .. }
        | ControlRequest::Silence { reply, .. }
        | ControlRequest::Approve { reply, .. }
        | ControlRequest::Deny { reply, .. }
        | ControlRequest::AgentReset { reply, .. }
        | ControlRequest::Push { reply, .. }
        | ControlRequest::Maintenance { reply, .. } => {
            let _ = reply.send(ControlReply::Rejected(NOT_HERE.into()));
        }
    }
}

fn write(writer: Option<&StoreWriter>, batch: Batch) {
    if let Some(w) = writer {
        w.send(batch);
    }
}

/// Record a finished operator command in history and in the list `/status` shows.
fn record(
    writer: Option<&StoreWriter>,
    actions: &mut Vec<OperatorAction>,
    now: i64,
    action: WorkerAction,
    by: &str,
    result: &ControlResult,
) {
    match result {
        Ok(m) => {
            tracing::info!(action = action.as_str(), by = %by, result = %m, "operator's worker command done")
        }
        Err(m) => {
            tracing::warn!(action = action.as_str(), by = %by, error = %m, "operator's worker command failed")
        }
    }
    let rec = operator_record(now, action, by, result);
    if let Record::Transition(t) = &rec
        && let Some(a) = operator_action(t.at, &t.to, &t.reason)
    {
        push_operator_action(actions, a);
    }
    write(
        writer,
        Batch {
            at: now,
            records: vec![rec],
            ..Batch::default()
        },
    );
}

/// The status board of this mode: the worker alone. The state is `healthy` while the worker
/// runs (or is stopped on purpose), `degraded` while it is unhealthy or waiting to restart,
/// `failed` in a crash loop.
struct Board {
    board: StatusBoard,
    host: String,
    state: SystemState,
    since: i64,
}

impl Board {
    fn new(config: &Config) -> Board {
        let now = crate::clock::wall_ms() / 1000;
        Board {
            board: StatusBoard::new(StatusSnapshot::new(now)),
            host: config.host_name(),
            state: SystemState::Healthy,
            since: now,
        }
    }

    fn publish(&mut self, st: &WorkerStatus, actions: &[OperatorAction]) {
        let now = crate::clock::wall_ms() / 1000;
        let state = state_of(st);
        if state != self.state {
            self.state = state;
            self.since = now;
        }
        let mut snap = StatusSnapshot::new(now);
        snap.host.clone_from(&self.host);
        snap.state = self.state;
        snap.since_unix = self.since;
        snap.consecutive_failures = st.consecutive_health_failures;
        snap.worker = Some(snapshot_worker(st, actions));
        self.board.replace(snap);
    }
}

fn state_of(st: &WorkerStatus) -> SystemState {
    if st.crash_loop {
        return SystemState::Failed;
    }
    match st.state {
        WorkerState::Unhealthy | WorkerState::Backoff => SystemState::Degraded,
        _ => SystemState::Healthy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_state_follows_the_worker() {
        let st = |state, crash_loop| WorkerStatus {
            state,
            crash_loop,
            ..WorkerStatus::default()
        };
        assert_eq!(
            state_of(&st(WorkerState::Running, false)),
            SystemState::Healthy
        );
        assert_eq!(
            state_of(&st(WorkerState::StoppedOnPurpose, false)),
            SystemState::Healthy,
            "stopped on purpose is not a failure"
        );
        assert_eq!(
            state_of(&st(WorkerState::Unhealthy, false)),
            SystemState::Degraded
        );
        assert_eq!(
            state_of(&st(WorkerState::Backoff, true)),
            SystemState::Failed
        );
    }
}
