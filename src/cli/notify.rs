//! `talon notify --test [--channel NAME]`: send a test notice through the real delivery path
//! and print each channel's result. Exit 0 all delivered, 1 any failed, 2 config error or
//! unknown channel.

use super::{Exit, Out, load_options, print_diagnostics};
use crate::config;
use crate::notify::{self, Notice, NotifyCtx};
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Send a test notice (the only action for now; required so a bare `talon notify` pages
    /// nobody by accident).
    #[arg(long)]
    pub test: bool,
    /// Only this channel (a `[notify.NAME]` name); repeatable.
    #[arg(long, value_name = "NAME")]
    pub channel: Vec<String>,
    /// Print a JSON report.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cfg: &Option<PathBuf>, args: Args, out: &mut Out) -> anyhow::Result<Exit> {
    if !args.test {
        let _ = writeln!(
            std::io::stderr(),
            "talon notify: nothing to do; use `talon notify --test [--channel NAME]`"
        );
        return Ok(Exit::Error);
    }
    let loaded = config::load(&load_options(cfg, false));
    let Some(c) = loaded.config else {
        print_diagnostics(&loaded.diags);
        return Ok(Exit::Error);
    };
    let mut channels = c.notify.clone();
    if channels.is_empty() {
        let _ = writeln!(
            std::io::stderr(),
            "talon notify: no channels configured; add a [notify.NAME] table with kind = \"...\""
        );
        return Ok(Exit::Error);
    }
    if !args.channel.is_empty() {
        for want in &args.channel {
            if !channels.iter().any(|ch| &ch.name == want) {
                let names: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
                let _ = writeln!(
                    std::io::stderr(),
                    "talon notify: no channel named `{want}` (configured: {})",
                    names.join(", ")
                );
                return Ok(Exit::Error);
            }
        }
        channels.retain(|ch| args.channel.contains(&ch.name));
    }
    let redactor = Arc::new(c.redactor());
    let ctx =
        NotifyCtx::new(c.search_path.clone(), redactor).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let notice = Notice::test(c.host_name(), crate::clock::wall_ms());
    let results = rt.block_on(notify::deliver(&notice, &channels, &ctx));
    let rows: Vec<notify::DeliveryRecord> = results.iter().map(notify::Delivery::record).collect();
    let all_ok = rows.iter().all(|r| r.ok);
    if args.json {
        out.json(&rows)?;
    } else {
        let w = rows.iter().map(|r| r.channel.len()).max().unwrap_or(0);
        for r in &rows {
            match &r.error {
                None => writeln!(
                    out,
                    "ok    {:w$}  {:12}  {} ms",
                    r.channel, r.kind, r.duration_ms
                )?,
                Some(e) => writeln!(out, "FAIL  {:w$}  {:12}  {e}", r.channel, r.kind)?,
            }
        }
        out.flush()?;
    }
    Ok(if all_ok { Exit::Ok } else { Exit::Unhealthy })
}
