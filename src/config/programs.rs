//! Every program Talon will run, resolved on the compiled PATH ([`super::path`]) — the check
//! `talon validate` makes so that a tool missing from a service manager's minimal PATH is
//! caught before it matters. Platform availability of probe kinds is checked here too.

use super::diag::{self, Diagnostics, Source};
use super::path::program_of_shell;
use super::probe::{Heal, ProbeConfig};
use super::tomlx::{self, Value};
use super::{Config, ResolvedProgram};

/// Resolve every program; a missing one is an error naming the program, the key and the PATH
/// searched.
pub(super) fn resolve_programs(
    c: &Config,
    main_src: &Source,
    main_root: &Value<'_>,
    services_src: Option<&Source>,
    diags: &mut Diagnostics,
) -> Vec<ResolvedProgram> {
    let mut out = Vec::new();
    let path_env = c.search_path.to_env();
    for (program, key) in main_programs(c) {
        let found = c.search_path.resolve(&program);
        if found.is_none() {
            let span = tomlx::path_span(main_root, &key)
                .or_else(|| tomlx::path_span(main_root, key.split('.').next().unwrap_or("")));
            let msg = if program == "osascript"
                && key.starts_with("notify.")
                && !cfg!(target_os = "macos")
            {
                "iMessage channels send only on macOS (through osascript); use --no-resolve to check a macOS host's config".to_string()
            } else {
                format!(
                    "program `{program}` not found on Talon's PATH ({path_env}); add its directory to `path = [...]`"
                )
            };
            diags.error(main_src, span, &key, msg);
        }
        out.push(ResolvedProgram {
            program,
            key,
            path: found,
        });
    }
    for p in &c.probes {
        let src = if p.defined_at.starts_with(&main_src.name) {
            Some(main_src)
        } else {
            services_src
        };
        probe_programs(c, p, src, &path_env, diags, &mut out);
    }
    out
}

/// (program, key) of every command the main config names: the worker and its secrets, the
/// heals, the agents and the notify channels.
fn main_programs(c: &Config) -> Vec<(String, String)> {
    let mut wanted: Vec<(String, String)> = Vec::new();
    if let Some(w) = &c.worker
        && let Some(p) = w.command.first()
        && !p.trim().is_empty()
    {
        wanted.push((p.clone(), "worker.command".into()));
        for (n, s) in &w.secrets {
            if let Some(p) = program_of_shell(&s.command) {
                wanted.push((p, format!("worker.secrets.{n}.command")));
            }
        }
    }
    for (key, cmd) in [
        ("heal_script", &c.heal_script),
        ("bridge_heal", &c.bridge_heal),
        ("agent.cloud_command", &c.agent.cloud_command),
        ("agent.local_command", &c.agent.local_command),
    ] {
        if let Some(p) = cmd.as_deref().and_then(program_of_shell) {
            wanted.push((p, key.into()));
        }
    }
    for a in &c.actions {
        if let Some(p) = program_of_shell(&a.command) {
            wanted.push((p, format!("actions.{}.command", a.name)));
        }
    }
    for ch in &c.notify {
        for (p, k) in ch.programs() {
            wanted.push((p, format!("notify.{}.{k}", ch.name)));
        }
    }
    wanted
}

/// One probe: its kind available on this platform, and the programs it runs (its kind's and its
/// own `heal`'s), reported at the probe's section.
fn probe_programs(
    c: &Config,
    p: &ProbeConfig,
    src: Option<&Source>,
    path_env: &str,
    diags: &mut Diagnostics,
    out: &mut Vec<ResolvedProgram>,
) {
    let path = format!("{}.{}", p.kind.name(), p.name);
    let line = p
        .defined_at
        .rsplit(':')
        .next()
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0);
    let file = src
        .map(|s| s.name.clone())
        .unwrap_or_else(|| p.defined_at.clone());
    let push = |diags: &mut Diagnostics, key: String, msg: String| {
        diags.items.push(diag::Diagnostic {
            severity: diag::Severity::Error,
            file: file.clone(),
            line,
            column: 1,
            key,
            message: msg,
        })
    };
    if let Err(reason) = p.kind.available() {
        push(
            diags,
            path.clone(),
            format!(
                "unavailable on this platform: {reason} (use --no-resolve to check a config for another host)"
            ),
        );
        return;
    }
    let mut progs = p.kind.programs();
    if let Some(Heal::Command(h)) = &p.heal
        && let Some(prog) = program_of_shell(h)
    {
        progs.push((prog, "heal"));
    }
    for (program, k) in progs {
        let key = format!("{path}.{k}");
        let found = c.search_path.resolve(&program);
        if found.is_none() {
            push(
                diags,
                key.clone(),
                format!(
                    "program `{program}` not found on Talon's PATH ({path_env}); add its directory to `path = [...]`"
                ),
            );
        }
        out.push(ResolvedProgram {
            program,
            key,
            path: found,
        });
    }
}
