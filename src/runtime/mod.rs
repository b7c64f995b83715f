//! The daemon's shell: one event channel, one loop. The core decides; the runtime executes.
//!
//! ```text
//!  probe scheduler ──► engine tasks ──┐
//!  heal / agent / notify tasks ───────┤
//!  worker supervisor events ──────────┼──► mpsc ──► loop { core.step(event) → actions → spawn }
//!  config watcher, signals, control ──┘                         │
//!                                                               └──► store writer thread, /health snapshot
//! ```
//!
//! Nothing slow runs on the loop itself: probe cycles, heals, agents and deliveries are tasks that
//! report back with a message, so a five-minute heal never delays probing, `/health` or shutdown.

mod exec;
mod schedule;
mod surfaces;

use crate::config::probe::ProbeConfig;
use crate::config::{self, Config, LoadOptions};
use crate::core::ProbeResult;
use crate::core::{Action, Core, CoreConfig, Event, Millis};
use crate::probe::engine::{Engine, now_ms};
use crate::store::{self, Batch, Store, StoreWriter};
use crate::supervise::{Supervisor, SupervisorHandle, WorkerEvent};
use schedule::Schedule;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How `talon run` was asked to start.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--config` / `$TALON_CONFIG`.
    pub config: Option<PathBuf>,
}

/// Why the daemon could not start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid config:\n{0}")]
    Config(String),
    #[error(transparent)]
    Lock(#[from] store::lock::LockError),
    #[error("cannot create state dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state dir is not private: {0}")]
    Perms(#[from] store::perms::PermError),
}

/// Messages into the loop.
#[derive(Debug)]
pub(crate) enum Msg {
    /// An event for the core, already stamped with its time.
    Core(Event),
    /// A scheduled probe run finished.
    Cycle(Vec<ProbeResult>),
}

/// The running daemon.
pub struct Runtime {
    opts: RunOptions,
    cfg: Arc<Config>,
    core: Core,
    engine: Engine,
    store: Option<StoreWriter>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    schedule: Schedule,
    /// The core's one timer.
    wake: Option<Millis>,
    /// Heal, agent, delivery and probe tasks in flight (aborted at shutdown, which kills their
    /// process groups).
    tasks: JoinSet<()>,
    /// Newest scheduled result of each probe.
    last: BTreeMap<String, ProbeResult>,
    /// Secrets and `redact` patterns: probe output is redacted as it arrives, before the core,
    /// the store, the log or any executor sees it.
    redactor: Arc<crate::redact::Redactor>,
    /// The newest reload error, shown until a good config replaces it.
    pub config_error: Option<String>,
    worker_restarts: u32,
    /// The worker supervisor, when `[worker]` is configured.
    worker: Option<Arc<SupervisorHandle>>,
    worker_events: mpsc::Receiver<WorkerEvent>,
    worker_events_tx: mpsc::Sender<WorkerEvent>,
    /// What `/health`, `/status` and `/` serve; replaced after every step.
    board: crate::server::StatusBoard,
    metrics: Arc<crate::metrics::Metrics>,
    server: Option<crate::server::ServerHandle>,
    control_tx: mpsc::Sender<crate::server::control::ControlRequest>,
    control_rx: mpsc::Receiver<crate::server::control::ControlRequest>,
    /// The reload error with its position, for the surfaces.
    config_error_detail: Option<crate::server::snapshot::ConfigError>,
    transitions: Vec<crate::server::snapshot::Transition>,
    timeline: Vec<crate::server::snapshot::TimelineEntry>,
    progress: crate::sdnotify::Progress,
    log: Option<crate::logging::LogGuard>,
    /// Failed store writes already counted in the metrics.
    store_failures_seen: u64,
}

fn load(opts: &RunOptions) -> Result<Config, StartError> {
    load_detailed(opts).map_err(|(text, _)| StartError::Config(text))
}

/// Load, keeping the first error's position for the surfaces.
fn load_detailed(
    opts: &RunOptions,
) -> Result<Config, (String, Option<crate::server::snapshot::ConfigError>)> {
    let loaded = config::load(&LoadOptions {
        config: opts.config.clone(),
        resolve: false,
        ..Default::default()
    });
    match loaded.config {
        Some(c) => Ok(c),
        None => Err((
            loaded.diags.to_string(),
            loaded.diags.errors().next().map(Into::into),
        )),
    }
}

/// Host-dependent problems (missing programs, platform) do not stop the daemon: the probe or
/// heal that needs them fails at run time and escalates. They are logged loudly at start.
fn log_host_problems(opts: &RunOptions) {
    let loaded = config::load(&LoadOptions {
        config: opts.config.clone(),
        resolve: true,
        ..Default::default()
    });
    for d in loaded.diags.errors() {
        tracing::error!(file = %d.file, line = d.line, key = %d.key, "{}", d.message);
    }
}

impl Runtime {
    /// Load config, take the single-instance lock, open the store and restore the core.
    pub fn start(opts: RunOptions) -> Result<(Runtime, store::lock::InstanceLock), StartError> {
        let cfg = load(&opts)?;
        create_private_dir(&cfg.state_dir)?;
        let log = match crate::logging::init_logging(&cfg.log, None) {
            Ok(g) => Some(g),
            Err(e) => {
                fallback_logging(&cfg.log.level);
                tracing::error!(file = %cfg.log.file.display(), "cannot open the log file ({e}); logging to stderr");
                None
            }
        };
        if opts.config.is_none() && cfg.sources.main.is_none() {
            tracing::info!("no config file found: running with the embedded default config");
        }
        log_host_problems(&opts);
        secure_state(&cfg)?;
        let lock = store::lock::acquire(&cfg.state_dir)?;
        let core_cfg = CoreConfig::from_config(&cfg);
        let (core, store) = match Store::open(&cfg.state_dir) {
            Ok(s) => {
                let core = match s.load_core() {
                    Ok(Some(saved)) => {
                        tracing::info!(
                            state = saved.state.state.as_str(),
                            "restored state from the store"
                        );
                        Core::restore(core_cfg, saved.state)
                    }
                    Ok(None) => Core::new(core_cfg),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read saved state; starting fresh");
                        Core::new(core_cfg)
                    }
                };
                match StoreWriter::spawn(s) {
                    Ok(w) => (core, Some(w)),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the store writer; history is not recorded");
                        (core, None)
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open the store; running without history");
                (Core::new(core_cfg), None)
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (worker_events_tx, worker_events) = mpsc::channel(256);
        let (control_tx, control_rx) = mpsc::channel(16);
        let mut schedule = Schedule::default();
        schedule.sync(&cfg.probes, Instant::now());
        let rt = Runtime {
            redactor: Arc::new(cfg.redactor()),
            engine: Engine::new(&cfg),
            cfg: Arc::new(cfg),
            opts,
            core,
            store,
            tx,
            rx,
            schedule,
            wake: None,
            tasks: JoinSet::new(),
            last: BTreeMap::new(),
            config_error: None,
            worker_restarts: 0,
            worker: None,
            worker_events,
            worker_events_tx,
            board: crate::server::StatusBoard::new(crate::server::snapshot::StatusSnapshot::new(
                now_ms() / 1000,
            )),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            server: None,
            control_tx,
            control_rx,
            config_error_detail: None,
            transitions: Vec::new(),
            timeline: Vec::new(),
            progress: crate::sdnotify::Progress::default(),
            log,
            store_failures_seen: 0,
        };
        Ok((rt, lock))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Run until SIGTERM/SIGINT. Then: stop starting work, kill in-flight heal/agent groups,
    /// flush the store.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut forwarded = Forwarded::new(
            self.cfg
                .worker
                .as_ref()
                .map(|w| w.forward_signals.as_slice())
                .unwrap_or(&[]),
        )?;
        self.start_worker();
        self.update_log();
        self.start_server().await;
        let (changes_tx, mut changes) = mpsc::channel(16);
        let _watch = crate::watch::spawn(self.watched_paths(), Duration::from_secs(1), changes_tx);
        let sd = crate::sdnotify::Notifier::from_env().ok();
        if let Some(interval) = crate::sdnotify::watchdog_interval_from_env()
            && let Ok(n) = crate::sdnotify::Notifier::from_env()
        {
            crate::sdnotify::spawn_watchdog(n, interval, self.progress.clone());
        }
        if let Some(hb) = self.cfg.heartbeat.clone() {
            match crate::heartbeat::spawn(hb, self.board.subscribe(), Some(self.metrics.clone())) {
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "heartbeat disabled"),
            }
        }
        let mut prune = tokio::time::interval(Duration::from_secs(3600));
        // A tick right away lets the core re-issue what a restore left pending (re-probes,
        // undelivered notifications) without waiting for the first cycle.
        self.step(Event::Tick { at: now_ms() });
        self.publish();
        tracing::info!(
            probes = self.cfg.probes.len(),
            state = self.core.state().as_str(),
            "talon running"
        );
        let _ = sd.as_ref().map(|n| {
            n.ready(&format!(
                "{} probes, {}",
                self.cfg.probes.len(),
                self.core.state().as_str()
            ))
        });
        let shutdown_reason = loop {
            let deadline = self.next_deadline();
            self.progress.tick();
            tokio::select! {
                Some(req) = self.control_rx.recv() => self.on_control(req),
                Some(change) = changes.recv() => {
                    tracing::info!(path = %change.path.display(), exists = change.exists, "config file changed");
                    self.reload("file change").await;
                    _watch.set_paths(self.watched_paths());
                }
                _ = prune.tick() => {
                    if let Some(w) = &self.store {
                        w.prune(now_ms(), self.cfg.store.retention);
                    }
                }
                Some(msg) = self.rx.recv() => self.handle(msg),
                Some(ev) = self.worker_events.recv() => self.on_worker(ev),
                Some(sig) = forwarded.recv() => self.forward(sig),
                _ = tokio::time::sleep_until(deadline) => self.on_timer(),
                Some(res) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Err(e) = res && e.is_panic() {
                        tracing::error!(error = %e, "a task panicked");
                    }
                }
                _ = sigterm.recv() => break nix::sys::signal::Signal::SIGTERM,
                _ = sigint.recv() => break nix::sys::signal::Signal::SIGINT,
                _ = sighup.recv() => self.reload("SIGHUP").await,
            }
        };
        tracing::info!(signal = shutdown_reason.as_str(), "shutting down");
        let _ = sd.as_ref().map(|n| n.stopping());
        if let Some(srv) = self.server.take() {
            srv.shutdown().await;
        }
        self.shutdown(shutdown_reason).await;
        Ok(())
    }

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let probes = self.schedule.next_deadline().unwrap_or(far);
        let wake = self
            .wake
            .map(|at| Instant::now() + Duration::from_millis((at - now_ms()).max(0) as u64))
            .unwrap_or(far);
        probes.min(wake)
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        self.launch_due(now);
        if let Some(at) = self.wake
            && at <= now_ms()
        {
            self.wake = None;
            self.step(Event::Tick { at: now_ms() });
        }
    }

    /// Start the probes that are due (and not already running) as one engine run.
    fn launch_due(&mut self, now: Instant) {
        let due = self.schedule.take_due(now);
        if due.is_empty() {
            return;
        }
        let (run, blocked) = self.partition_blocked(&due);
        let engine = self.engine.clone();
        let tx = self.tx.clone();
        self.tasks.spawn(async move {
            let mut results = blocked;
            results.extend(engine.run(&run).await);
            let _ = tx.send(Msg::Cycle(results));
        });
    }

    /// Probes whose dependency is outside this run and last did not pass are `blocked` now,
    /// without running; the rest run (the engine handles dependencies inside the run).
    fn partition_blocked(&self, names: &[String]) -> (Vec<ProbeConfig>, Vec<ProbeResult>) {
        let mut run = Vec::new();
        let mut blocked = Vec::new();
        for p in self.cfg.probes.iter().filter(|p| names.contains(&p.name)) {
            let outside_failing = p
                .depends_on
                .iter()
                .filter(|d| !names.contains(d))
                .filter_map(|d| self.last.get(d))
                .find(|r| !r.passed);
            match outside_failing {
                Some(dep) => blocked.push(crate::probe::engine::blocked(p, dep)),
                None => run.push(p.clone()),
            }
        }
        (run, blocked)
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Core(ev) => self.step(ev),
            Msg::Cycle(mut results) => {
                for r in &mut results {
                    r.output = self.redactor.clean(&r.output);
                }
                for r in &results {
                    let critical = self
                        .cfg
                        .probes
                        .iter()
                        .any(|p| p.name == r.name && p.critical);
                    self.metrics.observe_probe(r, critical);
                    self.schedule.finished(&r.name);
                    self.last.insert(r.name.clone(), r.clone());
                }
                // Only probes still configured (a reload may have removed some mid-run).
                let results: Vec<ProbeResult> = results
                    .into_iter()
                    .filter(|r| self.cfg.probes.iter().any(|p| p.name == r.name))
                    .collect();
                if !results.is_empty() {
                    self.step(Event::ProbeResults {
                        at: now_ms(),
                        results,
                    });
                }
            }
        }
    }

    /// One decision: step the core, store what it produced, execute its actions.
    fn step(&mut self, mut ev: Event) {
        if let Event::Reprobe { results, .. } = &mut ev {
            for r in results {
                r.output = self.redactor.clean(&r.output);
            }
        }
        match &ev {
            Event::HealFinished { outcome, .. } => self
                .metrics
                .escalation_action("heal", if outcome.succeeded() { "ok" } else { "failed" }),
            Event::AgentFinished { outcome, .. } => self
                .metrics
                .escalation_action("agent", if outcome.succeeded() { "ok" } else { "failed" }),
            _ => {}
        }
        let actions = self.core.step(ev.clone());
        for a in &actions {
            if let Action::Record(r) = a {
                self.note_record(r);
            }
        }
        if let Some(w) = &self.store {
            w.send(Batch::from_step(
                &ev,
                &actions,
                &self.core,
                self.worker_restarts,
            ));
        }
        for a in actions {
            self.execute(a);
        }
        self.publish();
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::RunHeal {
                id,
                incident,
                steps,
                probes,
            } => {
                tracing::warn!(incident, action = id, probes = ?probes, "tier 1: running heal");
                let job = exec::HealJob {
                    id,
                    incident,
                    steps,
                    probes,
                    cfg: self.cfg.clone(),
                    redactor: self.redactor.clone(),
                    last: self.last.clone(),
                    worker: self.worker.clone(),
                };
                let tx = self.tx.clone();
                self.tasks.spawn(async move {
                    let (outcome, output) = exec::run_heal(job).await;
                    let _ = tx.send(Msg::Core(Event::HealFinished {
                        at: now_ms(),
                        id,
                        outcome,
                        output,
                    }));
                });
            }
            Action::RunAgent {
                id,
                incident,
                tier,
                probes,
            } => {
                tracing::warn!(incident, action = id, tier = tier.as_str(), probes = ?probes, "running agent");
                let job = exec::AgentJob {
                    incident,
                    tier,
                    probes,
                    cfg: self.cfg.clone(),
                    redactor: self.redactor.clone(),
                    outlook: self.core.outlook(now_ms()),
                };
                let tx = self.tx.clone();
                self.tasks.spawn(async move {
                    let (outcome, output) = exec::run_agent(job).await;
                    let _ = tx.send(Msg::Core(Event::AgentFinished {
                        at: now_ms(),
                        id,
                        outcome,
                        output,
                    }));
                });
            }
            Action::Notify(n) => {
                tracing::warn!(
                    incident = n.incident,
                    kind = n.kind.as_str(),
                    attempt = n.attempt,
                    "notifying"
                );
                let cfg = self.cfg.clone();
                let redactor = self.redactor.clone();
                let tx = self.tx.clone();
                self.tasks.spawn(async move {
                    let id = n.id;
                    let channels = exec::deliver(&cfg, &n, redactor).await;
                    let _ = tx.send(Msg::Core(Event::NotifyResult {
                        at: now_ms(),
                        id,
                        channels,
                    }));
                });
            }
            Action::Reprobe {
                incident,
                probes,
                at,
            } => {
                let engine = self.engine.clone();
                let tx = self.tx.clone();
                let configs: Vec<ProbeConfig> = self
                    .cfg
                    .probes
                    .iter()
                    .filter(|p| probes.contains(&p.name))
                    .cloned()
                    .collect();
                let worker_probe = probes.iter().any(|p| p == crate::core::WORKER_PROBE);
                let worker_last = self.last.get(crate::core::WORKER_PROBE).cloned();
                self.tasks.spawn(async move {
                    let wait = (at - now_ms()).max(0) as u64;
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let mut results = engine.run(&configs).await;
                    if worker_probe && let Some(w) = worker_last {
                        results.push(w);
                    }
                    tracing::info!(incident, probes = ?probes, "verification re-probe done");
                    let _ = tx.send(Msg::Core(Event::Reprobe {
                        at: now_ms(),
                        results,
                    }));
                });
            }
            Action::WakeAt { at } => self.wake = Some(at),
            Action::Record(r) => log_record(&r),
            Action::Persist => {}
        }
    }

    /// Re-read both config files. A bad file never replaces the running config.
    pub async fn reload(&mut self, why: &str) {
        match load_detailed(&self.opts) {
            Err((text, detail)) => {
                self.metrics.reload(false);
                self.config_error_detail = detail;
                self.publish();
                let msg = text;
                tracing::error!(
                    trigger = why,
                    "config reload failed; keeping the last good config: {msg}"
                );
                self.config_error = Some(msg);
            }
            Ok(new) => {
                let had_error = self.config_error.take().is_some();
                self.config_error_detail = None;
                if *self.cfg == new {
                    if had_error {
                        tracing::info!(
                            trigger = why,
                            "config fixed (unchanged from the running one)"
                        );
                        self.metrics.reload(true);
                        self.publish();
                    }
                    return;
                }
                tracing::info!(trigger = why, probes = new.probes.len(), "config reloaded");
                self.metrics.reload(true);
                for p in &self.cfg.probes {
                    if !new.probes.iter().any(|n| n.name == p.name) {
                        self.metrics.forget_probe(&p.name);
                    }
                }
                let rebind = self.cfg.health != new.health;
                self.schedule.sync(&new.probes, Instant::now());
                self.last
                    .retain(|n, _| new.probes.iter().any(|p| &p.name == n));
                self.engine = Engine::new(&new);
                let core_cfg = CoreConfig::from_config(&new);
                self.redactor = Arc::new(new.redactor());
                let worker_changed =
                    self.cfg.worker != new.worker || self.cfg.search_path != new.search_path;
                self.cfg = Arc::new(new);
                if worker_changed {
                    self.reconfigure_worker();
                }
                if rebind {
                    self.rebind_server().await;
                }
                self.update_log();
                self.step(Event::Reload {
                    at: now_ms(),
                    config: Box::new(core_cfg),
                });
            }
        }
    }

    async fn shutdown(&mut self, sig: nix::sys::signal::Signal) {
        // Aborting a task drops its subprocess run, which kills the run's process group.
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.stop_worker(sig).await;
        if let Some(w) = self.store.take() {
            let res = tokio::task::spawn_blocking(move || w.close()).await;
            if let Ok(Err(e)) = res {
                tracing::error!(error = %e, "store flush at shutdown failed");
            }
        }
    }
}

impl Runtime {
    fn server_state(&self) -> crate::server::ServerState {
        let token = match crate::server::control::ensure_token(&self.cfg.state_dir) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "no API token: ack/silence over HTTP are disabled");
                None
            }
        };
        crate::server::ServerState::new(self.board.clone(), self.metrics.clone())
            .with_control(self.control_tx.clone(), token)
    }

    async fn start_server(&mut self) {
        if !self.cfg.health.enabled {
            return;
        }
        let bind = self.cfg.health.bind;
        match crate::server::serve(bind, self.server_state(), Default::default()).await {
            Ok(h) => {
                tracing::info!(addr = %h.addr(), "serving /health, /status, /metrics and the status page");
                self.server = Some(h);
            }
            Err(e) => {
                tracing::error!(bind = %bind, error = %e, "cannot serve /health; probing and supervision go on")
            }
        }
    }

    /// `[health]` changed: serve on the new address (the old server stays if that fails).
    async fn rebind_server(&mut self) {
        let enabled = self.cfg.health.enabled;
        let bind = self.cfg.health.bind;
        match (self.server.take(), enabled) {
            (Some(h), true) => match h.rebind(bind).await {
                Ok(h) => {
                    tracing::info!(addr = %h.addr(), "HTTP server rebound");
                    self.server = Some(h);
                }
                Err((old, e)) => {
                    tracing::error!(bind = %bind, error = %e, "cannot rebind; still serving on the old address");
                    self.server = Some(old);
                }
            },
            (Some(h), false) => h.shutdown().await,
            (None, true) => self.start_server().await,
            (None, false) => {}
        }
    }

    /// The log follows `[log] level` and redacts every secret Talon knows.
    fn update_log(&self) {
        if let Some(g) = &self.log {
            let r = self.redactor.clone();
            g.set_redactor(Some(Arc::new(move |line: &str| r.clean(line))));
            if let Err(e) = g.set_level(&self.cfg.log.level) {
                tracing::warn!(error = %e, "log level not changed");
            }
        }
    }

    fn watched_paths(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Some(m) = &self.cfg.sources.main {
            v.push(m.clone());
        }
        v.push(self.cfg.sources.services.clone());
        v
    }

    fn start_worker(&mut self) {
        if let Some(w) = &self.cfg.worker {
            let handle = Supervisor::start(
                w.clone(),
                self.cfg.search_path.clone(),
                self.worker_events_tx.clone(),
            );
            self.worker = Some(Arc::new(handle));
        }
    }

    async fn stop_worker(&mut self, sig: nix::sys::signal::Signal) {
        if let Some(h) = self.worker.take() {
            match Arc::try_unwrap(h) {
                Ok(h) => h.shutdown_with(sig).await,
                // A heal task still holds it (tasks were aborted, so this is brief): dropping
                // the last reference drains the worker in the background.
                Err(h) => drop(h),
            }
        }
    }

    fn reconfigure_worker(&mut self) {
        match (&self.worker, self.cfg.worker.clone()) {
            (Some(h), Some(w)) => {
                tracing::info!("[worker] changed: restarting the worker with the new config");
                let h = h.clone();
                let search = self.cfg.search_path.clone();
                self.tasks
                    .spawn(async move { h.reconfigure(w, search).await });
            }
            (None, Some(_)) => self.start_worker(),
            (Some(_), None) => {
                tracing::info!("[worker] removed: stopping the worker");
                if let Some(h) = self.worker.take()
                    && let Ok(h) = Arc::try_unwrap(h)
                {
                    self.tasks.spawn(async move { h.shutdown().await });
                }
            }
            (None, None) => {}
        }
    }

    /// A worker event: its health, as the `worker` pseudo-probe, goes to the core.
    fn on_worker(&mut self, ev: WorkerEvent) {
        if let Some(h) = &self.worker {
            self.worker_restarts = h.status().restarts;
            // Secrets the worker got from `[worker.secrets]` commands are redacted like the
            // config's own (its stderr reaches the agent prompt).
            for v in h.secret_values() {
                self.redactor.learn(v);
            }
        }
        // The supervisor debounces health itself (`health_failures_before_restart`, then a
        // graceful restart). A failed check below that count is logged, not escalated: the
        // ladder's own heal for `worker` is a restart, and it would cut the configured
        // tolerance down to a single missed check.
        if let WorkerEvent::HealthFailed { consecutive, .. } = &ev
            && let Some(w) = &self.cfg.worker
            && *consecutive < w.health_failures_before_restart.get()
        {
            return;
        }
        let Some(outcome) = ev.probe_outcome() else {
            return;
        };
        let result = ProbeResult {
            name: crate::core::WORKER_PROBE.to_string(),
            kind: "worker".to_string(),
            passed: outcome.status.passed(),
            status: outcome.status,
            output: outcome.output,
            duration_ms: 0,
            started_at: now_ms(),
        };
        let changed = self
            .last
            .get(crate::core::WORKER_PROBE)
            .map(|r| (r.status, &r.output))
            != Some((result.status, &result.output));
        self.last.insert(result.name.clone(), result.clone());
        if changed || !result.passed {
            self.step(Event::ProbeResults {
                at: now_ms(),
                results: vec![result],
            });
        }
    }

    fn forward(&self, sig: nix::sys::signal::Signal) {
        if let Some(h) = &self.worker {
            match h.forward(sig) {
                Ok(()) => tracing::info!(signal = sig.as_str(), "forwarded to the worker's group"),
                Err(e) => tracing::warn!(signal = sig.as_str(), "not forwarded: {e}"),
            }
        }
    }
}

/// The extra signals (`worker.forward_signals`) Talon listens for and passes on.
struct Forwarded {
    streams: Vec<(nix::sys::signal::Signal, tokio::signal::unix::Signal)>,
}

impl Forwarded {
    fn new(names: &[String]) -> std::io::Result<Self> {
        let mut streams = Vec::new();
        for n in names {
            if let Ok(sig) = format!("SIG{n}").parse::<nix::sys::signal::Signal>() {
                streams.push((sig, signal(SignalKind::from_raw(sig as i32))?));
            }
        }
        Ok(Self { streams })
    }

    /// The next forwarded signal (pending forever when none are configured).
    async fn recv(&mut self) -> Option<nix::sys::signal::Signal> {
        if self.streams.is_empty() {
            return std::future::pending().await;
        }
        let futs = self.streams.iter_mut().map(|(sig, s)| {
            let sig = *sig;
            Box::pin(async move { s.recv().await.map(|_| sig) })
        });
        futures_select_all(futs).await
    }
}

/// The first of several futures to finish (a tiny `select_all`).
async fn futures_select_all<F, T>(futs: impl IntoIterator<Item = F>) -> T
where
    F: std::future::Future<Output = T> + Unpin,
{
    let mut futs: Vec<F> = futs.into_iter().collect();
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

fn log_record(r: &crate::core::Record) {
    use crate::core::Record;
    match r {
        Record::Transition(t) => {
            tracing::info!(subject = %t.subject, from = %t.from, to = %t.to, incident = ?t.incident, "{}", t.reason)
        }
        Record::IncidentOpened {
            incident, probes, ..
        } => {
            tracing::warn!(incident, probes = ?probes, "incident opened")
        }
        Record::IncidentClosed {
            incident, reason, ..
        } => tracing::info!(incident, "incident closed: {reason}"),
        Record::ActionFinished {
            action, outcome, ..
        } => {
            tracing::info!(action, outcome = %outcome.describe(), "action finished")
        }
        Record::ActionVerdict {
            action, verdict, ..
        } => tracing::info!(action, "verdict: {verdict}"),
        Record::NotificationResult {
            notification,
            delivered,
            channels,
            ..
        } => {
            for c in channels {
                tracing::info!(notification, channel = %c.channel, delivered = c.delivered, "{}", c.detail);
            }
            if !delivered {
                tracing::error!(
                    notification,
                    "notification not delivered on any channel; will retry"
                );
            }
        }
        _ => tracing::debug!(record = ?r, "record"),
    }
}

/// Human lines on stderr, when the log file cannot be opened.
fn fallback_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}

/// Tighten a state dir or state file that group or others can reach (see [`store::perms`]),
/// with one warning per change naming the path and the mode it had.
fn secure_state(cfg: &Config) -> Result<(), StartError> {
    let mut extra = Vec::new();
    if cfg.log.file.starts_with(&cfg.state_dir) {
        extra.push(cfg.log.file.clone());
        for n in 1..=cfg.log.max_files {
            let mut p = cfg.log.file.clone().into_os_string();
            p.push(format!(".{n}"));
            extra.push(PathBuf::from(p));
        }
    }
    match store::perms::secure_state_dir(&cfg.state_dir, &extra) {
        Ok(changed) => {
            for c in changed {
                tracing::warn!(
                    path = %c.path.display(),
                    old_mode = format!("{:04o}", c.old_mode),
                    new_mode = format!("{:04o}", c.new_mode),
                    "state was readable by other users: permissions tightened"
                );
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "refusing to start: the state dir cannot be made private");
            Err(e.into())
        }
    }
}

/// Create the state dir (0700 when Talon creates it).
fn create_private_dir(dir: &std::path::Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(store::layout::DIR_MODE)
        .create(dir)
        .map_err(|source| StartError::StateDir {
            path: dir.to_path_buf(),
            source,
        })
}
