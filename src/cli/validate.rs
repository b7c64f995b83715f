//! `talon validate`: check both config files and resolve every program on the compiled PATH.

use super::{Exit, Out, load_options};
use crate::config::{self, EMBEDDED_NAME};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Print a JSON report.
    #[arg(long)]
    pub json: bool,
    /// Skip checks that depend on this host (PATH resolution, platform availability), e.g. to
    /// check a macOS host's config on Linux.
    #[arg(long)]
    pub no_resolve: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    config_path: Option<String>,
    services_path: Option<String>,
    probe_counts: BTreeMap<String, usize>,
    path: Vec<String>,
    errors: Vec<&'a config::diag::Diagnostic>,
    warnings: Vec<&'a config::diag::Diagnostic>,
}

pub fn run(cfg: &Option<PathBuf>, args: Args, out: &mut Out) -> anyhow::Result<Exit> {
    let loaded = config::load(&load_options(cfg, !args.no_resolve));
    let mut counts = BTreeMap::new();
    if let Some(c) = &loaded.config {
        for p in &c.probes {
            *counts.entry(p.kind.name().to_string()).or_insert(0) += 1;
        }
    }
    let ok = loaded.config.is_some();
    let search: Vec<String> = loaded
        .config
        .as_ref()
        .map(|c| {
            c.search_path
                .dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    let config_path = loaded.main_path.as_ref().map(|p| p.display().to_string());
    if args.json {
        let report = Report {
            ok,
            config_path: config_path.or_else(|| Some(EMBEDDED_NAME.to_string())),
            services_path: loaded
                .services_path
                .as_ref()
                .map(|p| p.display().to_string()),
            probe_counts: counts,
            path: search,
            errors: loaded.diags.errors().collect(),
            warnings: loaded.diags.warnings().collect(),
        };
        out.json(&report)?;
        return Ok(if ok { Exit::Ok } else { Exit::Error });
    }
    writeln!(
        out,
        "config:   {}",
        config_path.as_deref().unwrap_or(EMBEDDED_NAME)
    )?;
    if let Some(s) = &loaded.services_path {
        let note = if s.exists() { "" } else { " (does not exist)" };
        writeln!(out, "services: {}{note}", s.display())?;
    }
    for d in loaded.diags.items.iter() {
        writeln!(out, "{d}")?;
    }
    if let Some(c) = &loaded.config {
        let total: usize = counts.values().sum();
        let by_kind: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(
            out,
            "probes:   {total}{}",
            if total > 0 {
                format!(" ({})", by_kind.join(", "))
            } else {
                String::new()
            }
        )?;
        if let Some(w) = &c.worker {
            writeln!(out, "worker:   {}", w.command.join(" "))?;
        }
        writeln!(out, "channels: {}", c.notify.len())?;
        if !args.no_resolve {
            let n = loaded.programs.len();
            writeln!(out, "programs: {n} resolved on Talon's PATH")?;
        }
        writeln!(out, "ok")?;
    } else {
        let n = loaded.diags.errors().count();
        writeln!(out, "invalid: {n} error{}", if n == 1 { "" } else { "s" })?;
    }
    out.flush()?;
    Ok(if ok { Exit::Ok } else { Exit::Error })
}
