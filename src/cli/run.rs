//! `talon run` (and bare `talon`): the daemon. `--worker-only` (the original's flag, also
//! accepted as `talon --worker-only`) supervises the worker without probes or escalation, until
//! SIGTERM or SIGINT, which go on to the worker's group; then it drains and exits 0 with no child
//! left.

use super::{Exit, load_options, print_diagnostics};
use crate::clock::Clock;
use crate::config::{self, Config, WorkerConfig};
use crate::runtime::real::{Agents, Channels, EngineProbes, Heals, Supervisors};
use crate::runtime::{Boot, Effects, RunOptions, Runtime, StartError};
use crate::supervise::{Supervisor, owner};
use nix::sys::signal::Signal;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Supervise the worker only: no probes, no escalation, no HTTP server.
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
                    | StartError::Perms(_) => Exit::Error,
                });
            }
        };
        // The real effects and the host's clock; the runtime's tests wire scripted ones.
        let effects = Effects {
            probes: Arc::new(EngineProbes::new(&boot.config).with_pushes(boot.pushes.clone())),
            heal: Arc::new(Heals),
            agent: Arc::new(Agents),
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
    if owner::configured(&worker)
        && let owner::Ownership::External(o) = owner::check(&worker, &config.search_path).await
    {
        let _ = writeln!(
            std::io::stderr(),
            "talon: the worker is owned by {o}; not supervising it (stop that service, or remove external_* from [worker])"
        );
        return Ok(Exit::Error);
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (fwd_tx, mut fwd_rx) = tokio::sync::mpsc::channel::<Signal>(8);
    for name in &worker.forward_signals {
        let Ok(sig) = Signal::from_str(&format!("SIG{name}")) else {
            continue;
        };
        let mut stream = signal(SignalKind::from_raw(sig as i32))?;
        let tx = fwd_tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(sig).await.is_err() {
                    return;
                }
            }
        });
    }
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel(64);
    // Events are already logged by the supervisor; with no state machine here, drain them.
    tokio::spawn(async move { while ev_rx.recv().await.is_some() {} });
    let mut current = worker.clone();
    let handle = Supervisor::start(worker, config.search_path.clone(), ev_tx);
    let first = loop {
        tokio::select! {
            _ = term.recv() => break Signal::SIGTERM,
            _ = int.recv() => break Signal::SIGINT,
            _ = hup.recv() => {
                let loaded = config::load(&load_options(&cfg_path, false));
                match loaded.config.and_then(|c| c.worker.map(|w| (w, c.search_path))) {
                    Some((w, sp)) if w != current => {
                        current = w.clone();
                        handle.reconfigure(w, sp).await;
                    }
                    Some(_) => tracing::info!("SIGHUP: worker config unchanged"),
                    None => {
                        for d in loaded.diags.errors() {
                            tracing::error!(problem = %d, "SIGHUP: config rejected; keeping the running one");
                        }
                        if !loaded.diags.has_errors() {
                            tracing::error!("SIGHUP: the new config has no [worker]; keeping the running one");
                        }
                    }
                }
            }
            Some(sig) = fwd_rx.recv() => {
                if let Err(e) = handle.forward(sig) {
                    tracing::warn!(signal = sig.as_str(), error = %e, "signal not forwarded");
                }
            }
        }
    };
    tracing::info!(
        signal = first.as_str(),
        "stopping: draining the worker's group"
    );
    handle.shutdown_with(first).await;
    Ok(Exit::Ok)
}
