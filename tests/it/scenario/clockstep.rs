//! Issue 22 item 6, through the real binary: the wall clock stepping an hour forward, then two
//! hours back, under a running daemon. The host's clock is not a test's to step, so the daemon
//! runs under libfaketime (`LD_PRELOAD`, its offset read from a file at every call, monotonic
//! time left alone): to Talon it is exactly an NTP step or `date -s`.
//!
//! Scenario 26: a critical probe waits out `critical_threshold_secs` (8 s) and a `push` probe its
//! period (30 s + 2 s grace) while the clock steps +1 h, then −2 h. Each deadline keeps the time
//! it had left: the SOS comes 8 s after critical in time that passed (not at the step), the push
//! probe stays passing after the step forward and fails ~32 s after its ping after the step back
//! (not two hours later). Each step is logged once with its `delta_ms` and counted in
//! `talon_clock_steps_total`. Without the step handling the SOS and the push failure fire at the
//! first step, and the push probe would pass for two more hours after the second.

use super::flood::{get_json, wait_json};
use super::{Timeline, wait_for};
use crate::daemon::Daemon;
use crate::support::{free_port, http_get, run, stderr, talon, write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
const HOUR_MS: i64 = 3_600_000;

/// libfaketime's multithreaded preload library (`scripts/test` installs `libfaketime`).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib").ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
            .chain([PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1")])
            .find(|p| p.exists())
    });
    found.expect("libfaketime is installed (scripts/test installs it: apt-get install libfaketime)")
}

/// `talon run` with its wall clock offset by what `offset_file` says ("+0", "+1h", "-1h").
fn start_under_faketime(dir: &Path, config: &Path, offset_file: &Path) -> Daemon {
    let mut c = talon(dir);
    c.arg("run").arg("--config").arg(config).current_dir(dir);
    c.env("LD_PRELOAD", libfaketime())
        .env("FAKETIME_TIMESTAMP_FILE", offset_file)
        // Read the file at every call, so writing it steps the clock at once.
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("DONT_FAKE_MONOTONIC", "1")
        // File times stay real (the config watcher compares mtimes).
        .env("NO_FAKE_STAT", "1");
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("talon.stderr")).unwrap());
    Daemon {
        child: Some(c.spawn().expect("start talon run")),
        dir: dir.to_path_buf(),
        config: config.to_path_buf(),
    }
}

fn probe(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["probes"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .cloned()
        .unwrap_or_default()
}

/// The `delta_ms` of every clock-step line in the daemon's log.
fn steps_logged(d: &Daemon) -> Vec<i64> {
    d.log()
        .lines()
        .filter(|l| l.contains("the wall clock stepped"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["delta_ms"].as_i64())
        .collect()
}

/// When the system entered `to`, from the incident's transitions (the host's time).
fn entered(incident: &serde_json::Value, to: &str) -> Option<i64> {
    incident["transitions"]
        .as_array()?
        .iter()
        .find_map(|t| (t["subject"] == "system" && t["to"] == to).then(|| t["at"].as_i64())?)
}

#[test]
fn s26_the_wall_clock_steps_an_hour_forward_then_back_and_no_deadline_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let broken = dir.join("broken");
    let pages = dir.join("pages.txt");
    let offset = write(dir, "faketime", "+0\n");
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 0.3
[health]
bind = "{addr}"
[escalation]
critical_threshold_secs = 8
[script.target]
command = "test ! -e {broken}"
critical = true
critical_after_consecutive_failures = 1
[push.job]
period_secs = 30
grace_secs = 2
[notify.cap]
kind = "command"
command = "cat >> {pages}; echo ---- >> {pages}"
"#,
            broken = broken.display(),
            pages = pages.display(),
        ),
    );
    let mut d = start_under_faketime(dir, &config, &offset);
    wait_json(
        &addr,
        "/status",
        "both probes passing",
        LIMIT,
        &d,
        |_, s| probe(s, "target")["status"] == "pass" && probe(s, "job")["status"] == "pass",
    );
    let mut tl = Timeline::start(26, "wall clock stepped +1 h then -2 h (libfaketime)");
    let mut ping = talon(dir);
    ping.args(["ping", "job", "--config"]).arg(&config);
    let out = run(ping);
    assert!(out.status.success(), "{}", stderr(&out));
    let pinged = Instant::now();
    tl.mark("pinged");

    // A critical incident: the SOS is due 8 s after critical.
    std::fs::write(&broken, "").unwrap();
    wait_json(&addr, "/status", "critical", LIMIT, &d, |_, s| {
        s["state"] == "critical"
    });
    tl.mark("critical");
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&offset, "+1h\n").unwrap();
    tl.mark("stepped_forward");
    // The push probe's deadline moved with the clock: it passes while its 32 s have not passed.
    while pinged.elapsed() < Duration::from_secs(20) {
        let s = get_json(&addr, "/status")
            .map(|(_, v)| v)
            .unwrap_or_default();
        if !s.is_null() && pinged.elapsed() < Duration::from_secs(20) {
            assert_eq!(
                probe(&s, "job")["status"],
                "pass",
                "no push deadline fired early: {s}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The SOS came when its 8 s had passed, counted in the time that really passed.
    let text = wait_for("the SOS", LIMIT, || {
        let t = std::fs::read_to_string(&pages).ok()?;
        t.contains("SOS:").then_some(t)
    });
    assert_eq!(text.matches("SOS:").count(), 1, "{text}");
    let inc = d.json(&["incident", "1"]);
    let critical_at = entered(&inc, "critical").expect("critical on the record");
    let sos_at = entered(&inc, "sos").expect("sos on the record");
    // The records carry the host's time: the step is in between (give or take the few ms by which
    // the daemon's measure of it can differ from the hour written).
    let waited = sos_at - critical_at - HOUR_MS;
    assert!(
        waited >= 7_950,
        "the SOS waited the whole threshold ({waited} ms of real time after critical): {inc:#}"
    );
    tl.note("sos_after_critical_ms", waited);

    // Two hours back (from +1 h to -1 h): the push deadline still comes ~32 s after the ping.
    std::fs::write(&offset, "-1h\n").unwrap();
    tl.mark("stepped_back");
    wait_json(
        &addr,
        "/status",
        "the push probe late",
        LIMIT,
        &d,
        |_, s| probe(s, "job")["status"] == "fail",
    );
    tl.mark("push_failed");
    let after = pinged.elapsed();
    assert!(
        after >= Duration::from_secs(25),
        "not before its deadline: {after:?} after the ping"
    );
    tl.note("push_failed_after_ping_ms", after.as_millis() as u64);
    let (_, metrics) = http_get(&addr, "/metrics", Duration::from_secs(10)).unwrap();
    assert!(
        metrics.lines().any(|l| l == "talon_clock_steps_total 2"),
        "two steps counted: {metrics}"
    );
    // Each step logged once, with its size.
    let logged = steps_logged(&d);
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!((logged[0] - HOUR_MS).abs() < 2_000, "+1 h: {logged:?}");
    assert!((logged[1] + 2 * HOUR_MS).abs() < 2_000, "-2 h: {logged:?}");
    tl.finish();
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
}
