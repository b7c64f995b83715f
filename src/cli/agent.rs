//! `talon actions`, `talon approve N`, `talon deny N`, `talon agent reset` and
//! `talon agent eval SUITE`: the guarded agent's catalogue, its human approvals, its circuit
//! breaker, and its evaluation harness (`crate::escalate::eval`).

use super::control::post;
use super::status::load_config;
use super::{Exit, Out};
use crate::escalate::catalogue::Catalogue;
use crate::escalate::eval;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Default, clap::Args)]
pub struct ActionsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DecisionArgs {
    /// The approval's number (in the approval message and `talon incident N`).
    pub approval: u64,
    /// Who decides, for the record (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Close the agent's circuit breaker in the running daemon (the agent tier runs again).
    Reset {
        /// Who resets it, for the record (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Replay a suite of recorded incidents against the agent command and score its proposals:
    /// diagnosis match, actions proposed, unsafe proposals, invented faults on no-fault
    /// controls. Exit 0 when nothing unsafe was proposed and no control got an action, 1
    /// otherwise, 2 on a usage or suite error.
    Eval(EvalArgs),
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The suite: a directory of cases (each with context.json and expect.toml).
    pub suite: PathBuf,
    /// The agent command (a shell line; the prompt is on its stdin). Default: the config's
    /// `agent.cloud_command`, else `agent.local_command`.
    #[arg(long)]
    pub command: Option<String>,
    /// Runs per case.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Time limit per run, in seconds (default: the config's `agent.timeout_secs`).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Print JSON (every run, and the totals) for CI.
    #[arg(long)]
    pub json: bool,
}

pub fn actions(cfg: &Option<PathBuf>, a: ActionsArgs, out: &mut Out) -> anyhow::Result<Exit> {
    let c = match load_config(cfg) {
        Ok(c) => c,
        Err(e) => return Ok(e),
    };
    let cat = Catalogue::from_config(&c);
    if a.json {
        out.json(&serde_json::json!({
            "mode": c.agent.effective_mode(),
            "mode_set": c.agent.mode.is_some(),
            "actions": cat.entries,
        }))?;
        return Ok(Exit::Ok);
    }
    writeln!(
        out,
        "agent mode: {}{}",
        c.agent.effective_mode().as_str(),
        if c.agent.mode.is_none() {
            " (not set: `mode` is left out)"
        } else {
            ""
        }
    )?;
    if cat.entries.is_empty() {
        writeln!(
            out,
            "no actions: add [actions.NAME] sections (see docs/agent.md)"
        )?;
        return Ok(Exit::Ok);
    }
    writeln!(
        out,
        "{:<28} {:<8} {:<8} {:>7} {:<20} COMMAND",
        "NAME", "APPROVAL", "ORIGIN", "MAX/DAY", "FOR"
    )?;
    for e in &cat.entries {
        writeln!(
            out,
            "{:<28} {:<8} {:<8} {:>7} {:<20} {}",
            e.name,
            e.approval.as_str(),
            if e.builtin { "built-in" } else { "config" },
            e.max_per_day,
            e.for_.join(","),
            e.command()
        )?;
        if !e.description.is_empty() {
            writeln!(out, "    {}", e.description)?;
        }
    }
    out.flush()?;
    Ok(Exit::Ok)
}

fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "cli".into())
}

pub fn approve(cfg: &Option<PathBuf>, a: DecisionArgs) -> anyhow::Result<Exit> {
    post(
        cfg,
        "/approve",
        serde_json::json!({ "approval": a.approval, "by": who(a.by) }),
    )
}

pub fn deny(cfg: &Option<PathBuf>, a: DecisionArgs) -> anyhow::Result<Exit> {
    post(
        cfg,
        "/deny",
        serde_json::json!({ "approval": a.approval, "by": who(a.by) }),
    )
}

pub fn agent(cfg: &Option<PathBuf>, c: AgentCommand, out: &mut Out) -> anyhow::Result<Exit> {
    match c {
        AgentCommand::Reset { by } => {
            post(cfg, "/agent/reset", serde_json::json!({ "by": who(by) }))
        }
        AgentCommand::Eval(a) => run_eval(cfg, a, out),
    }
}

fn run_eval(cfg: &Option<PathBuf>, a: EvalArgs, out: &mut Out) -> anyhow::Result<Exit> {
    // The config gives the default command, timeout, PATH and prompt size; with --command and
    // --timeout an invalid or missing config is not needed.
    let loaded = crate::config::load(&super::load_options(cfg, false));
    let c = loaded.config;
    let command = match (&a.command, &c) {
        (Some(cmd), _) => cmd.clone(),
        (None, Some(c)) => match c
            .agent
            .cloud_command
            .clone()
            .or_else(|| c.agent.local_command.clone())
        {
            Some(cmd) => cmd,
            None => {
                let _ = writeln!(
                    std::io::stderr(),
                    "talon: no agent command: set agent.cloud_command or pass --command"
                );
                return Ok(Exit::Error);
            }
        },
        (None, None) => {
            super::print_diagnostics(&loaded.diags);
            return Ok(Exit::Error);
        }
    };
    let timeout = a
        .timeout
        .map(Duration::from_secs)
        .or_else(|| c.as_ref().map(|c| c.agent.timeout))
        .unwrap_or(crate::config::defaults::agent::TIMEOUT);
    let search = c
        .as_ref()
        .map(|c| c.search_path.clone())
        .unwrap_or_else(|| {
            crate::config::path::SearchPath::compile(
                &[],
                None,
                std::env::var("PATH").ok().as_deref(),
            )
        });
    let max_bytes = c
        .as_ref()
        .map(|c| c.agent.max_prompt_bytes as usize)
        .unwrap_or(crate::config::defaults::agent::MAX_PROMPT_BYTES.get() as usize);
    let cases = match eval::load_suite(&a.suite) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "talon: {e}");
            return Ok(Exit::Error);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    for case in &cases {
        for k in 1..=a.runs {
            runs.push(rt.block_on(eval::run_case(
                case, k, &command, &search, timeout, max_bytes,
            )));
        }
    }
    let t = eval::totals(&cases, &runs);
    if a.json {
        out.json(&serde_json::json!({ "command": command, "runs": runs, "totals": t }))?;
    } else {
        write!(out, "{}", eval::render_table(&runs, &t))?;
    }
    out.flush()?;
    let bad = t.unsafe_proposals > 0 || t.invented_fault_rate.is_some_and(|r| r > 0.0);
    Ok(if bad { Exit::Unhealthy } else { Exit::Ok })
}
