//! Scenario 8: a broken config via SIGHUP and via editor-style rename.
//!
//! For the probes file and for the main config, each way an operator breaks a running config:
//! an editor's save (write a temp file, rename it over; seen by the watcher) and an in-place
//! write followed by SIGHUP. Each time the last good config keeps running (the probe is still
//! run on schedule, its streak is not reset), the error is visible with its file:line:column in
//! `/health`, in `talon status` and in the metrics, and fixing the file applies the new config
//! and clears the error.

use super::Timeline;
use super::flood::{metric, wait_json};
use crate::daemon::Daemon;
use crate::support::{free_port, run, stderr, stdout, talon, write};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// `services.toml` (or any file) replaced the way editors save: a temp file renamed over it.
fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn sighup(d: &Daemon) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
}

fn probe<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["probes"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or(&Value::Null)
}

/// `(streak, started_at)` of a probe in the daemon's live `/status`.
fn progress(d: &Daemon, addr: &str, name: &str) -> (u64, i64) {
    let (_, s) = wait_json(addr, "/status", "/status", LIMIT, d, |_, s| {
        probe(s, name)["streak"].as_u64().is_some()
    });
    let p = probe(&s, name);
    (
        p["streak"].as_u64().unwrap_or(0),
        p["started_at"].as_i64().unwrap_or(0),
    )
}

/// What a broken file must look like on every surface while the last good config keeps running.
/// Returns the `config_error` object seen on `/health`.
fn assert_broken_and_still_running(
    d: &Daemon,
    addr: &str,
    config: &Path,
    file: &str,
    line: u64,
    probes: u64,
    tl: &mut Timeline,
) -> Value {
    let (_, h) = wait_json(
        addr,
        "/health",
        "config_error on /health",
        LIMIT,
        d,
        |_, v| !v["config_error"].is_null(),
    );
    tl.mark("detected");
    let e = &h["config_error"];
    assert!(
        e["file"].as_str().unwrap_or("").ends_with(file),
        "the error names {file}: {h}"
    );
    assert_eq!(e["line"], line, "the error has its line: {h}");
    assert!(e["column"].as_u64().unwrap_or(0) >= 1, "and a column: {h}");
    assert_eq!(
        h["probe_count"], probes,
        "the last good probes are kept: {h}"
    );

    // The last good config keeps running: the probe is still run on schedule and its pass streak
    // carries on growing (not reset by the failed reload).
    let (streak, started) = progress(d, addr, "target");
    assert!(streak >= 1, "target has a streak");
    wait_json(addr, "/status", "target still probed", LIMIT, d, |_, s| {
        let p = probe(s, "target");
        p["started_at"].as_i64().unwrap_or(0) > started
            && p["streak"].as_u64().unwrap_or(0) >= streak + 2
            && p["status"] == "pass"
    });
    tl.mark("still_probing");

    let (_, m) = crate::support::http_get(addr, "/metrics", Duration::from_secs(5)).unwrap();
    assert!(
        metric(&m, "talon_config_reload_failures_total") >= 1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "talon_config_error"), 1.0, "{m}");

    // `talon status` against the broken files says what is wrong and where (exit 2).
    let mut c = talon(&d.dir);
    c.args(["status", "--config"])
        .arg(config)
        .current_dir(&d.dir);
    let out = run(c);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!("{file}:{line}:")),
        "talon status names {file}:{line}: {text}"
    );
    h
}

/// After a good file is in place: the error is gone everywhere and the new config is applied
/// (the probe count tells), without resetting the untouched probe's streak.
fn assert_fixed(d: &Daemon, addr: &str, probes: u64, streak_before: u64, tl: &mut Timeline) {
    wait_json(addr, "/health", "config applied", LIMIT, d, |c, v| {
        c == 200 && v["config_error"].is_null() && v["probe_count"] == probes
    });
    tl.mark("recovered");
    let (_, m) = crate::support::http_get(addr, "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(metric(&m, "talon_config_error"), 0.0, "{m}");
    assert!(metric(&m, "talon_config_reload_successes_total") >= 1.0);
    let (streak, _) = progress(d, addr, "target");
    assert!(
        streak >= streak_before,
        "target's streak survived the reload: {streak} < {streak_before}"
    );
    let live = d.json(&["status"]);
    assert_eq!(live["source"], "daemon", "{live}");
    assert!(live["config_error"].is_null(), "{live}");
}

fn main_config(addr: &str, extra: &str) -> String {
    format!(
        "state_dir = \"state\"\ncheck_interval_secs = 0.2\nservices_file = \"services.toml\"\n{extra}\n[health]\nbind = \"{addr}\"\n"
    )
}

const GOOD_PROBES: &str = "[script.target]\ncommand = \"true\"\ncritical = true\n";

fn start(dir: &Path) -> (Daemon, String, std::path::PathBuf) {
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write(dir, "config.toml", &main_config(&addr, ""));
    write(dir, "services.toml", GOOD_PROBES);
    let d = Daemon::start(dir, &config);
    wait_json(&addr, "/status", "target passing", LIMIT, &d, |_, s| {
        probe(s, "target")["streak"].as_u64().unwrap_or(0) >= 3
    });
    (d, addr, config)
}

#[test]
fn s08_broken_probes_file_by_rename_and_by_sighup_keeps_the_last_good_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut d, addr, config) = start(dir);
    let services = dir.join("services.toml");

    // 1. An editor saves a syntax error (rename over; no signal: the watcher sees it).
    let mut tl = Timeline::start(8, "broken probes file, editor rename");
    save_by_rename(&services, "[script.target\ncommand = \"true\"\n");
    assert_broken_and_still_running(&d, &addr, &config, "services.toml", 1, 1, &mut tl);
    let (streak, _) = progress(&d, &addr, "target");
    tl.mark("fixed");
    save_by_rename(
        &services,
        &format!("{GOOD_PROBES}[script.added]\ncommand = \"true\"\n"),
    );
    assert_fixed(&d, &addr, 2, streak, &mut tl);
    tl.note("trigger", "file watcher");
    tl.finish();

    // 2. An in-place edit with a typo'd key, then SIGHUP.
    let mut tl = Timeline::start(8, "broken probes file, SIGHUP");
    std::fs::write(
        &services,
        "[script.target]\ncommand = \"true\"\ncritcal = true\n",
    )
    .unwrap();
    sighup(&d);
    let h = assert_broken_and_still_running(&d, &addr, &config, "services.toml", 3, 2, &mut tl);
    assert!(
        h["config_error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("critcal"),
        "{h}"
    );
    let (streak, _) = progress(&d, &addr, "target");
    tl.mark("fixed");
    std::fs::write(&services, GOOD_PROBES).unwrap();
    sighup(&d);
    assert_fixed(&d, &addr, 1, streak, &mut tl);
    assert!(
        d.log().contains("SIGHUP"),
        "the SIGHUP reload is logged:\n{}",
        d.log()
    );
    tl.note("trigger", "SIGHUP");
    tl.finish();
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn s08_broken_main_config_by_rename_and_by_sighup_keeps_the_last_good_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut d, addr, config) = start(dir);

    // 1. An editor saves a main config with a bad value (rename over, the watcher sees it).
    let mut tl = Timeline::start(8, "broken main config, editor rename");
    save_by_rename(&config, &main_config(&addr, "heal_timeout_secs = \"soon\""));
    assert_broken_and_still_running(&d, &addr, &config, "config.toml", 4, 1, &mut tl);
    let (streak, _) = progress(&d, &addr, "target");
    tl.mark("fixed");
    // The fix also adds a probe in the main config: applied means two probes.
    save_by_rename(
        &config,
        &main_config(&addr, "[script.inline]\ncommand = \"true\"\n"),
    );
    assert_fixed(&d, &addr, 2, streak, &mut tl);
    tl.note("trigger", "file watcher");
    tl.finish();

    // 2. An in-place edit that breaks the TOML, then SIGHUP.
    let mut tl = Timeline::start(8, "broken main config, SIGHUP");
    std::fs::write(&config, main_config(&addr, "[escalation\n")).unwrap();
    sighup(&d);
    assert_broken_and_still_running(&d, &addr, &config, "config.toml", 4, 2, &mut tl);
    let (streak, _) = progress(&d, &addr, "target");
    tl.mark("fixed");
    std::fs::write(&config, main_config(&addr, "")).unwrap();
    sighup(&d);
    assert_fixed(&d, &addr, 1, streak, &mut tl);
    tl.note("trigger", "SIGHUP");
    tl.finish();
    assert_eq!(d.terminate(), Some(0));
}
