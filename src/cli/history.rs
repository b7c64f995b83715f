//! `talon history [--probe NAME] [--since 2h] [--json]`: state changes (and, for one probe, its
//! raw results) from the store, oldest first.

use super::status::{load_config, no_state};
use super::{Exit, Out};
use crate::core::Millis;
use crate::format;
use crate::store::{ResultRow, Store, TransitionRow};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this probe's transitions and results (`system` for the system's own states).
    #[arg(long, value_name = "NAME")]
    pub probe: Option<String>,
    /// How far back: a number and a unit, e.g. 90s, 30m, 2h, 7d, 1w, 1h30m.
    #[arg(long, value_name = "AGE", default_value = "24h", value_parser = parse_age)]
    pub since: Millis,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parse an age such as `2h` or `1h30m` into milliseconds.
pub fn parse_age(s: &str) -> Result<Millis, String> {
    let bad =
        || format!("invalid age `{s}`: use a number and a unit (s, m, h, d, w), e.g. 30m, 2h, 7d");
    let s_trim = s.trim();
    if s_trim.is_empty() {
        return Err(bad());
    }
    let mut total: Millis = 0;
    let mut num = String::new();
    for c in s_trim.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit: Millis = match c {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 604_800_000,
            _ => return Err(bad()),
        };
        let n: Millis = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

#[derive(Serialize)]
struct HistoryJson<'a> {
    since: Millis,
    probe: Option<&'a str>,
    transitions: &'a [TransitionRow],
    /// Raw results, only with --probe.
    results: &'a [ResultRow],
}

pub fn run(cfg: &Option<PathBuf>, args: Args, out: &mut Out) -> anyhow::Result<Exit> {
    let c = match load_config(cfg) {
        Ok(c) => c,
        Err(e) => return Ok(e),
    };
    if let Some(p) = &args.probe
        && p != "system"
        && p != crate::core::WORKER_PROBE
        && !c.probes.iter().any(|x| &x.name == p)
    {
        let _ = writeln!(
            std::io::stderr(),
            "talon: note: no probe named `{p}` in the current config; showing its stored history"
        );
    }
    let Some(store) = Store::open_existing(&c.state_dir)? else {
        no_state(&c, args.json, out)?;
        return Ok(Exit::Ok);
    };
    let since = crate::clock::wall_ms().saturating_sub(args.since);
    let transitions = store.transitions(Some(since), args.probe.as_deref())?;
    let results = match &args.probe {
        Some(p) => store.results(Some(since), Some(p))?,
        None => Vec::new(),
    };
    if args.json {
        out.json(&HistoryJson {
            since,
            probe: args.probe.as_deref(),
            transitions: &transitions,
            results: &results,
        })?;
        return Ok(Exit::Ok);
    }
    if transitions.is_empty() && results.is_empty() {
        writeln!(out, "no history since {}", format::utc(since))?;
        out.flush()?;
        return Ok(Exit::Ok);
    }
    // One time-ordered list of lines.
    let mut lines: Vec<(Millis, String)> = Vec::new();
    let w = transitions
        .iter()
        .map(|t| t.subject.len())
        .max()
        .unwrap_or(6);
    for t in &transitions {
        let inc = t.incident.map(|i| format!("  [#{i}]")).unwrap_or_default();
        let arrow = if t.from.is_empty() {
            t.to.clone()
        } else {
            format!("{} → {}", t.from, t.to)
        };
        lines.push((
            t.at,
            format!(
                "{}  {:w$}  {arrow}  {}{inc}",
                format::utc(t.at),
                t.subject,
                t.reason
            ),
        ));
    }
    for r in &results {
        let kind = if r.reprobe { "re-probe" } else { "result" };
        let line = r.output.lines().next().unwrap_or("");
        lines.push((
            r.at,
            format!(
                "{}  {:w$}  {kind} {} ({} ms)  {line}",
                format::utc(r.at),
                r.name,
                r.status,
                r.duration_ms
            ),
        ));
    }
    lines.sort_by_key(|(at, _)| *at);
    for (_, l) in lines {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::parse_age;

    #[test]
    fn ages() {
        assert_eq!(parse_age("90s"), Ok(90_000));
        assert_eq!(parse_age("2h"), Ok(7_200_000));
        assert_eq!(parse_age("1h30m"), Ok(5_400_000));
        assert_eq!(parse_age("7d"), Ok(604_800_000));
        for bad in ["", "2", "h", "2x", "-2h", "2h5", "99999999999999999999w"] {
            let e = parse_age(bad).unwrap_err();
            assert!(e.contains("invalid age"), "{bad}: {e}");
        }
    }
}
