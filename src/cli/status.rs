//! `talon status [--json]` (and `talon --status`): state, since when, open incident, failing
//! probes, the next escalation step and when it is due — the running daemon's live view when it
//! answers, else read from the store, creating nothing. `--json` prints `/status`'s schema
//! ([`StatusSnapshot`]) either way, with `source` saying which. Exit 0 healthy/degraded, 1
//! otherwise (including "no state yet").

use super::{Exit, Out, load_options, print_diagnostics};
use crate::config::{self, Config};
use crate::core::{Core, CoreConfig, Millis};
use crate::format;
use crate::server::snapshot::StatusSnapshot;
use crate::store::Store;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The fleet view: read `/status` of each Talon at these URLs (`http://web-1:9999`) and print
    /// one line per host; no config or state dir is read. Read-only.
    #[arg(long, num_args = 1.., value_name = "URL")]
    pub remote: Vec<String>,
    /// With --remote: a file holding a bearer token to send (for Talons behind a proxy that asks
    /// for one); never given on the command line.
    #[arg(long, value_name = "PATH", requires = "remote")]
    pub token_file: Option<PathBuf>,
}

/// `2026-11-28 00:43:35Z (12m ago)` / `(in 3m)`.
pub(super) fn fmt_when(ms: Millis, now: Millis) -> String {
    let d = format::duration_ms((ms - now).abs());
    if ms <= now {
        format!("{} ({d} ago)", format::utc(ms))
    } else {
        format!("{} (in {d})", format::utc(ms))
    }
}

/// Load the config for a read-only verb; diagnostics are printed and `Err(Exit::Error)` returned
/// when it is invalid.
pub(super) fn load_config(cfg: &Option<PathBuf>) -> Result<Config, Exit> {
    let loaded = config::load(&load_options(cfg, false));
    match loaded.config {
        Some(c) => Ok(c),
        None => {
            print_diagnostics(&loaded.diags);
            Err(Exit::Error)
        }
    }
}

#[derive(Serialize)]
struct NoState<'a> {
    state: Option<()>,
    message: &'a str,
    state_dir: String,
}

/// Print "no state yet" (or its JSON form).
pub(super) fn no_state(c: &Config, json: bool, out: &mut Out) -> anyhow::Result<()> {
    let msg = "no state yet (the daemon has not run with this state dir)";
    if json {
        out.json(&NoState {
            state: None,
            message: msg,
            state_dir: c.state_dir.display().to_string(),
        })?;
    } else {
        writeln!(out, "{msg}: {}", c.state_dir.display())?;
        out.flush()?;
    }
    Ok(())
}

pub fn run(cfg: &Option<PathBuf>, args: Args, out: &mut Out) -> anyhow::Result<Exit> {
    if !args.remote.is_empty() {
        return super::remote::run(&args.remote, args.token_file.as_deref(), args.json, out);
    }
    let c = match load_config(cfg) {
        Ok(c) => c,
        Err(e) => return Ok(e),
    };
    if let Some(snap) = live(&c) {
        return print_live(&c, &snap, args.json, out);
    }
    let Some(store) = Store::open_existing(&c.state_dir)? else {
        no_state(&c, args.json, out)?;
        return Ok(Exit::Unhealthy);
    };
    let Some(saved) = store.load_core()? else {
        no_state(&c, args.json, out)?;
        return Ok(Exit::Unhealthy);
    };
    let core = Core::restore(CoreConfig::from_config(&c), saved.state);
    let now = crate::clock::wall_ms();
    if args.json {
        // The daemon's `/status` schema, from what the store knows.
        let mut snap = StatusSnapshot::from_core(&core, &c, now);
        snap.updated_at_unix = saved.at.div_euclid(1000);
        return print_json(&c, &snap, "store", out);
    }
    let o = core.outlook(now);
    let exit = if o.state.is_ok() {
        Exit::Ok
    } else {
        Exit::Unhealthy
    };
    writeln!(
        out,
        "state:    {} since {}",
        o.state,
        fmt_when(o.since, now)
    )?;
    writeln!(out, "saved:    {}", fmt_when(saved.at, now))?;
    match &o.incident {
        Some(i) => {
            let probes: Vec<&str> = i.probes.iter().map(String::as_str).collect();
            let mut flags = Vec::new();
            if let Some(p) = i.paged_at {
                flags.push(format!("paged {}", format::utc(p)));
            }
            if let Some(a) = i.acked_at {
                flags.push(format!("acknowledged {}", format::utc(a)));
            }
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", flags.join(", "))
            };
            writeln!(
                out,
                "incident: #{} opened {}: {}{flags}",
                i.id,
                fmt_when(i.opened_at, now),
                probes.join(", ")
            )?;
            writeln!(
                out,
                "          heals {} of {}, agent runs {}",
                i.heals,
                core.config().max_heals_per_incident,
                i.agents
            )?;
        }
        None => writeln!(out, "incident: none open")?,
    }
    if !o.steps_reached.is_empty() {
        writeln!(out, "reached:  {}", o.steps_reached.join(", "))?;
    }
    for w in o.maintenance.iter().filter(|w| w.active_until.is_some()) {
        writeln!(
            out,
            "maintenance: {} ({}) until {}",
            w.name,
            w.probes.join(", "),
            fmt_when(w.active_until.unwrap_or_default(), now)
        )?;
    }
    if let Some(n) = &o.next {
        match n.due {
            Some(d) if d > now => writeln!(out, "next:     {} at {}", n.what, fmt_when(d, now))?,
            Some(_) => writeln!(out, "next:     {} (due now)", n.what)?,
            None => writeln!(out, "next:     {}", n.what)?,
        }
    }
    if !o.failing.is_empty() {
        writeln!(out, "not passing:")?;
        let w = o.failing.iter().map(|f| f.name.len()).max().unwrap_or(0);
        for f in &o.failing {
            let st = f.status.map(|s| s.as_str()).unwrap_or("-");
            let state = o
                .probes
                .iter()
                .find(|p| p.name == f.name)
                .map(|p| p.state.as_str())
                .unwrap_or("-");
            let line = f.output.lines().next().unwrap_or("");
            writeln!(out, "  {:w$}  {state:10}  last {st}: {line}", f.name)?;
        }
    }
    let mut counts = std::collections::BTreeMap::new();
    for p in &o.probes {
        *counts.entry(p.state.as_str()).or_insert(0) += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    writeln!(out, "probes:   {} ({})", o.probes.len(), summary.join(", "))?;
    print_pending(out, &o.pending_notifications)?;
    let p = core.persisted();
    let approvals = core
        .incident()
        .map(|i| i.approvals.clone())
        .unwrap_or_default();
    print_guard(out, p.breaker_open, p.agent_misses, &approvals, now)?;
    out.flush()?;
    Ok(exit)
}

/// The worker in one line: `running (pid 7330), 1 restart`.
fn worker_line(w: &crate::server::snapshot::WorkerStatus) -> String {
    let pid = w.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    let plural = if w.restarts == 1 { "" } else { "s" };
    format!("{}{pid}, {} restart{plural}", w.state, w.restarts)
}

/// `stop by cli at 2026-12-03 02:13:05Z: worker stopped: pid 4242 (signal 15)`.
fn operator_line(a: &crate::server::snapshot::OperatorAction) -> String {
    format!(
        "{} by {} at {}: {}{}",
        a.action,
        a.by,
        crate::format::utc(a.at_unix * 1000),
        if a.ok { "" } else { "failed: " },
        a.result
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_line_shows_the_pid_not_an_option() {
        let mut w = crate::server::snapshot::WorkerStatus {
            pid: Some(7330),
            state: "running".into(),
            restarts: 1,
            last_exit: None,
            since_unix: None,
            operator_actions: Vec::new(),
        };
        assert_eq!(worker_line(&w), "running (pid 7330), 1 restart");
        w.pid = None;
        w.state = "backoff".into();
        w.restarts = 3;
        assert_eq!(worker_line(&w), "backoff, 3 restarts");
    }

    #[test]
    fn times_render_in_utc() {
        assert_eq!(format::utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(format::utc(1_700_000_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(format::utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(fmt_when(1000, 61_000), "1970-01-01 00:00:01Z (1m ago)");
    }
}

/// The running daemon's own view (`GET /status` on its loopback bind), when it answers quickly.
fn live(c: &Config) -> Option<StatusSnapshot> {
    if !c.health.enabled {
        return None;
    }
    let url = format!("http://{}/status", c.health.bind);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let client = crate::net::client()
            .timeout(std::time::Duration::from_millis(800))
            .build()
            .ok()?;
        let resp = client.get(&url).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    })
}

/// `talon status --json`: the daemon's `/status` body, whether it came from the daemon or was
/// rebuilt from the store, plus where it came from.
#[derive(Serialize)]
struct StatusJson<'a> {
    #[serde(flatten)]
    snapshot: &'a StatusSnapshot,
    /// Where this view came from: `daemon` (live) or `store` (the daemon is not answering).
    source: &'static str,
    state_dir: String,
}

fn exit_for(s: &StatusSnapshot) -> Exit {
    if s.state.is_ok() {
        Exit::Ok
    } else {
        Exit::Unhealthy
    }
}

fn print_json(
    c: &Config,
    s: &StatusSnapshot,
    source: &'static str,
    out: &mut Out,
) -> anyhow::Result<Exit> {
    out.json(&StatusJson {
        snapshot: s,
        source,
        state_dir: c.state_dir.display().to_string(),
    })?;
    Ok(exit_for(s))
}

fn print_live(c: &Config, s: &StatusSnapshot, json: bool, out: &mut Out) -> anyhow::Result<Exit> {
    if json {
        return print_json(c, s, "daemon", out);
    }
    let exit = exit_for(s);
    let now = crate::clock::wall_ms();
    writeln!(
        out,
        "state:    {} since {} (live, from the daemon)",
        s.state.as_str(),
        fmt_when(s.since_unix * 1000, now)
    )?;
    match &s.incident {
        Some(i) => writeln!(
            out,
            "incident: #{} opened {}: {}{}",
            i.id,
            fmt_when(i.started_unix * 1000, now),
            i.failing_probes.join(", "),
            match (&i.acked_by, i.acked_at_unix) {
                (Some(by), Some(at)) =>
                    format!(" (acknowledged by {by} {})", fmt_when(at * 1000, now)),
                _ if i.acknowledged => " (acknowledged)".to_string(),
                _ => String::new(),
            }
        )?,
        None => writeln!(out, "incident: none open")?,
    }
    for p in &s.probes {
        if let Some(sl) = &p.silenced {
            let by = sl
                .by
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default();
            let why = sl
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            writeln!(
                out,
                "silenced: {} until {}{by}{why}",
                p.name,
                crate::format::utc(sl.until_unix * 1000)
            )?;
        }
    }
    let failing: Vec<&str> = s.failed_probes().map(|p| p.name.as_str()).collect();
    writeln!(
        out,
        "probes:   {} ({} failing{})",
        s.probes.len(),
        failing.len(),
        if failing.is_empty() {
            String::new()
        } else {
            format!(": {}", failing.join(", "))
        }
    )?;
    if let Some(w) = &s.worker {
        writeln!(out, "worker:   {}", worker_line(w))?;
        if let Some(a) = w.operator_actions.last() {
            writeln!(out, "          last operator action: {}", operator_line(a))?;
        }
    }
    if !s.escalation_steps.is_empty() {
        writeln!(out, "reached:  {}", s.escalation_steps.join(", "))?;
    }
    for w in s.maintenance.iter().filter(|w| w.active_until.is_some()) {
        writeln!(
            out,
            "maintenance: {} ({}) until {}",
            w.name,
            w.probes.join(", "),
            fmt_when(w.active_until.unwrap_or_default(), now)
        )?;
    }
    if let Some(n) = &s.next_escalation {
        writeln!(
            out,
            "next:     {} ({})",
            n.text,
            fmt_when(n.due_unix * 1000, now)
        )?;
    }
    if let Some(e) = &s.config_error {
        writeln!(
            out,
            "config:   last reload failed, running the last good config: {e}"
        )?;
    }
    if let Some(e) = &s.store_error {
        writeln!(
            out,
            "store:    writes failing ({} so far), history waits in memory until they succeed: {e}",
            s.store_write_failures
        )?;
    }
    if let Some(r) = &s.store_recovered {
        writeln!(out, "store:    at start, {r}")?;
    }
    print_pending(out, &s.pending_notifications)?;
    print_guard(
        out,
        s.agent.breaker_open,
        s.agent.misses,
        &s.agent.approvals,
        crate::clock::wall_ms(),
    )?;
    out.flush()?;
    Ok(exit)
}

/// Proposed actions waiting for a human, and an open circuit breaker.
fn print_guard(
    out: &mut impl Write,
    breaker_open: bool,
    misses: u32,
    approvals: &[crate::core::PendingApproval],
    now: Millis,
) -> std::io::Result<()> {
    for a in approvals {
        writeln!(
            out,
            "approval: #{} `{}` for incident #{} waits until {}: `talon approve {}` or `talon deny {}` ({})",
            a.id,
            a.name,
            a.incident,
            fmt_when(a.expires_at, now),
            a.id,
            a.id,
            a.reason
        )?;
    }
    if breaker_open {
        writeln!(
            out,
            "agent:    circuit breaker OPEN after {misses} runs that fixed nothing: the agent tier is skipped (`talon agent reset`)"
        )?;
    }
    Ok(())
}

/// One line per notification no channel has taken yet.
fn print_pending(
    out: &mut impl Write,
    pending: &[crate::core::Notification],
) -> std::io::Result<()> {
    for n in pending {
        writeln!(
            out,
            "undelivered: {} #{} for incident #{} (attempt {})",
            n.kind.as_str(),
            n.id,
            n.incident,
            n.attempt + 1
        )?;
    }
    Ok(())
}
