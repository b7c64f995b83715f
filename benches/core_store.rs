//! How much the decision core and the store cost per probe cycle.
//!
//! `cargo bench --bench core_store` prints:
//! - `Core::step` time for a cycle of 100 probe results (some failing, an incident running);
//! - store throughput: 100-result batches written through `StoreWriter` (one transaction per
//!   drained queue, WAL, synchronous=NORMAL), and `Store::prune` of a week of results;
//! - store growth: one probe's results for 9 days at a 30 s and a 10 s interval through
//!   `Store::apply_all`, pruned once an hour with the default retention (`store.retention_days`
//!   = 7) as the daemon does; the file size (WAL checkpointed) after each day, bytes per stored
//!   result and MB per probe per day, and the size retention caps it at.

use std::time::{Duration, Instant};
use talon::core::{Action, Core, CoreConfig, Event, Millis, ProbeRule, RunOutcome};
use talon::core::{ProbeResult, Status};
use talon::store::{Batch, Store, StoreWriter};

const PROBES: usize = 100;
const STEP: Millis = 60_000;

fn config() -> CoreConfig {
    CoreConfig {
        global_heal: true,
        agent_cloud: true,
        agent_local: true,
        channels: vec!["ops".into()],
        probes: (0..PROBES)
            .map(|i| {
                (
                    format!("p{i:03}"),
                    ProbeRule {
                        critical: i % 3 == 0,
                        fail_after: 2,
                        recover_after: 1,
                        depends_on: if i % 10 == 5 {
                            vec![format!("p{:03}", i - 1)]
                        } else {
                            vec![]
                        },
                        witness: None,
                        heal: None,
                    },
                )
            })
            .collect(),
        ..CoreConfig::default()
    }
}

fn cycle(i: u64, at: Millis) -> Vec<ProbeResult> {
    (0..PROBES)
        .map(|p| {
            // p000 fails for long stretches (an incident); a few others flap.
            let failing = (p == 0 && (i / 50) % 2 == 1) || (p % 17 == 3 && i.is_multiple_of(3));
            let status = if failing { Status::Fail } else { Status::Pass };
            ProbeResult {
                name: format!("p{p:03}"),
                kind: "http".into(),
                passed: !failing,
                status,
                output: format!("HTTP {} in 3 ms", if failing { 503 } else { 200 }),
                detail: String::new(),
                duration_ms: 3,
                started_at: at,
            }
        })
        .collect()
}

/// Answer heals/agents/notifications at once so the ladder keeps moving.
fn follow_ups(actions: &[Action], at: Millis) -> Vec<Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RunHeal { id, .. } => Some(Event::HealFinished {
                at,
                id: *id,
                outcome: RunOutcome::Exited { code: 0 },
                output: "ok".into(),
            }),
            Action::RunAgent { id, .. } => Some(Event::AgentFinished {
                at,
                id: *id,
                outcome: RunOutcome::Exited { code: 0 },
                output: "ok".into(),
            }),
            _ => None,
        })
        .collect()
}

fn bench_core() {
    let mut core = Core::new(config());
    let t0: Millis = 1_700_000_000_000;
    let n = 5_000u64;
    let mut spent = Duration::ZERO;
    let mut steps = 0u64;
    for i in 0..n {
        let at = t0 + i as Millis * STEP;
        let ev = Event::ProbeResults {
            at,
            results: cycle(i, at),
        };
        let start = Instant::now();
        let a = core.step(ev);
        for f in follow_ups(&a, at + 1) {
            core.step(f);
            steps += 1;
        }
        spent += start.elapsed();
        steps += 1;
    }
    println!(
        "core: {n} cycles of {PROBES} results ({steps} steps) in {:.1} ms: {:.1} µs per cycle",
        spent.as_secs_f64() * 1e3,
        spent.as_secs_f64() * 1e6 / n as f64
    );
}

fn bench_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = StoreWriter::spawn(store).expect("writer");
    let mut core = Core::new(config());
    let t0: Millis = 1_700_000_000_000;
    let n = 2_000u64;
    let mut send = Duration::ZERO;
    let start = Instant::now();
    for i in 0..n {
        let at = t0 + i as Millis * STEP;
        let ev = Event::ProbeResults {
            at,
            results: cycle(i, at),
        };
        let a = core.step(ev.clone());
        let b = Batch::from_step(&ev, &a, &core, 0);
        let s = Instant::now();
        writer.send(b);
        send += s.elapsed();
    }
    writer.flush().expect("flush");
    let total = start.elapsed();
    writer.close().expect("close");
    let size = std::fs::metadata(dir.path().join("talon.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "store: {n} batches of {PROBES} results written in {:.0} ms ({:.0} batches/s); send() {:.2} µs on average; db {:.1} MiB",
        total.as_secs_f64() * 1e3,
        n as f64 / total.as_secs_f64(),
        send.as_secs_f64() * 1e6 / n as f64,
        size as f64 / 1048576.0
    );
    let mut store = Store::open(dir.path()).expect("reopen");
    let start = Instant::now();
    let pruned = store
        .prune(t0 + n as Millis * STEP, Duration::from_secs(n / 2 * 60))
        .expect("prune");
    println!(
        "store: prune of {} results took {:.1} ms",
        pruned.probe_results,
        start.elapsed().as_secs_f64() * 1e3
    );
}

/// The database file's size with everything checkpointed into it.
fn db_bytes(store: &Store) -> u64 {
    store
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
    std::fs::metadata(store.path())
        .map(|m| m.len())
        .unwrap_or(0)
}

/// One probe, `interval_secs` apart, for `days` days: the daemon's path (one batch per result,
/// hourly prune with the default 7-day retention), one transaction per simulated hour so it runs
/// fast. Prints the size after each day.
fn bench_growth(interval_secs: i64, days: i64) {
    const DAY: Millis = 86_400_000;
    let retention = Duration::from_secs(7 * 86_400);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path()).expect("open");
    let empty = db_bytes(&store);
    let t0: Millis = 1_700_000_000_000;
    let step = interval_secs * 1000;
    let per_hour = 3_600_000 / step;
    let per_day = DAY / step;
    let mut sizes = Vec::new();
    let mut at = t0;
    for day in 1..=days {
        for _hour in 0..24 {
            let batches: Vec<Batch> = (0..per_hour)
                .map(|i| {
                    let when = at + i * step;
                    Batch {
                        at: when,
                        results: vec![ProbeResult {
                            name: "api".into(),
                            kind: "http".into(),
                            passed: true,
                            status: Status::Pass,
                            // A typical result line (the daemon stores the probe's one-line output).
                            output: format!(
                                "HTTP 200 from http://127.0.0.1:8080/health in {} ms",
                                3 + i % 20
                            ),
                            detail: String::new(),
                            duration_ms: 3 + (i % 20) as u64,
                            started_at: when,
                        }],
                        ..Batch::default()
                    }
                })
                .collect();
            store.apply_all(&batches).expect("apply");
            at += per_hour * step;
            store.prune(at, retention).expect("prune");
        }
        let bytes = db_bytes(&store);
        let rows = store.counts().expect("counts").probe_results;
        sizes.push((day, bytes, rows));
    }
    let (_, day1, rows1) = sizes[0];
    let per_result = (day1 - empty) as f64 / rows1 as f64;
    println!(
        "growth @ {interval_secs:>2} s: {per_day} results/probe/day; empty db {empty} B; after day 1 {day1} B \
         = {per_result:.0} B per result = {:.2} MB per probe per day",
        per_result * per_day as f64 / 1e6
    );
    let line: Vec<String> = sizes
        .iter()
        .map(|(d, b, r)| format!("d{d} {:.2} MB ({r} rows)", *b as f64 / 1e6))
        .collect();
    println!(
        "  size by day (7-day retention, hourly prune): {}",
        line.join(", ")
    );
    let (_, last, _) = sizes[sizes.len() - 1];
    println!(
        "  capped at {:.2} MB per probe (the file keeps its freed pages for reuse; no VACUUM)",
        last as f64 / 1e6
    );
}

fn main() {
    // Test runners run bench binaries too: do nothing unless `cargo bench` asked.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("core_store: a benchmark; run it with `cargo bench --bench core_store`");
        return;
    }
    bench_core();
    bench_store();
    bench_growth(30, 9);
    bench_growth(10, 9);
}
