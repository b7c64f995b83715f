//! The supervisor's actor: one task that owns the worker process for its whole life — prepare
//! (owner check, env file, secrets, port reclaim, log files), spawn, follow the monitor and the
//! handle's commands, stop it the one way ([`crate::proc::Stop`]), and schedule the next start
//! by the [`RestartPolicy`].

use super::monitor::{self, MonitorMsg};
use super::owner::{self, Ownership};
use super::policy::RestartPolicy;
use super::{
    Command, ControlResult, RestartReason, STDERR_TAIL_BYTES, WorkerEvent, WorkerState,
    WorkerStatus, port,
};
use crate::clock::Instant;
use crate::config::WorkerConfig;
use crate::config::path::SearchPath;
use crate::proc::{Cmd, End, Output, Spawned, Stop};
use crate::rotate::RotatingFile;
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot, watch};

/// Start the actor on a new task; the handle keeps the other ends. `held`: start out stopped on
/// purpose.
#[allow(clippy::too_many_arguments)] // one call site, in `Supervisor::start_held`
pub(super) fn spawn(
    cfg: WorkerConfig,
    held: bool,
    search: SearchPath,
    events: mpsc::Sender<WorkerEvent>,
    commands: mpsc::Receiver<Command>,
    status: watch::Sender<WorkerStatus>,
    secrets: Arc<RwLock<Vec<String>>>,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
) -> tokio::task::JoinHandle<()> {
    let actor = Actor {
        policy: RestartPolicy::new(&cfg),
        cfg,
        search,
        events,
        commands,
        status,
        secrets,
        stderr_tail,
        owner: None,
        owner_unknown: None,
        shutdown_reply: None,
        started_once: false,
        secret_cache: BTreeMap::new(),
        reuse_secrets: false,
        held,
        pending: None,
    };
    tokio::spawn(actor.run())
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
    /// Stopped on purpose by an operator.
    Held,
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
    /// The newest value of each `[worker.secrets]` entry, with the command that produced it.
    secret_cache: SecretCache,
    /// The next start follows a reload: secrets whose command did not change are taken from
    /// [`Actor::secret_cache`] instead of being fetched again (a crash restart fetches anew, so
    /// a rotated secret is picked up).
    reuse_secrets: bool,
    /// Stopped on purpose (`talon worker stop`): nothing is started until `start`/`restart`.
    held: bool,
    /// An operator's `start`/`restart` waiting for the next start attempt's outcome, with what
    /// to say before the new pid (`"restarted: pid 1 → "`).
    pending: Option<(oneshot::Sender<ControlResult>, String)>,
}

/// Secret name → (its command, its value).
type SecretCache = BTreeMap<String, (String, String)>;

impl Actor {
    async fn run(mut self) {
        let mut delay = Duration::ZERO;
        loop {
            if self.held {
                self.set(|s| {
                    s.state = WorkerState::StoppedOnPurpose;
                    s.pid = None;
                });
                self.emit(WorkerEvent::StoppedOnPurpose).await;
                if let Flow::Shutdown = self.hold().await {
                    break;
                }
                delay = Duration::ZERO;
            }
            if !delay.is_zero() {
                self.set(|s| s.state = WorkerState::Backoff);
                if let Flow::Shutdown = self.idle(delay).await {
                    break;
                }
            }
            delay = Duration::ZERO;
            if owner::configured(&self.cfg) {
                self.refresh_owner().await;
                if let Some(o) = &self.owner {
                    let msg = format!(
                        "the worker is run by its external owner ({o}); Talon stands aside"
                    );
                    self.answer(Err(msg));
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
                    self.answer(Err(format!("the worker could not be started: {reason}")));
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
            let pid = spawned.pid();
            self.answer(Ok(format!("pid {pid}")));
            match self.supervise(spawned).await {
                LifeEnd::Shutdown => break,
                LifeEnd::Held => {}
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

    /// Answer the operator's pending `start`/`restart`, if any.
    fn answer(&mut self, r: ControlResult) {
        if let Some((reply, prefix)) = self.pending.take() {
            let _ = reply.send(r.map(|m| format!("{prefix}{m}")));
        }
    }

    /// Stopped on purpose: serve commands until an operator starts the worker again (or
    /// supervision ends). A reconfigure is taken and the worker stays stopped; a restart without
    /// an operator behind it (a heal) does not end the stop.
    async fn hold(&mut self) -> Flow {
        loop {
            match self.commands.recv().await {
                None => return Flow::Shutdown,
                Some(Command::Shutdown(_, reply)) => {
                    self.shutdown_reply = Some(reply);
                    return Flow::Shutdown;
                }
                Some(Command::Start(reply)) => {
                    self.held = false;
                    self.pending = Some((reply, "worker started: ".into()));
                    return Flow::Next;
                }
                Some(Command::Restart(Some(reply))) => {
                    self.held = false;
                    self.pending = Some((reply, "worker was stopped; started: ".into()));
                    return Flow::Next;
                }
                Some(Command::Restart(None)) => {
                    tracing::info!(
                        "worker is stopped on purpose; restart not done (`talon worker start` runs it)"
                    );
                }
                Some(Command::Stop(reply)) => {
                    let _ = reply.send(Ok("worker is already stopped".into()));
                }
                Some(Command::Reconfigure(cfg, search)) => {
                    self.apply(*cfg, search);
                }
                Some(Command::Forward(sig)) => {
                    tracing::info!(
                        signal = sig.as_str(),
                        "worker stopped on purpose; signal not forwarded"
                    );
                }
            }
        }
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
            WorkerEvent::StoppedOnPurpose => {
                tracing::warn!(
                    "worker stopped on purpose; it stays stopped until `talon worker start`"
                )
            }
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
                    Some(Command::Restart(reply)) => {
                        self.pending = reply.map(|r| (r, "worker started: ".into()));
                        return Flow::Next;
                    }
                    Some(Command::Start(reply)) => {
                        self.pending = Some((reply, "worker started: ".into()));
                        return Flow::Next;
                    }
                    Some(Command::Stop(reply)) => {
                        self.held = true;
                        let _ = reply.send(Ok("worker stopped (no worker was running); it stays stopped until `talon worker start`".into()));
                        return Flow::Next;
                    }
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
        // Secrets whose command is unchanged (and found the same way) are kept, not refetched.
        self.reuse_secrets = self.search == search;
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
            env.extend(crate::config::envfile::load(p).map_err(|e| e.to_string())?);
        }
        env.extend(cfg.env.clone());
        let cached = if std::mem::take(&mut self.reuse_secrets) {
            std::mem::take(&mut self.secret_cache)
        } else {
            SecretCache::new()
        };
        let secrets = resolve_secrets(&cfg, &self.search, &cached).await;
        self.secret_cache = secrets.cache.clone();
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
        // If this future is dropped mid-life (the runtime shuts down, a panic unwinds), the
        // worker's group must not outlive supervision: dropping `spawned` KILLs it.
        let pid = spawned.pid();
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
                    if spawned.group.alive() {
                        tracing::info!(pgid = spawned.group.0, "stopping what the dead worker left in its group");
                        spawned.stop(Stop::term(self.cfg.drain_timeout)).await;
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
                    Some(Command::Restart(reply)) => {
                        let end = self.stop(&mut spawned, Signal::SIGTERM).await;
                        self.pending = reply.map(|r| (r, format!("worker restarted: pid {pid} ({end}) → ")));
                        return LifeEnd::Now(RestartReason::Requested);
                    }
                    Some(Command::Stop(reply)) => {
                        let end = self.stop(&mut spawned, Signal::SIGTERM).await;
                        self.held = true;
                        let _ = reply.send(Ok(format!(
                            "worker stopped: pid {pid} ({end}); it stays stopped until `talon worker start`"
                        )));
                        return LifeEnd::Held;
                    }
                    Some(Command::Start(reply)) => {
                        let _ = reply.send(Ok(format!("worker is already running: pid {pid}")));
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
    async fn stop(&mut self, spawned: &mut Spawned, first: Signal) -> End {
        self.set(|s| s.state = WorkerState::Stopping);
        let pid = spawned.pid();
        let uptime = spawned.started.elapsed();
        let end = spawned
            .stop(Stop::term(self.cfg.drain_timeout).first(first))
            .await;
        self.set(|s| {
            s.last_exit = Some(end);
            s.pid = None;
        });
        self.emit(WorkerEvent::Exited { pid, end, uptime }).await;
        end
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
    /// What was resolved, for the next reload.
    cache: SecretCache,
}

/// Run each secret's command (timeout, compiled PATH); its value is the first non-empty stdout
/// line. Values are never logged; failures name the secret, not its output.
/// A secret in `cached` with the same command is reused without running anything (a reload that
/// left it unchanged).
async fn resolve_secrets(cfg: &WorkerConfig, search: &SearchPath, cached: &SecretCache) -> Secrets {
    let mut out = Secrets {
        vars: Vec::new(),
        values: Vec::new(),
        error: None,
        cache: SecretCache::new(),
    };
    for (name, s) in &cfg.secrets {
        if let Some((command, value)) = cached.get(name)
            && *command == s.command
        {
            tracing::debug!(secret = %name, "worker secret unchanged by the reload; not fetched again");
            out.values.push(value.clone());
            out.vars.push((name.clone(), value.clone()));
            out.cache
                .insert(name.clone(), (command.clone(), value.clone()));
            continue;
        }
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
                out.cache
                    .insert(name.clone(), (s.command.clone(), v.clone()));
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

type Sink = Option<Arc<Mutex<RotatingFile>>>;

/// The stdout and stderr log files (shared when both name the same file).
fn open_logs(cfg: &WorkerConfig) -> Result<(Sink, Sink), String> {
    let open = |p: &PathBuf| {
        RotatingFile::open(p, cfg.log_max_bytes, cfg.log_max_files, 0o666)
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
