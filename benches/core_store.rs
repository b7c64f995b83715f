//! How much the decision core and the store cost per probe cycle.
//!
//! `cargo bench --bench core_store` prints:
//! - `Core::step` time for a cycle of 100 probe results (some failing, an incident running);
//! - store throughput: 100-result batches written through `StoreWriter` (one transaction per
//!   drained queue, WAL, synchronous=NORMAL), and `Store::prune` of a week of results.

use std::time::{Duration, Instant};
use talon::core::{Action, Core, CoreConfig, Event, Millis, ProbeRule, RunOutcome};
use talon::probe::{ProbeResult, Status};
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

fn main() {
    bench_core();
    bench_store();
}
