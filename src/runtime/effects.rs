//! The effects the runtime starts, each behind a small trait so a test can script it: a probe
//! cycle, a heal, an agent run, a delivery, a store write, a worker supervisor. The runtime is
//! given them through its constructor ([`Effects`] and [`super::Boot::history`]); `cli/run.rs`
//! wires the real ones (`real.rs`), the runtime's tests wire scripted ones. Nothing selects an
//! implementation by an environment variable or a global.
//!
//! Every slow effect returns a future the runtime runs as a task off its loop; the task's answer
//! comes back through the inbox ([`super::Msg`]).

use crate::config::path::SearchPath;
use crate::config::probe::ProbeConfig;
use crate::config::{Config, WorkerConfig};
use crate::core::{
    AgentTier, ChannelResult, HealStep, IncidentId, Millis, Notification, Outlook, ProbeResult,
    RunOutcome,
};
use crate::redact::Redactor;
use crate::store::{Batch, StoreError};
use crate::supervise::{ControlResult, ForwardError, WorkerAction, WorkerEvent, WorkerStatus};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A boxed, sendable future (what the effect traits return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs probes: the scheduled cycles and the verification re-probes.
pub trait ProbeRunner: Send + Sync {
    /// Run `probes` once, concurrently (dependencies inside the set honoured); one result per
    /// probe, in the same order. The work is bound when this is called: a reload afterwards does
    /// not change a run already asked for.
    fn run(&self, probes: Vec<ProbeConfig>) -> BoxFuture<'static, Vec<ProbeResult>>;
    /// A reloaded config took effect.
    fn reconfigure(&self, cfg: &Config);
}

/// Runs one tier-1 heal (its steps in order) and reports the worst outcome and the outputs.
pub trait HealRunner: Send + Sync {
    fn run(&self, job: HealJob) -> BoxFuture<'static, (RunOutcome, String)>;
}

/// Runs one agent tier with the prompt on stdin and reports how it ended and its transcript.
pub trait AgentRunner: Send + Sync {
    fn run(&self, job: AgentJob) -> BoxFuture<'static, (RunOutcome, String)>;
}

/// Runs one catalogue action an agent proposed (cleared by `auto` or a human): reports how it
/// ended and its receipt text (command, output, duration).
pub trait ActionRunner: Send + Sync {
    fn run(&self, job: ActionJob) -> BoxFuture<'static, (RunOutcome, String)>;
}

/// One [`crate::core::Action::RunCatalogued`].
pub struct ActionJob {
    pub id: u64,
    pub incident: IncidentId,
    pub name: String,
    pub approved_by: String,
    pub probes: Vec<String>,
    pub cfg: Arc<Config>,
    pub last: BTreeMap<String, ProbeResult>,
    /// For the built-in `restart-worker`.
    pub worker: Option<Arc<dyn Worker>>,
    pub redactor: Arc<Redactor>,
}

/// One [`crate::core::Action::RunHeal`], with what the heal runner needs to run it.
pub struct HealJob {
    pub id: u64,
    pub incident: IncidentId,
    pub steps: Vec<HealStep>,
    /// The failing roots it is for.
    pub probes: Vec<String>,
    pub cfg: Arc<Config>,
    /// The newest scheduled result of each probe (the failing ones go to the heal's context).
    pub last: BTreeMap<String, ProbeResult>,
    /// For a [`HealStep::RestartWorker`] step.
    pub worker: Option<Arc<dyn Worker>>,
    /// The daemon's redactor (it keeps secrets learned at run time, e.g. fetched bot tokens).
    pub redactor: Arc<Redactor>,
}

/// One [`crate::core::Action::RunAgent`], with what the agent runner needs to run it.
pub struct AgentJob {
    pub incident: IncidentId,
    pub tier: AgentTier,
    pub probes: Vec<String>,
    pub cfg: Arc<Config>,
    /// What the core knows now (failing probes, the incident), for the prompt.
    pub outlook: Outlook,
    /// The newest scheduled result of each probe (a failing one's `detail` goes to the prompt
    /// and the agent's context).
    pub last: BTreeMap<String, ProbeResult>,
    pub redactor: Arc<Redactor>,
}

/// One delivery attempt of a notification on every channel.
pub struct Delivery {
    pub cfg: Arc<Config>,
    pub notification: Notification,
    /// The daemon's redactor (it keeps secrets learned at run time).
    pub redactor: Arc<Redactor>,
    /// Each incident's message per Telegram channel (edited in place by later notices).
    pub threads: crate::notify::telegram::ThreadBook,
}

/// A notice that is not a core notification (the daily digest), for some channels.
pub struct NoticeJob {
    pub notice: crate::notify::Notice,
    pub channels: Vec<crate::config::channel::ChannelConfig>,
    pub search_path: SearchPath,
    pub redactor: Arc<Redactor>,
}

/// Delivers notifications: one result per channel.
pub trait Notifier: Send + Sync {
    fn deliver(&self, job: Delivery) -> BoxFuture<'static, Vec<ChannelResult>>;
    /// Send a notice of the runtime's own (the digest) on its channels. By default the real
    /// fan-out ([`crate::notify::deliver`]).
    fn notice(&self, job: NoticeJob) -> BoxFuture<'static, Vec<ChannelResult>> {
        Box::pin(async move {
            let ctx = match crate::notify::NotifyCtx::new(job.search_path, job.redactor) {
                Ok(c) => c,
                Err(e) => {
                    return job
                        .channels
                        .iter()
                        .map(|c| ChannelResult {
                            channel: c.name.clone(),
                            delivered: false,
                            detail: e.to_string(),
                        })
                        .collect();
                }
            };
            crate::notify::deliver(&job.notice, &job.channels, &ctx)
                .await
                .into_iter()
                .map(|d| ChannelResult {
                    channel: d.channel.clone(),
                    delivered: d.result.is_ok(),
                    detail: match &d.result {
                        Ok(()) => format!("delivered in {} ms", d.duration_ms),
                        Err(e) => e.to_string(),
                    },
                })
                .collect()
        })
    }
}

/// Where each step's history goes. Writes never block the loop.
pub trait History: Send {
    /// Queue what one step produced.
    fn write(&self, batch: Batch);
    /// Queue a retention prune.
    fn prune(&self, now: Millis, retention: Duration);
    /// Writes that failed so far.
    fn failures(&self) -> u64;
    /// Why writes are failing now, if they are.
    fn current_error(&self) -> Option<String>;
    /// A handle that waits until what is queued now is written (a reader that opens the store
    /// afterwards, like the digest, then sees it); `None` when there is nothing to wait for.
    fn barrier(&self) -> Option<crate::store::Barrier>;
    /// Write what is queued and stop. Blocks (the runtime calls it from `spawn_blocking`).
    fn close(self: Box<Self>) -> Result<(), StoreError>;
}

/// Starts worker supervisors (one per `[worker]` config, again after a reload removed and
/// re-added it).
pub trait Workers: Send + Sync {
    /// Start supervising; the supervisor's events go to `events`. With `held`, the worker
    /// starts out stopped on purpose (an operator's `talon worker stop` before a Talon restart).
    fn start(
        &self,
        cfg: WorkerConfig,
        search: SearchPath,
        events: mpsc::Sender<WorkerEvent>,
        held: bool,
    ) -> Arc<dyn Worker>;
}

/// The runtime's side of a running worker supervisor.
pub trait Worker: Send + Sync {
    /// Restart the worker gracefully, at once (the `worker` pseudo-probe's heal).
    fn restart(&self) -> BoxFuture<'_, ()>;
    /// Take a changed `[worker]` config (restarts the worker with it).
    fn reconfigure(&self, cfg: WorkerConfig, search: SearchPath) -> BoxFuture<'_, ()>;
    /// Pass a signal on to the worker's group.
    fn forward(&self, sig: Signal) -> Result<(), ForwardError>;
    fn status(&self) -> WorkerStatus;
    /// An operator's `restart`, `stop` or `start`, answered when done (`status` is answered from
    /// [`Worker::status`]).
    fn control(&self, action: WorkerAction) -> BoxFuture<'_, ControlResult>;
    /// Values of the worker's resolved secrets (redacted from everything Talon hands over).
    fn secret_values(&self) -> Vec<String>;
    /// Stop supervising, first signal `sig`, and wait until nothing is left — when this is the
    /// last handle. Otherwise (a heal task still holds one) the last holder's drop drains the
    /// worker in the background.
    fn shutdown(self: Arc<Self>, sig: Signal) -> BoxFuture<'static, ()>;
}

/// The effects the runtime is built with.
#[derive(Clone)]
pub struct Effects {
    pub probes: Arc<dyn ProbeRunner>,
    pub heal: Arc<dyn HealRunner>,
    pub agent: Arc<dyn AgentRunner>,
    /// Catalogue actions (`[agent] mode = "propose"`).
    pub actions: Arc<dyn ActionRunner>,
    pub notifier: Arc<dyn Notifier>,
    pub workers: Arc<dyn Workers>,
}
