//! `talon maintenance start|list|end`: open, show and close maintenance windows in the running
//! daemon through its token-protected `POST /maintenance` (like `talon ack`). Inside a window the
//! probes still run and are recorded, but nothing heals (unless `--heal`), runs an agent or pages
//! for them; a probe still failing when the window ends escalates at once.

use super::Exit;
use super::control::post;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub op: Op,
}

#[derive(Debug, clap::Subcommand)]
pub enum Op {
    /// Open a window now: a `[[maintenance]]` window by NAME, or `--probes` (names or globs).
    Start(StartArgs),
    /// Every window: configured ones (open, or when they open next) and run-time ones.
    List,
    /// Close the run-time window NAME (default: every run-time window).
    End {
        /// The window's name.
        name: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// A `[[maintenance]]` window's name (its probes), or the name of a new window.
    pub name: Option<String>,
    /// Probes to cover, names or globs (comma-separated or repeated); default: the named
    /// window's probes.
    #[arg(long, value_delimiter = ',')]
    pub probes: Vec<String>,
    /// How long: seconds, or 90s, 30m, 2h, 1d (at most 30 days).
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Let the ladder heal and run agents inside the window (it still never pages).
    #[arg(long)]
    pub heal: bool,
}

pub fn run(cfg: &Option<PathBuf>, a: Args) -> anyhow::Result<Exit> {
    let body = match a.op {
        Op::Start(s) => {
            let dur = match s.duration.parse::<u64>() {
                Ok(secs) => serde_json::json!(secs),
                Err(_) => serde_json::json!(s.duration),
            };
            serde_json::json!({
                "action": "start",
                "name": s.name,
                "probes": s.probes,
                "for": dur,
                "heal": s.heal,
            })
        }
        Op::List => serde_json::json!({ "action": "list" }),
        Op::End { name } => serde_json::json!({ "action": "end", "name": name }),
    };
    post(cfg, "/maintenance", body)
}
