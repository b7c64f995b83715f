//! Issue 22: reloads under pressure.
//!
//! Scenario 19: secrets fetched by `[worker.secrets]` commands across hot reloads — a reload
//! that leaves the worker alone keeps them redacted (the agent's prompt shows `[REDACTED]` where
//! the worker printed its secret); a reload that restarts the worker but leaves the secret's
//! command alone does not run that command again; a changed command is run again.
//! Scenario 20: 1 000 SIGHUPs sent as fast as possible after one edit end in exactly one applied
//! reload of the newest file, and the daemon keeps answering and probing.

use super::flood::{get_json, metric, wait_json};
use super::{Timeline, wait_for};
use crate::daemon::Daemon;
use crate::support::{free_port, http_get, write};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |t| t.lines().count())
}

fn worker_pid(addr: &str) -> Option<u64> {
    get_json(addr, "/status")?.1["worker"]["pid"].as_u64()
}

fn reloads(addr: &str) -> f64 {
    let (_, m) = http_get(addr, "/metrics", Duration::from_secs(5)).unwrap();
    metric(&m, "talon_config_reload_successes_total")
}

#[test]
fn s19_worker_secrets_are_kept_across_reloads_and_refetched_when_their_command_changes() {
    const SECRET: &str = "wsec-19a7c3e5d1";
    const SECRET2: &str = "wsec-2b8d4f6a0e";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let fetches = dir.join("fetches");
    let prompt = dir.join("prompt.txt");
    let fault = dir.join("fault");
    let text = |secret: &str, sleep: u32, extra: &str| {
        format!(
            r#"state_dir = "state"
check_interval_secs = 0.3
heal_script = "exit 1"
[log]
file = "{log}"
[health]
bind = "{addr}"
[worker]
command = ["sh", "-c", "echo \"worker key $API_SECRET\" >&2; exec sleep {sleep}"]
log_stderr = "{err}"
[worker.secrets.API_SECRET]
command = "echo x >> {fetches}; echo {secret}"
[escalation]
heal_settle_secs = 0.2
heal_cooldown_secs = 600
max_heals_per_incident = 1
agent_cooldown_secs = 600
[agent]
local_command = "cat > {prompt}"
timeout_secs = 10
[script.api]
command = "test ! -e {fault}"
critical = true
critical_after_consecutive_failures = 1
{extra}
"#,
            log = dir.join("talon.log").display(),
            err = dir.join("worker.err").display(),
            fetches = fetches.display(),
            prompt = prompt.display(),
            fault = fault.display(),
        )
    };
    let config = write(dir, "config.toml", &text(SECRET, 600, ""));
    let mut d = Daemon::start(dir, &config);
    let pid0 = wait_for("a worker", LIMIT, || worker_pid(&addr));
    assert_eq!(lines(&fetches), 1, "the secret was fetched once");
    let hup = |d: &Daemon| kill(Pid::from_raw(d.pid()), Signal::SIGHUP).unwrap();
    let mut tl = Timeline::start(19, "worker secrets across reloads");

    // 1. A reload that leaves [worker] alone: nothing refetched, the secret still redacted.
    std::fs::write(
        &config,
        text(SECRET, 600, "[script.extra]\ncommand = \"true\""),
    )
    .unwrap();
    hup(&d);
    wait_json(&addr, "/health", "the reload", LIMIT, &d, |_, v| {
        v["probe_count"] == 3
    });
    tl.mark("reloaded_probes_only");
    std::fs::write(&fault, "").unwrap();
    let prompt_text = wait_for("the agent's prompt", LIMIT, || {
        std::fs::read_to_string(&prompt)
            .ok()
            .filter(|t| t.contains("Worker stderr log"))
    });
    tl.mark("agent_prompt");
    assert!(
        !prompt_text.contains(SECRET),
        "the worker secret leaked after a reload:\n{prompt_text}"
    );
    assert!(
        prompt_text.contains("worker key [REDACTED]"),
        "{prompt_text}"
    );
    std::fs::remove_file(&fault).unwrap();
    assert_eq!(worker_pid(&addr), Some(pid0), "the worker was left alone");
    assert_eq!(
        lines(&fetches),
        1,
        "no refetch for a reload that did not touch it"
    );

    // 2. [worker] changed, the secret's command not: the worker restarts with the kept value.
    std::fs::write(
        &config,
        text(SECRET, 601, "[script.extra]\ncommand = \"true\""),
    )
    .unwrap();
    hup(&d);
    let pid1 = wait_for("the restarted worker", LIMIT, || {
        worker_pid(&addr).filter(|p| *p != pid0)
    });
    tl.mark("worker_restarted_secret_kept");
    assert_eq!(
        lines(&fetches),
        1,
        "the unchanged secret command was not run again"
    );
    let err_log = dir.join("worker.err");
    wait_for("the new worker printed its secret", LIMIT, || {
        (std::fs::read_to_string(&err_log)
            .unwrap_or_default()
            .matches(&format!("worker key {SECRET}"))
            .count()
            >= 2)
            .then_some(())
    });

    // 3. The secret's command changed: fetched again, and the worker gets the new value.
    std::fs::write(
        &config,
        text(SECRET2, 601, "[script.extra]\ncommand = \"true\""),
    )
    .unwrap();
    hup(&d);
    wait_for("the secret fetched again", LIMIT, || {
        (lines(&fetches) == 2).then_some(())
    });
    wait_for("the worker with the new secret", LIMIT, || {
        std::fs::read_to_string(&err_log)
            .unwrap_or_default()
            .contains(&format!("worker key {SECRET2}"))
            .then_some(())
    });
    tl.mark("refetched_on_change");
    let pid2 = worker_pid(&addr).unwrap();
    assert_ne!(pid2, pid1);
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
    let log = std::fs::read_to_string(dir.join("talon.log")).unwrap();
    assert!(
        !log.contains(SECRET) && !log.contains(SECRET2),
        "a secret reached the log:\n{log}"
    );
    tl.finish();
}

#[test]
fn s20_a_storm_of_1000_sighups_is_one_reload_of_the_newest_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let base = format!(
        "state_dir = \"state\"\ncheck_interval_secs = 0.3\n[health]\nbind = \"{addr}\"\n[script.a]\ncommand = \"true\"\n"
    );
    let config = write(dir, "config.toml", &base);
    let mut d = Daemon::start(dir, &config);
    wait_json(&addr, "/health", "healthy", LIMIT, &d, |c, v| {
        c == 200 && v["probe_count"] == 1
    });
    let before = reloads(&addr);
    let (_, s) = get_json(&addr, "/status").unwrap();
    let started = s["probes"][0]["started_at"].as_i64().unwrap_or(0);
    std::fs::write(
        &config,
        format!("{base}[script.newest]\ncommand = \"true\"\n"),
    )
    .unwrap();
    let mut tl = Timeline::start(20, "1000 SIGHUPs in a burst");
    let t = Instant::now();
    for _ in 0..1000 {
        kill(Pid::from_raw(d.pid()), Signal::SIGHUP).unwrap();
    }
    let burst = t.elapsed();
    tl.mark("sent");
    wait_json(
        &addr,
        "/health",
        "the newest file applied",
        LIMIT,
        &d,
        |c, v| c == 200 && v["probe_count"] == 2,
    );
    tl.mark("applied");
    wait_json(
        &addr,
        "/status",
        "probing after the storm",
        LIMIT,
        &d,
        |_, s| s["probes"][0]["started_at"].as_i64().unwrap_or(0) > started,
    );
    let applied = reloads(&addr) - before;
    assert_eq!(applied, 1.0, "one applied reload, not {applied}");
    assert!(
        d.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "still running"
    );
    let log = d.log();
    assert_eq!(
        log.matches("config reloaded").count(),
        1,
        "one reload logged:\n{log}"
    );
    tl.note("burst_ms", burst.as_millis() as u64);
    tl.finish();
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn s21_sigstop_then_sigcont_is_one_catch_up_cycle_not_one_per_missed_interval() {
    // The issue's 60 s stop is scaled down to 10 s with a 0.25 s interval: 40 missed cycles.
    const STOP: Duration = Duration::from_secs(10);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let runs = dir.join("runs");
    let config = write(
        dir,
        "config.toml",
        &format!(
            "state_dir = \"state\"\ncheck_interval_secs = 0.25\n[health]\nbind = \"{addr}\"\n[script.count]\ncommand = \"echo x >> {}\"\n",
            runs.display()
        ),
    );
    let mut d = Daemon::start(dir, &config);
    wait_for("probing", LIMIT, || (lines(&runs) >= 3).then_some(()));
    let pid = Pid::from_raw(d.pid());
    kill(pid, Signal::SIGSTOP).unwrap();
    // Let a probe that was running when stopped finish, then count.
    std::thread::sleep(Duration::from_millis(500));
    let at_stop = lines(&runs);
    let mut tl = Timeline::start(21, "SIGSTOP for 10 s, then SIGCONT");
    std::thread::sleep(STOP);
    assert_eq!(lines(&runs), at_stop, "nothing ran while stopped");
    kill(pid, Signal::SIGCONT).unwrap();
    tl.mark("continued");
    wait_for("the catch-up cycle", LIMIT, || {
        (lines(&runs) > at_stop).then_some(())
    });
    tl.mark("caught_up");
    let t = Instant::now();
    let first = lines(&runs);
    std::thread::sleep(Duration::from_secs(1));
    let in_next_second = lines(&runs) - first;
    let (code, _) = http_get(&addr, "/health", Duration::from_secs(10)).unwrap();
    assert_eq!(code, 200);
    // One catch-up, then the normal cadence (4 a second), not the 40 missed cycles at once.
    assert!(
        first - at_stop <= 2 && in_next_second <= 8,
        "{} runs on resume, {in_next_second} in the second after ({:?})",
        first - at_stop,
        t.elapsed()
    );
    tl.note("runs_on_resume", (first - at_stop) as u64);
    tl.note("runs_in_next_second", in_next_second as u64);
    tl.finish();
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
}
