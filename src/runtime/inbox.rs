//! The runtime's one inbox. Every source — effect tasks (probe runs, heals, agents, deliveries),
//! the worker supervisor, the config watcher, OS signals, operators over HTTP — sends one typed
//! [`Msg`]; the actor takes them one at a time and handles each variant in exactly one place
//! (`Runtime::handle` in `actor.rs`). Nothing else touches the runtime's state.

use super::chat::ChatMsg;
use crate::core::ProbeResult;
use crate::core::{ActionId, ChannelResult, IncidentId, RunOutcome};
use crate::server::control::ControlRequest;
use crate::supervise::WorkerEvent;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Everything the runtime reacts to.
///
/// Effects answer with the result only; the actor stamps the time (its [`crate::clock::Clock`])
/// when it hands the result to the core, so the core sees times in the order it sees events.
///
/// Operator commands arrive as [`Msg::Control`] (the CLI's `talon ack` / `talon silence` reach
/// the daemon through the HTTP control endpoints). Commands from a chat channel arrive as
/// [`Msg::Chat`], answered by the same `ack`/`silence` handlers in `surfaces.rs` with the reply
/// going back to the chat instead of the HTTP client.
#[derive(Debug)]
pub enum Msg {
    /// A scheduled run of the probes that were due finished (with the probes reported
    /// `blocked` without running, because a dependency outside the run last failed).
    CycleDone(Vec<ProbeResult>),
    /// A verification re-probe asked for by [`crate::core::Action::Reprobe`] finished.
    ReprobeDone {
        incident: IncidentId,
        probes: Vec<String>,
        results: Vec<ProbeResult>,
    },
    /// A heal ([`crate::core::Action::RunHeal`]) ended: worst outcome of its steps, outputs.
    HealDone {
        id: ActionId,
        outcome: RunOutcome,
        output: String,
    },
    /// An agent run ([`crate::core::Action::RunAgent`]) ended.
    AgentDone {
        id: ActionId,
        outcome: RunOutcome,
        output: String,
    },
    /// A delivery attempt of a notification ([`crate::core::Action::Notify`]) ended, one
    /// result per channel.
    Delivered {
        id: ActionId,
        channels: Vec<ChannelResult>,
    },
    /// The worker supervisor reported something.
    Worker(WorkerEvent),
    /// The runtime's own timer fired: probes are due, the core's wake-up time came, or the
    /// hourly history prune. The one message the loop makes itself (when its deadline passes)
    /// instead of receiving it.
    Timer,
    /// Re-read the config files.
    Reload(ReloadTrigger),
    /// An operator's `ack` or `silence` (HTTP control endpoints, used by the CLI).
    Control(ControlRequest),
    /// An operator's `talon worker restart|stop|start` (a [`Msg::Control`]) is done: record it
    /// in history with who asked and what came of it, then answer `reply`.
    WorkerControlled {
        action: crate::supervise::WorkerAction,
        /// `cli` or `http`.
        by: String,
        result: crate::supervise::ControlResult,
        reply: tokio::sync::oneshot::Sender<crate::server::control::ControlReply>,
    },
    /// An update from a `commands = true` Telegram channel's long poll (`/ack`, `/silence`, …).
    Chat(ChatMsg),
    /// A signal to pass on to the worker's group (`worker.forward_signals`).
    Forward(Signal),
    /// SIGTERM or SIGINT: stop starting work, kill what runs, drain the worker, flush the store.
    Shutdown(Signal),
}

/// Why the config is re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// A watched config file changed (or appeared, or went away).
    FileChanged { path: PathBuf, exists: bool },
    /// SIGHUP.
    Sighup,
}

impl ReloadTrigger {
    /// For the log line.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReloadTrigger::FileChanged { .. } => "file change",
            ReloadTrigger::Sighup => "SIGHUP",
        }
    }
}

/// The sending side of the inbox. Cheap to clone; every source holds one.
#[derive(Debug, Clone)]
pub struct Inbox(mpsc::UnboundedSender<Msg>);

impl Inbox {
    /// A new inbox and the receiver the actor reads.
    pub fn new() -> (Inbox, mpsc::UnboundedReceiver<Msg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Inbox(tx), rx)
    }

    /// Send a message; `false` when the runtime has stopped (the message is dropped).
    pub fn send(&self, msg: Msg) -> bool {
        self.0.send(msg).is_ok()
    }

    /// Pass everything `rx` yields on as messages, until either side is gone (a task; call
    /// inside a tokio runtime).
    pub fn forward_from<T: Send + 'static>(
        &self,
        mut rx: mpsc::Receiver<T>,
        to_msg: impl Fn(T) -> Msg + Send + 'static,
    ) -> JoinHandle<()> {
        let inbox = self.clone();
        tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                if !inbox.send(to_msg(item)) {
                    return;
                }
            }
        })
    }
}
