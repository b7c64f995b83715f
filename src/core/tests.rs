//! Table tests of the core: events in, actions out. One test per rule and per hole of the
//! original listed in the issue.

use super::*;
use crate::core::{ProbeResult, Status};
use Status::{Blocked, Fail, Pass, Timeout};

const T0: Millis = 1_700_000_000_000;
const S: Millis = 1000;

fn rule(critical: bool, fail_after: u32) -> ProbeRule {
    ProbeRule {
        critical,
        fail_after,
        recover_after: 1,
        depends_on: Vec::new(),
        witness: None,
        heal: None,
    }
}

/// Global heal, both agents, one channel; heal cooldown 300 s, settle 10 s, agent cooldown
/// 600 s, critical threshold 900 s, reminders every 4 h.
fn cfg(probes: &[(&str, ProbeRule)]) -> CoreConfig {
    CoreConfig {
        global_heal: true,
        agent_cloud: true,
        agent_local: true,
        channels: vec!["tg".into()],
        probes: probes
            .iter()
            .map(|(n, r)| (n.to_string(), r.clone()))
            .collect(),
        ..CoreConfig::default()
    }
}

fn res(name: &str, status: Status, at: Millis) -> ProbeResult {
    ProbeResult {
        name: name.into(),
        kind: "script".into(),
        passed: status == Pass,
        status,
        output: format!("{name} {}", status.as_str()),
        detail: String::new(),
        duration_ms: 1,
        started_at: at,
    }
}

struct Sim {
    core: Core,
    now: Millis,
}

impl Sim {
    fn new(c: CoreConfig) -> Self {
        Sim {
            core: Core::new(c),
            now: T0,
        }
    }
    fn adv(&mut self, secs: i64) -> Millis {
        self.now += secs * S;
        self.now
    }
    fn probes(&mut self, secs: i64, rs: &[(&str, Status)]) -> Vec<Action> {
        let at = self.adv(secs);
        let results = rs.iter().map(|(n, s)| res(n, *s, at)).collect();
        self.core.step(Event::ProbeResults { at, results })
    }
    fn reprobe(&mut self, secs: i64, rs: &[(&str, Status)]) -> Vec<Action> {
        let at = self.adv(secs);
        let results = rs.iter().map(|(n, s)| res(n, *s, at)).collect();
        self.core.step(Event::Reprobe { at, results })
    }
    fn heal_done(&mut self, secs: i64, id: ActionId, outcome: RunOutcome) -> Vec<Action> {
        let at = self.adv(secs);
        self.core.step(Event::HealFinished {
            at,
            id,
            outcome,
            output: "heal output".into(),
        })
    }
    fn agent_done(&mut self, secs: i64, id: ActionId, outcome: RunOutcome) -> Vec<Action> {
        let at = self.adv(secs);
        self.core.step(Event::AgentFinished {
            at,
            id,
            outcome,
            output: "agent transcript".into(),
        })
    }
    fn notified(&mut self, secs: i64, id: ActionId, delivered: bool) -> Vec<Action> {
        let at = self.adv(secs);
        self.core.step(Event::NotifyResult {
            at,
            id,
            channels: vec![ChannelResult {
                channel: "tg".into(),
                delivered,
                detail: String::new(),
            }],
        })
    }
    fn tick(&mut self, secs: i64) -> Vec<Action> {
        let at = self.adv(secs);
        self.core.step(Event::Tick { at })
    }
    fn state(&self) -> SystemState {
        self.core.state()
    }
}

fn exit(code: i32) -> RunOutcome {
    RunOutcome::Exited { code }
}

fn heals(a: &[Action]) -> Vec<(ActionId, Vec<HealStep>)> {
    a.iter()
        .filter_map(|x| match x {
            Action::RunHeal { id, steps, .. } => Some((*id, steps.clone())),
            _ => None,
        })
        .collect()
}

fn heal_id(a: &[Action]) -> ActionId {
    let h = heals(a);
    assert_eq!(h.len(), 1, "expected one heal in {a:#?}");
    h[0].0
}

fn agents(a: &[Action]) -> Vec<(ActionId, AgentTier)> {
    a.iter()
        .filter_map(|x| match x {
            Action::RunAgent { id, tier, .. } => Some((*id, *tier)),
            _ => None,
        })
        .collect()
}

fn notes(a: &[Action]) -> Vec<Notification> {
    a.iter()
        .filter_map(|x| match x {
            Action::Notify(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn reprobes(a: &[Action]) -> Vec<(Vec<String>, Millis)> {
    a.iter()
        .filter_map(|x| match x {
            Action::Reprobe { probes, at, .. } => Some((probes.clone(), *at)),
            _ => None,
        })
        .collect()
}

fn system_transitions(a: &[Action]) -> Vec<(String, String, String)> {
    a.iter()
        .filter_map(|x| match x {
            Action::Record(Record::Transition(t)) if t.subject == "system" => {
                Some((t.from.clone(), t.to.clone(), t.reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn wake(a: &[Action]) -> Option<Millis> {
    a.iter().find_map(|x| match x {
        Action::WakeAt { at } => Some(*at),
        _ => None,
    })
}

/// Drive a sim with one critical probe `api` (fail_after 2) into `critical` with no heal budget
/// left and both agent tiers tried: returns the sim in critical.
fn into_critical() -> Sim {
    let mut c = cfg(&[("api", rule(true, 2))]);
    c.max_heals_per_incident = 1;
    c.agent_local = false;
    let mut s = Sim::new(c);
    s.probes(0, &[("api", Fail)]);
    let a = s.probes(60, &[("api", Fail)]);
    let h = heal_id(&a);
    s.heal_done(5, h, exit(0));
    let a = s.reprobe(10, &[("api", Fail)]);
    assert_eq!(s.state(), SystemState::Investigating);
    // The agent cooldown has never been used: the agent starts in the same step.
    let (ag, tier) = agents(&a)[0];
    assert_eq!(tier, AgentTier::Cloud);
    s.agent_done(30, ag, exit(0));
    s.reprobe(10, &[("api", Fail)]);
    assert_eq!(s.state(), SystemState::Critical);
    s
}

#[test]
fn debounce_then_failed_then_heal() {
    let mut s = Sim::new(cfg(&[("api", rule(true, 2))]));
    let a = s.probes(0, &[("api", Pass)]);
    assert_eq!(s.state(), SystemState::Healthy);
    assert!(a.contains(&Action::Persist));
    let a = s.probes(60, &[("api", Fail)]);
    assert_eq!(
        s.state(),
        SystemState::Degraded,
        "one failure of two is debouncing"
    );
    assert!(heals(&a).is_empty());
    let a = s.probes(60, &[("api", Fail)]);
    assert_eq!(s.state(), SystemState::Failed);
    let h = heals(&a);
    assert_eq!(
        h[0].1,
        vec![HealStep::Global {
            probes: vec!["api".into()]
        }]
    );
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Record(Record::IncidentOpened { incident: 1, .. })
    )));
    let t = system_transitions(&a);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].0.as_str(), t[0].1.as_str()), ("degraded", "failed"));
    assert!(t[0].2.contains("api"), "reason names the probe: {}", t[0].2);
}

#[test]
fn reprobes_never_advance_streaks() {
    let mut s = Sim::new(cfg(&[("api", rule(true, 2))]));
    s.probes(0, &[("api", Fail)]);
    for i in 0..5 {
        let a = s.reprobe(1, &[("api", Fail)]);
        assert!(heals(&a).is_empty(), "re-probe {i} must not escalate");
    }
    assert_eq!(s.core.persisted().probes["api"].fail_streak, 1);
    assert_eq!(s.state(), SystemState::Degraded);
}

#[test]
fn recover_after_needs_passes_in_a_row() {
    let mut r = rule(true, 1);
    r.recover_after = 2;
    let mut c = cfg(&[("api", r)]);
    c.global_heal = false;
    c.agent_cloud = false;
    c.agent_local = false;
    let mut s = Sim::new(c);
    s.probes(0, &[("api", Fail)]);
    assert_eq!(
        s.state(),
        SystemState::Critical,
        "no heal, no agent: straight to critical"
    );
    s.probes(60, &[("api", Pass)]);
    assert_eq!(s.state(), SystemState::Critical, "one pass of two");
    s.probes(60, &[("api", Fail)]);
    s.probes(60, &[("api", Pass)]);
    assert_eq!(s.state(), SystemState::Critical, "the streak restarted");
    let a = s.probes(60, &[("api", Pass)]);
    assert_eq!(s.state(), SystemState::Healthy);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Record(Record::IncidentClosed { incident: 1, .. })
    )));
    assert!(notes(&a).is_empty(), "never paged: no resolved message");
}

#[test]
fn non_critical_failures_degrade_and_never_escalate() {
    let mut s = Sim::new(cfg(&[("disk", rule(false, 3)), ("api", rule(true, 1))]));
    for _ in 0..20 {
        let a = s.probes(60, &[("disk", Fail), ("api", Pass)]);
        assert!(heals(&a).is_empty() && agents(&a).is_empty() && notes(&a).is_empty());
        assert_eq!(s.state(), SystemState::Degraded);
    }
    assert!(s.core.incident().is_none());
}

#[test]
fn blocked_never_escalates_its_root_does() {
    let mut app = rule(true, 1);
    app.depends_on = vec!["net".into()];
    let mut s = Sim::new(cfg(&[("app", app), ("net", rule(false, 1))]));
    // Blocked alone: nothing escalates.
    let a = s.probes(0, &[("app", Blocked), ("net", Pass)]);
    assert!(heals(&a).is_empty());
    assert_eq!(s.state(), SystemState::Degraded);
    // Root failing while a critical dependant is blocked: the root escalates in its place.
    let a = s.probes(60, &[("app", Blocked), ("net", Fail)]);
    assert_eq!(s.state(), SystemState::Failed);
    let h = heals(&a);
    assert_eq!(
        h[0].1,
        vec![HealStep::Global {
            probes: vec!["net".into()]
        }],
        "heal the root, not the blocked dependant"
    );
    assert_eq!(
        s.core.incident().unwrap().probes.iter().collect::<Vec<_>>(),
        vec!["net"]
    );
}

#[test]
fn heal_is_not_rerun_every_cycle() {
    // The original re-ran its heal every cycle, force-cycling a VM every minute.
    let mut s = Sim::new(cfg(&[("api", rule(true, 1))]));
    let a = s.probes(0, &[("api", Fail)]);
    let h = heal_id(&a);
    let mut total = 1;
    for _ in 0..4 {
        let a = s.probes(60, &[("api", Fail)]);
        total += heals(&a).len();
    }
    assert_eq!(total, 1, "no second heal while the first runs");
    s.heal_done(1, h, exit(0));
    for _ in 0..3 {
        let a = s.probes(60, &[("api", Fail)]);
        total += heals(&a).len();
    }
    assert_eq!(total, 1);
}

#[test]
fn heal_exit_zero_is_not_fixed_verification_decides() {
    let mut s = Sim::new(cfg(&[("api", rule(true, 1))]));
    let a = s.probes(0, &[("api", Fail)]);
    let h = heal_id(&a);
    let a = s.heal_done(20, h, exit(0));
    assert_eq!(s.state(), SystemState::Failed);
    let rp = reprobes(&a);
    assert_eq!(
        rp,
        vec![(vec!["api".to_string()], s.now + 10 * S)],
        "re-probe after settle"
    );
    assert_eq!(wake(&a), Some(s.now + 10 * S + machine::VERIFY_GRACE));
    let a = s.reprobe(10, &[("api", Fail)]);
    assert_eq!(s.state(), SystemState::Investigating);
    assert!(a.iter().any(|x| matches!(x, Action::Record(Record::ActionVerdict { verdict, .. }) if verdict.starts_with("not fixed"))));
    assert_eq!(agents(&a), vec![(2, AgentTier::Cloud)]);
}

#[test]
fn heal_exit_nonzero_but_probe_passes_holds_the_ladder() {
    let mut s = Sim::new(cfg(&[("api", rule(true, 1))]));
    let h = heal_id(&s.probes(0, &[("api", Fail)]));
    s.heal_done(20, h, exit(3));
    let a = s.reprobe(10, &[("api", Pass)]);
    assert!(agents(&a).is_empty(), "verified fixed: no agent");
    assert_eq!(s.state(), SystemState::Failed);
    let a = s.probes(30, &[("api", Pass)]);
    assert_eq!(s.state(), SystemState::Healthy);
    assert!(a.iter().any(|x| matches!(x, Action::Record(Record::ActionVerdict { action, verdict, .. }) if *action == h && verdict.starts_with("fixed"))));
}

#[test]
fn fix_that_does_not_hold_moves_up_the_ladder() {
    let mut s = Sim::new(cfg(&[("api", rule(true, 1))]));
    let h = heal_id(&s.probes(0, &[("api", Fail)]));
    s.heal_done(20, h, exit(0));
    s.reprobe(10, &[("api", Pass)]);
    let a = s.probes(30, &[("api", Fail)]);
    assert_eq!(s.state(), SystemState::Investigating);
    assert_eq!(agents(&a).len(), 1);
}

#[test]
fn heal_that_cannot_start_escalates_at_once() {
    let mut s = Sim::new(cfg(&[("api", rule(true, 1))]));
    let h = heal_id(&s.probes(0, &[("api", Fail)]));
    let a = s.heal_done(
        0,
        h,
        RunOutcome::SpawnFailed {
            error: "No such file or directory".into(),
        },
    );
    assert!(reprobes(&a).is_empty());
    assert_eq!(s.state(), SystemState::Investigating);
    assert_eq!(agents(&a).len(), 1);
}

#[test]
fn agent_cloud_failure_falls_back_to_local_and_exit_zero_is_not_progress() {
    let mut s = Sim::new(cfg(&[("api", rule(true, 1))]));
    let h = heal_id(&s.probes(0, &[("api", Fail)]));
    s.heal_done(5, h, exit(0));
    let a = s.reprobe(10, &[("api", Fail)]);
    let (cloud, _) = agents(&a)[0];
    let a = s.agent_done(60, cloud, RunOutcome::TimedOut);
    let ag = agents(&a);
    assert_eq!(ag.len(), 1);
    assert_eq!(
        ag[0].1,
        AgentTier::Local,
        "tier 3 right after tier 2 timed out"
    );
    let a = s.agent_done(60, ag[0].0, exit(0));
    assert_eq!(
        s.state(),
        SystemState::Investigating,
        "exit 0 proves nothing yet"
    );
    assert_eq!(reprobes(&a).len(), 1);
    s.reprobe(10, &[("api", Fail)]);
    assert_eq!(s.state(), SystemState::Critical);
}

#[test]
fn agent_cloud_exit_zero_does_not_trigger_tier_three() {
    let mut s = Sim::new(cfg(&[("api", rule(true, 1))]));
    let h = heal_id(&s.probes(0, &[("api", Fail)]));
    s.heal_done(5, h, exit(0));
    let a = s.reprobe(10, &[("api", Fail)]);
    let (cloud, _) = agents(&a)[0];
    let a = s.agent_done(60, cloud, exit(0));
    assert!(agents(&a).is_empty());
}

#[test]
fn critical_is_not_a_dead_end_heal_and_agent_retry_at_cooldowns() {
    let mut s = into_critical();
    let critical_at = s.now;
    // Heal budget is 1 and spent: only the agent retries, at its cooldown (600 s after the
    // first agent start, which was 40 s before critical).
    let mut agent_starts = Vec::new();
    for _ in 0..30 {
        let a = s.tick(60);
        assert!(heals(&a).is_empty(), "budget spent");
        for (id, _) in agents(&a) {
            agent_starts.push(s.now);
            s.agent_done(1, id, exit(1));
            s.reprobe(10, &[("api", Fail)]);
        }
    }
    assert!(agent_starts.len() >= 2, "agent retried: {agent_starts:?}");
    for w in agent_starts.windows(2) {
        assert!(w[1] - w[0] >= 600 * S);
    }
    assert!(agent_starts[0] - critical_at <= 600 * S);
}

#[test]
fn critical_retries_heal_within_budget_after_cooldown() {
    let mut c = cfg(&[("api", rule(true, 1))]);
    c.agent_cloud = false;
    c.agent_local = false;
    c.max_heals_per_incident = 3;
    let mut s = Sim::new(c);
    let mut starts = Vec::new();
    let a = s.probes(0, &[("api", Fail)]);
    starts.push(s.now);
    let mut pending = Some(heal_id(&a));
    for _ in 0..40 {
        if let Some(h) = pending.take() {
            s.heal_done(1, h, exit(0));
            s.reprobe(10, &[("api", Fail)]);
        }
        let a = s.probes(60, &[("api", Fail)]);
        if let Some((h, _)) = heals(&a).first() {
            starts.push(s.now);
            pending = Some(*h);
        }
    }
    assert_eq!(starts.len(), 3, "budget of 3: {starts:?}");
    for w in starts.windows(2) {
        assert!(w[1] - w[0] >= 300 * S, "cooldown respected: {starts:?}");
    }
    assert!(matches!(
        s.state(),
        SystemState::Critical | SystemState::Sos
    ));
}

#[test]
fn sos_only_after_critical_threshold_then_reminders_per_incident() {
    let mut s = into_critical();
    let since = s.core.incident().unwrap().critical_since.unwrap();
    let mut sos = Vec::new();
    while s.now < since + 899 * S {
        let a = s.tick(30);
        if s.now < since + 900 * S {
            assert!(notes(&a).is_empty(), "no SOS before the threshold");
        }
        sos.extend(notes(&a));
    }
    let a = s.tick(60);
    sos.extend(notes(&a));
    assert_eq!(s.state(), SystemState::Sos);
    assert_eq!(sos.len(), 1);
    assert_eq!(sos[0].kind, NotifyKind::Sos);
    assert!(sos[0].text.contains("api"), "{}", sos[0].text);
    // The page lists every action tried, oldest first, not only the newest.
    assert_eq!(sos[0].tried.len(), 2, "{:?}", sos[0].tried);
    assert!(sos[0].tried[0].starts_with("heal #"), "{:?}", sos[0].tried);
    assert!(sos[0].tried[1].starts_with("agent #"), "{:?}", sos[0].tried);
    assert_eq!(sos[0].last_action.as_ref(), sos[0].tried.last());
    s.notified(2, sos[0].id, true);
    assert!(s.core.incident().unwrap().paged_at.is_some());
    // No reminder inside the interval; one at 4 h.
    let first = sos[0].created_at;
    let mut reminders = Vec::new();
    for _ in 0..(5 * 60) {
        let a = s.tick(60);
        for n in notes(&a) {
            reminders.push(n.created_at);
            s.notified(0, n.id, true);
        }
    }
    assert!(!reminders.is_empty());
    assert!(reminders[0] - first >= 14_400 * S);
}

#[test]
fn new_incident_pages_at_once_despite_a_recent_page() {
    // The original shared one SOS cooldown: a new outage within 4 h paged nobody.
    let mut c = cfg(&[("api", rule(true, 1))]);
    c.global_heal = false;
    c.agent_cloud = false;
    c.agent_local = false;
    c.critical_threshold = 60 * S;
    let mut s = Sim::new(c);
    s.probes(0, &[("api", Fail)]);
    let n = notes(&s.tick(61));
    assert_eq!(n[0].kind, NotifyKind::Sos);
    s.notified(1, n[0].id, true);
    let a = s.probes(60, &[("api", Pass)]);
    let resolved = notes(&a);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].kind, NotifyKind::Resolved);
    // It names the probes that had failed (Alertmanager resolves its alerts by probe; an empty
    // list left them firing), with their newest, passing result.
    let had: Vec<(&str, Option<Status>)> = resolved[0]
        .failing
        .iter()
        .map(|f| (f.name.as_str(), f.status))
        .collect();
    assert_eq!(had, [("api", Some(Pass))]);
    // Ten minutes later a new incident: SOS 60 s after it turns critical, not 4 h.
    s.probes(600, &[("api", Fail)]);
    assert_eq!(s.core.incident().unwrap().id, 2);
    let n = notes(&s.tick(61));
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].kind, n[0].incident), (NotifyKind::Sos, 2));
}

#[test]
fn ack_stops_reminders_but_not_the_resolved_notice() {
    let mut c = cfg(&[("api", rule(true, 1))]);
    c.global_heal = false;
    c.agent_cloud = false;
    c.agent_local = false;
    c.critical_threshold = 60 * S;
    c.sos_cooldown = 600 * S;
    let mut s = Sim::new(c);
    s.probes(0, &[("api", Fail)]);
    let n = notes(&s.tick(61));
    s.notified(1, n[0].id, true);
    s.core.step(Event::Ack {
        at: s.now,
        incident: 1,
    });
    for _ in 0..30 {
        assert!(notes(&s.tick(60)).is_empty(), "acknowledged: no reminders");
    }
    let a = s.probes(1, &[("api", Pass)]);
    assert_eq!(notes(&a)[0].kind, NotifyKind::Resolved);
}

#[test]
fn sos_delivered_after_recovery_still_gets_a_resolved_notice() {
    let mut c = cfg(&[("api", rule(true, 1))]);
    c.global_heal = false;
    c.agent_cloud = false;
    c.agent_local = false;
    c.critical_threshold = 60 * S;
    let mut s = Sim::new(c);
    s.probes(0, &[("api", Fail)]);
    let n = notes(&s.tick(61));
    // Recovery while the SOS is in flight: nothing to resolve yet (not known to have paged).
    let a = s.probes(1, &[("api", Pass)]);
    assert!(notes(&a).is_empty());
    let a = s.notified(1, n[0].id, true);
    let r = notes(&a);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].kind, r[0].incident), (NotifyKind::Resolved, 1));
    assert_eq!(r[0].failing.len(), 1);
    assert_eq!(r[0].failing[0].name, "api");
}

#[test]
fn undelivered_sos_is_retried_with_backoff_and_resolved_needs_a_page() {
    let mut c = cfg(&[("api", rule(true, 1))]);
    c.global_heal = false;
    c.agent_cloud = false;
    c.agent_local = false;
    c.critical_threshold = 60 * S;
    let mut s = Sim::new(c);
    s.probes(0, &[("api", Fail)]);
    let n = notes(&s.tick(61))[0].clone();
    let a = s.notified(1, n.id, false);
    assert_eq!(wake(&a), Some(s.now + config::NOTIFY_RETRY_BASE));
    assert!(notes(&s.tick(29)).is_empty());
    let again = notes(&s.tick(1));
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id, again[0].attempt),
        (n.id, 1),
        "same SOS, retried"
    );
    s.notified(1, n.id, false);
    // Recovered before any delivery: the page is dropped and no resolved is sent.
    let a = s.probes(1, &[("api", Pass)]);
    assert!(notes(&a).is_empty());
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Record(Record::NotificationDropped { .. })))
    );
    assert!(s.core.persisted().pending.is_empty());
}

#[test]
fn flapping_is_treated_as_failing() {
    let mut c = cfg(&[("api", rule(true, 3))]);
    c.flap_threshold = 4;
    c.flap_window = 600 * S;
    let mut s = Sim::new(c);
    let mut opened = false;
    for i in 0..8 {
        let st = if i % 2 == 0 { Fail } else { Pass };
        let a = s.probes(30, &[("api", st)]);
        opened |= !heals(&a).is_empty();
    }
    assert!(
        opened,
        "never three failures in a row, but flapping escalates"
    );
    assert_eq!(s.core.outlook(s.now).probes[0].state, ProbeState::Flapping);
}

#[test]
fn silenced_probe_neither_escalates_nor_pages_until_the_silence_ends() {
    let mut s = Sim::new(cfg(&[("api", rule(true, 1))]));
    let until = s.now + 600 * S;
    s.core.step(Event::Silence {
        at: s.now,
        probe: "api".into(),
        until,
    });
    for _ in 0..9 {
        let a = s.probes(60, &[("api", Fail)]);
        assert!(heals(&a).is_empty());
        assert_eq!(s.state(), SystemState::Degraded);
    }
    let a = s.probes(60, &[("api", Fail)]);
    assert!(s.now >= until);
    assert_eq!(s.state(), SystemState::Failed);
    assert_eq!(heals(&a).len(), 1);
}

#[test]
fn split_brain_takes_the_bridge_heal_own_heal_otherwise() {
    let mut api = rule(true, 1);
    api.witness = Some("api_in_vm".into());
    api.heal = Some(OwnHeal::Command);
    let mut c = cfg(&[
        ("api", api),
        ("api_in_vm", rule(false, 1)),
        ("db", rule(true, 1)),
    ]);
    c.bridge_heal = true;
    let mut s = Sim::new(c.clone());
    let a = s.probes(0, &[("api", Fail), ("api_in_vm", Pass), ("db", Fail)]);
    assert_eq!(
        heals(&a)[0].1,
        vec![
            HealStep::Bridge {
                probes: vec!["api".into()]
            },
            HealStep::Global {
                probes: vec!["db".into()]
            }
        ]
    );
    let mut s = Sim::new(c);
    let a = s.probes(0, &[("api", Fail), ("api_in_vm", Fail)]);
    assert_eq!(
        heals(&a)[0].1,
        vec![HealStep::Probe {
            probe: "api".into()
        }],
        "witness down too: not split-brain, the probe's own heal"
    );
}

#[test]
fn worker_pseudo_probe_heals_by_restart() {
    let mut w = rule(true, 1);
    w.heal = Some(OwnHeal::RestartWorker);
    let mut s = Sim::new(cfg(&[(WORKER_PROBE, w)]));
    let a = s.probes(0, &[(WORKER_PROBE, Timeout)]);
    assert_eq!(heals(&a)[0].1, vec![HealStep::RestartWorker]);
}

#[test]
fn restore_keeps_critical_since_and_never_repages() {
    let s = into_critical();
    let since = s.core.incident().unwrap().critical_since;
    // Through the JSON the store saves.
    let saved = serde_json::to_string(s.core.persisted()).unwrap();
    let back: PersistedState = serde_json::from_str(&saved).unwrap();
    let mut r = Core::restore(s.core.config().clone(), back);
    assert_eq!(
        r.incident().unwrap().critical_since,
        since,
        "kept across restart"
    );
    let a = r.step(Event::Tick {
        at: s.now + 900 * S,
    });
    let n = notes(&a);
    assert_eq!(n.len(), 1);
    r.step(Event::NotifyResult {
        at: s.now + 901 * S,
        id: n[0].id,
        channels: vec![ChannelResult {
            channel: "tg".into(),
            delivered: true,
            detail: String::new(),
        }],
    });
    let saved = r.persisted().clone();
    let mut r2 = Core::restore(r.config().clone(), saved);
    let a = r2.step(Event::Tick {
        at: s.now + 1000 * S,
    });
    assert!(
        notes(&a).is_empty(),
        "already paged: a restart does not page again"
    );
}

#[test]
fn restore_resends_an_unacknowledged_page() {
    let mut c = cfg(&[("api", rule(true, 1))]);
    c.global_heal = false;
    c.agent_cloud = false;
    c.agent_local = false;
    c.critical_threshold = 60 * S;
    let mut s = Sim::new(c.clone());
    s.probes(0, &[("api", Fail)]);
    let n = notes(&s.tick(61));
    // Crash before the result: the SOS was in flight.
    let mut r = Core::restore(c, s.core.persisted().clone());
    let a = r.step(Event::Tick { at: s.now + S });
    let again = notes(&a);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, n[0].id, "the same SOS, not forgotten");
}

#[test]
fn restore_marks_a_running_heal_lost_and_verifies() {
    let mut s = Sim::new(cfg(&[("api", rule(true, 1))]));
    let h = heal_id(&s.probes(0, &[("api", Fail)]));
    let mut r = Core::restore(s.core.config().clone(), s.core.persisted().clone());
    let a = r.step(Event::Tick { at: s.now + 5 * S });
    assert!(a.iter().any(|x| matches!(x, Action::Record(Record::ActionFinished { action, outcome: RunOutcome::Lost, .. }) if *action == h)));
    assert_eq!(reprobes(&a), vec![(vec!["api".to_string()], s.now + 5 * S)]);
}

#[test]
fn clock_jump_backwards_never_lengthens_a_cooldown() {
    let mut c = cfg(&[("api", rule(true, 1))]);
    c.agent_cloud = false;
    c.agent_local = false;
    let mut s = Sim::new(c);
    let h = heal_id(&s.probes(0, &[("api", Fail)]));
    s.heal_done(1, h, exit(0));
    s.reprobe(10, &[("api", Fail)]);
    assert_eq!(s.state(), SystemState::Critical);
    // Clock jumps back a day.
    s.now -= 86_400 * S;
    let a = s.tick(0);
    let w = wake(&a).unwrap();
    assert!(
        w - s.now <= 300 * S,
        "next heal at most one cooldown away, got {}",
        w - s.now
    );
    let a = s.tick(300);
    assert_eq!(heals(&a).len(), 1);
}

#[test]
fn reload_keeps_unchanged_streaks_and_resets_changed_ones() {
    let mut s = Sim::new(cfg(&[("a", rule(true, 3)), ("b", rule(true, 3))]));
    s.probes(0, &[("a", Fail), ("b", Fail)]);
    s.probes(60, &[("a", Fail), ("b", Fail)]);
    let new = cfg(&[
        ("a", rule(true, 3)),
        ("b", rule(true, 4)),
        ("c", rule(false, 1)),
    ]);
    s.core.step(Event::Reload {
        at: s.now,
        config: Box::new(new),
    });
    let p = &s.core.persisted().probes;
    assert_eq!(p["a"].fail_streak, 2);
    assert!(!p.contains_key("b"));
    let a = s.probes(60, &[("a", Fail), ("b", Fail)]);
    assert_eq!(
        heals(&a)[0].1,
        vec![HealStep::Global {
            probes: vec!["a".into()]
        }]
    );
}

#[test]
fn every_state_change_is_a_transition_record() {
    let mut s = Sim::new(cfg(&[("api", rule(true, 1))]));
    let mut all = Vec::new();
    all.extend(s.probes(0, &[("api", Pass)]));
    let a = s.probes(60, &[("api", Fail)]);
    let h = heal_id(&a);
    all.extend(a);
    all.extend(s.heal_done(1, h, exit(0)));
    all.extend(s.reprobe(10, &[("api", Pass)]));
    all.extend(s.probes(60, &[("api", Pass)]));
    let sys: Vec<(String, String)> = system_transitions(&all)
        .into_iter()
        .map(|(f, t, _)| (f, t))
        .collect();
    assert_eq!(
        sys,
        vec![
            ("healthy".into(), "failed".into()),
            ("failed".into(), "healthy".into())
        ]
    );
    let probe: Vec<String> = all
        .iter()
        .filter_map(|x| match x {
            Action::Record(Record::Transition(t)) if t.subject == "api" => Some(t.to.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(probe, vec!["passing", "failing", "passing"]);
}

#[test]
fn outlook_names_the_next_step_and_when() {
    let mut c = cfg(&[("api", rule(true, 1))]);
    c.agent_cloud = false;
    c.agent_local = false;
    let mut s = Sim::new(c);
    let h = heal_id(&s.probes(0, &[("api", Fail)]));
    let o = s.core.outlook(s.now);
    assert_eq!(o.next.unwrap().what, format!("waiting for heal #{h}"));
    s.heal_done(1, h, exit(0));
    let o = s.core.outlook(s.now);
    assert_eq!(o.next.unwrap().due, Some(s.now + 10 * S));
    s.reprobe(10, &[("api", Fail)]);
    let o = s.core.outlook(s.now);
    assert_eq!(o.state, SystemState::Critical);
    let n = o.next.unwrap();
    assert_eq!(n.what, "SOS to every channel");
    assert_eq!(n.due, Some(s.now + 900 * S));
    assert_eq!(o.failing[0].name, "api");
}

#[test]
fn unknown_probes_and_stale_results_are_ignored() {
    let mut s = Sim::new(cfg(&[("api", rule(true, 1))]));
    let a = s.probes(0, &[("ghost", Fail)]);
    assert_eq!(s.state(), SystemState::Healthy);
    assert!(heals(&a).is_empty());
    let a = s.heal_done(1, 999, exit(0));
    assert!(reprobes(&a).is_empty());
    s.core.step(Event::Ack {
        at: s.now,
        incident: 42,
    });
    assert!(s.core.incident().is_none());
}

#[test]
fn fmt_duration_is_short() {
    assert_eq!(machine::fmt_duration(0), "0s");
    assert_eq!(machine::fmt_duration(45_000), "45s");
    assert_eq!(machine::fmt_duration(3_900_000), "1h 5m");
    assert_eq!(machine::fmt_duration(90_000_000), "1d 1h");
}

#[test]
fn a_held_fix_does_not_stall_the_ladder_when_another_probe_keeps_failing() {
    let mut c = cfg(&[("a", rule(true, 1)), ("b", rule(true, 1))]);
    c.agent_cloud = false;
    c.agent_local = false;
    let mut s = Sim::new(c);
    let h = heal_id(&s.probes(0, &[("a", Fail), ("b", Pass)]));
    s.heal_done(5, h, exit(0));
    s.reprobe(10, &[("a", Pass)]);
    assert!(s.core.incident().unwrap().hold.is_some());
    // a recovers, b starts failing: the incident stays open and b gets its heal after the
    // cooldown instead of waiting forever on a's hold.
    let mut healed_b = false;
    for _ in 0..10 {
        let a = s.probes(60, &[("a", Pass), ("b", Fail)]);
        if let Some((_, steps)) = heals(&a).first() {
            assert_eq!(
                steps,
                &vec![HealStep::Global {
                    probes: vec!["b".into()]
                }]
            );
            healed_b = true;
            break;
        }
    }
    assert!(healed_b, "ladder stalled on a fix for another probe");
    assert_eq!(s.core.incident().unwrap().id, 1);
}

impl Sim {
    /// The wall clock steps by `secs` (no time passes): the runtime's [`Event::ClockStep`].
    fn clock_step(&mut self, secs: i64) -> Vec<Action> {
        let at = self.adv(secs);
        self.core.step(Event::ClockStep {
            at,
            delta: secs * S,
        })
    }
}

/// A step of the wall clock an hour forward or back moves every deadline with it: the SOS
/// comes `critical_threshold` after critical (in time that really passed), the first reminder
/// `sos_cooldown` after the SOS, a silence lasts as long as it was given.
#[test]
fn a_clock_step_keeps_each_deadline_its_remaining_time() {
    for step in [3600, -3600] {
        let mut s = into_critical();
        let since = s.core.incident().unwrap().critical_since.unwrap();
        s.tick(300);
        let a = s.clock_step(step);
        assert!(notes(&a).is_empty(), "step {step}: no SOS at the step");
        // 600 s of the threshold were left, and still are.
        assert!(wake(&a).is_some_and(|w| w > s.now), "step {step}");
        assert!(notes(&s.tick(599)).is_empty(), "step {step}: not early");
        let sos = notes(&s.tick(1));
        assert_eq!(sos.len(), 1, "step {step}: on time");
        assert_eq!(s.now, since + (900 + step) * S);
        s.notified(0, sos[0].id, true);
        // Another step while paging: the reminder keeps its 4 h.
        let a = s.clock_step(step);
        assert!(notes(&a).is_empty(), "step {step}: no reminder at the step");
        let paged = s.core.incident().unwrap().last_page_at.unwrap();
        assert_eq!(paged, sos[0].created_at + step * S);
        let mut reminders = 0;
        for _ in 0..(4 * 60 - 1) {
            reminders += notes(&s.tick(60)).len();
        }
        assert_eq!(reminders, 0, "step {step}: no reminder before sos_cooldown");
        assert_eq!(notes(&s.tick(60)).len(), 1, "step {step}: reminder on time");
    }
}

/// What the step event prevents: the same hour forward seen as time passing (a plain tick)
/// sends the SOS at once; an hour back seen as nothing is only limited by the clamp, which
/// restarts the threshold from the jump (the SOS is late by the 300 s already waited).
#[test]
fn without_the_step_event_a_jump_fires_the_sos_early_or_late() {
    let mut s = into_critical();
    s.tick(300);
    assert_eq!(notes(&s.tick(3600)).len(), 1, "a burst: 600 s early");
    let mut s = into_critical();
    s.tick(300);
    s.tick(-3600);
    assert!(notes(&s.tick(600)).is_empty(), "late");
    assert_eq!(notes(&s.tick(300)).len(), 1);
}

#[test]
fn a_silence_lasts_as_long_as_given_across_a_step() {
    for step in [3600, -3600] {
        let mut s = Sim::new(cfg(&[("api", rule(true, 1))]));
        s.core.step(Event::Silence {
            at: s.now,
            probe: "api".into(),
            until: s.now + 7200 * S,
        });
        s.clock_step(step);
        for _ in 0..119 {
            let a = s.probes(60, &[("api", Fail)]);
            assert!(heals(&a).is_empty(), "step {step}: still silenced");
        }
        let a = s.probes(60, &[("api", Fail)]);
        assert_eq!(heals(&a).len(), 1, "step {step}: the silence ended on time");
    }
}
