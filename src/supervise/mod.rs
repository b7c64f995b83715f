//! The worker supervisor: one actor task that owns the worker process for its whole life.
//!
//! It spawns `worker.command` through the one subprocess runner (own process group, compiled
//! PATH, env file + `[worker.env]` + secrets), appends its output to rotating log files, reclaims
//! the worker's port from a stale listener first, follows readiness (sync call) and health, and
//! restarts it by the [`policy`] when it dies — event-driven, with whatever is left in the dead
//! worker's group stopped first. It never ends on its own: every failure (a missing program, a
//! bad directory, a required secret that fails, a port that cannot be freed) is reported as a
//! [`WorkerEvent`] and retried with backoff. When an external supervisor owns the worker
//! ([`owner`]), it stands aside and re-checks every `owner_check`.
//!
//! The daemon talks to it through a [`SupervisorHandle`]: commands in (restart, reconfigure,
//! forward a signal, shutdown), [`WorkerEvent`]s out on the channel given to
//! [`Supervisor::start`], and a cheap [`WorkerStatus`] snapshot on a `watch` channel.

pub mod envfile;
pub mod logs;
pub mod monitor;
pub mod owner;
pub mod policy;
pub mod port;
pub mod sys;

use crate::clock::Instant;
use crate::config::WorkerConfig;
use crate::config::path::SearchPath;
use crate::proc::{Cmd, End, Output, Spawned};
use monitor::MonitorMsg;
use nix::sys::signal::Signal;
use owner::Ownership;
use policy::RestartPolicy;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt};
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
/// place ([`Actor::emit`]).
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
}

impl WorkerEvent {
    /// The result this event means for the `worker` pseudo-probe in the state machine, if any:
    /// healthy passes; a crash loop, a failed start and a failed health check fail. Exits and
    /// restarts are not results by themselves (a restarted worker that comes back is healthy; one
    /// that keeps dying becomes a crash loop).
    pub fn probe_outcome(&self) -> Option<crate::probe::outcome::Outcome> {
        use crate::probe::outcome::Outcome;
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

enum Command {
    Restart,
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
            Command::Restart => "Restart",
            Command::Reconfigure(..) => "Reconfigure",
            Command::Forward(_) => "Forward",
            Command::Shutdown(..) => "Shutdown",
        })
    }
}

impl SupervisorHandle {
    /// Gracefully restart the worker (TERM its group, `drain_timeout`, KILL), at once.
    pub async fn restart(&self) {
        let _ = self.commands.send(Command::Restart).await;
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
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (status_tx, status_rx) = watch::channel(WorkerStatus::default());
        let secrets = Arc::new(RwLock::new(Vec::new()));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let actor = Actor {
            policy: RestartPolicy::new(&cfg),
            cfg,
            search,
            events,
            commands: cmd_rx,
            status: status_tx,
            secrets: secrets.clone(),
            stderr_tail: stderr_tail.clone(),
            owner: None,
            owner_unknown: None,
            shutdown_reply: None,
            started_once: false,
        };
        let task = tokio::spawn(actor.run());
        SupervisorHandle {
            commands: cmd_tx,
            status: status_rx,
            secrets,
            stderr_tail,
            task,
        }
    }
}

/// How one wait or one worker life ended.
enum Flow {
    /// Go on (the wait is over / start now).
    Next,
    /// Supervision ends.
    Shutdown,
}

/// How one worker life ended.
enum LifeEnd {
    Died {
        reason: RestartReason,
        uptime: Duration,
        healthy_for: Duration,
    },
    /// Restart at once, no death counted (requested, reconfigured, handed over).
    Now(RestartReason),
    Shutdown,
}

struct Actor {
    cfg: WorkerConfig,
    search: SearchPath,
    events: mpsc::Sender<WorkerEvent>,
    commands: mpsc::Receiver<Command>,
    status: watch::Sender<WorkerStatus>,
    secrets: Arc<RwLock<Vec<String>>>,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    policy: RestartPolicy,
    owner: Option<String>,
    /// The last "could not check the owner" reason, logged once per change.
    owner_unknown: Option<String>,
    shutdown_reply: Option<oneshot::Sender<()>>,
    started_once: bool,
}

impl Actor {
    async fn run(mut self) {
        let mut delay = Duration::ZERO;
        loop {
            if !delay.is_zero() {
                self.set(|s| s.state = WorkerState::Backoff);
                if let Flow::Shutdown = self.idle(delay).await {
                    break;
                }
            }
            delay = Duration::ZERO;
            if owner::configured(&self.cfg) {
                self.refresh_owner().await;
                if self.owner.is_some() {
                    self.set(|s| {
                        s.state = WorkerState::External;
                        s.pid = None;
                    });
                    if let Flow::Shutdown = self.idle(self.cfg.owner_check).await {
                        break;
                    }
                    continue;
                }
            }
            self.set(|s| s.state = WorkerState::Preparing);
            let spawned = match self.start().await {
                Ok(s) => s,
                Err(reason) => {
                    self.emit(WorkerEvent::SpawnFailed {
                        reason: reason.clone(),
                    })
                    .await;
                    self.set(|s| s.last_error = Some(reason));
                    delay = self
                        .death(RestartReason::StartFailed, Duration::ZERO, Duration::ZERO)
                        .await;
                    continue;
                }
            };
            match self.supervise(spawned).await {
                LifeEnd::Shutdown => break,
                LifeEnd::Now(reason) => {
                    self.emit(WorkerEvent::Restarting {
                        reason,
                        after: Duration::ZERO,
                    })
                    .await;
                }
                LifeEnd::Died {
                    reason,
                    uptime,
                    healthy_for,
                } => delay = self.death(reason, uptime, healthy_for).await,
            }
        }
        self.set(|s| {
            s.state = WorkerState::Stopped;
            s.pid = None;
        });
        self.emit(WorkerEvent::Stopped).await;
        if let Some(r) = self.shutdown_reply.take() {
            let _ = r.send(());
        }
    }

    /// Record a death in the tally, report it, and return the delay before the next start.
    async fn death(
        &mut self,
        reason: RestartReason,
        uptime: Duration,
        healthy_for: Duration,
    ) -> Duration {
        let now = Instant::now();
        let d = self.policy.on_death(now, uptime, healthy_for);
        self.set(|s| {
            s.deaths_in_window = d.deaths_in_window;
            s.crash_loop = d.crash_loop;
        });
        if d.crash_loop {
            let last_error = self.status.borrow().last_error.clone();
            self.emit(WorkerEvent::CrashLoop {
                deaths: d.deaths_in_window,
                window: self.cfg.restart_window,
                last_error,
            })
            .await;
        }
        self.emit(WorkerEvent::Restarting {
            reason,
            after: d.delay,
        })
        .await;
        d.delay
    }

    fn set(&self, f: impl FnOnce(&mut WorkerStatus)) {
        self.status.send_modify(f);
    }

    /// Log one event (the only place worker events are logged) and send it to the daemon.
    async fn emit(&self, ev: WorkerEvent) {
        match &ev {
            WorkerEvent::Spawned { pid } => tracing::info!(pid, "worker spawned"),
            WorkerEvent::Healthy { pid } => tracing::info!(pid, "worker healthy"),
            WorkerEvent::HealthFailed {
                pid,
                consecutive,
                reason,
            } => tracing::warn!(pid, consecutive, %reason, "worker health check failed"),
            WorkerEvent::SyncDone { pid, attempts } => {
                tracing::info!(pid, attempts, "worker sync call done")
            }
            WorkerEvent::SyncFailed {
                pid,
                attempts,
                reason,
            } => tracing::error!(pid, attempts, %reason, "worker sync call failed"),
            WorkerEvent::Exited { pid, end, uptime } => {
                tracing::warn!(pid, %end, uptime_secs = uptime.as_secs_f64(), "worker exited")
            }
            WorkerEvent::Restarting { reason, after } => {
                tracing::info!(
                    ?reason,
                    after_secs = after.as_secs_f64(),
                    "worker restart scheduled"
                )
            }
            WorkerEvent::SpawnFailed { reason } => {
                tracing::error!(%reason, "worker could not be started")
            }
            WorkerEvent::PortReclaimed { port, holders } => {
                tracing::warn!(port, stopped = holders.len(), "worker port reclaimed")
            }
            WorkerEvent::CrashLoop {
                deaths,
                window,
                last_error,
            } => tracing::error!(
                deaths,
                window_secs = window.as_secs_f64(),
                last_error = last_error.as_deref().unwrap_or(""),
                "worker crash loop"
            ),
            WorkerEvent::OwnerChanged { external: Some(o) } => {
                tracing::warn!(owner = %o, "worker is owned by an external supervisor; Talon stands aside")
            }
            WorkerEvent::OwnerChanged { external: None } => {
                tracing::warn!("external supervisor released the worker; Talon takes over")
            }
            WorkerEvent::Stopped => tracing::info!("worker supervision stopped"),
        }
        let _ = self.events.send(ev).await;
    }

    /// Wait `d` while serving commands. A restart or reconfigure cuts the wait short.
    async fn idle(&mut self, d: Duration) -> Flow {
        let deadline = Instant::now() + d;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Flow::Next,
                cmd = self.commands.recv() => match cmd {
                    None => return Flow::Shutdown,
                    Some(Command::Shutdown(_, reply)) => {
                        self.shutdown_reply = Some(reply);
                        return Flow::Shutdown;
                    }
                    Some(Command::Restart) => return Flow::Next,
                    Some(Command::Reconfigure(cfg, search)) => {
                        self.apply(*cfg, search);
                        return Flow::Next;
                    }
                    Some(Command::Forward(sig)) => {
                        tracing::info!(signal = sig.as_str(), "no worker running; signal not forwarded");
                    }
                }
            }
        }
    }

    fn apply(&mut self, cfg: WorkerConfig, search: SearchPath) {
        tracing::info!("worker config changed; restarting it with the new one");
        self.policy.reconfigure(&cfg);
        self.cfg = cfg;
        self.search = search;
        self.set(|s| {
            s.crash_loop = false;
            s.deaths_in_window = 0;
        });
    }

    async fn refresh_owner(&mut self) {
        match owner::check(&self.cfg, &self.search).await {
            Ownership::External(o) => {
                self.owner_unknown = None;
                if self.owner.as_ref() != Some(&o) {
                    self.owner = Some(o.clone());
                    self.set(|s| s.external_owner = Some(o.clone()));
                    self.emit(WorkerEvent::OwnerChanged { external: Some(o) })
                        .await;
                }
            }
            Ownership::Free => {
                self.owner_unknown = None;
                if self.owner.take().is_some() {
                    self.set(|s| s.external_owner = None);
                    self.emit(WorkerEvent::OwnerChanged { external: None })
                        .await;
                }
            }
            Ownership::Unknown(reason) => {
                if self.owner_unknown.as_ref() != Some(&reason) {
                    tracing::warn!(%reason, keeping = ?self.owner, "could not check the worker's external owner; keeping the last answer");
                    self.owner_unknown = Some(reason);
                }
            }
        }
    }

    /// Everything before the process exists: env file, secrets, port, log files; then spawn.
    async fn start(&mut self) -> Result<Spawned, String> {
        let cfg = self.cfg.clone();
        let program = cfg
            .command
            .first()
            .cloned()
            .ok_or("worker.command is empty")?;
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        if let Some(p) = &cfg.env_file {
            env.extend(envfile::load(p).map_err(|e| e.to_string())?);
        }
        env.extend(cfg.env.clone());
        let secrets = resolve_secrets(&cfg, &self.search).await;
        if let Ok(mut s) = self.secrets.write() {
            *s = secrets.values.clone();
        }
        if let Some(e) = secrets.error {
            return Err(e);
        }
        env.extend(secrets.vars);

        if let Some(p) = cfg.port {
            let grace = cfg.drain_timeout;
            let stopped = port::reclaim(p, cfg.reclaim_port, grace, &self.search)
                .await
                .map_err(|e| e.to_string())?;
            if !stopped.is_empty() {
                self.emit(WorkerEvent::PortReclaimed {
                    port: p,
                    holders: stopped,
                })
                .await;
            }
        }

        let sinks = open_logs(&cfg).map_err(|e| e.to_string())?;
        let mut cmd = Cmd::new(program)
            .args(cfg.command.iter().skip(1))
            .search_path(&self.search)
            .envs(env)
            .output(Output::Pipe);
        if let Some(d) = &cfg.dir {
            cmd = cmd.dir(d);
        }
        let mut spawned = cmd.spawn().map_err(|e| e.to_string())?;
        tokio::spawn(copy_output(spawned.child.stdout.take(), sinks.0, None));
        tokio::spawn(copy_output(
            spawned.child.stderr.take(),
            sinks.1,
            Some(self.stderr_tail.clone()),
        ));
        let pid = spawned.pid();
        let restarts_inc = u32::from(self.started_once);
        self.started_once = true;
        self.set(|s| {
            s.state = WorkerState::Starting;
            s.pid = Some(pid);
            s.started_at = Some(crate::clock::wall_time());
            s.restarts += restarts_inc;
            s.consecutive_health_failures = 0;
            s.sync_attempts = None;
        });
        self.emit(WorkerEvent::Spawned { pid }).await;
        Ok(spawned)
    }

    /// One worker life: wait for its exit, follow the monitor, serve commands.
    async fn supervise(&mut self, mut spawned: Spawned) -> LifeEnd {
        let pid = spawned.pid();
        // If this future is dropped mid-life (the runtime shuts down, a panic unwinds), the
        // worker's group must not outlive supervision.
        let _kill_on_drop = KillGroupOnDrop(spawned.group);
        let (mon_tx, mut mon_rx) = mpsc::channel(8);
        let mon = tokio::spawn(monitor::run(self.cfg.clone(), mon_tx));
        let _abort_monitor = AbortOnDrop(mon);
        let mut healthy_since: Option<Instant> = None;
        let owner_checked = owner::configured(&self.cfg);
        let mut owner_tick =
            tokio::time::interval_at(Instant::now() + self.cfg.owner_check, self.cfg.owner_check);
        loop {
            tokio::select! {
                end = spawned.wait() => {
                    let uptime = spawned.started.elapsed();
                    let end = end.unwrap_or(End::Exited(-1));
                    // The leader is gone; whatever it left in its group (a grandchild holding
                    // the port or files) goes before anything restarts.
                    let group = sys::Target::Group(spawned.group.0 as u32);
                    if group.alive() {
                        tracing::info!(pgid = spawned.group.0, "stopping what the dead worker left in its group");
                        sys::stop_targets(&[group], self.cfg.drain_timeout).await;
                    }
                    self.set(|s| {
                        s.last_exit = Some(end);
                        s.pid = None;
                    });
                    self.emit(WorkerEvent::Exited { pid, end, uptime }).await;
                    return LifeEnd::Died {
                        reason: RestartReason::Exited,
                        uptime,
                        healthy_for: healthy_since.map(|t| t.elapsed()).unwrap_or_default(),
                    };
                }
                Some(msg) = mon_rx.recv() => match msg {
                    MonitorMsg::Healthy => {
                        healthy_since = Some(Instant::now());
                        self.set(|s| {
                            s.state = WorkerState::Running;
                            s.consecutive_health_failures = 0;
                            s.last_error = None;
                        });
                        self.emit(WorkerEvent::Healthy { pid }).await;
                    }
                    MonitorMsg::HealthFailed { consecutive, reason } => {
                        healthy_since = None;
                        let msg = format!("health check failed {consecutive} time(s) in a row: {reason}");
                        self.set(|s| {
                            s.state = WorkerState::Unhealthy;
                            s.consecutive_health_failures = consecutive;
                            s.last_error = Some(msg);
                        });
                        self.emit(WorkerEvent::HealthFailed { pid, consecutive, reason }).await;
                        if consecutive >= self.cfg.health_failures_before_restart.get() {
                            let uptime = spawned.started.elapsed();
                            self.stop(&mut spawned, Signal::SIGTERM).await;
                            return LifeEnd::Died {
                                reason: RestartReason::Unhealthy,
                                uptime,
                                healthy_for: Duration::ZERO,
                            };
                        }
                    }
                    MonitorMsg::SyncDone { attempts } => {
                        self.set(|s| s.sync_attempts = Some(attempts));
                        self.emit(WorkerEvent::SyncDone { pid, attempts }).await;
                    }
                    MonitorMsg::SyncFailed { attempts, reason } => {
                        let msg = format!("sync call failed after {attempts} attempt(s): {reason}");
                        self.set(|s| s.last_error = Some(msg));
                        self.emit(WorkerEvent::SyncFailed { pid, attempts, reason }).await;
                    }
                },
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Forward(sig)) => {
                        tracing::info!(pid, signal = sig.as_str(), "forwarding signal to the worker's group");
                        spawned.group.signal(sig);
                    }
                    Some(Command::Restart) => {
                        self.stop(&mut spawned, Signal::SIGTERM).await;
                        return LifeEnd::Now(RestartReason::Requested);
                    }
                    Some(Command::Reconfigure(cfg, search)) => {
                        self.stop(&mut spawned, Signal::SIGTERM).await;
                        self.apply(*cfg, search);
                        return LifeEnd::Now(RestartReason::Reconfigured);
                    }
                    Some(Command::Shutdown(sig, reply)) => {
                        self.shutdown_reply = Some(reply);
                        self.stop(&mut spawned, sig).await;
                        return LifeEnd::Shutdown;
                    }
                    None => {
                        self.stop(&mut spawned, Signal::SIGTERM).await;
                        return LifeEnd::Shutdown;
                    }
                },
                _ = owner_tick.tick(), if owner_checked => {
                    self.refresh_owner().await;
                    if self.owner.is_some() {
                        // Hand-over: ours stops (drained), theirs runs; nobody kills anybody
                        // else's process afterwards.
                        self.stop(&mut spawned, Signal::SIGTERM).await;
                        return LifeEnd::Now(RestartReason::Requested);
                    }
                }
            }
        }
    }

    /// Graceful stop: `first` to the group, up to `drain_timeout` for the whole group to exit,
    /// then KILL the group; the leader is always reaped.
    async fn stop(&mut self, spawned: &mut Spawned, first: Signal) {
        self.set(|s| s.state = WorkerState::Stopping);
        let pid = spawned.pid();
        let uptime = spawned.started.elapsed();
        let drain = self.cfg.drain_timeout;
        let started = Instant::now();
        let pgid = spawned.group.0 as u32;
        spawned.group.signal(first);
        let end = tokio::time::timeout(drain, spawned.wait())
            .await
            .ok()
            .and_then(Result::ok);
        if end.is_some() {
            let left = drain.saturating_sub(started.elapsed());
            sys::wait_until(left, || sys::group_members(pgid).is_empty()).await;
        }
        spawned.group.signal(Signal::SIGKILL);
        let end = match end {
            Some(e) => e,
            None => spawned
                .wait()
                .await
                .unwrap_or(End::Signaled(Signal::SIGKILL as i32)),
        };
        sys::wait_until(Duration::from_secs(2), || {
            sys::group_members(pgid).is_empty()
        })
        .await;
        self.set(|s| {
            s.last_exit = Some(end);
            s.pid = None;
        });
        self.emit(WorkerEvent::Exited { pid, end, uptime }).await;
    }
}

/// SIGKILL a worker's group when dropped. On normal paths the group is already empty by then
/// (stopped and reaped), so this only matters when supervision is torn down abruptly.
struct KillGroupOnDrop(crate::proc::Group);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        self.0.signal(Signal::SIGKILL);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolved `[worker.secrets]`.
struct Secrets {
    vars: Vec<(String, String)>,
    values: Vec<String>,
    /// A required secret that failed (the first one).
    error: Option<String>,
}

/// Run each secret's command (timeout, compiled PATH); its value is the first non-empty stdout
/// line. Values are never logged; failures name the secret, not its output.
async fn resolve_secrets(cfg: &WorkerConfig, search: &SearchPath) -> Secrets {
    let mut out = Secrets {
        vars: Vec::new(),
        values: Vec::new(),
        error: None,
    };
    for (name, s) in &cfg.secrets {
        let r = Cmd::shell(&s.command)
            .search_path(search)
            .timeout(s.timeout)
            .run()
            .await;
        let value = match r {
            Err(e) => Err(e.to_string()),
            Ok(f) if f.end.success() => f
                .stdout
                .text()
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
                .ok_or_else(|| "its command printed nothing".to_string()),
            Ok(f) => Err(format!("its command ended with {}", f.end)),
        };
        match value {
            Ok(v) => {
                out.values.push(v.clone());
                out.vars.push((name.clone(), v));
            }
            Err(reason) if s.optional => {
                tracing::warn!(secret = %name, %reason, "optional worker secret unavailable; not set");
            }
            Err(reason) => {
                if out.error.is_none() {
                    out.error = Some(format!("required secret {name} failed: {reason}"));
                }
            }
        }
    }
    out
}

type Sink = Option<Arc<Mutex<logs::RotatingLog>>>;

/// The stdout and stderr log files (shared when both name the same file).
fn open_logs(cfg: &WorkerConfig) -> Result<(Sink, Sink), String> {
    let open = |p: &PathBuf| {
        logs::RotatingLog::open(p, cfg.log_max_bytes, cfg.log_max_files)
            .map(|l| Arc::new(Mutex::new(l)))
            .map_err(|e| format!("cannot open worker log {}: {e}", p.display()))
    };
    let out = cfg.log_stdout.as_ref().map(open).transpose()?;
    let err = match (&cfg.log_stderr, &cfg.log_stdout, &out) {
        (Some(e), Some(o), Some(shared)) if e == o => Some(shared.clone()),
        (Some(e), _, _) => Some(open(e)?),
        (None, _, _) => None,
    };
    Ok((out, err))
}

/// Copy a worker stream into its log file (and the in-memory stderr tail) until EOF.
async fn copy_output<R: AsyncRead + Unpin>(
    stream: Option<R>,
    sink: Sink,
    tail: Option<Arc<Mutex<VecDeque<u8>>>>,
) {
    let Some(mut r) = stream else { return };
    let mut buf = vec![0u8; 16 * 1024];
    let mut warned = false;
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if let Some(s) = &sink
            && let Ok(mut log) = s.lock()
            && let Err(e) = log.append(chunk)
            && !warned
        {
            warned = true;
            tracing::error!(path = %log.path().display(), error = %e, "cannot write the worker's log");
        }
        if let Some(t) = &tail
            && let Ok(mut t) = t.lock()
        {
            t.extend(chunk);
            let over = t.len().saturating_sub(STDERR_TAIL_BYTES);
            t.drain(..over);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::outcome::Status;

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
