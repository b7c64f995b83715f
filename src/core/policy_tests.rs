//! Table tests of escalation policies and maintenance windows (`docs/notify.md`): events in,
//! actions out, every edge the issue names — ack between two steps, resolve during a step,
//! restart mid-chain, a window that opens during an incident, a window that ends with the probe
//! still failing, a root in maintenance with blocked dependants.

use super::*;
use crate::config::policy::{MaintenanceWindow, Schedule, WindowTime};
use crate::core::{ProbeResult, Status};
use Status::{Blocked, Fail, Pass};

const T0: Millis = 1_700_000_000_000;
const S: Millis = 1000;
/// Without heals or agents an incident is critical at once; the SOS is 900 s later.
const SOS: i64 = 900;

fn rule(critical: bool, depends_on: &[&str]) -> ProbeRule {
    ProbeRule {
        critical,
        fail_after: 1,
        recover_after: 1,
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        witness: None,
        heal: None,
    }
}

fn step(after_secs: i64, channels: &[&str]) -> Step {
    Step {
        after: after_secs * S,
        channels: channels.iter().map(|c| c.to_string()).collect(),
    }
}

/// Channels a, b, c; `policy.default`: a at once, b after 10 min, everyone after 30 min.
fn chained() -> CoreConfig {
    let mut c = CoreConfig {
        channels: vec!["a".into(), "b".into(), "c".into()],
        probes: [("api".to_string(), rule(true, &[]))].into_iter().collect(),
        ..CoreConfig::default()
    };
    c.routing.policies.insert(
        "default".into(),
        vec![
            step(0, &["a"]),
            step(600, &["b"]),
            step(1800, &["a", "b", "c"]),
        ],
    );
    c.routing
        .probe_policy
        .insert("api".into(), "default".into());
    c
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
    fn at(&mut self, secs: i64) -> Millis {
        self.now = T0 + secs * S;
        self.now
    }
    fn probes(&mut self, secs: i64, rs: &[(&str, Status)]) -> Vec<Action> {
        let at = self.at(secs);
        let results = rs.iter().map(|(n, s)| res(n, *s, at)).collect();
        self.core.step(Event::ProbeResults { at, results })
    }
    fn tick(&mut self, secs: i64) -> Vec<Action> {
        let at = self.at(secs);
        self.core.step(Event::Tick { at })
    }
    fn delivered(&mut self, secs: i64, id: ActionId) -> Vec<Action> {
        let at = self.at(secs);
        self.core.step(Event::NotifyResult {
            at,
            id,
            channels: vec![ChannelResult {
                channel: "a".into(),
                delivered: true,
                detail: String::new(),
            }],
        })
    }
    fn ev(&mut self, secs: i64, f: impl FnOnce(Millis) -> Event) -> Vec<Action> {
        let at = self.at(secs);
        self.core.step(f(at))
    }
}

fn notes(a: &[Action]) -> Vec<Notification> {
    a.iter()
        .filter_map(|x| match x {
            Action::Notify(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn chans(n: &Notification) -> Option<Vec<&str>> {
    n.channels
        .as_ref()
        .map(|c| c.iter().map(String::as_str).collect())
}

fn wake(a: &[Action]) -> Option<Millis> {
    a.iter().find_map(|x| match x {
        Action::WakeAt { at } => Some(*at),
        _ => None,
    })
}

/// An incident on `api`, critical at 0, SOS (step 1, channel a) at 900 s, delivered at 901 s.
fn paged(c: CoreConfig) -> (Sim, Notification) {
    let chained = !c.routing.policies.is_empty();
    let mut sim = Sim::new(c);
    sim.probes(0, &[("api", Fail)]);
    assert_eq!(sim.core.state(), SystemState::Critical);
    assert!(notes(&sim.tick(SOS - 1)).is_empty());
    // No step has paged anyone yet (what the Alertmanager re-poster reads); without policies
    // the answer is every channel.
    assert_eq!(
        sim.core.outlook(sim.now).paged_channels,
        chained.then(Vec::new)
    );
    let n = notes(&sim.tick(SOS));
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0].kind, NotifyKind::Sos);
    sim.delivered(SOS + 1, n[0].id);
    (sim, n[0].clone())
}

#[test]
fn steps_page_their_channels_in_order_then_reminders_follow_the_last_step() {
    let (mut sim, first) = paged(chained());
    assert_eq!(chans(&first), Some(vec!["a"]));
    assert!(first.text.contains("default step 1 of 3"), "{}", first.text);
    // Step 2 is due 600 s after the SOS, not before.
    let a = sim.tick(SOS + 599);
    assert!(notes(&a).is_empty());
    let a = sim.tick(SOS + 600);
    let n = notes(&a);
    assert_eq!(n.len(), 1);
    assert_eq!(chans(&n[0]), Some(vec!["b"]));
    assert!(n[0].text.contains("default step 2 of 3"), "{}", n[0].text);
    sim.delivered(SOS + 601, n[0].id);
    // The outlook names the step reached and the next with its time.
    let o = sim.core.outlook(sim.now);
    assert_eq!(o.steps_reached, vec!["default step 2 of 3".to_string()]);
    assert_eq!(
        o.paged_channels,
        Some(vec!["a".to_string(), "b".to_string()])
    );
    let next = o.next.expect("next");
    assert!(
        next.what.contains("default step 3 of 3: a, b, c"),
        "{}",
        next.what
    );
    assert_eq!(next.due, Some(T0 + (SOS + 1800) * S));
    let n = notes(&sim.tick(SOS + 1800));
    assert_eq!(chans(&n[0]), Some(vec!["a", "b", "c"]));
    sim.delivered(SOS + 1801, n[0].id);
    // Reminders: every 4 h after the last page, to the last step's channels.
    assert!(notes(&sim.tick(SOS + 1800 + 14_399)).is_empty());
    let n = notes(&sim.tick(SOS + 1800 + 14_400));
    assert_eq!(n[0].kind, NotifyKind::Reminder);
    assert_eq!(chans(&n[0]), Some(vec!["a", "b", "c"]));
}

#[test]
fn an_ack_between_two_steps_stops_the_chain() {
    let (mut sim, _) = paged(chained());
    sim.ev(SOS + 300, |at| Event::Ack { at, incident: 1 });
    for t in [SOS + 600, SOS + 1800, SOS + 20_000] {
        assert!(
            notes(&sim.tick(t)).is_empty(),
            "paged at {t} s after an ack"
        );
    }
    let o = sim.core.outlook(sim.now);
    assert_eq!(o.next.unwrap().what, "none: acknowledged, no reminders");
}

#[test]
fn resolving_during_a_step_stops_the_chain_and_tells_whoever_was_paged() {
    let (mut sim, _) = paged(chained());
    let step2 = notes(&sim.tick(SOS + 600));
    assert_eq!(step2.len(), 1);
    // Step 2 is still being delivered when the probe recovers.
    let a = sim.probes(SOS + 610, &[("api", Pass)]);
    assert_eq!(sim.core.state(), SystemState::Healthy);
    let n = notes(&a);
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0].kind, NotifyKind::Resolved);
    // Everyone a reached step paged: a (step 1) and b (step 2).
    assert_eq!(chans(&n[0]), Some(vec!["a", "b"]));
    // Step 3 never comes.
    assert!(
        notes(&sim.tick(SOS + 1800))
            .iter()
            .all(|n| n.kind == NotifyKind::Resolved)
    );
}

#[test]
fn a_restart_mid_chain_neither_repeats_nor_skips_a_step() {
    let (sim, _) = paged(chained());
    let saved: PersistedState =
        serde_json::from_str(&serde_json::to_string(sim.core.persisted()).unwrap()).unwrap();
    // Down from 901 s to 2000 s: step 2 (due at 1500 s) fell due meanwhile.
    let mut sim = Sim {
        core: Core::restore(chained(), saved),
        now: sim.now,
    };
    let n = notes(&sim.tick(SOS + 1100));
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(
        chans(&n[0]),
        Some(vec!["b"]),
        "step 2 once, step 1 not again"
    );
    sim.delivered(SOS + 1101, n[0].id);
    assert!(notes(&sim.tick(SOS + 1799)).is_empty());
    let n = notes(&sim.tick(SOS + 1800));
    assert_eq!(chans(&n[0]), Some(vec!["a", "b", "c"]));
}

#[test]
fn an_incident_with_probes_of_two_policies_follows_each() {
    let mut c = chained();
    c.probes.insert("db".into(), rule(true, &[]));
    c.routing
        .policies
        .insert("db".into(), vec![step(0, &["c"]), step(300, &["a"])]);
    c.routing.probe_policy.insert("db".into(), "db".into());
    let mut sim = Sim::new(c);
    sim.probes(0, &[("api", Fail), ("db", Fail)]);
    let n = notes(&sim.tick(SOS));
    assert_eq!(n.len(), 1);
    assert_eq!(
        chans(&n[0]),
        Some(vec!["a", "c"]),
        "both first steps at once"
    );
    sim.delivered(SOS + 1, n[0].id);
    let a = sim.tick(SOS + 1);
    assert_eq!(wake(&a), Some(T0 + (SOS + 300) * S), "db's step 2 is next");
    let n = notes(&sim.tick(SOS + 300));
    assert_eq!(chans(&n[0]), Some(vec!["a"]));
    assert!(n[0].text.contains("db step 2 of 2"), "{}", n[0].text);
}

#[test]
fn ticket_probes_go_only_to_the_ticket_route_and_others_to_every_channel() {
    let mut c = CoreConfig {
        channels: vec!["pager".into(), "jira".into()],
        probes: [
            ("disk".to_string(), rule(true, &[])),
            ("api".to_string(), rule(true, &[])),
        ]
        .into_iter()
        .collect(),
        ..CoreConfig::default()
    };
    c.routing
        .policies
        .insert("ticket".into(), vec![step(0, &["jira"])]);
    c.routing
        .probe_policy
        .insert("disk".into(), "ticket".into());
    let mut sim = Sim::new(c.clone());
    sim.probes(0, &[("disk", Fail), ("api", Pass)]);
    let n = notes(&sim.tick(SOS));
    assert_eq!(chans(&n[0]), Some(vec!["jira"]));
    assert_eq!(
        sim.core.outlook(sim.now).paged_channels,
        Some(vec!["jira".to_string()])
    );
    // A ticket is filed once, never re-sent as a reminder.
    sim.delivered(SOS + 1, n[0].id);
    assert!(notes(&sim.tick(SOS + 5 * 3600)).is_empty());
    assert!(notes(&sim.tick(SOS + 9 * 3600)).is_empty());
    // A probe without a policy (and no policy.default) pages every channel, as always.
    let mut sim = Sim::new(c);
    sim.probes(0, &[("disk", Pass), ("api", Fail)]);
    let n = notes(&sim.tick(SOS));
    assert_eq!(chans(&n[0]), None);
    assert_eq!(
        sim.core.outlook(sim.now).paged_channels,
        None,
        "every channel"
    );
}

fn manual(name: &str, probes: &[&str], start: i64, end: i64, heal: bool) -> MaintenanceChange {
    MaintenanceChange::Start(ManualWindow {
        name: name.into(),
        probes: probes.iter().map(|p| p.to_string()).collect(),
        start: T0 + start * S,
        end: T0 + end * S,
        heal,
    })
}

/// Every channel at once (no policy): maintenance works without policies too.
fn plain() -> CoreConfig {
    CoreConfig {
        channels: vec!["a".into()],
        probes: [
            ("api".to_string(), rule(true, &["db"])),
            ("db".to_string(), rule(false, &[])),
            ("web".to_string(), rule(true, &[])),
        ]
        .into_iter()
        .collect(),
        global_heal: true,
        ..CoreConfig::default()
    }
}

#[test]
fn a_window_that_opens_during_an_incident_stops_paging_but_not_the_resolution() {
    let (mut sim, _) = paged(chained());
    sim.ev(SOS + 60, |at| Event::Maintenance {
        at,
        change: manual("deploy", &["api"], SOS + 60, SOS + 7200, false),
    });
    // The incident stays open; step 2 (due at SOS + 600) is not sent inside the window.
    assert!(sim.core.incident().is_some());
    assert!(notes(&sim.tick(SOS + 600)).is_empty());
    assert!(notes(&sim.tick(SOS + 1800)).is_empty());
    let next = sim.core.outlook(sim.now).next.unwrap();
    assert!(
        next.what.contains("maintenance window deploy"),
        "{}",
        next.what
    );
    assert_eq!(next.due, Some(T0 + (SOS + 7200) * S));
    // Recovery inside the window: the resolution goes out (to the channel that was paged).
    let n = notes(&sim.probes(SOS + 2000, &[("api", Pass)]));
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].kind, NotifyKind::Resolved);
    assert_eq!(chans(&n[0]), Some(vec!["a"]));
}

#[test]
fn a_window_that_ends_with_the_probe_still_failing_starts_its_incident_then() {
    let mut sim = Sim::new(plain());
    sim.ev(0, |at| Event::Maintenance {
        at,
        change: manual("upgrade", &["web"], 0, 3600, false),
    });
    let a = sim.probes(60, &[("web", Fail)]);
    assert!(
        sim.core.incident().is_none(),
        "no incident inside the window"
    );
    assert!(!a.iter().any(|x| matches!(x, Action::RunHeal { .. })));
    assert_eq!(sim.core.state(), SystemState::Degraded);
    assert_eq!(wake(&a), Some(T0 + 3600 * S), "wakes when the window ends");
    sim.probes(1800, &[("web", Fail)]);
    assert!(sim.core.incident().is_none());
    // The window ends: the incident opens at once, as if the probe had just failed.
    let a = sim.tick(3600);
    let inc = sim.core.incident().expect("opened at the window's end");
    assert_eq!(inc.opened_at, T0 + 3600 * S);
    assert!(a.iter().any(|x| matches!(x, Action::RunHeal { .. })));
}

#[test]
fn a_problem_that_ends_inside_the_window_never_pages() {
    let mut sim = Sim::new(plain());
    sim.ev(0, |at| Event::Maintenance {
        at,
        change: manual("upgrade", &["web"], 0, 3600, false),
    });
    let mut all = sim.probes(60, &[("web", Fail)]);
    all.extend(sim.tick(1000));
    all.extend(sim.probes(1200, &[("web", Pass)]));
    all.extend(sim.tick(3600));
    all.extend(sim.tick(7200));
    assert!(notes(&all).is_empty());
    assert!(sim.core.incident().is_none());
    assert_eq!(sim.core.persisted().last_incident, 0, "no incident at all");
    assert_eq!(sim.core.state(), SystemState::Healthy);
}

#[test]
fn a_root_in_maintenance_keeps_its_dependants_blocked_and_only_its_incident_opens() {
    let mut sim = Sim::new(plain());
    sim.ev(0, |at| Event::Maintenance {
        at,
        change: manual("db-upgrade", &["db*"], 0, 3600, false),
    });
    sim.probes(60, &[("db", Fail), ("api", Blocked)]);
    assert!(sim.core.incident().is_none());
    sim.probes(1800, &[("db", Fail), ("api", Blocked)]);
    sim.tick(3600);
    let inc = sim.core.incident().expect("the root's incident");
    assert_eq!(
        inc.probes.iter().cloned().collect::<Vec<_>>(),
        vec!["db".to_string()]
    );
}

#[test]
fn a_window_with_heal_heals_but_never_pages() {
    let mut c = plain();
    c.critical_threshold = 60 * S;
    let mut sim = Sim::new(c);
    sim.ev(0, |at| Event::Maintenance {
        at,
        change: manual("soft", &["web"], 0, 36_000, true),
    });
    let a = sim.probes(10, &[("web", Fail)]);
    assert!(
        a.iter().any(|x| matches!(x, Action::RunHeal { .. })),
        "{a:?}"
    );
    let mut all = Vec::new();
    for t in (20..20_000).step_by(300) {
        all.extend(sim.tick(t));
    }
    assert!(notes(&all).is_empty());
}

#[test]
fn ending_a_run_time_window_early_escalates_at_once() {
    let mut sim = Sim::new(plain());
    sim.ev(0, |at| Event::Maintenance {
        at,
        change: manual("w", &["web"], 0, 3600, false),
    });
    sim.probes(60, &[("web", Fail)]);
    assert!(sim.core.incident().is_none());
    sim.ev(120, |at| Event::Maintenance {
        at,
        change: MaintenanceChange::End {
            name: Some("w".into()),
        },
    });
    assert_eq!(sim.core.incident().map(|i| i.opened_at), Some(T0 + 120 * S));
    assert!(sim.core.maintenance_view(sim.now).is_empty());
}

/// A configured recurring window, evaluated at each event's time in the config's zone.
#[test]
fn a_configured_weekly_window_is_evaluated_at_the_event_time() {
    let mut c = plain();
    c.routing.zone = jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
    c.routing.maintenance.push(MaintenanceWindow {
        name: "sunday".into(),
        probes: vec!["web".into()],
        when: WindowTime::Recurring {
            schedule: vec![Schedule::parse("sun 02:00-04:00").unwrap()],
        },
        heal: false,
    });
    // 2023-11-12 is a Sunday; 02:00 CET = 01:00 UTC.
    let start = "2023-11-12T01:00:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond();
    let mut core = Core::new(c);
    let r = |at| vec![res("web", Fail, at)];
    core.step(Event::ProbeResults {
        at: start + 60 * S,
        results: r(start + 60 * S),
    });
    assert!(core.incident().is_none(), "inside the window");
    let v = core.maintenance_view(start + 60 * S);
    assert_eq!(v[0].active_until, Some(start + 7200 * S));
    core.step(Event::Tick {
        at: start + 7200 * S,
    });
    assert_eq!(core.incident().map(|i| i.opened_at), Some(start + 7200 * S));
}

/// Without any policy, pages go to every channel (`channels: None`), exactly as before.
#[test]
fn without_policies_every_page_goes_to_every_channel() {
    let mut c = chained();
    c.routing = Routing::default();
    let (_, n) = paged(c);
    assert_eq!(n.channels, None);
    assert!(!n.text.contains("escalation"));
}

/// A probe inside a window adds no route: its policy's channels are not paged for the incident.
#[test]
fn a_probe_in_maintenance_does_not_page_its_policy() {
    let mut c = chained();
    c.probes.insert("db".into(), rule(true, &[]));
    c.routing
        .policies
        .insert("db".into(), vec![step(0, &["c"])]);
    c.routing.probe_policy.insert("db".into(), "db".into());
    let mut sim = Sim::new(c);
    sim.ev(0, |at| Event::Maintenance {
        at,
        change: manual("db-work", &["db"], 0, 36_000, false),
    });
    sim.probes(1, &[("api", Fail), ("db", Fail)]);
    let n = notes(&sim.tick(SOS + 1));
    assert_eq!(n.len(), 1);
    assert_eq!(
        chans(&n[0]),
        Some(vec!["a"]),
        "db's policy (c) is in maintenance"
    );
}
