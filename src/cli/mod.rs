//! The command line: one file per verb. Exit codes: 0 ok/healthy, 1 unhealthy, 2 usage or
//! config error. A closed stdout (`talon check | head -n1`) is a quiet exit 0, never a panic.

mod agent;
mod check;
mod config_cmd;
mod control;
mod history;
mod incidents;
mod init;
mod install;
mod maintenance;
mod notify;
mod push;
mod remote;
mod run;
mod status;
mod validate;
mod worker;

use clap::{CommandFactory, Parser, Subcommand};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// How a verb ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: ok / healthy / valid.
    Ok,
    /// 1: the answer is "unhealthy".
    Unhealthy,
    /// 2: usage or config error.
    Error,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(match e {
            Exit::Ok => 0,
            Exit::Unhealthy => 1,
            Exit::Error => 2,
        })
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "talon",
    version,
    about = "A watchdog daemon that supervises a worker, probes a host's services and escalates persistent failure: heal → AI agent → human.",
    after_help = "Config: --config PATH, else $TALON_CONFIG, else ~/.config/talon/config.toml, else the embedded default.\nExit codes: 0 ok, 1 unhealthy, 2 usage or config error."
)]
pub struct Cli {
    /// Main config file (default: $TALON_CONFIG, else ~/.config/talon/config.toml).
    #[arg(long, global = true, env = "TALON_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Same as `talon config` (the original's flag form).
    #[arg(long, hide = true)]
    pub dry_run: bool,

    /// Same as `talon status --json` (the original's flag form).
    #[arg(long = "status", hide = true)]
    pub status_flag: bool,

    /// Same as `talon run --worker-only` (the original's flag form).
    #[arg(long, hide = true)]
    pub worker_only: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default when no verb is given).
    Run(run::Args),
    /// Acknowledge an incident in the running daemon: its reminders stop.
    Ack(control::AckArgs),
    /// Silence a probe in the running daemon for a while (still probed and recorded).
    Silence(control::SilenceArgs),
    /// The supervised worker through the running daemon (or `talon run --worker-only`): status,
    /// graceful restart, stop (stays stopped, also across a Talon restart, until start), start.
    /// Each is recorded with who and its result (`talon history --probe worker`). Exit 0 done,
    /// 1 failed, 2 no daemon or usage.
    Worker(worker::Args),
    /// Maintenance windows in the running daemon: start NAME|--probes … --for 2h, list, end.
    /// Probes still run; nothing pages for them; a probe still failing at the end escalates.
    Maintenance(maintenance::Args),
    /// Run one probe cycle with the daemon's engine and print the results (writes no state).
    /// Exit 0 all pass, 1 any fails, 2 config error. `talon --check` is an alias.
    Check(check::Args),
    /// Check both config files: every problem with file:line:column, and every program Talon
    /// will run resolved on its compiled PATH. Exit 0 valid, 2 invalid.
    Validate(validate::Args),
    /// Print the effective config, every default filled in.
    Config(config_cmd::Args),
    /// Write the commented default config and probes file (never overwrites).
    Init(init::Args),
    /// Print (or --write) a systemd unit or launchd plist that runs and watches Talon.
    Install(install::Args),
    /// State, open incident, failing probes, and the next escalation step and when it is due;
    /// with --remote URL…, one line per host from each Talon's /status (the fleet view).
    /// Exit 0 healthy or degraded (every host, with --remote), 1 otherwise.
    Status(status::Args),
    /// State changes (and with --probe, that probe's results), oldest first.
    History(history::Args),
    /// Incidents, newest first.
    Incidents(incidents::ListArgs),
    /// One incident's timeline: transitions, every heal/agent run with its output, notifications.
    Incident(incidents::ShowArgs),
    /// The action catalogue an agent in `propose` mode chooses from: `[actions.NAME]` and the
    /// built-ins derived from the config, with approval, `for` and daily budget.
    Actions(agent::ActionsArgs),
    /// Approve an action an agent proposed (it runs now) in the running daemon.
    Approve(agent::DecisionArgs),
    /// Deny an action an agent proposed (it is not run; the ladder goes on).
    Deny(agent::DecisionArgs),
    /// The agent tier: `reset` its circuit breaker, `eval` a command against a suite of cases.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Send a test notice to every channel (or `--channel NAME`) and print each result.
    /// Exit 0 all delivered, 1 any failed, 2 config error or unknown channel.
    Notify(notify::Args),
    /// Print the URL a `push` probe's job pings (it carries the probe's own token).
    PushToken(push::TokenArgs),
    /// Report to a `push` probe from this host: success (default), `--start` or `--fail`.
    Ping(push::PingArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Parse the command line, run the verb, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(check::rewrite_alias(std::env::args_os()));
    match run(cli) {
        Ok(e) => e.into(),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(io::stderr(), "talon: {err:#}");
            Exit::Error.into()
        }
    }
}

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    let mut out = Out::stdout();
    let command = match (cli.command, cli.dry_run) {
        (Some(c), _) => c,
        (None, _) if cli.status_flag => Command::Status(status::Args {
            json: true,
            ..Default::default()
        }),
        (None, _) if cli.worker_only => Command::Run(run::Args { worker_only: true }),
        (None, true) => Command::Config(config_cmd::Args::default()),
        // Bare `talon` is the daemon, as the original was.
        (None, false) => Command::Run(run::Args { worker_only: false }),
    };
    match command {
        Command::Run(a) => run::run(&cli.config, a),
        Command::Ack(a) => control::ack(&cli.config, a),
        Command::Silence(a) => control::silence(&cli.config, a),
        Command::Worker(a) => worker::run(&cli.config, a),
        Command::Maintenance(a) => maintenance::run(&cli.config, a),
        Command::Check(a) => check::run(&cli.config, a, &mut out),
        Command::Validate(a) => validate::run(&cli.config, a, &mut out),
        Command::Config(a) => config_cmd::run(&cli.config, a, &mut out),
        Command::Init(a) => init::run(a, &mut out),
        Command::Install(a) => install::run(&cli.config, a, &mut out),
        Command::Status(a) => status::run(&cli.config, a, &mut out),
        Command::History(a) => history::run(&cli.config, a, &mut out),
        Command::Incidents(a) => incidents::list(&cli.config, a, &mut out),
        Command::Incident(a) => incidents::show(&cli.config, a, &mut out),
        Command::Notify(a) => notify::run(&cli.config, a, &mut out),
        Command::Actions(a) => agent::actions(&cli.config, a, &mut out),
        Command::Approve(a) => agent::approve(&cli.config, a),
        Command::Deny(a) => agent::deny(&cli.config, a),
        Command::Agent(c) => agent::agent(&cli.config, c, &mut out),
        Command::PushToken(a) => push::token(&cli.config, a, &mut out),
        Command::Ping(a) => push::ping(&cli.config, a, &mut out),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            // Generated into memory first: clap_complete panics on a write error, and a script
            // larger than the stdout buffer would hit a closed pipe inside it.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "talon", &mut script);
            out.write_all(&script)?;
            out.flush()?;
            Ok(Exit::Ok)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Stdout for verbs: buffered, knows whether it is a terminal. Write errors propagate (so a
/// closed pipe ends the verb quietly instead of panicking like `println!`).
pub struct Out {
    inner: io::BufWriter<io::Stdout>,
    pub is_terminal: bool,
}

impl Out {
    pub fn stdout() -> Self {
        let s = io::stdout();
        let is_terminal = s.is_terminal();
        Self {
            inner: io::BufWriter::new(s),
            is_terminal,
        }
    }

    /// Write a value as pretty JSON followed by a newline.
    pub fn json<T: serde::Serialize>(&mut self, v: &T) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *self, v)?;
        writeln!(self)?;
        self.flush()
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Options for loading config from a verb.
pub fn load_options(config: &Option<PathBuf>, resolve: bool) -> crate::config::LoadOptions {
    crate::config::LoadOptions {
        config: config.clone(),
        resolve,
        ..Default::default()
    }
}

/// Print every config problem to stderr, one per line.
pub fn print_diagnostics(diags: &crate::config::diag::Diagnostics) {
    let mut e = io::stderr().lock();
    for d in &diags.items {
        let _ = writeln!(e, "{d}");
    }
}
