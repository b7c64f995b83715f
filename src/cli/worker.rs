//! `talon worker status|restart|stop|start`: the worker's controls through the running daemon or
//! `talon run --worker-only` (`POST /worker` on its loopback bind, with the token in
//! `<state_dir>/api.token`), like `supervisorctl`. Each is graceful (TERM the group, drain, KILL,
//! reap) and answered when done; `stop` keeps the worker stopped until `start`, across Talon
//! restarts. The daemon records each restart/stop/start with who asked (`cli`) and its result in
//! history. Exit 0 done, 1 failed, 2 usage error or no daemon.

use super::Exit;
use super::control::post_within;
use crate::server::control::WORKER_CONTROL_TIMEOUT;
use crate::supervise::WorkerAction;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum Action {
    /// State, pid, restarts, the last exit and error.
    Status,
    /// Graceful restart: TERM the worker's group, drain, KILL, reap, start a new one.
    Restart,
    /// Graceful stop; the worker stays stopped (also across a Talon restart) until `start`.
    Stop,
    /// Start a worker that was stopped.
    Start,
}

pub fn run(cfg: &Option<PathBuf>, a: Args) -> anyhow::Result<Exit> {
    let action = match a.action {
        Action::Status => WorkerAction::Status,
        Action::Restart => WorkerAction::Restart,
        Action::Stop => WorkerAction::Stop,
        Action::Start => WorkerAction::Start,
    };
    post_within(
        cfg,
        "/worker",
        serde_json::json!({ "action": action, "by": "cli" }),
        WORKER_CONTROL_TIMEOUT + Duration::from_secs(10),
    )
}
