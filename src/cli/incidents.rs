//! `talon incidents [--open] [--json]` and `talon incident ID [--json]`: incidents from the
//! store, and one incident's timeline with every transition, action (and its output),
//! notification, and what the failing probes said (their result's detail).

use super::status::{load_config, no_state};
use super::{Exit, Out};
use crate::core::Millis;
use crate::format;
use crate::store::{IncidentRow, Store};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Default, clap::Args)]
pub struct ListArgs {
    /// Only incidents that are still open.
    #[arg(long)]
    pub open: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The incident's number (see `talon incidents`).
    #[arg(value_name = "ID")]
    pub id: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the incident as a `talon agent eval` case into DIR (context.json from what the
    /// probes said, the catalogue for them; expect.toml to fill in).
    #[arg(long, value_name = "DIR")]
    pub export_case: Option<PathBuf>,
}

fn summary(i: &IncidentRow, now: Millis) -> String {
    let span = match i.closed_at {
        Some(c) => format!(
            "closed  {} → {} ({})",
            format::utc(i.opened_at),
            format::utc(c),
            format::duration_ms(c - i.opened_at)
        ),
        None => format!(
            "open    {} ({} so far)",
            format::utc(i.opened_at),
            format::duration_ms(now - i.opened_at)
        ),
    };
    let mut flags = Vec::new();
    if i.paged_at.is_some() {
        flags.push("paged");
    }
    if i.acked_at.is_some() {
        flags.push("acknowledged");
    }
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!("  [{}]", flags.join(", "))
    };
    format!("#{:<4} {span}  {}{flags}", i.id, i.probes.join(", "))
}

pub fn list(cfg: &Option<PathBuf>, args: ListArgs, out: &mut Out) -> anyhow::Result<Exit> {
    let c = match load_config(cfg) {
        Ok(c) => c,
        Err(e) => return Ok(e),
    };
    let Some(store) = Store::open_existing(&c.state_dir)? else {
        no_state(&c, args.json, out)?;
        return Ok(Exit::Ok);
    };
    let rows = store.incidents(args.open)?;
    if args.json {
        out.json(&rows)?;
        return Ok(Exit::Ok);
    }
    if rows.is_empty() {
        let what = if args.open {
            "open incidents"
        } else {
            "incidents"
        };
        writeln!(out, "no {what}")?;
    }
    let now = crate::clock::wall_ms();
    for i in &rows {
        writeln!(out, "{}", summary(i, now))?;
    }
    out.flush()?;
    Ok(Exit::Ok)
}

pub fn show(cfg: &Option<PathBuf>, args: ShowArgs, out: &mut Out) -> anyhow::Result<Exit> {
    let c = match load_config(cfg) {
        Ok(c) => c,
        Err(e) => return Ok(e),
    };
    let Some(store) = Store::open_existing(&c.state_dir)? else {
        anyhow::bail!(
            "no incident #{}: no state yet in {}",
            args.id,
            c.state_dir.display()
        );
    };
    let Some(d) = store.incident(args.id)? else {
        let newest = store.incidents(false)?.first().map(|i| i.id);
        match newest {
            Some(n) => anyhow::bail!("no incident #{} (incidents are #1 to #{n})", args.id),
            None => anyhow::bail!("no incident #{}: there have been no incidents", args.id),
        }
    };
    if let Some(dir) = &args.export_case {
        export_case(&c, &d, dir)?;
        writeln!(
            out,
            "incident #{} written as an eval case to {} (fill in expect.toml)",
            args.id,
            dir.display()
        )?;
        return Ok(Exit::Ok);
    }
    if args.json {
        out.json(&d)?;
        return Ok(Exit::Ok);
    }
    let now = crate::clock::wall_ms();
    writeln!(out, "{}", summary(&d.incident, now))?;
    if let Some(r) = &d.incident.close_reason {
        writeln!(out, "resolution: {r}")?;
    }
    writeln!(out)?;
    // Merge everything into one time-ordered timeline; ties keep insertion order.
    let mut tl: Vec<(Millis, usize, String)> = Vec::new();
    let mut seq = 0usize;
    let mut push = |at: Millis, text: String| {
        tl.push((at, seq, text));
        seq += 1;
    };
    push(
        d.incident.opened_at,
        format!("opened: {}", d.incident.probes.join(", ")),
    );
    for t in &d.transitions {
        let arrow = if t.from.is_empty() {
            t.to.clone()
        } else {
            format!("{} → {}", t.from, t.to)
        };
        push(t.at, format!("{}: {arrow}: {}", t.subject, t.reason));
    }
    for a in &d.actions {
        let tier = a
            .tier
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        push(
            a.started_at,
            format!("{} #{}{tier} started: {}", a.kind, a.id, a.detail),
        );
        if let Some(end) = a.ended_at {
            let mut text = format!(
                "{} #{} finished after {}: {}",
                a.kind,
                a.id,
                format::duration_ms(end - a.started_at),
                a.exit.as_deref().unwrap_or("?")
            );
            if let Some(o) = a.output.as_deref().filter(|o| !o.trim().is_empty()) {
                for l in o.lines() {
                    text.push_str("\n      | ");
                    text.push_str(l);
                }
            }
            push(end, text);
        }
        if let Some(v) = &a.verdict {
            push(
                a.ended_at.unwrap_or(a.started_at),
                format!("{} #{} verdict: {v}", a.kind, a.id),
            );
        }
    }
    for f in &d.failures {
        let mut text = format!("probe {} {}: {}", f.name, f.status, f.output);
        for l in f.detail.lines() {
            text.push_str("\n      | ");
            text.push_str(l);
        }
        push(f.at, text);
    }
    for n in &d.notifications {
        let fate = match (n.delivered_at, n.dropped_at) {
            (Some(t), _) => format!("delivered {}", format::utc(t)),
            (_, Some(t)) => format!(
                "dropped {}: {}",
                format::utc(t),
                n.dropped_reason.as_deref().unwrap_or("")
            ),
            _ => format!("NOT delivered yet ({} attempts)", n.attempts),
        };
        push(
            n.created_at,
            format!("notify {} #{}: {fate}\n      | {}", n.kind, n.id, n.text),
        );
    }
    if let Some(c) = d.incident.closed_at {
        push(c, "closed".into());
    }
    tl.sort_by_key(|(at, seq, _)| (*at, *seq));
    for (at, _, text) in tl {
        writeln!(out, "{}  {text}", format::utc(at))?;
    }
    out.flush()?;
    Ok(Exit::Ok)
}

/// An incident as a `talon agent eval` case: the failing probes' results (newest per probe),
/// their runbooks, the catalogue offered for them, and an `expect.toml` whose `fix` lists the
/// proposed actions that were verified as fixing it (to be checked by a human).
fn export_case(
    c: &crate::config::Config,
    d: &crate::store::IncidentDetail,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    use crate::escalate::catalogue::{Catalogue, probe_kinds};
    use crate::escalate::eval::{CaseContext, LogExcerpt};
    use crate::escalate::prompt::{FailingProbe, OfferedAction};
    use anyhow::Context;
    let mut failing: Vec<FailingProbe> = Vec::new();
    for f in d.failures.iter().rev() {
        if failing.iter().any(|p| p.name == f.name) {
            continue;
        }
        let pc = c.probes.iter().find(|p| p.name == f.name);
        failing.push(FailingProbe {
            name: f.name.clone(),
            kind: f.kind.clone(),
            status: f.status.clone(),
            output: f.output.clone(),
            detail: f.detail.clone(),
            runbook: pc.and_then(|p| p.runbook.clone()),
            witness: pc.and_then(|p| p.witness.clone()),
        });
    }
    failing.reverse();
    let cat = Catalogue::from_config(c);
    let offered: Vec<OfferedAction> = cat
        .for_probes(&probe_kinds(c, &d.incident.probes))
        .into_iter()
        .map(OfferedAction::from)
        .collect();
    let fixed: Vec<String> = d
        .actions
        .iter()
        .filter(|a| a.kind == "action")
        .filter(|a| a.verdict.as_deref().is_some_and(|v| v.starts_with("fixed")))
        .filter_map(|a| {
            a.detail
                .strip_prefix("action `")
                .and_then(|r| r.split('`').next())
                .map(str::to_string)
        })
        .collect();
    let timeline: String = d
        .transitions
        .iter()
        .map(|t| {
            format!(
                "{} {}: {} -> {}: {}\n",
                format::rfc3339(t.at),
                t.subject,
                t.from,
                t.to,
                t.reason
            )
        })
        .collect();
    let ctx = CaseContext {
        title: format!(
            "incident #{} ({})",
            d.incident.id,
            d.incident.probes.join(", ")
        ),
        state: "investigating".into(),
        failing,
        logs: vec![LogExcerpt {
            title: "Incident transitions".into(),
            text: timeline,
        }],
        catalogue: offered,
        guardrails: c.agent.guardrails.clone(),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ctx_path = dir.join("context.json");
    std::fs::write(&ctx_path, serde_json::to_string_pretty(&ctx)? + "\n")
        .with_context(|| format!("writing {}", ctx_path.display()))?;
    let list = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let expect = format!(
        "# Exported from incident #{id}. Check and fill in before using it in a suite.\n\
         # Words (any, case-insensitive) a right diagnosis contains:\n\
         root_cause = []\n\
         # Actions that fix it (empty = a no-fault control: the right answer is no action).\n\
         # Pre-filled with the proposed actions whose re-probe said fixed.\n\
         fix = [{fix}]\n\
         # Actions that must never be proposed for it:\n\
         never = []\n",
        id = d.incident.id,
        fix = list(&fixed),
    );
    let exp_path = dir.join("expect.toml");
    std::fs::write(&exp_path, expect).with_context(|| format!("writing {}", exp_path.display()))?;
    Ok(())
}
