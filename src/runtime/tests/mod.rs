//! The runtime's own tests: the real actor — inbox, loop, timers, core, reload, the real SQLite
//! store — with scripted effects (probes, heal, agents, deliveries, worker), in paused tokio time
//! with a [`Clock::follow_tokio`] wall clock, so hours of ladder run in milliseconds.
//!
//! A test is a table of [`Step`]s run against a [`Rig`]: script an effect, start or crash the
//! runtime, send it a message, or expect something in the [`Journal`] (every effect the runtime
//! started and every system-level record it stored, each stamped with its virtual time since the
//! test began) at a given time.

mod clock;
mod digest;
mod guard;
mod ladder;
mod policy;
mod push;
mod worker_control;

use super::effects::{
    ActionJob, ActionRunner, AgentJob, AgentRunner, BoxFuture, Delivery, Effects, HealJob,
    HealRunner, History, Notifier, ProbeRunner, Worker, Workers,
};
use super::real::Heals;
use super::{Boot, Inbox, Msg, ReloadTrigger, RunOptions, Runtime};
use crate::clock::{Clock, Instant};
use crate::config::Config;
use crate::config::path::SearchPath;
use crate::config::probe::ProbeConfig;
use crate::core::{
    ActionId, AgentTier, ChannelResult, CoreConfig, HealStep, Millis, NotifyKind, Record,
    RunOutcome, SystemState,
};
use crate::core::{ProbeResult, Status};
use crate::server::StatusBoard;
use crate::server::control::{ControlReply, ControlRequest};
use crate::store::{Batch, StoreError, StoreWriter};
use crate::supervise::{ForwardError, WorkerEvent, WorkerStatus};
use nix::sys::signal::Signal;
use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How far a matched entry's time may be from the time a step expects.
const SLACK: Duration = Duration::from_secs(1);

/// What a scripted delivery does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Every channel takes it.
    Ok,
    /// Every channel refuses it.
    Fail,
    /// It never answers (in flight until the runtime stops).
    Hang,
    /// The delivery task panics (a bug in a channel's code).
    Panic,
}

/// Something the runtime did, as the scripted effects and the store saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// The system state changed (a `system` transition record).
    State(SystemState),
    Opened(u64),
    Closed(u64),
    Heal(Vec<HealStep>),
    Agent(AgentTier),
    /// A delivery attempt started.
    Notify {
        id: ActionId,
        incident: u64,
        kind: NotifyKind,
        attempt: u32,
        plan: Plan,
        /// An escalation step's channels (`None`: every channel).
        channels: Option<Vec<String>>,
    },
    /// The incident paged a human (first delivered SOS).
    Paged(u64),
    Acked(u64),
    /// The scripted worker was asked to restart.
    WorkerRestart,
    /// The daily digest was sent (its lines).
    Digest(Vec<String>),
    /// A catalogue action ran (its name, who cleared it).
    Action(String, String),
    /// The agent's circuit breaker opened (true) or closed.
    Breaker(bool),
    /// An approval was requested (its id) or decided.
    ApprovalRequested(u64),
    ApprovalDecided(u64, bool, String),
    /// The scripted probe ran (scheduled or re-probe).
    Probe(String),
}

/// One journal line: what, and when (virtual time since the rig was made).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub at: Duration,
    pub seen: Seen,
}

/// What a step waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    State(SystemState),
    Opened,
    Closed,
    Heal,
    Agent(AgentTier),
    /// A delivery attempt of this kind with this plan (any attempt number when `None`).
    Notify(NotifyKind, Option<u32>, Plan),
    /// Any delivery attempt of this kind.
    AnyNotify(NotifyKind),
    /// A delivery attempt of this kind to exactly these channels (`None`: every channel).
    NotifyTo(NotifyKind, Option<Vec<&'static str>>),
    Paged,
    Acked,
    WorkerRestart,
    /// A digest whose text contains this.
    Digest(&'static str),
    /// A catalogue action of this name ran.
    Action(&'static str),
    Breaker(bool),
    ApprovalRequested,
    /// Decided: approved?, by (e.g. "expiry").
    ApprovalDecided(bool, &'static str),
}

impl Want {
    fn matches(&self, seen: &Seen) -> bool {
        match (self, seen) {
            (Want::State(a), Seen::State(b)) => a == b,
            (Want::Opened, Seen::Opened(_)) | (Want::Closed, Seen::Closed(_)) => true,
            (Want::Heal, Seen::Heal(_)) => true,
            (Want::Agent(a), Seen::Agent(b)) => a == b,
            (
                Want::Notify(k, n, p),
                Seen::Notify {
                    kind,
                    attempt,
                    plan,
                    ..
                },
            ) => k == kind && p == plan && n.is_none_or(|n| n == *attempt),
            (Want::AnyNotify(k), Seen::Notify { kind, .. }) => k == kind,
            (Want::NotifyTo(k, want), Seen::Notify { kind, channels, .. }) => {
                k == kind
                    && want
                        .as_ref()
                        .map(|w| w.iter().map(|c| c.to_string()).collect())
                        == *channels
            }
            (Want::Paged, Seen::Paged(_)) | (Want::Acked, Seen::Acked(_)) => true,
            (Want::WorkerRestart, Seen::WorkerRestart) => true,
            (Want::Digest(t), Seen::Digest(lines)) => lines.join("\n").contains(t),
            (Want::Action(a), Seen::Action(b, _)) => a == b,
            (Want::Breaker(a), Seen::Breaker(b)) => a == b,
            (Want::ApprovalRequested, Seen::ApprovalRequested(_)) => true,
            (Want::ApprovalDecided(a, w), Seen::ApprovalDecided(_, b, by)) => a == b && w == by,
            _ => false,
        }
    }
}

/// One row of a test's table.
#[derive(Debug)]
pub enum Step {
    /// The scripted probe fails from now on.
    Fail(&'static str),
    /// The scripted probe passes from now on.
    Pass(&'static str),
    /// The next delivery attempts do this (then: [`Plan::Ok`]).
    Deliveries(Vec<Plan>),
    /// Start a runtime from the state dir (the first one, or after [`Step::Crash`]).
    Start,
    /// The runtime dies: its task is dropped mid-flight, and the effects in flight with it
    /// (their answers never come). What the loop had handed to the store's writer is written
    /// (its thread drains on drop); nothing else survives.
    Crash,
    /// The next entry matching `want` after the previous match is at `at` (± [`SLACK`]).
    At(Duration, Want),
    /// Nothing matching `want` happened after `from` and before `until` (waits until then).
    Quiet(Duration, Duration, Want),
    /// Let virtual time pass until `until`.
    Until(Duration),
    /// `talon ack` (the open incident); expects it to be done.
    Ack,
    /// An update from the `tg` channel's poller: (update id, chat id, text).
    Chat(i64, i64, &'static str),
    /// `talon maintenance …`; expects it to be done.
    Maintenance(crate::server::control::MaintenanceOp),
    /// A worker event from the supervisor.
    Worker(WorkerEvent),
    /// Replace the config file with this text and send a reload (as SIGHUP does).
    Reload(String),
    /// The status board shows this state now.
    StateIs(SystemState),
    /// The status board shows this open incident (or none).
    IncidentIs(Option<&'static str>),
    /// The status board shows a config error (or none).
    ConfigError(bool),
    /// The scripted agent prints this transcript from now on (default: the fixed one).
    AgentSays(&'static str),
    /// Heals panic from now on (a bug in the heal runner).
    HealsPanic,
    /// Probe runs panic from now on (a bug in the probe engine).
    ProbesPanic,
    /// Running catalogue action `.0` makes probe `.1` pass.
    ActionFixes(&'static str, &'static str),
    /// `talon approve N` (expects it done).
    Approve(u64),
    /// `talon deny N` (expects it done).
    Deny(u64),
    /// `talon agent reset`.
    AgentReset,
    /// The wall clock steps by this many milliseconds (negative: back), monotonic time does
    /// not move ([`Clock::shift`]). Journal times stay virtual time since the rig was made.
    ClockJump(i64),
    /// A `push` probe's ping as the server forwards it (token already checked); expects it
    /// recorded (`true`) or refused as not a push probe (`false`).
    Ping(
        &'static str,
        crate::probe::push::PushEvent,
        &'static str,
        bool,
    ),
}

/// The journal, observable (every push wakes the waiters).
pub type Journal = watch::Sender<Vec<Entry>>;

/// State shared by the scripted effects.
pub struct Script {
    clock: Clock,
    t0: Millis,
    /// The sum of [`Step::ClockJump`]s so far (taken out of journal times).
    shifted: std::sync::atomic::AtomicI64,
    failing: Mutex<BTreeSet<String>>,
    deliveries: Mutex<VecDeque<Plan>>,
    journal: Journal,
    /// The scripted supervisor's event channel (the runtime's), once a worker is started.
    worker_events: Mutex<Option<mpsc::Sender<WorkerEvent>>>,
    /// What the scripted agent prints (the fixed answers when `None`).
    agent_says: Mutex<Option<String>>,
    /// [`Step::HealsPanic`] was given.
    heals_panic: std::sync::atomic::AtomicBool,
    /// [`Step::ProbesPanic`] was given.
    probes_panic: std::sync::atomic::AtomicBool,
    /// Catalogue action → the probe it fixes.
    fixes: Mutex<std::collections::BTreeMap<String, String>>,
}

impl Script {
    fn log(&self, at_ms: Millis, seen: Seen) {
        let at =
            Duration::from_millis(u64::try_from(at_ms - self.t0 - self.shifted()).unwrap_or(0));
        self.journal.send_modify(|j| j.push(Entry { at, seen }));
    }

    fn shifted(&self) -> Millis {
        self.shifted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn log_now(&self, seen: Seen) {
        self.log(self.clock.wall_ms(), seen)
    }
}

/// The scripted effects (one type for every trait; each clone shares the [`Script`]).
#[derive(Clone)]
struct Scripted(Arc<Script>);

impl ProbeRunner for Scripted {
    /// Results are decided when the run happens (a re-probe after its settle delay sees the
    /// script as it is then).
    fn run(&self, probes: Vec<ProbeConfig>) -> BoxFuture<'static, Vec<ProbeResult>> {
        let s = self.0.clone();
        Box::pin(async move {
            for p in &probes {
                s.log_now(Seen::Probe(p.name.clone()));
            }
            if s.probes_panic.load(std::sync::atomic::Ordering::SeqCst) {
                panic!("scripted probe engine panic");
            }
            let failing = s.failing.lock().unwrap().clone();
            probes
                .iter()
                .map(|p| {
                    let fail = failing.contains(&p.name);
                    ProbeResult {
                        name: p.name.clone(),
                        kind: p.kind.name().to_string(),
                        passed: !fail,
                        status: if fail { Status::Fail } else { Status::Pass },
                        output: if fail { "connection refused" } else { "ok" }.to_string(),
                        detail: String::new(),
                        duration_ms: 1,
                        started_at: s.clock.wall_ms(),
                    }
                })
                .collect()
        })
    }

    fn reconfigure(&self, _cfg: &Config) {}
}

impl HealRunner for Scripted {
    fn run(&self, job: HealJob) -> BoxFuture<'static, (RunOutcome, String)> {
        self.0.log_now(Seen::Heal(job.steps));
        if self.0.heals_panic.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(async { panic!("scripted heal panic") });
        }
        Box::pin(async { (RunOutcome::Exited { code: 1 }, "restarting target\n".into()) })
    }
}

impl AgentRunner for Scripted {
    fn run(&self, job: AgentJob) -> BoxFuture<'static, (RunOutcome, String)> {
        self.0.log_now(Seen::Agent(job.tier));
        if let Some(t) = self.0.agent_says.lock().unwrap().clone() {
            return Box::pin(async move { (RunOutcome::Exited { code: 0 }, t) });
        }
        Box::pin(async move {
            match job.tier {
                AgentTier::Cloud => (
                    RunOutcome::Exited { code: 3 },
                    "cloud model unavailable".into(),
                ),
                AgentTier::Local => (
                    RunOutcome::Exited { code: 0 },
                    "local agent: cannot fix it".into(),
                ),
            }
        })
    }
}

impl ActionRunner for Scripted {
    fn run(&self, job: ActionJob) -> BoxFuture<'static, (RunOutcome, String)> {
        self.0
            .log_now(Seen::Action(job.name.clone(), job.approved_by.clone()));
        if let Some(p) = self.0.fixes.lock().unwrap().get(&job.name) {
            self.0.failing.lock().unwrap().remove(p);
        }
        Box::pin(async move {
            (
                RunOutcome::Exited { code: 0 },
                format!("ran {}\n", job.name),
            )
        })
    }
}

impl Notifier for Scripted {
    fn notice(&self, job: super::effects::NoticeJob) -> BoxFuture<'static, Vec<ChannelResult>> {
        self.0.log_now(Seen::Digest(job.notice.tried.clone()));
        let channels: Vec<String> = job.channels.iter().map(|c| c.name.clone()).collect();
        Box::pin(async move {
            channels
                .into_iter()
                .map(|channel| ChannelResult {
                    channel,
                    delivered: true,
                    detail: "ok".into(),
                })
                .collect()
        })
    }

    fn deliver(&self, job: Delivery) -> BoxFuture<'static, Vec<ChannelResult>> {
        let plan = self
            .0
            .deliveries
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Plan::Ok);
        let n = &job.notification;
        self.0.log_now(Seen::Notify {
            id: n.id,
            incident: n.incident,
            kind: n.kind,
            attempt: n.attempt,
            plan,
            channels: n.channels.clone(),
        });
        let channels: Vec<String> = job
            .cfg
            .notify
            .iter()
            .map(|c| c.name.clone())
            .filter(|c| n.channels.as_ref().is_none_or(|w| w.contains(c)))
            .collect();
        Box::pin(async move {
            if plan == Plan::Hang {
                std::future::pending::<()>().await;
            }
            if plan == Plan::Panic {
                panic!("scripted delivery panic");
            }
            channels
                .into_iter()
                .map(|channel| ChannelResult {
                    channel,
                    delivered: plan == Plan::Ok,
                    detail: format!("{plan:?}"),
                })
                .collect()
        })
    }
}

impl Workers for Scripted {
    fn start(
        &self,
        _cfg: crate::config::WorkerConfig,
        _search: SearchPath,
        events: mpsc::Sender<WorkerEvent>,
        _held: bool,
    ) -> Arc<dyn Worker> {
        *self.0.worker_events.lock().unwrap() = Some(events);
        Arc::new(self.clone())
    }
}

impl Worker for Scripted {
    fn restart(&self) -> BoxFuture<'_, ()> {
        self.0.log_now(Seen::WorkerRestart);
        Box::pin(async {})
    }
    fn reconfigure(
        &self,
        _cfg: crate::config::WorkerConfig,
        _search: SearchPath,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn forward(&self, _sig: Signal) -> Result<(), ForwardError> {
        Ok(())
    }
    fn status(&self) -> WorkerStatus {
        WorkerStatus::default()
    }
    fn control(
        &self,
        action: crate::supervise::WorkerAction,
    ) -> BoxFuture<'_, crate::supervise::ControlResult> {
        Box::pin(async move { Err(format!("scripted worker: {} not scripted", action.as_str())) })
    }
    fn secret_values(&self) -> Vec<String> {
        Vec::new()
    }
    fn shutdown(self: Arc<Self>, _sig: Signal) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// The real store writer, with the system-level records copied to the journal.
struct Recorded {
    store: StoreWriter,
    script: Arc<Script>,
}

impl History for Recorded {
    fn write(&self, batch: Batch) {
        for r in &batch.records {
            let seen = match r {
                Record::Transition(t) if t.subject == "system" => {
                    SystemState::parse(&t.to).map(Seen::State)
                }
                Record::IncidentOpened { incident, .. } => Some(Seen::Opened(*incident)),
                Record::IncidentClosed { incident, .. } => Some(Seen::Closed(*incident)),
                Record::Paged { incident, .. } => Some(Seen::Paged(*incident)),
                Record::Acked { incident, .. } => Some(Seen::Acked(*incident)),
                Record::Breaker { open, .. } => Some(Seen::Breaker(*open)),
                Record::ApprovalRequested { approval } => {
                    Some(Seen::ApprovalRequested(approval.id))
                }
                Record::ApprovalDecided {
                    approval,
                    approved,
                    by,
                    ..
                } => Some(Seen::ApprovalDecided(*approval, *approved, by.clone())),
                _ => None,
            };
            if let Some(s) = seen {
                self.script.log(batch.at, s);
            }
        }
        self.store.send(batch);
    }
    fn prune(&self, now: Millis, retention: Duration) {
        self.store.prune(now, retention)
    }
    fn failures(&self) -> u64 {
        self.store.failures()
    }
    fn current_error(&self) -> Option<String> {
        self.store.current_error()
    }
    fn barrier(&self) -> Option<crate::store::Barrier> {
        Some(self.store.barrier())
    }
    fn close(self: Box<Self>) -> Result<(), StoreError> {
        self.store.close()
    }
}

/// A running runtime, as the rig holds it.
struct Running {
    inbox: Inbox,
    board: StatusBoard,
    metrics: Arc<crate::metrics::Metrics>,
    task: JoinHandle<()>,
}

/// A config file in a temp dir, a state dir, the script, and the runtime under test.
pub struct Rig {
    _dir: tempfile::TempDir,
    config: PathBuf,
    clock: Clock,
    script: Arc<Script>,
    /// Use the real heal runner (for steps that need no subprocess: a worker restart).
    real_heal: bool,
    running: Option<Running>,
    /// Index of the newest matched journal entry.
    cursor: Option<usize>,
    /// Everything `At` steps matched, in order.
    matched: Vec<Entry>,
}

impl Rig {
    /// The state dir (`state_dir = "state"` in the test configs).
    pub fn state_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("state")
    }

    /// A rig for this config text. Call inside a paused-time test.
    pub fn new(config: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("talon.toml");
        std::fs::write(&path, config).unwrap();
        let clock = Clock::follow_tokio();
        let (journal, _) = watch::channel(Vec::new());
        Rig {
            _dir: dir,
            config: path,
            script: Arc::new(Script {
                clock: clock.clone(),
                t0: clock.wall_ms(),
                shifted: Default::default(),
                failing: Mutex::default(),
                deliveries: Mutex::default(),
                journal,
                worker_events: Mutex::default(),
                agent_says: Mutex::default(),
                heals_panic: Default::default(),
                probes_panic: Default::default(),
                fixes: Mutex::default(),
            }),
            clock,
            real_heal: false,
            running: None,
            cursor: None,
            matched: Vec::new(),
        }
    }

    /// Heal with the real runner instead of the scripted one.
    pub fn real_heal(mut self) -> Rig {
        self.real_heal = true;
        self
    }

    fn elapsed(&self) -> Duration {
        let virtual_ms = self.clock.wall_ms() - self.script.t0 - self.script.shifted();
        Duration::from_millis(u64::try_from(virtual_ms).unwrap_or(0))
    }

    fn instant(&self, offset: Duration) -> Instant {
        self.clock.now() + offset.saturating_sub(self.elapsed())
    }

    /// Boot the way `talon run` does (config, state dir, store, restored core), with the
    /// scripted effects and the rig's clock, and start the loop.
    fn start(&mut self) {
        assert!(self.running.is_none(), "already running");
        let opts = RunOptions {
            config: Some(self.config.clone()),
        };
        let config = super::boot::load(&opts).expect("valid config");
        super::boot::create_private_dir(&config.state_dir).unwrap();
        let (core, store) = super::restore(&config.state_dir, CoreConfig::from_config(&config));
        let history = store.map(|store| {
            Box::new(Recorded {
                store,
                script: self.script.clone(),
            }) as Box<dyn History>
        });
        let s = Scripted(self.script.clone());
        let heal: Arc<dyn HealRunner> = if self.real_heal {
            Arc::new(Heals)
        } else {
            Arc::new(s.clone())
        };
        let effects = Effects {
            probes: Arc::new(s.clone()),
            heal,
            agent: Arc::new(s.clone()),
            actions: Arc::new(s.clone()),
            notifier: Arc::new(s.clone()),
            workers: Arc::new(s),
        };
        let pushes = crate::probe::push::Pushes::load(&config.state_dir);
        let boot = Boot {
            opts,
            config,
            core,
            history: Some(history.expect("the store opens")),
            log: None,
            store_notice: None,
            pushes,
        };
        let rt = Runtime::new(boot, effects, self.clock.clone());
        self.running = Some(Running {
            inbox: rt.inbox(),
            board: rt.board(),
            metrics: rt.surfaces.metrics.clone(),
            task: tokio::spawn(rt.serve()),
        });
    }

    async fn crash(&mut self) {
        let r = self.running.take().expect("running");
        r.task.abort();
        // Resolves once the task's future (the runtime, its store writer) is dropped.
        let _ = r.task.await;
    }

    /// Stop the runtime the way SIGTERM does and wait for it.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            assert!(r.inbox.send(Msg::Shutdown(Signal::SIGTERM)));
            tokio::time::timeout(Duration::from_secs(60), r.task)
                .await
                .expect("the runtime stops")
                .expect("the runtime did not panic");
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("the runtime is running")
    }

    /// The value of an unlabelled metric (`/metrics` text), 0 when absent.
    fn metric(&self, name: &str) -> f64 {
        let text = self.running().metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn journal(&self) -> Vec<Entry> {
        self.script.journal.borrow().clone()
    }

    fn dump(&self) -> String {
        self.journal()
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{i:>4} {:>10.1?} {:?}\n", e.at, e.seen))
            .collect()
    }

    /// The first entry matching `want` after the cursor, waiting until `deadline`.
    async fn next_match(&self, want: &Want, deadline: Instant) -> Option<usize> {
        let mut rx = self.script.journal.subscribe();
        let from = self.cursor.map_or(0, |c| c + 1);
        loop {
            let found = rx
                .borrow_and_update()
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, e)| want.matches(&e.seen))
                .map(|(i, _)| i);
            if found.is_some() {
                return found;
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return None,
            }
        }
    }

    /// Run a table. Returns the entries the `At` steps matched, in order.
    pub async fn run(&mut self, steps: Vec<Step>) -> Vec<Entry> {
        for (row, step) in steps.into_iter().enumerate() {
            let ctx = format!("row {row} {step:?} at {:.1?}", self.elapsed());
            match step {
                Step::Fail(p) => {
                    self.script.failing.lock().unwrap().insert(p.into());
                }
                Step::Pass(p) => {
                    self.script.failing.lock().unwrap().remove(p);
                }
                Step::Deliveries(plans) => self.script.deliveries.lock().unwrap().extend(plans),
                Step::Start => {
                    self.start();
                    self.settle().await;
                }
                Step::Crash => self.crash().await,
                Step::At(at, want) => {
                    let deadline = self.instant(at + SLACK);
                    let Some(i) = self.next_match(&want, deadline).await else {
                        panic!(
                            "{ctx}: nothing matched by {:?}\n{}",
                            at + SLACK,
                            self.dump()
                        );
                    };
                    let e = self.journal()[i].clone();
                    assert!(
                        e.at + SLACK >= at && e.at <= at + SLACK,
                        "{ctx}: matched entry {i} at {:.1?}\n{}",
                        e.at,
                        self.dump()
                    );
                    self.cursor = Some(i);
                    self.matched.push(e);
                }
                Step::Quiet(from, until, want) => {
                    tokio::time::sleep_until(self.instant(until)).await;
                    let j = self.journal();
                    let hit = j
                        .iter()
                        .position(|e| e.at > from && e.at < until && want.matches(&e.seen));
                    if let Some(i) = hit {
                        panic!("{ctx}: entry {i} should not be there\n{}", self.dump());
                    }
                }
                Step::Until(until) => tokio::time::sleep_until(self.instant(until)).await,
                Step::ClockJump(ms) => {
                    self.script
                        .shifted
                        .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
                    self.clock.shift(ms);
                }
                Step::Ack => {
                    let (reply, answer) = oneshot::channel();
                    let req = ControlRequest::Ack {
                        incident: None,
                        by: "test".into(),
                        reply,
                    };
                    assert!(self.running().inbox.send(Msg::Control(req)), "{ctx}");
                    match answer.await {
                        Ok(ControlReply::Done(_)) => {}
                        other => panic!("{ctx}: {other:?}"),
                    }
                }
                Step::Chat(update_id, chat_id, text) => {
                    let msg = super::chat::ChatMsg {
                        channel: "tg".into(),
                        update_id,
                        message: Some(crate::notify::telegram::ChatMessage {
                            message_id: update_id,
                            date: self.clock.wall_ms() / 1000,
                            chat_id,
                            username: Some("op".into()),
                            text: text.into(),
                        }),
                        bot: Some("talon_bot".into()),
                    };
                    assert!(self.running().inbox.send(Msg::Chat(msg)), "{ctx}");
                    self.settle().await;
                }
                Step::Ping(probe, event, body, recorded) => {
                    let (reply, answer) = oneshot::channel();
                    let req = ControlRequest::Push {
                        probe: probe.into(),
                        event,
                        body: body.into(),
                        reply,
                    };
                    assert!(self.running().inbox.send(Msg::Control(req)), "{ctx}");
                    match (answer.await, recorded) {
                        (Ok(ControlReply::Done(_)), true)
                        | (Ok(ControlReply::NotFound(_)), false) => {}
                        (other, _) => panic!("{ctx}: {other:?}"),
                    }
                }
                Step::Maintenance(op) => {
                    let (reply, answer) = oneshot::channel();
                    let req = ControlRequest::Maintenance { op, reply };
                    assert!(self.running().inbox.send(Msg::Control(req)), "{ctx}");
                    match answer.await {
                        Ok(ControlReply::Done(_)) => {}
                        other => panic!("{ctx}: {other:?}"),
                    }
                }
                Step::Worker(ev) => {
                    let tx = self.script.worker_events.lock().unwrap().clone();
                    tx.expect("a worker was started").send(ev).await.unwrap();
                }
                Step::Reload(text) => {
                    std::fs::write(&self.config, text).unwrap();
                    let msg = Msg::Reload(ReloadTrigger::Sighup);
                    assert!(self.running().inbox.send(msg), "{ctx}");
                    self.settle().await;
                }
                Step::StateIs(s) => {
                    self.settle().await;
                    assert_eq!(
                        self.running().board.get().state,
                        s,
                        "{ctx}\n{}",
                        self.dump()
                    );
                }
                Step::IncidentIs(id) => {
                    self.settle().await;
                    let snap = self.running().board.get();
                    assert_eq!(snap.incident.map(|i| i.id).as_deref(), id, "{ctx}");
                }
                Step::AgentSays(t) => *self.script.agent_says.lock().unwrap() = Some(t.into()),
                Step::ProbesPanic => self
                    .script
                    .probes_panic
                    .store(true, std::sync::atomic::Ordering::SeqCst),
                Step::HealsPanic => self
                    .script
                    .heals_panic
                    .store(true, std::sync::atomic::Ordering::SeqCst),
                Step::ActionFixes(a, p) => {
                    self.script.fixes.lock().unwrap().insert(a.into(), p.into());
                }
                Step::Approve(n) | Step::Deny(n) => {
                    let (reply, answer) = oneshot::channel();
                    let req = if matches!(step, Step::Approve(_)) {
                        ControlRequest::Approve {
                            approval: n,
                            by: "tester".into(),
                            reply,
                        }
                    } else {
                        ControlRequest::Deny {
                            approval: n,
                            by: "tester".into(),
                            reply,
                        }
                    };
                    assert!(self.running().inbox.send(Msg::Control(req)), "{ctx}");
                    match answer.await {
                        Ok(ControlReply::Done(_)) => {}
                        other => panic!("{ctx}: {other:?}\n{}", self.dump()),
                    }
                }
                Step::AgentReset => {
                    let (reply, answer) = oneshot::channel();
                    let req = ControlRequest::AgentReset {
                        by: "tester".into(),
                        reply,
                    };
                    assert!(self.running().inbox.send(Msg::Control(req)), "{ctx}");
                    assert!(matches!(answer.await, Ok(ControlReply::Done(_))), "{ctx}");
                }
                Step::ConfigError(yes) => {
                    self.settle().await;
                    let snap = self.running().board.get();
                    assert_eq!(snap.config_error.is_some(), yes, "{ctx}: {snap:?}");
                }
            }
        }
        std::mem::take(&mut self.matched)
    }

    /// Wait until the runtime handled everything sent to it so far: the inbox is one FIFO, so
    /// the answer to a request sent now comes after every earlier message was handled. (The
    /// request — silencing a probe that does not exist — changes nothing.)
    async fn settle(&self) {
        let (reply, answer) = oneshot::channel();
        let barrier = ControlRequest::Silence {
            probe: "(barrier)".into(),
            duration: Duration::from_secs(1),
            reason: None,
            by: "test".into(),
            reply,
        };
        assert!(self.running().inbox.send(Msg::Control(barrier)));
        assert!(matches!(answer.await, Ok(ControlReply::NotFound(_))));
    }
}

/// `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
