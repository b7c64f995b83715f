//! The escalation core through its public API: invariants over random event sequences
//! (proptest), and `CoreConfig::from_config` on a real config file.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use talon::core::{
    Action, ActionId, ChannelResult, Core, CoreConfig, Event, IncidentId, Millis, NotifyKind,
    OwnHeal, PersistedState, ProbeRule, ProbeState, RunOutcome, SystemState, WORKER_PROBE,
};
use talon::core::{ProbeResult, Status};

const T0: Millis = 1_700_000_000_000;
const S: Millis = 1000;
const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    /// A scheduled cycle with these statuses for a, b, c (0 pass, 1 fail, 2 timeout, 3 blocked).
    Cycle([u8; 3]),
    Advance(u16),
    HealDone(u8),
    AgentDone(u8),
    Reprobe(bool),
    NotifyDone(bool),
    Tick,
    Ack,
    Silence(u8, u16),
    /// Save through JSON and restore, like a daemon restart.
    Restart,
    Reload,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::array::uniform3(prop_oneof![4 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)]).prop_map(Op::Cycle),
        3 => (1u16..1200).prop_map(Op::Advance),
        2 => (0u8..4).prop_map(Op::HealDone),
        2 => (0u8..4).prop_map(Op::AgentDone),
        2 => any::<bool>().prop_map(Op::Reprobe),
        2 => any::<bool>().prop_map(Op::NotifyDone),
        1 => Just(Op::Tick),
        1 => Just(Op::Ack),
        1 => (0u8..3, 0u16..900).prop_map(|(p, s)| Op::Silence(p, s)),
        1 => Just(Op::Restart),
        1 => Just(Op::Reload),
    ]
}

#[derive(Debug, Clone)]
struct Knobs {
    fail_after: [u32; 3],
    recover_after: u32,
    own_heal: bool,
    global_heal: bool,
    agents: (bool, bool),
    max_heals: u32,
    b_depends_on_c: bool,
    c_critical: bool,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        prop::array::uniform3(1u32..4),
        1u32..3,
        any::<bool>(),
        any::<bool>(),
        (any::<bool>(), any::<bool>()),
        1u32..4,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(fail_after, recover_after, own_heal, global_heal, agents, max_heals, dep, c_crit)| {
                Knobs {
                    fail_after,
                    recover_after,
                    own_heal,
                    global_heal,
                    agents,
                    max_heals,
                    b_depends_on_c: dep,
                    c_critical: c_crit,
                }
            },
        )
}

fn config(k: &Knobs) -> CoreConfig {
    let mut probes = BTreeMap::new();
    for (i, n) in NAMES.iter().enumerate() {
        probes.insert(
            n.to_string(),
            ProbeRule {
                critical: i < 2 || k.c_critical,
                fail_after: k.fail_after[i],
                recover_after: k.recover_after,
                depends_on: if i == 1 && k.b_depends_on_c {
                    vec!["c".into()]
                } else {
                    vec![]
                },
                witness: None,
                heal: (i == 0 && k.own_heal).then_some(OwnHeal::Command),
            },
        );
    }
    CoreConfig {
        heal_cooldown: 300 * S,
        max_heals_per_incident: k.max_heals,
        heal_settle: 10 * S,
        agent_cooldown: 600 * S,
        critical_threshold: 900 * S,
        sos_cooldown: 3600 * S,
        flap_threshold: 4,
        flap_window: 600 * S,
        notify_retry: 30 * S,
        global_heal: k.global_heal,
        bridge_heal: false,
        agent_cloud: k.agents.0,
        agent_local: k.agents.1,
        channels: vec!["tg".into()],
        probes,
        routing: Default::default(),
    }
}

fn outcome(i: u8) -> RunOutcome {
    match i {
        0 => RunOutcome::Exited { code: 0 },
        1 => RunOutcome::Exited { code: 1 },
        2 => RunOutcome::TimedOut,
        _ => RunOutcome::SpawnFailed {
            error: "not found".into(),
        },
    }
}

fn status(i: u8) -> Status {
    match i {
        0 => Status::Pass,
        1 => Status::Fail,
        2 => Status::Timeout,
        _ => Status::Blocked,
    }
}

/// What the runtime would be waiting on, plus everything the invariants need to remember.
#[derive(Default)]
struct World {
    heals: Vec<ActionId>,
    agents: Vec<ActionId>,
    reprobes: Vec<Vec<String>>,
    notifications: Vec<(ActionId, NotifyKind, IncidentId)>,
    heal_starts: Vec<Millis>,
    /// Distinct SOS/reminder notifications per incident: (id, created_at).
    pages: BTreeMap<IncidentId, Vec<(ActionId, Millis)>>,
    paged: BTreeSet<IncidentId>,
    heals_per_incident: BTreeMap<IncidentId, u32>,
}

fn check_step(
    core: &Core,
    k: &Knobs,
    cfg: &CoreConfig,
    at: Millis,
    actions: &[Action],
    w: &mut World,
) -> Result<(), TestCaseError> {
    for a in actions {
        match a {
            Action::RunHeal { id, incident, .. } => {
                if let Some(last) = w.heal_starts.last() {
                    prop_assert!(
                        at - last >= cfg.heal_cooldown,
                        "two heals {}s apart (cooldown {}s)",
                        (at - last) / S,
                        cfg.heal_cooldown / S
                    );
                }
                prop_assert!(
                    w.heals.is_empty() && w.agents.is_empty(),
                    "one action at a time"
                );
                w.heal_starts.push(at);
                let n = w.heals_per_incident.entry(*incident).or_default();
                *n += 1;
                prop_assert!(*n <= k.max_heals, "heal budget exceeded");
                w.heals.push(*id);
            }
            Action::RunAgent { id, .. } => {
                prop_assert!(
                    w.heals.is_empty() && w.agents.is_empty(),
                    "one action at a time"
                );
                w.agents.push(*id)
            }
            Action::Reprobe { probes, .. } => w.reprobes.push(probes.clone()),
            Action::Notify(n) => {
                match n.kind {
                    NotifyKind::Sos | NotifyKind::Reminder => {
                        let list = w.pages.entry(n.incident).or_default();
                        if !list.iter().any(|(id, _)| *id == n.id) {
                            if let Some((_, prev)) = list.last() {
                                prop_assert!(
                                    n.created_at - prev >= cfg.sos_cooldown,
                                    "two pages for incident {} {}s apart",
                                    n.incident,
                                    (n.created_at - prev) / S
                                );
                            }
                            list.push((n.id, n.created_at));
                            if n.kind == NotifyKind::Sos {
                                let inc = core.incident();
                                prop_assert!(inc.is_some_and(|i| i.id == n.incident));
                                let since = inc.and_then(|i| i.critical_since);
                                prop_assert!(
                                    since.is_some_and(|s| at - s >= cfg.critical_threshold),
                                    "SOS before critical_threshold of critical"
                                );
                            }
                        }
                    }
                    NotifyKind::Resolved => {
                        prop_assert!(
                            w.paged.contains(&n.incident),
                            "resolved for incident {} which never paged",
                            n.incident
                        );
                    }
                }
                w.notifications.retain(|(id, _, _)| *id != n.id);
                w.notifications.push((n.id, n.kind, n.incident));
            }
            _ => {}
        }
    }
    // State is healthy/degraded exactly when no incident is open; no incident means no critical
    // probe escalating (failing and not silenced); healthy means every probe passes.
    let o = core.outlook(at);
    prop_assert_eq!(
        o.state.is_ok(),
        core.incident().is_none(),
        "state {:?}",
        o.state
    );
    if core.incident().is_none() {
        for p in &o.probes {
            let escalating = p.critical
                && matches!(p.state, ProbeState::Failing | ProbeState::Flapping)
                && p.silenced_until.is_none();
            prop_assert!(
                !escalating,
                "critical probe {} failing without an incident",
                p.name
            );
        }
    }
    if o.state == SystemState::Healthy {
        prop_assert!(
            o.probes
                .iter()
                .all(|p| matches!(p.state, ProbeState::Passing | ProbeState::Pending)),
            "healthy with a probe not passing"
        );
    }
    Ok(())
}

fn run_ops(k: &Knobs, ops: &[Op]) -> Result<(), TestCaseError> {
    let cfg = config(k);
    let mut core = Core::new(cfg.clone());
    let mut at = T0;
    let mut w = World::default();
    for op in ops {
        let ev = match op {
            Op::Cycle(st) => {
                at += 60 * S;
                Event::ProbeResults {
                    at,
                    results: NAMES
                        .iter()
                        .zip(st)
                        .map(|(n, s)| result(n, status(*s), at))
                        .collect(),
                }
            }
            Op::Advance(s) => {
                at += *s as Millis * S;
                Event::Tick { at }
            }
            Op::Tick => Event::Tick { at },
            Op::HealDone(o) => {
                let Some(id) = w.heals.pop() else { continue };
                at += 5 * S;
                Event::HealFinished {
                    at,
                    id,
                    outcome: outcome(*o),
                    output: "out".into(),
                }
            }
            Op::AgentDone(o) => {
                let Some(id) = w.agents.pop() else { continue };
                at += 30 * S;
                Event::AgentFinished {
                    at,
                    id,
                    outcome: outcome(*o),
                    output: "out".into(),
                }
            }
            Op::Reprobe(pass) => {
                let Some(probes) = w.reprobes.pop() else {
                    continue;
                };
                at += 10 * S;
                let st = if *pass { Status::Pass } else { Status::Fail };
                Event::Reprobe {
                    at,
                    results: probes.iter().map(|n| result(n, st, at)).collect(),
                }
            }
            Op::NotifyDone(delivered) => {
                let Some((id, kind, incident)) = w.notifications.pop() else {
                    continue;
                };
                if *delivered && kind != NotifyKind::Resolved {
                    w.paged.insert(incident);
                }
                Event::NotifyResult {
                    at,
                    id,
                    channels: vec![ChannelResult {
                        channel: "tg".into(),
                        delivered: *delivered,
                        detail: String::new(),
                    }],
                }
            }
            Op::Ack => match core.incident() {
                Some(i) => Event::Ack { at, incident: i.id },
                None => continue,
            },
            Op::Silence(p, s) => Event::Silence {
                at,
                probe: NAMES[*p as usize].into(),
                until: at + *s as Millis * S,
            },
            Op::Restart => {
                let json = serde_json::to_string(core.persisted()).unwrap();
                let saved: PersistedState = serde_json::from_str(&json).unwrap();
                core = Core::restore(cfg.clone(), saved);
                // In-flight work is lost with the old process.
                w.heals.clear();
                w.agents.clear();
                w.reprobes.clear();
                w.notifications.clear();
                Event::Tick { at }
            }
            Op::Reload => Event::Reload {
                at,
                config: Box::new(cfg.clone()),
            },
        };
        let a = core.step(ev);
        check_step(&core, k, &cfg, at, &a, &mut w)?;
    }
    Ok(())
}

fn result(name: &str, status: Status, at: Millis) -> ProbeResult {
    ProbeResult {
        name: name.into(),
        kind: "script".into(),
        passed: status == Status::Pass,
        status,
        output: format!("{name} {}", status.as_str()),
        detail: String::new(),
        duration_ms: 1,
        started_at: at,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn escalation_invariants_hold_for_any_event_sequence(k in knobs(), ops in prop::collection::vec(op(), 1..160)) {
        run_ops(&k, &ops)?;
    }
}

/// A long sustained outage always ends in a delivered-or-retried SOS: no dead end.
#[test]
fn sustained_outage_always_pages() {
    for agents in [(false, false), (true, false), (true, true)] {
        for global_heal in [false, true] {
            let k = Knobs {
                fail_after: [1, 1, 1],
                recover_after: 1,
                own_heal: false,
                global_heal,
                agents,
                max_heals: 2,
                b_depends_on_c: false,
                c_critical: false,
            };
            let mut ops = Vec::new();
            for _ in 0..60 {
                ops.extend([
                    Op::Cycle([1, 0, 0]),
                    Op::HealDone(0),
                    Op::AgentDone(0),
                    Op::Reprobe(false),
                ]);
            }
            run_ops(&k, &ops).unwrap();
            let cfg = config(&k);
            let mut core = Core::new(cfg);
            let mut at = T0;
            let mut paged = false;
            let mut open: Vec<(bool, ActionId)> = Vec::new();
            for _ in 0..60 {
                at += 60 * S;
                let mut queue = vec![Event::ProbeResults {
                    at,
                    results: vec![result("a", Status::Fail, at)],
                }];
                while let Some(ev) = queue.pop() {
                    for a in core.step(ev) {
                        match a {
                            Action::RunHeal { id, .. } => open.push((true, id)),
                            Action::RunAgent { id, .. } => open.push((false, id)),
                            Action::Reprobe { probes, .. } => queue.push(Event::Reprobe {
                                at,
                                results: probes
                                    .iter()
                                    .map(|n| result(n, Status::Fail, at))
                                    .collect(),
                            }),
                            Action::Notify(n) if n.kind == NotifyKind::Sos => paged = true,
                            _ => {}
                        }
                    }
                    if let Some((heal, id)) = open.pop() {
                        let outcome = RunOutcome::Exited { code: 0 };
                        queue.push(if heal {
                            Event::HealFinished {
                                at,
                                id,
                                outcome,
                                output: String::new(),
                            }
                        } else {
                            Event::AgentFinished {
                                at,
                                id,
                                outcome,
                                output: String::new(),
                            }
                        });
                    }
                }
            }
            assert!(
                paged,
                "agents {agents:?} global_heal {global_heal}: never paged"
            );
            assert_eq!(core.state(), SystemState::Sos);
        }
    }
}

#[test]
fn core_config_from_a_real_config_file() {
    let d = tempfile::tempdir().unwrap();
    let main = r#"
heal_script = "true"
bridge_heal = "true"
[escalation]
heal_cooldown_secs = 120
max_heals_per_incident = 5
heal_settle_secs = 7
agent_cooldown_secs = 30
critical_threshold_secs = 60
sos_cooldown_secs = 3600
flap_threshold = 3
flap_window_secs = 300
[agent]
cloud_command = "true"
[worker]
command = ["sleep", "1"]
[notify.ops]
kind = "command"
command = "cat"
[script.api]
command = "true"
critical = true
critical_after_consecutive_failures = 4
recover_after = 2
heal = "true"
witness = "vm"
[script.vm]
command = "true"
depends_on = ["api"]
"#;
    let cfg_path = d.path().join("config.toml");
    std::fs::write(&cfg_path, main).unwrap();
    let loaded = talon::config::load(&talon::config::LoadOptions {
        config: Some(cfg_path),
        resolve: false,
        inherited_path: None,
        home: Some(d.path().to_path_buf()),
    });
    let c = loaded
        .config
        .unwrap_or_else(|| panic!("{:?}", loaded.diags));
    let cc = CoreConfig::from_config(&c);
    assert_eq!(cc.heal_cooldown, 120_000);
    assert_eq!(cc.max_heals_per_incident, 5);
    assert_eq!(cc.heal_settle, 7_000);
    assert_eq!(cc.agent_cooldown, 30_000);
    assert_eq!(cc.critical_threshold, 60_000);
    assert_eq!(cc.sos_cooldown, 3_600_000);
    assert_eq!((cc.flap_threshold, cc.flap_window), (3, 300_000));
    assert!(cc.global_heal && cc.bridge_heal && cc.agent_cloud && !cc.agent_local);
    assert_eq!(cc.channels, vec!["ops".to_string()]);
    let api = &cc.probes["api"];
    assert!(api.critical);
    assert_eq!((api.fail_after, api.recover_after), (4, 2));
    assert_eq!(api.witness.as_deref(), Some("vm"));
    assert_eq!(api.heal, Some(OwnHeal::Command));
    let vm = &cc.probes["vm"];
    assert!(!vm.critical);
    assert_eq!(vm.depends_on, vec!["api".to_string()]);
    assert_eq!(
        vm.fail_after, 3,
        "non-critical: consecutive_failures_before_escalate"
    );
    let w = &cc.probes[WORKER_PROBE];
    assert!(w.critical);
    assert_eq!(w.heal, Some(OwnHeal::RestartWorker));
}
