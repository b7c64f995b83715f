//! Helper processes for tests that need a second process: one that holds the single-instance
//! lock, and a store writer to SIGKILL mid-burst. They were hidden `talon` verbs; they live in
//! the test binary so the shipped `talon` has no test-only commands.
//!
//! [`command`] runs this test binary again (`std::env::current_exe()`) with only the ignored
//! test named after the helper, its arguments in `TALON_TEST_HELPER_ARGS`. The helper writes
//! its protocol lines to stdout (after libtest's own `running 1 test`) and ends the process
//! itself with its exit code. Run without that variable (`--run-ignored`), each is a no-op.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use talon::core::{
    Action, ChannelResult, Core, CoreConfig, Event, Millis, OwnHeal, ProbeResult, ProbeRule,
    RunOutcome, Status,
};
use talon::store::{Batch, Store, StoreWriter, lock};

const ARGS_ENV: &str = "TALON_TEST_HELPER_ARGS";

/// A command that runs the helper `name` (a test in this module) with `args`.
pub(crate) fn command(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("the test binary's path"));
    c.args([
        "--exact",
        &format!("helper::{name}"),
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        // Quiet: no `test NAME ... ` prefix in front of the helper's first line.
        "-q",
    ])
    .env(ARGS_ENV, serde_json::to_string(args).unwrap());
    c
}

/// The helper's arguments; `None` when run as a plain (ignored) test.
fn args() -> Option<Vec<String>> {
    let a = std::env::var(ARGS_ENV).ok()?;
    Some(serde_json::from_str(&a).expect("helper arguments"))
}

/// End the helper process: flush stdout, exit with `code` (libtest never prints its summary).
fn exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// `hold_lock DIR`: take the single-instance lock on DIR, print `locked PID`, hold it until stdin
/// closes. Exit 2 with the error on stderr when it is held.
#[test]
#[ignore = "a helper process, started by other tests"]
fn hold_lock() {
    let Some(args) = args() else { return };
    let [dir] = &args[..] else {
        panic!("usage: hold_lock DIR")
    };
    let l = match lock::acquire(Path::new(dir)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hold_lock: {e}");
            exit(2)
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "locked {}", std::process::id()).unwrap();
    out.flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(l);
    exit(0)
}

/// Start of the burst's simulated clock.
const BURST_T0: Millis = 1_700_000_000_000;
/// Simulated time between two probe cycles of the burst.
const BURST_STEP: Millis = 10_000;
/// Probes of the burst's cycles.
const BURST_PROBES: [&str; 3] = ["api", "db", "disk"];

fn burst_config() -> CoreConfig {
    let r = |critical: bool, fail_after: u32, heal: Option<OwnHeal>| ProbeRule {
        critical,
        fail_after,
        recover_after: 1,
        depends_on: Vec::new(),
        witness: None,
        heal,
    };
    CoreConfig {
        heal_cooldown: 30_000,
        max_heals_per_incident: 2,
        heal_settle: 1_000,
        agent_cooldown: 60_000,
        critical_threshold: 60_000,
        sos_cooldown: 120_000,
        global_heal: true,
        agent_cloud: true,
        agent_local: true,
        channels: vec!["test".into()],
        probes: [
            ("api".to_string(), r(true, 1, Some(OwnHeal::Command))),
            ("db".to_string(), r(true, 2, None)),
            ("disk".to_string(), r(false, 3, None)),
        ]
        .into_iter()
        .collect(),
        ..CoreConfig::default()
    }
}

fn burst_status(name: &str, i: u64) -> Status {
    let failing = match name {
        "api" => (i / 40) % 3 == 1,
        "db" => (i / 55) % 4 == 2,
        _ => (i / 7) % 2 == 1,
    };
    if failing { Status::Fail } else { Status::Pass }
}

fn results(i: u64, at: Millis, names: &[String]) -> Vec<ProbeResult> {
    names
        .iter()
        .map(|n| {
            let status = burst_status(n, i);
            ProbeResult {
                name: n.clone(),
                kind: "script".into(),
                passed: status.passed(),
                status,
                output: format!("{n} step {i}: {}", status.as_str()),
                detail: String::new(),
                duration_ms: 3,
                started_at: at,
            }
        })
        .collect()
}

/// `store_burst DIR [--steps N] [--report-every N]`: drive a real core through the store writer
/// as fast as it can (resuming from what the store holds), flushing and printing `committed I`
/// every `--report-every` steps (default 20) and `done` after `--steps` (default 1 000 000).
#[test]
#[ignore = "a helper process, started by other tests"]
fn store_burst() {
    let Some(args) = args() else { return };
    let (dir, mut steps, mut report_every) = (args[0].clone(), 1_000_000u64, 20u64);
    for pair in args[1..].chunks(2) {
        let v: u64 = pair[1].parse().expect("a number");
        match pair[0].as_str() {
            "--steps" => steps = v,
            "--report-every" => report_every = v,
            other => panic!("store_burst: unknown option {other}"),
        }
    }
    let store = Store::open(Path::new(&dir)).unwrap();
    let cfg = burst_config();
    let saved = store.load_core().unwrap();
    let start = match &saved {
        Some(s) => ((s.at - BURST_T0) / BURST_STEP + 1).max(0) as u64,
        None => 0,
    };
    let mut core = match saved {
        Some(s) => Core::restore(cfg, s.state),
        None => Core::new(cfg),
    };
    let writer = StoreWriter::spawn(store).unwrap();
    let names: Vec<String> = BURST_PROBES.iter().map(|s| s.to_string()).collect();
    let mut out = std::io::stdout().lock();
    for i in start..start + steps {
        let at = BURST_T0 + i as Millis * BURST_STEP;
        let mut queue = std::collections::VecDeque::from([Event::ProbeResults {
            at,
            results: results(i, at, &names),
        }]);
        let mut follow = 1;
        while let Some(ev) = queue.pop_front() {
            let actions = core.step(ev.clone());
            writer.send(Batch::from_step(&ev, &actions, &core, i as u32));
            for a in &actions {
                let t = at + follow * 100;
                follow += 1;
                match a {
                    Action::RunHeal { id, .. } => queue.push_back(Event::HealFinished {
                        at: t,
                        id: *id,
                        outcome: RunOutcome::Exited {
                            code: (i % 2) as i32,
                        },
                        output: format!("heal {id} output"),
                    }),
                    Action::RunAgent { id, .. } => queue.push_back(Event::AgentFinished {
                        at: t,
                        id: *id,
                        outcome: if i % 3 == 0 {
                            RunOutcome::TimedOut
                        } else {
                            RunOutcome::Exited { code: 0 }
                        },
                        output: format!("agent {id} transcript"),
                    }),
                    Action::Reprobe { probes, .. } => queue.push_back(Event::Reprobe {
                        at: t,
                        results: results(i, t, probes),
                    }),
                    Action::Notify(n) => queue.push_back(Event::NotifyResult {
                        at: t,
                        id: n.id,
                        channels: vec![ChannelResult {
                            channel: "test".into(),
                            delivered: i % 4 != 0,
                            detail: String::new(),
                        }],
                    }),
                    _ => {}
                }
            }
            if follow > 90 {
                break;
            }
        }
        if (i + 1) % report_every == 0 {
            writer.flush().unwrap();
            writeln!(out, "committed {i}").unwrap();
            out.flush().unwrap();
        }
    }
    writer.close().unwrap();
    writeln!(out, "done").unwrap();
    drop(out);
    exit(0)
}
