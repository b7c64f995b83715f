//! `talon run` (and bare `talon`): the daemon.

use super::Exit;
use crate::runtime::{RunOptions, Runtime, StartError};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Default, clap::Args)]
pub struct Args {}

pub fn run(cfg_path: &Option<PathBuf>, _args: Args) -> anyhow::Result<Exit> {
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (runtime, _lock) = match Runtime::start(RunOptions {
            config: cfg_path.clone(),
        }) {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "talon: {e}");
                return Ok(match e {
                    StartError::Config(_) | StartError::Lock(_) | StartError::StateDir { .. } => {
                        Exit::Error
                    }
                });
            }
        };
        runtime.run().await?;
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
