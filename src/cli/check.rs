//! `talon check` (alias `talon --check`): one probe cycle with the daemon's own engine.
//! Read-only: it writes no state. Exit 0 when every probe passes, 1 when any fails (blocked
//! probes do not count: their root does), 2 on a config error or an unknown `--probe`/`--kind`.

use super::{Exit, Out, load_options, print_diagnostics};
use crate::clock::Instant;
use crate::config::probe::KINDS;
use crate::config::probe::ProbeConfig;
use crate::config::{self, diag::suggest};
use crate::core::{ProbeResult, Status};
use crate::format::latency;
use crate::probe::engine::{Engine, first_line};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Print `{ok, results: [...]}` as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run only this probe (repeatable).
    #[arg(long = "probe", value_name = "NAME")]
    pub probes: Vec<String>,
    /// Run only probes of this kind.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Under each failing probe, its detail: the newest output of the run, or what it was
    /// judged from (`--json` always includes it).
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    duration_ms: u64,
    results: &'a [ProbeResult],
}

pub fn run(cfg: &Option<PathBuf>, args: Args, out: &mut Out) -> anyhow::Result<Exit> {
    // No host resolution here: a missing program or a macOS-only probe on Linux is reported as
    // that probe's `error`, not as a config error that hides every other result.
    let loaded = config::load(&load_options(cfg, false));
    let Some(config) = loaded.config else {
        print_diagnostics(&loaded.diags);
        let n = loaded.diags.errors().count();
        let _ = writeln!(
            std::io::stderr(),
            "talon check: invalid config ({n} error{}); nothing was probed",
            if n == 1 { "" } else { "s" }
        );
        return Ok(Exit::Error);
    };
    let mut stderr = std::io::stderr().lock();
    for w in loaded.diags.warnings() {
        let _ = writeln!(stderr, "{w}");
    }
    let selected = match select(&config.probes, &args) {
        Ok(s) => s,
        Err(msg) => {
            let _ = writeln!(stderr, "talon check: {msg}");
            return Ok(Exit::Error);
        }
    };
    drop(stderr);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let t0 = Instant::now();
    let mut results = runtime.block_on(async {
        // `push` probes judge the pings the daemon recorded in the store.
        let engine =
            Engine::new(&config).with_pushes(crate::probe::push::Pushes::load(&config.state_dir));
        engine.run(&selected).await
    });
    // What a probe printed is masked here as in the daemon: `check` output is pasted into
    // tickets and chats.
    let redactor = config.redactor();
    for r in &mut results {
        r.redact(&redactor);
    }
    let took = t0.elapsed();
    // Subprocess groups are already reaped; don't wait on leftover blocking tasks (a hung
    // network mount in a disk probe).
    runtime.shutdown_timeout(Duration::from_millis(100));

    let ok = !results.iter().any(|r| r.status.is_failure());
    if args.json {
        out.json(&Report {
            ok,
            duration_ms: took.as_millis() as u64,
            results: &results,
        })?;
    } else {
        table(out, &results, took, args.verbose)?;
    }
    Ok(if ok { Exit::Ok } else { Exit::Unhealthy })
}

/// The probes `--probe` and `--kind` select, in config order.
fn select(all: &[ProbeConfig], args: &Args) -> Result<Vec<ProbeConfig>, String> {
    if let Some(k) = &args.kind
        && !KINDS.contains(&k.as_str())
    {
        let hint = suggest(k, KINDS.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "unknown kind `{k}`{hint}; kinds: {}",
            KINDS.join(", ")
        ));
    }
    for name in &args.probes {
        if !all.iter().any(|p| &p.name == name) {
            let hint = suggest(name, all.iter().map(|p| p.name.as_str()))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(format!("no probe named `{name}`{hint}"));
        }
    }
    Ok(all
        .iter()
        .filter(|p| args.probes.is_empty() || args.probes.contains(&p.name))
        .filter(|p| args.kind.as_deref().is_none_or(|k| p.kind.name() == k))
        .cloned()
        .collect())
}

fn table(
    out: &mut Out,
    results: &[ProbeResult],
    took: Duration,
    verbose: bool,
) -> std::io::Result<()> {
    let rows: Vec<[String; 5]> = results
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.kind.clone(),
                r.status.as_str().to_string(),
                latency(Duration::from_millis(r.duration_ms)),
                first_line(&r.output).to_string(),
            ]
        })
        .collect();
    let head = ["NAME", "KIND", "STATUS", "DURATION", "OUTPUT"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |out: &mut Out, c: [&str; 5]| {
        writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
    };
    line(out, head)?;
    for (r, result) in rows.iter().zip(results) {
        line(out, [&r[0], &r[1], &r[2], &r[3], &r[4]])?;
        if verbose && !result.detail.trim().is_empty() {
            for l in result.detail.lines() {
                writeln!(out, "    | {l}")?;
            }
        }
    }
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    let mut parts = Vec::new();
    for s in [
        Status::Pass,
        Status::Fail,
        Status::Timeout,
        Status::Error,
        Status::Blocked,
    ] {
        let n = count(s);
        if n > 0 {
            parts.push(format!("{n} {}", s.as_str()));
        }
    }
    let n = results.len();
    writeln!(
        out,
        "{n} probe{}: {} in {}",
        if n == 1 { "" } else { "s" },
        if parts.is_empty() {
            "none run".to_string()
        } else {
            parts.join(", ")
        },
        latency(took)
    )?;
    out.flush()
}

/// `talon --check ARGS` → `talon check ARGS` (the original's flag form), when `--check` comes
/// before any verb.
pub fn rewrite_alias<I: IntoIterator<Item = std::ffi::OsString>>(
    args: I,
) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = args.into_iter().collect();
    let mut i = 1;
    while i < v.len() {
        let a = v[i].to_string_lossy();
        if a == "--check" {
            v[i] = "check".into();
            break;
        }
        if a == "--config" {
            i += 2;
            continue;
        }
        if !a.starts_with('-') || a == "--" {
            break;
        }
        i += 1;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<std::ffi::OsString> {
        v.iter().map(Into::into).collect()
    }

    #[test]
    fn check_flag_becomes_the_verb() {
        assert_eq!(
            rewrite_alias(os(&["talon", "--check", "--json"])),
            os(&["talon", "check", "--json"])
        );
        assert_eq!(
            rewrite_alias(os(&["talon", "--config", "c.toml", "--check"])),
            os(&["talon", "--config", "c.toml", "check"])
        );
        // After a verb it is left to clap (which rejects it).
        assert_eq!(
            rewrite_alias(os(&["talon", "validate", "--check"])),
            os(&["talon", "validate", "--check"])
        );
    }
}
