//! The worker supervisor: one actor task that owns the worker process for its whole life.
//!
//! It spawns `worker.command` through the one subprocess runner (own process group, compiled
//! PATH, env file + `[worker.env]` + secrets), appends its output to rotating log files
//! ([`crate::rotate`]), reclaims the worker's port from a stale listener first, follows
//! readiness (sync call) and health, and restarts it by the [`policy`] when it dies —
//! event-driven, with whatever is left in the dead worker's group stopped first. It never ends on its own: every failure (a missing program, a
//! bad directory, a required secret that fails, a port that cannot be freed) is reported as a
//! [`WorkerEvent`] and retried with backoff. When an external supervisor owns the worker
//! ([`owner`]), it stands aside and re-checks every `owner_check`.
//!
//! The daemon talks to it through a [`SupervisorHandle`]: commands in (restart, reconfigure,
//! forward a signal, shutdown), [`WorkerEvent`]s out on the channel given to
//! [`Supervisor::start`], and a cheap [`WorkerStatus`] snapshot on a `watch` channel.
//!
//! This file holds those types and the handle; `actor.rs` holds the actor's life cycle. Every
//! stop (restart, drain at shutdown, leftovers of a dead worker, a stale listener on the port)
//! goes through the subprocess runner's one stop path, [`crate::proc::Stop`].

mod actor;
pub mod monitor;
pub mod owner;
pub mod policy;
pub mod port;
pub mod sys;

use crate::config::WorkerConfig;
use crate::config::path::SearchPath;
use crate::proc::End;
use nix::sys::signal::Signal;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};

/// Bytes of the worker's stderr kept in memory for the agent's context.
pub const STDERR_TAIL_BYTES: usize = 64 * 1024;

/// Why the supervisor is (re)starting the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartReason {
    /// The worker exited by itself or was killed by someone else.
    Exited,
    /// `health_failures_before_restart` health checks failed in a row.
    Unhealthy,
    /// Starting it failed (spawn error, env file, secret, port).
    StartFailed,
    /// `SupervisorHandle::restart`.
    Requested,
    /// `SupervisorHandle::reconfigure`.
    Reconfigured,
}

/// Something the daemon should know about the worker. Each one is also logged once, from one
/// place (the actor's `emit`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// The worker process started (not yet ready).
    Spawned { pid: u32 },
    /// Health passes (first time in this life, or again after failures). Without a health
    /// endpoint: the startup delay (and sync) are over.
    Healthy { pid: u32 },
    /// A health check failed; `consecutive` in a row so far.
    HealthFailed {
        pid: u32,
        consecutive: u32,
        reason: String,
    },
    /// The sync call succeeded after `attempts` tries.
    SyncDone { pid: u32, attempts: u32 },
    /// The sync call failed `attempts` times; the worker keeps running.
    SyncFailed {
        pid: u32,
        attempts: u32,
        reason: String,
    },
    /// The worker's process ended.
    Exited {
        pid: u32,
        end: End,
        #[serde(serialize_with = "crate::config::ser_secs")]
        uptime: Duration,
    },
    /// The next start is scheduled `after` from now.
    Restarting {
        reason: RestartReason,
        #[serde(serialize_with = "crate::config::ser_secs")]
        after: Duration,
    },
    /// The worker could not be started; retried with backoff.
    SpawnFailed { reason: String },
    /// Stale listeners were stopped so the worker could bind its port.
    PortReclaimed {
        port: u16,
        holders: Vec<port::Holder>,
    },
    /// `max_restarts` deaths inside `restart_window`: the daemon maps this to a critical failing
    /// pseudo-probe named `worker`. Reported on every death while the loop lasts.
    CrashLoop {
        deaths: u32,
        #[serde(serialize_with = "crate::config::ser_secs")]
        window: Duration,
        last_error: Option<String>,
    },
    /// An external supervisor took the worker over (`Some`) or let it go (`None`).
    OwnerChanged { external: Option<String> },
    /// Supervision ended by `shutdown`; no process is left.
    Stopped,
    /// An operator stopped the worker (`talon worker stop`): no process is left and none is
    /// started until `start`/`restart`. Not a failure.
    StoppedOnPurpose,
}

impl WorkerEvent {
    /// The result this event means for the `worker` pseudo-probe in the state machine, if any:
    /// healthy passes; a crash loop, a failed start and a failed health check fail. Exits and
    /// restarts are not results by themselves (a restarted worker that comes back is healthy; one
    /// that keeps dying becomes a crash loop).
    pub fn probe_outcome(&self) -> Option<crate::core::outcome::Outcome> {
        use crate::core::outcome::Outcome;
        match self {
            WorkerEvent::Healthy { pid } => {
                Some(Outcome::pass(format!("worker pid {pid} healthy")))
            }
            WorkerEvent::HealthFailed {
                consecutive,
                reason,
                ..
            } => Some(Outcome::fail(format!(
                "worker health check failed ({consecutive} in a row): {reason}"
            ))),
            WorkerEvent::StoppedOnPurpose => Some(Outcome::pass(
                "worker stopped on purpose (`talon worker stop`); `talon worker start` runs it again",
            )),
            WorkerEvent::SpawnFailed { reason } => Some(Outcome::error(format!(
                "worker could not be started: {reason}"
            ))),
            WorkerEvent::CrashLoop {
                deaths,
                window,
                last_error,
            } => {
                let mut m = format!(
                    "worker crash loop: {deaths} deaths in {} s",
                    window.as_secs()
                );
                if let Some(e) = last_error {
                    m.push_str(&format!("; last error: {e}"));
                }
                Some(Outcome::fail(m))
            }
            _ => None,
        }
    }
}

/// Where the worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Getting ready to start: env, secrets, port reclaim.
    Preparing,
    /// Spawned, not yet healthy.
    Starting,
    /// Healthy.
    Running,
    /// Alive, failing health checks.
    Unhealthy,
    /// Waiting before the next start.
    Backoff,
    /// An external supervisor owns it; Talon stands aside.
    External,
    /// Being stopped (restart or shutdown).
    Stopping,
    /// Stopped by an operator; stays stopped until started again.
    StoppedOnPurpose,
    /// Supervision ended.
    Stopped,
}

/// A cheap snapshot of the supervisor, for `/status` and the CLI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStatus {
    pub state: WorkerState,
    pub pid: Option<u32>,
    /// Wall-clock time the current process started.
    pub started_at: Option<SystemTime>,
    /// Starts after the first one.
    pub restarts: u32,
    pub deaths_in_window: u32,
    pub crash_loop: bool,
    pub consecutive_health_failures: u32,
    pub last_exit: Option<End>,
    /// The newest failure reason (start failure, health failure), cleared when healthy.
    pub last_error: Option<String>,
    /// `Some(attempts)` once the sync call succeeded in this life; see `last_error` otherwise.
    pub sync_attempts: Option<u32>,
    pub external_owner: Option<String>,
}

impl Default for WorkerStatus {
    fn default() -> Self {
        Self {
            state: WorkerState::Preparing,
            pid: None,
            started_at: None,
            restarts: 0,
            deaths_in_window: 0,
            crash_loop: false,
            consecutive_health_failures: 0,
            last_exit: None,
            last_error: None,
            sync_attempts: None,
            external_owner: None,
        }
    }
}

/// What an operator asks of the worker (`talon worker ACTION`, `POST /worker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerAction {
    /// Where the worker is (pid, state, restarts, last error).
    Status,
    /// Graceful restart (ends a stop on purpose).
    Restart,
    /// Graceful stop; stays stopped until `Start`, across Talon restarts.
    Stop,
    /// Start a stopped worker.
    Start,
}

impl WorkerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerAction::Status => "status",
            WorkerAction::Restart => "restart",
            WorkerAction::Stop => "stop",
            WorkerAction::Start => "start",
        }
    }
}

/// The answer to an operator's command: a one-line message, `Err` when it could not be done.
pub type ControlResult = Result<String, String>;

enum Command {
    /// A graceful restart; with a reply (an operator's), also the end of a stop on purpose.
    Restart(Option<oneshot::Sender<ControlResult>>),
    /// Stop gracefully and stay stopped until `Start` or an operator's `Restart`.
    Stop(oneshot::Sender<ControlResult>),
    /// Start a worker stopped on purpose (or waiting in backoff) now.
    Start(oneshot::Sender<ControlResult>),
    Reconfigure(Box<WorkerConfig>, SearchPath),
    Forward(Signal),
    Shutdown(Signal, oneshot::Sender<()>),
}

/// The daemon's side of a running supervisor. Dropping it shuts the worker down (drained) in the
/// background; prefer [`SupervisorHandle::shutdown`], which waits for that.
#[derive(Debug)]
pub struct SupervisorHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<WorkerStatus>,
    secrets: Arc<RwLock<Vec<String>>>,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Why a signal was not forwarded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError {
    #[error("SIGHUP is Talon's own reload signal and is never forwarded")]
    Hup,
    #[error("the supervisor has stopped")]
    Stopped,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Restart(_) => "Restart",
            Command::Stop(_) => "Stop",
            Command::Start(_) => "Start",
            Command::Reconfigure(..) => "Reconfigure",
            Command::Forward(_) => "Forward",
            Command::Shutdown(..) => "Shutdown",
        })
    }
}

impl SupervisorHandle {
    /// Gracefully restart the worker (TERM its group, `drain_timeout`, KILL), at once.
    pub async fn restart(&self) {
        let _ = self.commands.send(Command::Restart(None)).await;
    }

    /// An operator's restart: graceful (TERM the group, drain, KILL, reap), then a new worker;
    /// answered once the new one is spawned (or could not be). Ends a stop on purpose.
    pub async fn restart_now(&self) -> ControlResult {
        self.ask(|r| Command::Restart(Some(r))).await
    }

    /// An operator's stop: graceful, and the worker stays stopped (reported as
    /// [`WorkerEvent::StoppedOnPurpose`]) until [`Self::start`] or [`Self::restart_now`].
    /// Answered once nothing of it is left.
    pub async fn stop(&self) -> ControlResult {
        self.ask(Command::Stop).await
    }

    /// Start a worker stopped on purpose (or waiting in backoff) at once; answered once it is
    /// spawned (or could not be).
    pub async fn start(&self) -> ControlResult {
        self.ask(Command::Start).await
    }

    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<ControlResult>) -> Command,
    ) -> ControlResult {
        let (tx, rx) = oneshot::channel();
        let gone = || "the worker supervisor has stopped".to_string();
        self.commands.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Take a new `[worker]` config: the worker is restarted gracefully with it and the restart
    /// tally starts over. Call it only when the section changed.
    pub async fn reconfigure(&self, cfg: WorkerConfig, search: SearchPath) {
        let _ = self
            .commands
            .send(Command::Reconfigure(Box::new(cfg), search))
            .await;
    }

    /// Send a signal to the worker's process group (e.g. `USR1` from `forward_signals`).
    /// SIGHUP is refused. For TERM/INT at Talon's own shutdown, use [`Self::shutdown_with`].
    pub fn forward(&self, sig: Signal) -> Result<(), ForwardError> {
        if sig == Signal::SIGHUP {
            return Err(ForwardError::Hup);
        }
        self.commands
            .try_send(Command::Forward(sig))
            .map_err(|_| ForwardError::Stopped)
    }

    /// Stop supervising: TERM to the worker's group, up to `drain_timeout` for the whole group
    /// to exit, then KILL; reaped. Returns when nothing is left.
    pub async fn shutdown(self) {
        self.shutdown_with(Signal::SIGTERM).await
    }

    /// [`Self::shutdown`] with another first signal (Talon's own SIGINT is passed on as SIGINT).
    pub async fn shutdown_with(self, sig: Signal) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(sig, tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }

    /// The current status.
    pub fn status(&self) -> WorkerStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<WorkerStatus> {
        self.status.clone()
    }

    /// Values of the worker's resolved secrets, for redaction of everything Talon hands over.
    pub fn secret_values(&self) -> Vec<String> {
        self.secrets.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The newest lines of the worker's stderr (at most `max_lines`, from memory).
    pub fn stderr_tail(&self, max_lines: usize) -> String {
        let bytes: Vec<u8> = match self.stderr_tail.lock() {
            Ok(t) => t.iter().copied().collect(),
            Err(_) => return String::new(),
        };
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(max_lines)..].join("\n")
    }
}

/// Starts supervisors.
pub struct Supervisor;

impl Supervisor {
    /// Start supervising `cfg` on a new task (call inside a tokio runtime). Events go to
    /// `events`; a full channel makes the supervisor wait, a closed one is ignored.
    pub fn start(
        cfg: WorkerConfig,
        search: SearchPath,
        events: mpsc::Sender<WorkerEvent>,
    ) -> SupervisorHandle {
        Self::start_held(cfg, search, events, false)
    }

    /// [`Self::start`]; with `held`, the worker starts out stopped on purpose (an operator's
    /// `talon worker stop` from before Talon restarted) and waits for `start`.
    pub fn start_held(
        cfg: WorkerConfig,
        search: SearchPath,
        events: mpsc::Sender<WorkerEvent>,
        held: bool,
    ) -> SupervisorHandle {
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (status_tx, status_rx) = watch::channel(WorkerStatus::default());
        let secrets = Arc::new(RwLock::new(Vec::new()));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let task = actor::spawn(
            cfg,
            held,
            search,
            events,
            cmd_rx,
            status_tx,
            secrets.clone(),
            stderr_tail.clone(),
        );
        SupervisorHandle {
            commands: cmd_tx,
            status: status_rx,
            secrets,
            stderr_tail,
            task,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::outcome::Status;

    #[test]
    fn events_map_to_worker_probe_outcomes() {
        let st = |e: WorkerEvent| e.probe_outcome().map(|o| o.status);
        assert_eq!(st(WorkerEvent::Healthy { pid: 1 }), Some(Status::Pass));
        assert_eq!(
            st(WorkerEvent::SpawnFailed { reason: "x".into() }),
            Some(Status::Error)
        );
        let o = WorkerEvent::CrashLoop {
            deaths: 5,
            window: Duration::from_secs(300),
            last_error: Some("program `w` not found".into()),
        }
        .probe_outcome()
        .unwrap();
        assert_eq!(o.status, Status::Fail);
        assert!(o.output.contains("5 deaths in 300 s") && o.output.contains("not found"));
        let held = WorkerEvent::StoppedOnPurpose.probe_outcome().unwrap();
        assert_eq!(
            held.status,
            Status::Pass,
            "stopped on purpose is not a failure"
        );
        assert!(held.output.contains("stopped on purpose"));
        assert_eq!(st(WorkerEvent::Spawned { pid: 1 }), None);
        assert_eq!(
            st(WorkerEvent::Exited {
                pid: 1,
                end: End::Exited(0),
                uptime: Duration::ZERO
            }),
            None
        );
    }

    #[test]
    fn events_serialize_with_a_tag() {
        let v = serde_json::to_value(WorkerEvent::Restarting {
            reason: RestartReason::Unhealthy,
            after: Duration::from_millis(1500),
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event": "restarting", "reason": "unhealthy", "after": 1.5})
        );
    }
}
