//! The actor: the runtime's state, its loop, and the one `match` over the inbox.
//!
//! The loop takes one [`Msg`] at a time — from the inbox, or [`Msg::Timer`] when its own
//! deadline passes — and [`Runtime::handle`] gives each variant to exactly one method. Decisions
//! are the core's ([`Core::step`]); this file turns the core's actions into effect tasks whose
//! answers come back as messages, and stores what each step produced.

use super::boot::{Boot, RunOptions};
use super::chat::ChatState;
use super::effects::{ActionJob, AgentJob, Delivery, Effects, HealJob, History, Worker};
use super::inbox::{Inbox, Msg};
use super::schedule::Schedule;
use crate::clock::{Clock, Instant};
use crate::config::Config;
use crate::core::ProbeResult;
use crate::core::{Action, Core, Event, Millis, RunOutcome};
use crate::redact::Redactor;
use crate::server::control::ControlRequest;
use crate::server::snapshot::{ConfigError, StatusSnapshot, TimelineEntry, Transition};
use crate::store::Batch;
use crate::supervise::WorkerEvent;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// How often old history is pruned (the first prune runs at start): hourly, or a tenth of the
/// retention when that is shorter (but not more than once a minute), so the store stays within
/// about 10 % of its retention whatever it is.
pub(super) fn prune_every(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(60), Duration::from_secs(3600))
}

/// The running daemon: one actor. Build it with [`Runtime::new`], then [`Runtime::run`] (the
/// daemon, with signals, the config watcher and the HTTP server) or [`Runtime::serve`] (the loop
/// alone, driven through [`Runtime::inbox`]).
pub struct Runtime {
    /// Where the config is re-read from on reload.
    pub(super) opts: RunOptions,
    pub(super) cfg: Arc<Config>,
    pub(super) core: Core,
    pub(super) clock: Clock,
    /// Compares wall and monotonic time at every message (`clockstep.rs`).
    pub(super) clock_watch: crate::clock::StepWatch,
    pub(super) effects: Effects,
    /// Where each step's records and state go (`None`: no store, no history).
    pub(super) history: Option<Box<dyn History>>,
    pub(super) inbox: Inbox,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Effect tasks in flight (aborted at shutdown, which kills their process groups).
    pub(super) tasks: JoinSet<()>,
    /// Tasks that feed the inbox (signal, control and worker-event pumps), stopped at shutdown.
    pub(super) pumps: Vec<JoinHandle<()>>,
    pub(super) timers: Timers,
    /// Newest scheduled result of each probe (and of the `worker` pseudo-probe).
    pub(super) last: BTreeMap<String, ProbeResult>,
    /// Secrets and `redact` patterns: probe output is redacted as it arrives, before the core,
    /// the store, the log or any executor sees it.
    pub(super) redactor: Arc<Redactor>,
    pub(super) worker: WorkerSlot,
    pub(super) surfaces: Surfaces,
    /// Commands from chat, incident messages, who acknowledged and silenced.
    pub(super) chat: ChatState,
    /// The `push` probes' pings (the engine reads the same map).
    pub(super) pushes: crate::probe::push::Pushes,
}

/// The loop's deadlines: probes due, the core's one wake-up, the history prune.
#[derive(Debug)]
pub(super) struct Timers {
    pub(super) schedule: Schedule,
    /// The core's one timer ([`Action::WakeAt`]), wall time.
    pub(super) wake: Option<Millis>,
    pub(super) prune_at: Instant,
    /// The next daily digest (`[digest]`), wall time.
    pub(super) digest: Option<Millis>,
    /// When to give start-up memory back ([`crate::memory`]): [`TRIM_AFTER`] after the start and
    /// after each reload.
    pub(super) trim_at: Option<Instant>,
}

/// How long after the start (and after a reload) start-up code and heap are given back: long
/// enough for the first probe cycles, TLS setup and the worker's start to have run.
pub(super) const TRIM_AFTER: Duration = Duration::from_secs(30);

impl Timers {
    /// The earliest deadline (at most one prune period away).
    fn next_deadline(&self, clock: &Clock) -> Instant {
        let mut next = self.prune_at;
        if let Some(p) = self.schedule.next_deadline() {
            next = next.min(p);
        }
        if let Some(at) = self.wake {
            next = next.min(clock.instant_at(at));
        }
        if let Some(at) = self.digest {
            next = next.min(clock.instant_at(at));
        }
        if let Some(at) = self.trim_at {
            next = next.min(at);
        }
        next
    }
}

/// The supervised worker, when `[worker]` is configured.
pub(super) struct WorkerSlot {
    pub(super) handle: Option<Arc<dyn Worker>>,
    /// Its restarts so far (for `state.json`).
    pub(super) restarts: u32,
    /// Stopped on purpose by an operator (`talon worker stop`); kept in the store's `kv` table
    /// (`worker.stopped`) so a Talon restart keeps it stopped.
    pub(super) held: bool,
    /// The newest operator actions on it (`talon worker restart|stop|start`), for `/status`;
    /// read back from the store at start.
    pub(super) operator_actions: Vec<crate::server::snapshot::OperatorAction>,
    /// Every supervisor sends its events here; they are passed on to the inbox.
    pub(super) events: mpsc::Sender<WorkerEvent>,
    pub(super) events_rx: Option<mpsc::Receiver<WorkerEvent>>,
}

/// What the outside sees: the status board behind `/health`, `/status` and `/`, metrics, the
/// HTTP server, the log, systemd.
pub(super) struct Surfaces {
    /// Replaced after every message.
    pub(super) board: crate::server::StatusBoard,
    pub(super) metrics: Arc<crate::metrics::Metrics>,
    pub(super) server: Option<crate::server::ServerHandle>,
    /// The HTTP control endpoints send here; passed on to the inbox as [`Msg::Control`].
    pub(super) control: mpsc::Sender<ControlRequest>,
    pub(super) control_rx: Option<mpsc::Receiver<ControlRequest>>,
    /// The newest reload error, until a good config replaces it.
    pub(super) config_error: Option<String>,
    /// The same, with its position, for the surfaces.
    pub(super) config_error_detail: Option<ConfigError>,
    pub(super) transitions: Vec<Transition>,
    /// The open incident's timeline.
    pub(super) timeline: Vec<TimelineEntry>,
    /// Ticked every loop turn; the systemd watchdog pings only while it moves.
    pub(super) progress: crate::sdnotify::Progress,
    pub(super) sd: Option<crate::sdnotify::Notifier>,
    pub(super) log: Option<crate::logging::LogGuard>,
    pub(super) watch: Option<crate::watch::WatchHandle>,
    /// Each new config goes to the Alertmanager re-poster (`alerts.rs`) once it runs.
    pub(super) alerts: Option<tokio::sync::watch::Sender<Arc<Config>>>,
    /// Failed store writes already counted in the metrics.
    pub(super) store_failures_seen: u64,
    /// What happened to unreadable state at start (see [`Boot::store_notice`]).
    pub(super) store_notice: Option<String>,
}

impl Runtime {
    /// The runtime for what [`Boot`] loaded, with these effects and this clock.
    pub fn new(boot: Boot, effects: Effects, clock: Clock) -> Runtime {
        let Boot {
            opts,
            config: cfg,
            core,
            history,
            log,
            store_notice,
            pushes,
        } = boot;
        // Read once, before anything starts: an operator's `talon worker stop` outlives Talon.
        let worker_held = history.is_some()
            && cfg.worker.is_some()
            && super::worker::stopped_on_purpose(&cfg.state_dir);
        let operator_actions = if history.is_some() && cfg.worker.is_some() {
            super::worker::stored_operator_actions(&cfg.state_dir)
        } else {
            Vec::new()
        };
        let (inbox, rx) = Inbox::new();
        let (events, events_rx) = mpsc::channel(256);
        let (control, control_rx) = mpsc::channel(16);
        let mut schedule = Schedule::default();
        schedule.sync(&cfg.probes, clock.now());
        let board = crate::server::StatusBoard::new(StatusSnapshot::new(clock.wall_ms() / 1000));
        let mut rt = Runtime {
            pushes,
            redactor: Arc::new(cfg.redactor()),
            cfg: Arc::new(cfg),
            opts,
            core,
            history,
            inbox,
            rx,
            tasks: JoinSet::new(),
            pumps: Vec::new(),
            timers: Timers {
                schedule,
                wake: None,
                prune_at: clock.now(),
                digest: None,
                trim_at: Some(clock.now() + TRIM_AFTER),
            },
            last: BTreeMap::new(),
            worker: WorkerSlot {
                handle: None,
                restarts: 0,
                held: worker_held,
                operator_actions,
                events,
                events_rx: Some(events_rx),
            },
            surfaces: Surfaces {
                board,
                metrics: Arc::new(crate::metrics::Metrics::new()),
                server: None,
                control,
                control_rx: Some(control_rx),
                config_error: None,
                config_error_detail: None,
                alerts: None,
                transitions: Vec::new(),
                timeline: Vec::new(),
                progress: crate::sdnotify::Progress::default(),
                sd: None,
                log,
                watch: None,
                store_failures_seen: 0,
                store_notice,
            },
            chat: ChatState::default(),
            effects,
            clock,
            clock_watch: Default::default(),
        };
        rt.watch_pushes();
        rt
    }

    /// Where to send messages to this runtime.
    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The snapshot `/health`, `/status` and `/` serve (updated after every message).
    pub fn board(&self) -> crate::server::StatusBoard {
        self.surfaces.board.clone()
    }

    /// The loop: handle messages until [`Msg::Shutdown`], then stop (kill in-flight heal and
    /// agent groups, drain the worker, flush the store).
    pub async fn serve(mut self) {
        if let Some(rx) = self.worker.events_rx.take() {
            self.pumps.push(self.inbox.forward_from(rx, Msg::Worker));
        }
        if let Some(rx) = self.surfaces.control_rx.take() {
            self.pumps.push(self.inbox.forward_from(rx, Msg::Control));
        }
        self.watch_clock();
        self.load_chat_state();
        self.digest_tick();
        self.send_store_notice();
        self.start_worker();
        self.update_log();
        // A tick right away lets the core re-issue what a restore left pending (re-probes,
        // undelivered notifications) without waiting for the first cycle.
        self.step(Event::Tick {
            at: self.clock.wall_ms(),
        });
        self.publish();
        tracing::info!(
            probes = self.cfg.probes.len(),
            state = self.core.state().as_str(),
            "talon running"
        );
        if let Some(sd) = &self.surfaces.sd {
            let _ = sd.ready(&format!(
                "{} probes, {}",
                self.cfg.probes.len(),
                self.core.state().as_str()
            ));
        }
        let signal = loop {
            self.surfaces.progress.tick();
            let msg = self.next_msg().await;
            if let Some(sig) = self.handle(msg).await {
                break sig;
            }
            self.reap();
        };
        self.shutdown(signal).await;
    }

    /// The next message: the inbox first, else [`Msg::Timer`] when the earliest deadline passes.
    async fn next_msg(&mut self) -> Msg {
        let deadline = self.timers.next_deadline(&self.clock);
        tokio::select! {
            biased;
            msg = self.rx.recv() => match msg {
                Some(m) => m,
                // Unreachable while `self.inbox` is alive; stop cleanly if it ever is.
                None => Msg::Shutdown(Signal::SIGTERM),
            },
            _ = tokio::time::sleep_until(deadline) => Msg::Timer,
        }
    }

    /// Every message is handled here, each variant by one method. Returns the signal to stop
    /// with, for [`Msg::Shutdown`].
    async fn handle(&mut self, msg: Msg) -> Option<Signal> {
        // Before any event takes its time from the wall clock: a step moves the deadlines first.
        self.watch_clock();
        let at = self.clock.wall_ms();
        match msg {
            Msg::CycleDone(results) => self.on_cycle(results),
            Msg::ReprobeDone {
                incident,
                probes,
                mut results,
            } => {
                tracing::info!(incident, probes = ?probes, "verification re-probe done");
                for r in &mut results {
                    r.redact(&self.redactor);
                }
                self.step(Event::Reprobe { at, results });
            }
            Msg::HealDone {
                id,
                outcome,
                output,
            } => {
                let ok = if outcome.succeeded() { "ok" } else { "failed" };
                self.surfaces.metrics.escalation_action("heal", ok);
                self.step(Event::HealFinished {
                    at,
                    id,
                    outcome,
                    output,
                });
            }
            Msg::AgentDone {
                id,
                outcome,
                output,
            } => {
                let ok = if outcome.succeeded() { "ok" } else { "failed" };
                self.surfaces.metrics.escalation_action("agent", ok);
                if self.cfg.agent.effective_mode() == crate::config::AgentMode::Autonomous {
                    self.step(Event::AgentFinished {
                        at,
                        id,
                        outcome,
                        output,
                    });
                } else {
                    // propose/diagnose: Talon reads the proposal; the agent changed nothing.
                    let probes = self
                        .core
                        .incident()
                        .and_then(|i| i.running.as_ref())
                        .filter(|r| r.id == id)
                        .map(|r| r.probes.clone())
                        .unwrap_or_default();
                    let (diagnosis, note, items) =
                        super::exec::review_transcript(&self.cfg, &probes, &output);
                    self.step(Event::AgentProposed {
                        at,
                        id,
                        outcome,
                        output,
                        diagnosis,
                        note,
                        items,
                    });
                }
            }
            Msg::Delivered { id, channels } => self.step(Event::NotifyResult { at, id, channels }),
            Msg::Worker(ev) => self.on_worker(ev),
            Msg::Timer => self.on_timer(),
            Msg::Reload(trigger) => self.reload(trigger).await,
            Msg::Control(req) => self.on_control(req),
            Msg::WorkerControlled {
                action,
                by,
                result,
                reply,
            } => self.worker_controlled(action, &by, result, reply),
            Msg::Chat(m) => self.on_chat(m),
            Msg::Forward(sig) => self.forward(sig),
            Msg::Shutdown(sig) => return Some(sig),
        }
        self.persist_threads();
        self.publish();
        None
    }

    /// Probes due, the core's wake-up, the history prune.
    fn on_timer(&mut self) {
        let now = self.clock.now();
        self.launch_due(now);
        if let Some(at) = self.timers.wake
            && at <= self.clock.wall_ms()
        {
            self.timers.wake = None;
            self.step(Event::Tick {
                at: self.clock.wall_ms(),
            });
        }
        if self
            .timers
            .digest
            .is_some_and(|at| at <= self.clock.wall_ms())
        {
            self.digest_tick();
        }
        if self.timers.trim_at.is_some_and(|at| at <= now) {
            self.timers.trim_at = None;
            // Off the loop: reclaiming a few MiB of pages takes milliseconds.
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
        if self.timers.prune_at <= now {
            self.timers.prune_at = now + prune_every(self.cfg.store.retention);
            if let Some(h) = &self.history {
                h.prune(self.clock.wall_ms(), self.cfg.store.retention);
            }
        }
    }

    /// One decision: step the core, store what it produced, execute its actions.
    pub(super) fn step(&mut self, ev: Event) {
        let actions = self.core.step(ev.clone());
        for a in &actions {
            if let Action::Record(r) = a {
                self.note_record(r);
                self.note_for_threads(r);
            }
        }
        if let Some(h) = &self.history {
            h.write(Batch::from_step(
                &ev,
                &actions,
                &self.core,
                self.worker.restarts,
            ));
        }
        for a in actions {
            self.execute(a);
        }
    }

    /// Start one of the core's actions. The slow ones run as tasks that answer through the inbox.
    fn execute(&mut self, action: Action) {
        match action {
            Action::RunHeal {
                id,
                incident,
                steps,
                probes,
            } => {
                tracing::warn!(incident, action = id, probes = ?probes, "tier 1: running heal");
                let job = HealJob {
                    id,
                    incident,
                    steps,
                    probes,
                    cfg: self.cfg.clone(),
                    redactor: self.redactor.clone(),
                    last: self.last.clone(),
                    worker: self.worker.handle.clone(),
                };
                let run = self.effects.heal.run(job);
                self.spawn_run(run, move |outcome, output| Msg::HealDone {
                    id,
                    outcome,
                    output,
                });
            }
            Action::RunAgent {
                id,
                incident,
                tier,
                probes,
            } => {
                tracing::warn!(incident, action = id, tier = tier.as_str(), probes = ?probes, "running agent");
                let job = AgentJob {
                    incident,
                    tier,
                    probes,
                    cfg: self.cfg.clone(),
                    redactor: self.redactor.clone(),
                    outlook: self.core.outlook(self.clock.wall_ms()),
                    last: self.last.clone(),
                };
                let run = self.effects.agent.run(job);
                self.spawn_run(run, move |outcome, output| Msg::AgentDone {
                    id,
                    outcome,
                    output,
                });
            }
            Action::RunCatalogued {
                id,
                incident,
                name,
                approved_by,
                probes,
            } => {
                tracing::warn!(incident, action = id, name = %name, approved_by = %approved_by, "running a proposed action");
                let job = ActionJob {
                    id,
                    incident,
                    name,
                    approved_by,
                    probes,
                    cfg: self.cfg.clone(),
                    last: self.last.clone(),
                    worker: self.worker.handle.clone(),
                    redactor: self.redactor.clone(),
                };
                let run = self.effects.actions.run(job);
                self.spawn_run(run, move |outcome, output| Msg::HealDone {
                    id,
                    outcome,
                    output,
                });
            }
            Action::Notify(n) => {
                tracing::warn!(
                    incident = n.incident,
                    kind = n.kind.as_str(),
                    attempt = n.attempt,
                    "notifying"
                );
                let id = n.id;
                let run = self.effects.notifier.deliver(Delivery {
                    cfg: self.cfg.clone(),
                    notification: n,
                    redactor: self.redactor.clone(),
                    threads: self.chat.threads.clone(),
                });
                self.spawn_effect(
                    async move {
                        Msg::Delivered {
                            id,
                            channels: run.await,
                        }
                    },
                    // Not delivered: the core retries it like any refused delivery.
                    move |why| Msg::Delivered {
                        id,
                        channels: vec![crate::core::ChannelResult {
                            channel: "talon".into(),
                            delivered: false,
                            detail: why,
                        }],
                    },
                );
            }
            Action::Reprobe {
                incident,
                probes,
                at,
            } => self.launch_reprobe(incident, probes, at),
            Action::WakeAt { at } => self.timers.wake = Some(at),
            Action::Record(r) => log_record(&r),
            Action::Persist => {}
        }
    }

    /// Run an effect off the loop; its answer comes back through the inbox.
    ///
    /// The loop waits for that answer (a heal in flight holds the ladder, a probe in flight is
    /// not started again), so an effect that panics must still answer: it runs on its own task,
    /// and a panic there is logged and answered with `on_panic(why)`, a failure of that effect.
    /// Stopping the outer task (shutdown) stops the effect with it, as before.
    pub(super) fn spawn_effect(
        &mut self,
        effect: impl std::future::Future<Output = Msg> + Send + 'static,
        on_panic: impl FnOnce(String) -> Msg + Send + 'static,
    ) {
        let inbox = self.inbox.clone();
        self.tasks.spawn(async move {
            let mut task = AbortOnDrop(tokio::spawn(effect));
            let msg = match (&mut task.0).await {
                Ok(msg) => msg,
                Err(e) if e.is_panic() => {
                    let why = panic_text(e.into_panic());
                    tracing::error!(error = %why, "an effect panicked; answered as its failure");
                    on_panic(format!("internal error: {why}"))
                }
                // Cancelled: only when the runtime itself is going away.
                Err(_) => return,
            };
            inbox.send(msg);
        });
    }

    /// A heal, agent or action run: how it ended answers as `done`; a panic as a run that could
    /// not start.
    fn spawn_run(
        &mut self,
        run: super::effects::BoxFuture<'static, (RunOutcome, String)>,
        done: impl FnOnce(RunOutcome, String) -> Msg + Clone + Send + 'static,
    ) {
        let on_panic = done.clone();
        self.spawn_effect(
            async move {
                let (outcome, output) = run.await;
                done(outcome, output)
            },
            move |why| on_panic(RunOutcome::SpawnFailed { error: why }, String::new()),
        );
    }

    /// Collect effect tasks that ended (their answers are already in the inbox).
    fn reap(&mut self) {
        while let Some(res) = self.tasks.try_join_next() {
            if let Err(e) = res
                && e.is_panic()
            {
                tracing::error!(error = %e, "a task panicked");
            }
        }
    }

    async fn shutdown(&mut self, sig: Signal) {
        tracing::info!(signal = sig.as_str(), "shutting down");
        if let Some(sd) = &self.surfaces.sd {
            let _ = sd.stopping();
        }
        if let Some(srv) = self.surfaces.server.take() {
            srv.shutdown().await;
        }
        for p in self.pumps.drain(..).chain(self.chat.pollers.drain(..)) {
            p.abort();
        }
        self.surfaces.watch = None;
        // Aborting a task drops its subprocess run, which kills the run's process group.
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.stop_worker(sig).await;
        if let Some(h) = self.history.take() {
            let res = tokio::task::spawn_blocking(move || h.close()).await;
            if let Ok(Err(e)) = res {
                tracing::error!(error = %e, "store flush at shutdown failed");
            }
        }
    }
}

/// One log line per notable record.
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

/// An effect's task, stopped when whoever awaits it is dropped.
struct AbortOnDrop(JoinHandle<Msg>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A panic's message, as far as it is text.
pub(super) fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => format!("panicked: {s}"),
        Err(p) => match p.downcast::<&'static str>() {
            Ok(s) => format!("panicked: {s}"),
            Err(_) => "panicked".to_string(),
        },
    }
}

#[cfg(test)]
mod prune_tests {
    use super::prune_every;
    use std::time::Duration;

    #[test]
    fn the_prune_period_follows_a_short_retention() {
        let day = Duration::from_secs(86_400);
        assert_eq!(prune_every(7 * day), Duration::from_secs(3600));
        assert_eq!(
            prune_every(Duration::from_secs(900)),
            Duration::from_secs(90)
        );
        assert_eq!(
            prune_every(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(prune_every(Duration::ZERO), Duration::from_secs(60));
    }
}
