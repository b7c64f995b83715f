//! `talon run` (and bare `talon`): the daemon. `--worker-only` (the original's flag, also
//! accepted as `talon --worker-only`) supervises the worker without probes or escalation
//! (`runtime::worker_only`), with the same `talon worker` controls served on `[health] bind`,
//! until SIGTERM or SIGINT, which go on to the worker's group; then it drains and exits 0 with no
//! child left.

use super::{Exit, load_options, print_diagnostics};
use crate::clock::Clock;
use crate::config::{self, Config, WorkerConfig};
use crate::runtime::real::{Actions, Agents, Channels, EngineProbes, Heals, Supervisors};
use crate::runtime::{Boot, Effects, RunOptions, Runtime, StartError};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Supervise the worker only: no probes, no escalation. `talon worker status|restart|stop|start`
    /// work as with the daemon (served on [health] bind with the API token; /health and /status
    /// show the worker); a `talon worker stop` is kept in the state dir and outlives a restart.
    #[arg(long)]
    pub worker_only: bool,
}

pub fn run(cfg_path: &Option<PathBuf>, args: Args) -> anyhow::Result<Exit> {
    if args.worker_only {
        return run_worker_only(cfg_path);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (boot, _lock) = match Boot::start(RunOptions {
            config: cfg_path.clone(),
        }) {
            Ok(b) => b,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "talon: {e}");
                return Ok(match e {
                    StartError::Config(_)
                    | StartError::Lock(_)
                    | StartError::StateDir { .. }
                    | StartError::StateDirNotWritable { .. }
                    | StartError::Perms(_) => Exit::Error,
                });
            }
        };
        // The real effects and the host's clock; the runtime's tests wire scripted ones.
        let effects = Effects {
            probes: Arc::new(EngineProbes::new(&boot.config).with_pushes(boot.pushes.clone())),
            heal: Arc::new(Heals),
            agent: Arc::new(Agents),
            actions: Arc::new(Actions),
            notifier: Arc::new(Channels),
            workers: Arc::new(Supervisors),
        };
        Runtime::new(boot, effects, Clock::system()).run().await?;
        Ok(Exit::Ok)
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .try_init();
}

fn run_worker_only(cfg_path: &Option<PathBuf>) -> anyhow::Result<Exit> {
    let Some(config) = load(cfg_path) else {
        return Ok(Exit::Error);
    };
    let Some(worker) = config.worker.clone() else {
        let _ = writeln!(
            std::io::stderr(),
            "talon: no [worker] section in {}; nothing to supervise",
            source_name(&config)
        );
        return Ok(Exit::Error);
    };
    init_logging();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(worker_only(cfg_path.clone(), config, worker))
}

fn source_name(c: &Config) -> String {
    c.sources
        .main
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| config::EMBEDDED_NAME.to_string())
}

/// Load and validate the config; problems are printed to stderr. Programs are not resolved
/// here: the supervisor reports (and retries) a missing worker program itself.
fn load(cfg_path: &Option<PathBuf>) -> Option<Config> {
    let loaded = config::load(&load_options(cfg_path, false));
    print_diagnostics(&loaded.diags);
    loaded.config
}

async fn worker_only(
    cfg_path: Option<PathBuf>,
    config: Config,
    worker: WorkerConfig,
) -> anyhow::Result<Exit> {
    match crate::runtime::worker_only::run(cfg_path, config, worker).await? {
        Ok(()) => Ok(Exit::Ok),
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "talon: {why}");
            Ok(Exit::Error)
        }
    }
}
