//! `script` probe: a shell command (`sh -c`, not a login shell); exit 0 passes.

use super::ProbeCtx;
use crate::config::probe::script::ScriptSpec;
use crate::core::outcome::Outcome;
use crate::format::latency;
use crate::proc::{Cmd, End};

/// Run the command under the probe's timeout; exit 0 passes.
pub async fn check(spec: &ScriptSpec, ctx: &ProbeCtx) -> Outcome {
    let run = Cmd::shell(&spec.command)
        .search_path(ctx.search_path())
        .envs(spec.env.iter())
        .timeout(ctx.timeout)
        .grace(ctx.grace())
        .run()
        .await;
    let f = match run {
        Ok(f) => f,
        Err(e) => return Outcome::error(e.to_string()),
    };
    let last = f.last_line();
    let tail = if last.is_empty() {
        String::new()
    } else {
        format!(": {}", clip(&last))
    };
    match f.end {
        End::Exited(0) => Outcome::pass(format!("exit 0{tail}")),
        End::TimedOut => Outcome::timeout(format!(
            "timed out after {} (process group stopped){tail}",
            latency(ctx.timeout)
        )),
        end => Outcome::fail(format!("{end}{tail}")),
    }
}

/// Keep one output line short enough for a table and a log line.
fn clip(s: &str) -> String {
    const MAX: usize = 300;
    if s.chars().count() > MAX {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    } else {
        s.to_string()
    }
}
