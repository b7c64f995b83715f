//! The store: crash safety (a writer process SIGKILLed mid-burst), retention, migration, the
//! single-instance lock across processes, and the read-only CLI verbs over a store built
//! through the real core and store API.

use crate::helper;
use crate::support::{run, stderr, stdout, talon, write};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use talon::core::{
    Action, ChannelResult, Core, CoreConfig, Event, Millis, OwnHeal, PersistedState, ProbeRule,
    Record, RunOutcome, SystemState, Transition,
};
use talon::core::{ProbeResult, Status};
use talon::store::{self, Batch, LastProbeFile, StateFile, Store, StoreError, StoreWriter, lock};

const S: Millis = 1000;

/// Spawn `c` with stdout piped and a thread forwarding its lines.
fn spawn_lines(mut c: Command, stdin: Stdio) -> (Child, mpsc::Receiver<String>) {
    let mut child = c
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the helper");
    let so = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(so).lines() {
            let Ok(l) = line else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Wait for a line satisfying `pred`, with a deadline.
fn wait_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if pred(&l) => return l,
            Ok(_) => continue,
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

/// Everything that must hold for a store after any crash.
fn check_consistent(dir: &Path) -> (PersistedState, usize) {
    let store = Store::open(dir).expect("database opens after the crash");
    assert_eq!(store.integrity_check().unwrap(), "ok");
    assert_eq!(store.schema_version().unwrap(), store::SCHEMA_VERSION);
    let saved = store
        .load_core()
        .unwrap()
        .expect("core state saved with the first batch");
    let core = &saved.state;
    let results = store.results(None, None).unwrap();
    let scheduled: Vec<_> = results.iter().filter(|r| !r.reprobe).collect();
    // Every cycle is whole (3 results) and there is no gap: batches commit atomically, in order.
    let mut ats: Vec<Millis> = scheduled.iter().map(|r| r.at).collect();
    ats.dedup();
    assert_eq!(scheduled.len(), 3 * ats.len(), "partial cycle stored");
    let (first, last) = (ats[0], *ats.last().unwrap());
    assert_eq!(
        ats.len() as i64,
        (last - first) / 10_000 + 1,
        "a cycle is missing between {first} and {last}"
    );
    // The saved core state is the one of the last committed step.
    assert!(
        saved.at >= last && saved.at < last + 10_000,
        "core state out of step with results"
    );
    for name in ["api", "db", "disk"] {
        assert_eq!(core.probes[name].last.as_ref().unwrap().at, last, "{name}");
    }
    // Incidents and actions agree with the core's counters.
    let incidents = store.incidents(false).unwrap();
    assert_eq!(
        incidents.first().map_or(0, |i| i.id),
        core.last_incident,
        "incident ids"
    );
    for i in &incidents {
        let open_in_core = core.incident.as_ref().is_some_and(|c| c.id == i.id);
        assert_eq!(
            i.closed_at.is_none(),
            open_in_core,
            "incident #{} open state",
            i.id
        );
        let d = store.incident(i.id).unwrap().unwrap();
        for a in &d.actions {
            assert!(a.id <= core.last_action);
        }
        for n in &d.notifications {
            assert!(n.id <= core.last_action);
        }
    }
    // Snapshots parse (atomic rename: never a torn file).
    let sj = std::fs::read_to_string(dir.join("state.json")).unwrap();
    let sf: StateFile = serde_json::from_str(&sj).expect("state.json parses");
    assert!(SystemState::parse(&sf.current_state).is_some());
    assert!(sf.updated_at_ms <= saved.at);
    for key in [
        "current_state",
        "consecutive_failures",
        "last_heal_time",
        "last_agent_time",
        "last_sos_time",
        "last_probe_results",
        "worker_restarts",
    ] {
        assert!(sj.contains(&format!("\"{key}\"")), "state.json lacks {key}");
    }
    let lp: LastProbeFile =
        serde_json::from_str(&std::fs::read_to_string(dir.join("last-probe.json")).unwrap())
            .expect("last-probe.json parses");
    assert_eq!(lp.last_probe_results.len(), 3);
    (saved.state, ats.len())
}

#[test]
fn writer_killed_mid_burst_twenty_times_leaves_a_consistent_store() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("state");
    let dir_s = dir.to_str().unwrap();
    let mut cycles = 0;
    for round in 0..20 {
        let (mut child, rx) = spawn_lines(
            helper::command("store_burst", &[dir_s, "--report-every", "5"]),
            Stdio::null(),
        );
        // Let it commit a few reports (a different number each round), then SIGKILL it while it
        // keeps writing.
        for _ in 0..(1 + round % 4) {
            wait_line(&rx, "a commit report", |l| l.starts_with("committed "));
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().unwrap();
        assert!(!status.success(), "the writer was killed, not finished");
        let (_, n) = check_consistent(&dir);
        assert!(
            n > cycles,
            "round {round}: the burst made progress ({n} > {cycles})"
        );
        cycles = n;
    }
    // And it carries on from what it stored.
    let out = run(helper::command(
        "store_burst",
        &[dir_s, "--steps", "30", "--report-every", "10"],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).ends_with("done\n"));
    let (_, n) = check_consistent(&dir);
    assert_eq!(n, cycles + 30);
}

fn result(name: &str, status: Status, at: Millis) -> ProbeResult {
    ProbeResult {
        name: name.into(),
        kind: "script".into(),
        passed: status == Status::Pass,
        status,
        output: format!("{name} said {}", status.as_str()),
        detail: String::new(),
        duration_ms: 4,
        started_at: at,
    }
}

#[test]
fn retention_prunes_old_results_and_probe_transitions_only() {
    let d = tempfile::tempdir().unwrap();
    let now: Millis = 1_800_000_000_000;
    let day = 86_400 * S;
    let mut store = Store::open(d.path()).unwrap();
    for age_days in [10, 8, 6, 1] {
        let at = now - age_days * day;
        store
            .apply(&Batch {
                at,
                results: vec![
                    result("api", Status::Pass, at),
                    result("db", Status::Fail, at),
                ],
                records: vec![
                    Record::Transition(Transition {
                        at,
                        subject: "db".into(),
                        from: "passing".into(),
                        to: "failing".into(),
                        reason: "r".into(),
                        incident: None,
                    }),
                    Record::Transition(Transition {
                        at,
                        subject: "system".into(),
                        from: "healthy".into(),
                        to: "degraded".into(),
                        reason: "r".into(),
                        incident: None,
                    }),
                ],
                ..Batch::default()
            })
            .unwrap();
    }
    let before = store.counts().unwrap();
    assert_eq!(before.probe_results, 8);
    drop(store);
    // Through the writer, as the daemon does it.
    let writer = StoreWriter::spawn(Store::open(d.path()).unwrap()).unwrap();
    writer.prune(now, Duration::from_secs(7 * 86_400));
    writer.flush().unwrap();
    let pruned = writer.pruned();
    writer.close().unwrap();
    assert_eq!(pruned.probe_results, 4);
    assert_eq!(pruned.transitions, 2);
    let store = Store::open(d.path()).unwrap();
    let left = store.results(None, None).unwrap();
    assert_eq!(left.len(), 4);
    assert!(left.iter().all(|r| r.at >= now - 7 * day));
    let sys = store.transitions(None, Some("system")).unwrap();
    assert_eq!(sys.len(), 4, "system transitions are history and are kept");
    assert_eq!(store.transitions(None, Some("db")).unwrap().len(), 2);
}

#[test]
fn migrates_a_version_one_database_and_refuses_a_newer_one() {
    let d = tempfile::tempdir().unwrap();
    let v1 = Store::create_at_version(d.path(), 1).unwrap();
    assert_eq!(v1.schema_version().unwrap(), 1);
    // Rows written by version 1, through its own SQL (no reprobe, verdict or core_state yet).
    v1.execute_batch(
        "INSERT INTO probe_results (at, name, kind, status, output, duration_ms, started_at)
             VALUES (1, 'api', 'http', 'fail', 'HTTP 503', 3, 1);
         INSERT INTO incidents (id, opened_at, probes) VALUES (1, 1, '[\"api\"]');
         INSERT INTO actions (id, incident, kind, detail, started_at, ended_at, outcome, output)
             VALUES (1, 1, 'heal', 'heal_script for api', 1, 2,
                     '{\"outcome\":\"exited\",\"code\":0}', 'old heal output');",
    )
    .unwrap();
    drop(v1);
    {
        let e = Store::open_existing(d.path()).unwrap_err();
        assert!(matches!(e, StoreError::TooOld { found: 1, .. }), "{e}");
        assert!(
            e.to_string().contains("start the daemon once to migrate"),
            "{e}"
        );
    }
    let mut store = Store::open(d.path()).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        talon::store::SCHEMA_VERSION
    );
    let r = store.results(None, None).unwrap();
    assert_eq!(r.len(), 1);
    assert!(!r[0].reprobe, "new column defaults for old rows");
    let inc = store.incident(1).unwrap().unwrap();
    assert_eq!(inc.actions[0].verdict, None);
    assert_eq!(inc.actions[0].output.as_deref(), Some("old heal output"));
    assert!(store.load_core().unwrap().is_none());
    // And the migrated database takes new writes.
    store
        .apply(&Batch {
            at: 5,
            reprobe_results: vec![result("api", Status::Pass, 5)],
            ..Batch::default()
        })
        .unwrap();
    assert!(store.results(None, None).unwrap()[1].reprobe);
    drop(store);
    // Opening twice is a no-op.
    assert_eq!(
        Store::open(d.path()).unwrap().schema_version().unwrap(),
        talon::store::SCHEMA_VERSION
    );

    let n = tempfile::tempdir().unwrap();
    Store::open(n.path())
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let e = Store::open(n.path()).unwrap_err();
    assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
    assert!(e.to_string().contains("talon.db"), "names the file: {e}");
}

#[test]
fn migrates_a_version_two_database_keeping_its_results_readable() {
    let d = tempfile::tempdir().unwrap();
    let v2 = Store::create_at_version(d.path(), 2).unwrap();
    // A failing result as version 2 wrote it: no detail column yet.
    v2.execute_batch(
        "INSERT INTO probe_results (at, name, kind, status, output, duration_ms, started_at, reprobe)
             VALUES (1, 'api', 'script', 'fail', 'exit 1: done', 3, 1, 0);",
    )
    .unwrap();
    drop(v2);
    let mut store = Store::open(d.path()).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        talon::store::SCHEMA_VERSION
    );
    let old = store.results(None, None).unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].output, "exit 1: done");
    assert_eq!(old[0].detail, "", "a row stored before has no detail");
    // New rows keep theirs, and JSON shows it only where there is one.
    let mut failing = result("api", Status::Fail, 5);
    failing.detail = "config file /etc/api.toml: missing key `port`\ndone".into();
    store
        .apply(&Batch {
            at: 5,
            results: vec![failing],
            ..Batch::default()
        })
        .unwrap();
    let rows = store.results(None, None).unwrap();
    assert_eq!(
        rows[1].detail,
        "config file /etc/api.toml: missing key `port`\ndone"
    );
    let json = serde_json::to_value(&rows).unwrap();
    assert!(json[0].get("detail").is_none(), "{json}");
    assert_eq!(json[1]["detail"], rows[1].detail.as_str());
    drop(store);
    // The read-only side (the CLI) reads the migrated database.
    let ro = Store::open_existing(d.path()).unwrap().unwrap();
    assert_eq!(ro.results(None, Some("api")).unwrap().len(), 2);
}

#[test]
fn single_instance_lock_across_processes_names_the_holder() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("state");
    let dir_s = dir.to_str().unwrap();
    let (mut holder, rx) = spawn_lines(helper::command("hold_lock", &[dir_s]), Stdio::piped());
    let line = wait_line(&rx, "locked", |l| l.starts_with("locked "));
    let pid: u32 = line["locked ".len()..].parse().unwrap();
    assert_eq!(pid, holder.id());
    // In this process.
    match lock::acquire(&dir) {
        Err(lock::LockError::Held { pid: p, .. }) => assert_eq!(p, Some(pid)),
        other => panic!("expected the lock to be held, got {other:?}"),
    }
    // A second process, the real daemon with that state dir: exit 2, naming the holder's pid.
    let home = d.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let cfg = write(
        &home,
        "talon.toml",
        &format!("state_dir = \"{}\"\n", dir.display()),
    );
    let out = run({
        let mut c = talon(&home);
        c.arg("--config").arg(&cfg).arg("run");
        c
    });
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("another talon is already running")
            && stderr(&out).contains(&format!("pid {pid}")),
        "stderr: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!("pid {pid}")),
        "stderr: {}",
        stderr(&out)
    );
    // Released when the holder exits...
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    let l = lock::acquire(&dir).expect("free after the holder exited");
    drop(l);
    // ...and when it is SIGKILLed (the kernel drops flocks of dead processes).
    let (mut holder, rx) = spawn_lines(helper::command("hold_lock", &[dir_s]), Stdio::piped());
    wait_line(&rx, "locked", |l| l.starts_with("locked "));
    assert!(lock::acquire(&dir).is_err());
    holder.kill().unwrap();
    holder.wait().unwrap();
    lock::acquire(&dir).expect("free after SIGKILL");
}

/// The helpers are not `talon` verbs: the shipped binary neither lists nor accepts them (they
/// were hidden verbs before they moved into the test binary).
#[test]
fn the_shipped_binary_has_no_test_only_verbs() {
    let d = tempfile::tempdir().unwrap();
    let help = run({
        let mut c = talon(d.path());
        c.arg("--help");
        c
    });
    assert!(help.status.success());
    let text = stdout(&help);
    assert!(text.contains("incidents"), "a real help text: {text}");
    for verb in ["__hold-lock", "__store-burst"] {
        assert!(!text.contains(verb), "{verb} listed: {text}");
        let out = run({
            let mut c = talon(d.path());
            c.args([verb, d.path().to_str().unwrap()]);
            c
        });
        assert_eq!(out.status.code(), Some(2), "{verb}");
        assert!(
            stderr(&out).contains(&format!("unrecognized subcommand '{verb}'")),
            "{verb}: {}",
            stderr(&out)
        );
    }
    assert!(
        std::fs::read_dir(d.path()).unwrap().next().is_none(),
        "an unknown verb creates nothing"
    );
}

// ---- CLI verbs over a store produced through the real core and store API ----

struct Scenario {
    _tmp: tempfile::TempDir,
    home: std::path::PathBuf,
    config: std::path::PathBuf,
    state: std::path::PathBuf,
}

fn scenario_config(home: &Path, state: &Path) -> std::path::PathBuf {
    write(
        home,
        "config.toml",
        &format!(
            "state_dir = \"{}\"\nheal_script = \"true\"\n[agent]\ncloud_command = \"true\"\n[escalation]\ncritical_threshold_secs = 60\n[script.api]\ncommand = \"true\"\ncritical = true\ncritical_after_consecutive_failures = 1\n[script.disk]\ncommand = \"true\"\n",
            state.display()
        ),
    )
}

fn step(core: &mut Core, w: &mut Store, ev: Event) -> Vec<Action> {
    let a = core.step(ev.clone());
    w.apply(&Batch::from_step(&ev, &a, core, 0)).unwrap();
    a
}

/// Incident 1: api fails, heal (exit 0) does not fix it, the agent does not, critical, SOS
/// delivered, then recovery; incident 2 is left open. Times are relative to now.
fn scenario(leave_open: bool) -> Scenario {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_path_buf();
    let state = home.join("state");
    let config = scenario_config(&home, &state);
    let loaded = talon::config::load(&talon::config::LoadOptions {
        config: Some(config.clone()),
        home: Some(home.clone()),
        ..Default::default()
    });
    let cfg = CoreConfig::from_config(&loaded.config.expect("valid scenario config"));
    let mut core = Core::new(cfg);
    let mut store = Store::open(&state).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as Millis;
    let mut at = now - 3 * 3600 * S;
    let cycle = |at: Millis, api: Status| Event::ProbeResults {
        at,
        results: vec![result("api", api, at), result("disk", Status::Pass, at)],
    };
    step(&mut core, &mut store, cycle(at, Status::Pass));
    at += 60 * S;
    let a = step(&mut core, &mut store, cycle(at, Status::Fail));
    let heal = a
        .iter()
        .find_map(|x| match x {
            Action::RunHeal { id, .. } => Some(*id),
            _ => None,
        })
        .expect("heal");
    at += 5 * S;
    step(
        &mut core,
        &mut store,
        Event::HealFinished {
            at,
            id: heal,
            outcome: RunOutcome::Exited { code: 0 },
            output: "restarted api.service\nstill warming up".into(),
        },
    );
    at += 10 * S;
    let a = step(
        &mut core,
        &mut store,
        Event::Reprobe {
            at,
            results: vec![result("api", Status::Fail, at)],
        },
    );
    let agent = a
        .iter()
        .find_map(|x| match x {
            Action::RunAgent { id, .. } => Some(*id),
            _ => None,
        })
        .expect("agent");
    at += 30 * S;
    step(
        &mut core,
        &mut store,
        Event::AgentFinished {
            at,
            id: agent,
            outcome: RunOutcome::Exited { code: 0 },
            output: "diagnosis: disk full on /var".into(),
        },
    );
    at += 10 * S;
    step(
        &mut core,
        &mut store,
        Event::Reprobe {
            at,
            results: vec![result("api", Status::Fail, at)],
        },
    );
    assert_eq!(core.state(), SystemState::Critical);
    at += 61 * S;
    let a = step(&mut core, &mut store, Event::Tick { at });
    let sos = a
        .iter()
        .find_map(|x| match x {
            Action::Notify(n) => Some(n.id),
            _ => None,
        })
        .expect("sos");
    step(
        &mut core,
        &mut store,
        Event::NotifyResult {
            at,
            id: sos,
            channels: vec![ChannelResult {
                channel: "ops".into(),
                delivered: true,
                detail: "ok".into(),
            }],
        },
    );
    at += 60 * S;
    step(&mut core, &mut store, cycle(at, Status::Pass));
    assert_eq!(core.state(), SystemState::Healthy);
    if leave_open {
        at += 3600 * S;
        step(&mut core, &mut store, cycle(at, Status::Fail));
        assert_eq!(core.incident().unwrap().id, 2);
    }
    Scenario {
        _tmp: tmp,
        home,
        config,
        state,
    }
}

impl Scenario {
    fn talon(&self, args: &[&str]) -> std::process::Output {
        let mut c = talon(&self.home);
        c.arg("--config").arg(&self.config).args(args);
        run(c)
    }
}

#[test]
fn cli_says_no_state_yet_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("never-created");
    let config = scenario_config(tmp.path(), &state);
    let run_v = |args: &[&str]| {
        let mut c = talon(tmp.path());
        c.arg("--config").arg(&config).args(args);
        run(c)
    };
    let out = run_v(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("no state yet"), "{}", stdout(&out));
    let out = run_v(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], serde_json::Value::Null);
    for args in [
        &["history"][..],
        &["incidents"],
        &["incidents", "--open", "--json"],
    ] {
        let out = run_v(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(stdout(&out).contains("no state yet"), "{args:?}");
    }
    let out = run_v(&["incident", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no incident #1"), "{}", stderr(&out));
    assert!(!state.exists(), "a read-only verb created the state dir");
}

#[test]
fn cli_status_of_an_open_incident_and_of_recovery() {
    let s = scenario(true);
    let out = s.talon(&["status", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "failed is not ok: {}",
        stdout(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The daemon's `/status` schema, from the store.
    assert_eq!(v["state"], "failed");
    assert_eq!(v["incident"]["id"], "2");
    assert_eq!(v["incident"]["failing_probes"], serde_json::json!(["api"]));
    assert_eq!(v["incident"]["timeline"], serde_json::json!([]));
    assert_eq!(v["source"], "store");
    assert!(
        v["next_escalation"]["text"]
            .as_str()
            .unwrap()
            .contains("heal"),
        "{}",
        v["next_escalation"]
    );
    assert!(v["since_unix"].as_i64().unwrap() > 0);
    assert!(v["worker"].is_null());
    let api = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "api")
        .unwrap_or_else(|| panic!("no probe api: {v:#}"));
    assert_eq!(api["kind"], "script", "kind from the config: {api}");
    assert_eq!(api["status"], "fail", "{api}");
    assert_eq!(api["critical"], true, "{api}");
    // `talon --status` is `status --json`.
    let alias = s.talon(&["--status"]);
    assert_eq!(alias.status.code(), Some(1));
    let va: serde_json::Value = serde_json::from_slice(&alias.stdout).unwrap();
    assert_eq!(va["state"], v["state"]);
    assert_eq!(va["incident"]["id"], "2");
    let human = s.talon(&["status"]);
    let text = stdout(&human);
    assert!(text.contains("state:    failed since"), "{text}");
    assert!(text.contains("incident: #2"), "{text}");
    assert!(text.contains("next:"), "{text}");

    let s = scenario(false);
    let out = s.talon(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("state:    healthy"));
    assert!(stdout(&out).contains("incident: none open"));
    assert!(s.state.join("talon.db").exists());
}

/// The top-level keys of a JSON object, sorted.
fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// `(name, kind)` of every probe in a `talon status --json`.
fn probe_names(v: &serde_json::Value) -> Vec<(String, String)> {
    v["probes"]
        .as_array()
        .unwrap_or_else(|| panic!("no probes: {v:#}"))
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
            (s("name"), s("kind"))
        })
        .collect()
}

/// `talon status --json` prints one schema (`/status`'s) whether the daemon answers or it is
/// rebuilt from the store: a script reading `.since_unix` or `.incident.failing_probes` works
/// with the daemon down too.
#[test]
fn status_json_has_the_same_schema_from_the_daemon_and_from_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", crate::support::free_port());
    let config = write(
        dir,
        "config.toml",
        &format!(
            "state_dir = \"state\"\ncheck_interval_secs = 0.3\n[health]\nbind = \"{addr}\"\n[escalation]\ncritical_threshold_secs = 3600\n[script.api]\ncommand = \"false\"\ncritical = true\ncritical_after_consecutive_failures = 1\n[script.disk]\ncommand = \"true\"\n"
        ),
    );
    let mut d = crate::daemon::Daemon::start(dir, &config);
    // No heal, no agent: straight to critical, where it stays (SOS is an hour away).
    let live = d.wait_status("critical, live", Duration::from_secs(30), |v| {
        v["source"] == "daemon" && v["state"] == "critical" && !v["incident"].is_null()
    });
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
    let stored = d.json(&["status"]);
    assert_eq!(live["source"], "daemon", "{live:#}");
    assert_eq!(stored["source"], "store", "{stored:#}");
    assert_eq!(
        keys(&live),
        keys(&stored),
        "live {live:#}\nstored {stored:#}"
    );
    for k in ["state", "since_unix", "consecutive_failures", "state_dir"] {
        assert!(!stored[k].is_null(), "{k}: {stored:#}");
    }
    assert_eq!(stored["state"], live["state"], "{stored:#}");
    assert!(live["incident"]["id"].is_string(), "{live:#}");
    assert_eq!(stored["incident"]["id"], live["incident"]["id"]);
    assert_eq!(
        live["incident"]["failing_probes"],
        serde_json::json!(["api"]),
        "{live:#}"
    );
    assert_eq!(
        stored["incident"]["failing_probes"],
        live["incident"]["failing_probes"]
    );
    assert_eq!(
        keys(&stored["incident"]),
        keys(&live["incident"]),
        "{stored:#}"
    );
    let names = probe_names(&live);
    assert_eq!(
        names,
        [
            ("api".into(), "script".into()),
            ("disk".into(), "script".into())
        ]
    );
    assert_eq!(probe_names(&stored), names);
    assert_eq!(stored["probes"][0]["status"], "fail", "{stored:#}");
}

#[test]
fn cli_history_filters_by_probe_and_age_and_rejects_bad_ages() {
    let s = scenario(true);
    let out = s.talon(&["history", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tr = v["transitions"].as_array().unwrap();
    let sys: Vec<String> = tr
        .iter()
        .filter(|t| t["subject"] == "system")
        .map(|t| {
            format!(
                "{}→{}",
                t["from"].as_str().unwrap(),
                t["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        sys,
        [
            "healthy→failed",
            "failed→investigating",
            "investigating→critical",
            "critical→sos",
            "sos→healthy",
            "healthy→failed"
        ]
    );
    let out = s.talon(&["history", "--probe", "api", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["subject"] == "api")
    );
    let results = v["results"].as_array().unwrap();
    assert!(
        results.iter().any(|r| r["reprobe"] == true),
        "re-probes shown"
    );
    assert!(results.iter().all(|r| r["name"] == "api"));
    // The newest cycle was 3 h after the first: --since 2h sees only it.
    let out = s.talon(&["history", "--probe", "api", "--since", "2h", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    let human = s.talon(&["history"]);
    assert!(
        stdout(&human).contains("healthy → failed"),
        "{}",
        stdout(&human)
    );
    for bad in ["2x", "yesterday", "", "-1h"] {
        let out = s.talon(&["history", &format!("--since={bad}")]);
        assert_eq!(out.status.code(), Some(2), "--since {bad:?}");
        assert!(
            stderr(&out).contains("invalid"),
            "{bad:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"));
    }
}

#[test]
fn cli_incidents_and_the_incident_timeline() {
    let s = scenario(true);
    let out = s.talon(&["incidents", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [2, 1]);
    assert!(v[1]["paged_at"].is_i64());
    let out = s.talon(&["incidents", "--open", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], 2);
    let text = stdout(&s.talon(&["incidents"]));
    assert!(text.contains("#2") && text.contains("open"), "{text}");
    assert!(text.contains("[paged]"), "{text}");

    let out = s.talon(&["incident", "1"]);
    assert_eq!(out.status.code(), Some(0));
    let t = stdout(&out);
    for want in [
        "heal #",
        "exit 0",
        "| restarted api.service",
        "| still warming up",
        "verdict: not fixed",
        "agent #",
        "| diagnosis: disk full on /var",
        "notify sos",
        "delivered",
        "closed",
    ] {
        assert!(t.contains(want), "timeline lacks {want:?}:\n{t}");
    }
    let heal_at = t.find("heal #").unwrap();
    let agent_at = t.find("agent #").unwrap();
    let sos_at = t.find("notify sos").unwrap();
    assert!(
        heal_at < agent_at && agent_at < sos_at,
        "ordered timeline:\n{t}"
    );
    let out = s.talon(&["incident", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["actions"][0]["kind"], "heal");
    assert_eq!(v["actions"][1]["tier"], "cloud");
    assert_eq!(v["notifications"][0]["kind"], "sos");

    let out = s.talon(&["incident", "99"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no incident #99 (incidents are #1 to #2)"),
        "{}",
        stderr(&out)
    );
    let out = s.talon(&["incident", "abc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'abc'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cli_survives_a_closed_stdout() {
    let s = scenario(true);
    let mut c = talon(&s.home);
    c.arg("--config")
        .arg(&s.config)
        .args(["incident", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(child.stdout.take());
    let out = crate::support::wait_output(child, Duration::from_secs(30));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert!(out.status.code() == Some(0));
}

#[test]
fn snapshots_are_written_beside_the_database() {
    let d = tempfile::tempdir().unwrap();
    let mut rule = ProbeRule {
        critical: true,
        fail_after: 1,
        recover_after: 1,
        depends_on: vec![],
        witness: None,
        heal: Some(OwnHeal::Command),
    };
    rule.heal = None;
    let cfg = CoreConfig {
        probes: [("api".to_string(), rule)].into_iter().collect(),
        global_heal: true,
        ..CoreConfig::default()
    };
    let mut core = Core::new(cfg);
    let writer = StoreWriter::spawn(Store::open(d.path()).unwrap()).unwrap();
    let at = 1_800_000_000_000;
    let ev = Event::ProbeResults {
        at,
        results: vec![result("api", Status::Fail, at)],
    };
    let a = core.step(ev.clone());
    writer.send(Batch::from_step(&ev, &a, &core, 3));
    writer.close().unwrap();
    let sf: StateFile =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("state.json")).unwrap())
            .unwrap();
    assert_eq!(sf.current_state, "failed");
    assert_eq!(sf.consecutive_failures["api"], 1);
    assert_eq!(sf.last_heal_time, Some(1_800_000_000.0));
    assert_eq!(sf.worker_restarts, 3);
    assert_eq!(sf.incident.unwrap().id, 1);
    assert!(!sf.last_probe_results["api"].passed);
    let lp: LastProbeFile =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("last-probe.json")).unwrap())
            .unwrap();
    assert_eq!(lp.last_probe_results[0].name, "api");
    assert_eq!(lp.updated_at_ms, at);
}

#[test]
fn cli_reports_a_damaged_database_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("talon.db"),
        b"this is not a database, just junk bytes ".repeat(200),
    )
    .unwrap();
    let config = scenario_config(tmp.path(), &state);
    for args in [
        &["status"][..],
        &["history"],
        &["incidents"],
        &["incident", "1"],
    ] {
        let mut c = talon(tmp.path());
        c.arg("--config").arg(&config).args(args);
        let out = run(c);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = stderr(&out);
        assert!(
            e.contains("talon.db") && e.contains("not a database"),
            "{args:?}: {e}"
        );
        assert!(!e.contains("panicked"));
    }
}

/// A restart through the real store: a delivered page is not sent again, an undelivered one is.
#[test]
fn restart_through_the_store_never_repages_and_never_forgets() {
    let d = tempfile::tempdir().unwrap();
    let cfg = CoreConfig {
        critical_threshold: 60 * S,
        channels: vec!["ops".into()],
        probes: [(
            "api".to_string(),
            ProbeRule {
                critical: true,
                fail_after: 1,
                recover_after: 1,
                depends_on: vec![],
                witness: None,
                heal: None,
            },
        )]
        .into_iter()
        .collect(),
        ..CoreConfig::default()
    };
    let t0: Millis = 1_800_000_000_000;
    let notes = |a: &[Action]| -> Vec<(u64, talon::core::NotifyKind)> {
        a.iter()
            .filter_map(|x| match x {
                Action::Notify(n) => Some((n.id, n.kind)),
                _ => None,
            })
            .collect()
    };
    // Run 1: outage, critical at once (no heal, no agent), SOS sent but its result never
    // arrives (crash).
    let mut store = Store::open(d.path()).unwrap();
    let mut core = Core::new(cfg.clone());
    step(
        &mut core,
        &mut store,
        Event::ProbeResults {
            at: t0,
            results: vec![result("api", Status::Fail, t0)],
        },
    );
    let a = step(&mut core, &mut store, Event::Tick { at: t0 + 61 * S });
    let sos = notes(&a);
    assert_eq!(sos.len(), 1);
    drop(store);
    // Run 2: the page was not known delivered, so it is sent again — the same one.
    let mut store = Store::open(d.path()).unwrap();
    let saved = store.load_core().unwrap().unwrap();
    let mut core = Core::restore(cfg.clone(), saved.state);
    let a = step(&mut core, &mut store, Event::Tick { at: t0 + 70 * S });
    assert_eq!(notes(&a), sos, "an unconfirmed page is not forgotten");
    step(
        &mut core,
        &mut store,
        Event::NotifyResult {
            at: t0 + 71 * S,
            id: sos[0].0,
            channels: vec![ChannelResult {
                channel: "ops".into(),
                delivered: true,
                detail: String::new(),
            }],
        },
    );
    drop(store);
    // Run 3: delivered before the crash: nothing is sent again, the reminder keeps its time.
    let mut store = Store::open(d.path()).unwrap();
    let saved = store.load_core().unwrap().unwrap();
    let mut core = Core::restore(cfg.clone(), saved.state);
    for k in 0..10 {
        let a = step(
            &mut core,
            &mut store,
            Event::Tick {
                at: t0 + (80 + k * 600) * S,
            },
        );
        assert!(notes(&a).is_empty(), "re-paged after a restart");
    }
    let inc = store.incident(1).unwrap().unwrap();
    assert!(inc.incident.paged_at.is_some());
    assert_eq!(inc.notifications.len(), 1);
    assert_eq!(
        inc.notifications[0].attempts, 2,
        "sent twice: before and after the crash"
    );
    assert!(inc.notifications[0].delivered_at.is_some());
}

#[test]
fn kv_sets_overwrites_deletes_and_survives_a_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(d.path()).unwrap();
        assert_eq!(store.kv_get("telegram.offset").unwrap(), None);
        store
            .apply(&Batch::kv(1, "telegram.offset", Some("41".into())))
            .unwrap();
        store
            .apply(&Batch::kv(2, "telegram.offset", Some("42".into())))
            .unwrap();
        store
            .apply(&Batch::kv(3, "push.backup", Some(r#"{"at":3}"#.into())))
            .unwrap();
        store
            .apply(&Batch::kv(4, "push.cron", Some(r#"{"at":4}"#.into())))
            .unwrap();
        store.apply(&Batch::kv(5, "push.cron", None)).unwrap();
    }
    let store = Store::open(d.path()).unwrap();
    assert_eq!(
        store.kv_get("telegram.offset").unwrap().as_deref(),
        Some("42")
    );
    assert_eq!(store.kv_get("push.cron").unwrap(), None, "deleted");
    assert_eq!(
        store.kv_prefix("push.").unwrap(),
        vec![("push.backup".to_string(), r#"{"at":3}"#.to_string())]
    );
    // A prefix is literal: `_` and `%` are not wildcards.
    assert!(store.kv_prefix("push_").unwrap().is_empty());
}

#[test]
fn migrates_a_version_three_database_to_one_with_an_empty_kv_table() {
    let d = tempfile::tempdir().unwrap();
    let v3 = Store::create_at_version(d.path(), 3).unwrap();
    v3.execute_batch(
        "INSERT INTO probe_results (at, name, kind, status, output, duration_ms, started_at, reprobe, detail)
             VALUES (1, 'api', 'script', 'pass', 'ok', 3, 1, 0, '');",
    )
    .unwrap();
    drop(v3);
    let store = Store::open(d.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), 4);
    assert_eq!(store.results(None, None).unwrap().len(), 1);
    assert!(store.kv_prefix("").unwrap().is_empty());
}
