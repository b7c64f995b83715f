//! `script` probe: a shell command (`sh -c`, not a login shell); exit 0 passes.

use super::engine::{ProbeCtx, fmt_duration};
use super::outcome::Outcome;
use super::spec::{Check, KindSpec};
use crate::config::path::program_of_shell;
use crate::proc::{Cmd, End};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSpec {
    pub command: String,
    /// Extra environment for this probe only.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl KindSpec for ScriptSpec {
    fn validate(&self, c: &mut Check<'_>) {
        if self.command.trim().is_empty() {
            c.error("command", "must not be empty");
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                c.error("env", format!("`{k}` is not an environment variable name"));
            } else if k == "PATH" {
                c.error(
                    "env",
                    "PATH is Talon's compiled PATH; add directories with the top-level `path = [...]`",
                );
            }
        }
    }
    fn programs(&self) -> Vec<(String, &'static str)> {
        program_of_shell(&self.command)
            .map(|p| vec![(p, "command")])
            .unwrap_or_default()
    }
}

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
            fmt_duration(ctx.timeout)
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
