//! `script` probe: a shell command (`sh -c`, not a login shell); exit 0 passes. The output is
//! its exit and newest output line; a failure's detail is its newest output, stdout then
//! stderr (the line that explains a failure is often not the last one).

use super::ProbeCtx;
use crate::config::probe::script::ScriptSpec;
use crate::core::outcome::Outcome;
use crate::format::{latency, newest_excerpt};
use crate::proc::{Cmd, End, Finished};

/// Run the command under the probe's timeout; exit 0 passes.
pub async fn check(spec: &ScriptSpec, ctx: &ProbeCtx) -> Outcome {
    let run = Cmd::shell(&spec.command)
        .search_path(ctx.search_path())
        .envs(spec.env.iter())
        .capture_limit(crate::proc::DEFAULT_CAPTURE.max(ctx.detail_bytes))
        .timeout(ctx.timeout)
        .grace(ctx.grace())
        .limits(ctx.script_limits)
        .run()
        .await;
    let f = match run {
        Ok(f) => f,
        Err(e) => return Outcome::error(e.to_string()),
    };
    let last = f.last_line();
    let mut tail = if last.is_empty() {
        String::new()
    } else {
        format!(": {}", clip(&last))
    };
    if f.forks_refused > 0 {
        tail.push_str(&format!(
            " ({} forks refused by the process limit)",
            f.forks_refused
        ));
    }
    match f.end {
        End::Exited(0) => Outcome::pass(format!("exit 0{tail}")),
        End::TimedOut => Outcome::timeout(format!(
            "timed out after {} (process group stopped){tail}",
            latency(ctx.timeout)
        ))
        .with_detail(detail(&f, ctx.detail_bytes)),
        end => Outcome::fail(format!("{end}{tail}")).with_detail(detail(&f, ctx.detail_bytes)),
    }
}

/// The newest `max` bytes of what the run printed: stdout, then stderr.
fn detail(f: &Finished, max: usize) -> String {
    let mut text = f.stdout.text();
    let err = f.stderr.text();
    if !err.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&err);
    }
    newest_excerpt(text.trim_end(), max)
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
