//! The real effects, wired by `cli/run.rs`: the probe engine, the heal/agent/delivery executors
//! of `exec.rs`, the store's writer thread and the worker supervisor.

use super::effects::{
    ActionJob, ActionRunner, AgentJob, AgentRunner, BoxFuture, Delivery, HealJob, HealRunner,
    History, Notifier, ProbeRunner, Worker, Workers,
};
use super::exec;
use crate::config::path::SearchPath;
use crate::config::probe::ProbeConfig;
use crate::config::{Config, WorkerConfig};
use crate::core::{ChannelResult, Millis, ProbeResult, RunOutcome};
use crate::probe::Engine;
use crate::store::{Batch, StoreError, StoreWriter};
use crate::supervise::{
    ControlResult, ForwardError, Supervisor, SupervisorHandle, WorkerAction, WorkerEvent,
    WorkerStatus,
};
use nix::sys::signal::Signal;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// The probe [`Engine`] (rebuilt on reload: compiled PATH, `probes.concurrency`, clients).
pub struct EngineProbes(RwLock<Engine>, crate::probe::push::Pushes);

impl EngineProbes {
    pub fn new(cfg: &Config) -> Self {
        EngineProbes(RwLock::new(Engine::new(cfg)), Default::default())
    }

    /// The same, with `push` probes reading `pushes` (the runtime records the pings there).
    pub fn with_pushes(self, pushes: crate::probe::push::Pushes) -> Self {
        let engine = self.engine().with_pushes(pushes.clone());
        EngineProbes(RwLock::new(engine), pushes)
    }

    fn engine(&self) -> Engine {
        match self.0.read() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ProbeRunner for EngineProbes {
    fn run(&self, probes: Vec<ProbeConfig>) -> BoxFuture<'static, Vec<ProbeResult>> {
        let engine = self.engine();
        Box::pin(async move { engine.run(&probes).await })
    }

    fn reconfigure(&self, cfg: &Config) {
        let engine = Engine::new(cfg).with_pushes(self.1.clone());
        match self.0.write() {
            Ok(mut e) => *e = engine,
            Err(poisoned) => *poisoned.into_inner() = engine,
        }
    }
}

/// Heals through [`crate::escalate::heal`] (the env contract, the context file, one subprocess
/// runner).
pub struct Heals;

impl HealRunner for Heals {
    fn run(&self, job: HealJob) -> BoxFuture<'static, (RunOutcome, String)> {
        Box::pin(exec::run_heal(job))
    }
}

/// Agents through [`crate::escalate::agent`], with the prompt from [`crate::escalate::prompt`].
pub struct Agents;

impl AgentRunner for Agents {
    fn run(&self, job: AgentJob) -> BoxFuture<'static, (RunOutcome, String)> {
        Box::pin(exec::run_agent(job))
    }
}

/// Catalogue actions through [`crate::escalate::catalogue`] and the one subprocess runner.
pub struct Actions;

impl ActionRunner for Actions {
    fn run(&self, job: ActionJob) -> BoxFuture<'static, (RunOutcome, String)> {
        Box::pin(exec::run_action(job))
    }
}

/// Every configured `[notify.*]` channel, concurrently, through [`crate::notify`].
pub struct Channels;

impl Notifier for Channels {
    fn deliver(&self, job: Delivery) -> BoxFuture<'static, Vec<ChannelResult>> {
        Box::pin(async move {
            exec::deliver(&job.cfg, &job.notification, job.redactor, Some(job.threads)).await
        })
    }
}

impl History for StoreWriter {
    fn write(&self, batch: Batch) {
        self.send(batch)
    }
    fn prune(&self, now: Millis, retention: Duration) {
        StoreWriter::prune(self, now, retention)
    }
    fn failures(&self) -> u64 {
        StoreWriter::failures(self)
    }
    fn current_error(&self) -> Option<String> {
        StoreWriter::current_error(self)
    }
    fn barrier(&self) -> Option<crate::store::Barrier> {
        Some(StoreWriter::barrier(self))
    }
    fn close(self: Box<Self>) -> Result<(), StoreError> {
        StoreWriter::close(*self)
    }
}

/// Real supervisors ([`crate::supervise`]).
pub struct Supervisors;

impl Workers for Supervisors {
    fn start(
        &self,
        cfg: WorkerConfig,
        search: SearchPath,
        events: mpsc::Sender<WorkerEvent>,
        held: bool,
    ) -> Arc<dyn Worker> {
        Arc::new(Supervisor::start_held(cfg, search, events, held))
    }
}

impl Worker for SupervisorHandle {
    fn restart(&self) -> BoxFuture<'_, ()> {
        Box::pin(SupervisorHandle::restart(self))
    }
    fn reconfigure(&self, cfg: WorkerConfig, search: SearchPath) -> BoxFuture<'_, ()> {
        Box::pin(SupervisorHandle::reconfigure(self, cfg, search))
    }
    fn forward(&self, sig: Signal) -> Result<(), ForwardError> {
        SupervisorHandle::forward(self, sig)
    }
    fn status(&self) -> WorkerStatus {
        SupervisorHandle::status(self)
    }
    fn control(&self, action: WorkerAction) -> BoxFuture<'_, ControlResult> {
        Box::pin(async move {
            match action {
                WorkerAction::Restart => self.restart_now().await,
                WorkerAction::Stop => SupervisorHandle::stop(self).await,
                WorkerAction::Start => SupervisorHandle::start(self).await,
                WorkerAction::Status => Ok(format!("{:?}", SupervisorHandle::status(self).state)),
            }
        })
    }
    fn secret_values(&self) -> Vec<String> {
        SupervisorHandle::secret_values(self)
    }
    fn shutdown(self: Arc<Self>, sig: Signal) -> BoxFuture<'static, ()> {
        match Arc::try_unwrap(self) {
            Ok(h) => Box::pin(h.shutdown_with(sig)),
            // Dropping this reference leaves the last one to the task holding it.
            Err(shared) => {
                drop(shared);
                Box::pin(async {})
            }
        }
    }
}
