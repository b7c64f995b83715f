//! Hidden verbs used by the integration tests to exercise the real binary across processes:
//! `talon __hold-lock DIR` (hold the single-instance lock until stdin closes) and
//! `talon __store-burst DIR` (drive a real core through the store writer as fast as it can, so a
//! test can SIGKILL it mid-write).

use super::{Exit, Out};
use crate::core::{
    Action, ChannelResult, Core, CoreConfig, Event, Millis, OwnHeal, ProbeRule, RunOutcome,
};
use crate::core::{ProbeResult, Status};
use crate::store::{Batch, Store, StoreWriter, lock};
use std::io::{Read, Write};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct HoldLockArgs {
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct BurstArgs {
    pub dir: PathBuf,
    /// Steps to run (each is one probe cycle and the events it causes).
    #[arg(long, default_value_t = 1_000_000)]
    pub steps: u64,
    /// Flush and print `committed N` every this many steps.
    #[arg(long, default_value_t = 20)]
    pub report_every: u64,
}

/// Hold the lock, print `locked PID`, wait for stdin to close.
pub fn hold_lock(args: HoldLockArgs, out: &mut Out) -> anyhow::Result<Exit> {
    let l = lock::acquire(&args.dir)?;
    writeln!(out, "locked {}", std::process::id())?;
    out.flush()?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(l);
    Ok(Exit::Ok)
}

/// Start of the burst's simulated clock.
pub const BURST_T0: Millis = 1_700_000_000_000;
/// Simulated time between two probe cycles of the burst.
pub const BURST_STEP: Millis = 10_000;
/// Probes of the burst's cycles.
pub const BURST_PROBES: [&str; 3] = ["api", "db", "disk"];

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
                duration_ms: 3,
                started_at: at,
            }
        })
        .collect()
}

/// Drive a core through the writer; resumes from what the store holds.
pub fn store_burst(args: BurstArgs, out: &mut Out) -> anyhow::Result<Exit> {
    let store = Store::open(&args.dir)?;
    let cfg = burst_config();
    let saved = store.load_core()?;
    let start = match &saved {
        Some(s) => ((s.at - BURST_T0) / BURST_STEP + 1).max(0) as u64,
        None => 0,
    };
    let mut core = match saved {
        Some(s) => Core::restore(cfg, s.state),
        None => Core::new(cfg),
    };
    let writer = StoreWriter::spawn(store)?;
    let names: Vec<String> = BURST_PROBES.iter().map(|s| s.to_string()).collect();
    for i in start..start + args.steps {
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
        if (i + 1) % args.report_every == 0 {
            writer.flush()?;
            writeln!(out, "committed {i}")?;
            out.flush()?;
        }
    }
    writer.close()?;
    writeln!(out, "done")?;
    out.flush()?;
    Ok(Exit::Ok)
}
