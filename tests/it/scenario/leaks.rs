//! Scenario 11: hung probes and heals with grandchildren for many cycles: nothing leaks.
//!
//! Probes, heals and both agent tiers hang past their timeouts while background grandchildren
//! (one of them ignoring SIGTERM) hold their pipes; a notifier leaves a grandchild behind after
//! exiting 0. Over many cycles we sample Talon's open fds and threads (/proc/PID/fd,
//! /proc/PID/status) and every process carrying a tag that Talon's environment passes down to
//! all its descendants — including orphans reparented away from Talon. No tagged process may
//! outlive its timeout plus grace; fds and threads must stay flat within a bound a per-cycle leak
//! would exceed; and nothing tagged survives Talon's exit.

use super::Timeline;
use super::flood::{metric, wait_json};
use crate::daemon::Daemon;
use crate::support::{free_port, http_get, talon, write};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A tagged process older than this outlived every timeout + grace in the config below.
const MAX_AGE_SECS: f64 = 6.0;

#[derive(Debug, Default, Clone)]
struct Sample {
    fds: usize,
    threads: usize,
    tagged: usize,
    /// Tagged processes older than MAX_AGE_SECS: (pid, age, cmdline).
    old: Vec<(i32, f64, String)>,
    zombies: usize,
}

fn clk_tck() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64
}

fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Fields after the `(comm)` of /proc/PID/stat: [0] = state, [1] = ppid, [19] = starttime.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(String::from).collect())
}

fn sample(talon: i32, tag: &str) -> Sample {
    let mut s = Sample {
        fds: std::fs::read_dir(format!("/proc/{talon}/fd"))
            .map(|d| d.count())
            .unwrap_or(0),
        threads: std::fs::read_to_string(format!("/proc/{talon}/status"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0),
        ..Default::default()
    };
    let (now, tck) = (uptime(), clk_tck());
    let needle = format!("SCEN11_TAG={tag}");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == talon {
            continue;
        }
        let Some(f) = stat_fields(pid) else { continue };
        if f[0] == "Z" && f[1] == talon.to_string() {
            s.zombies += 1;
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            continue;
        }
        s.tagged += 1;
        let age = now - f[19].parse::<f64>().unwrap_or(0.0) / tck;
        if age > MAX_AGE_SECS {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            s.old.push((pid, age, cmd));
        }
    }
    s
}

#[test]
fn s11_hung_probes_and_heals_with_grandchildren_leak_nothing_over_many_cycles() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let tag = format!("{}-{}", std::process::id(), free_port());
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 0.5
heal_timeout_secs = 0.4
[health]
bind = "{addr}"
[escalation]
heal_cooldown_secs = 0.3
heal_settle_secs = 0.1
max_heals_per_incident = 10000
agent_cooldown_secs = 0.3
critical_threshold_secs = 0.3
sos_cooldown_secs = 0.5
[agent]
cloud_command = "sleep 1000 & sleep 1000"
local_command = "sh -c 'sleep 1000 &'; sleep 1000"
timeout_secs = 0.4
[notify.pager]
kind = "command"
command = "sleep 1000 & cat > /dev/null"
[script.hang]
command = "sleep 1000 & sleep 1000"
timeout_secs = 0.3
critical = true
critical_after_consecutive_failures = 1
heal = "sleep 1000 & echo healing; sleep 1000"
[script.deep]
command = "sh -c 'sh -c \"sleep 1000\" & sleep 1000' & sleep 1000"
timeout_secs = 0.3
[script.stubborn]
command = "(trap '' TERM; sleep 1000) & sleep 1000"
timeout_secs = 0.3
[script.quick_exit]
command = "sleep 1000 & exit 1"
timeout_secs = 0.3
[script.ok]
command = "true"
"#
        ),
    );
    let mut c = talon(dir);
    c.env("SCEN11_TAG", &tag)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("talon.stderr")).unwrap());
    let mut d = Daemon {
        child: Some(c.spawn().expect("start talon run")),
        dir: dir.to_path_buf(),
        config: config.clone(),
    };
    let pid = d.pid();
    let counts = |d: &Daemon| {
        let (_, m) = http_get(&addr, "/metrics", Duration::from_secs(5))
            .unwrap_or_else(|| panic!("/metrics; log:\n{}", d.log()));
        (
            metric(&m, "talon_probe_failures_total"),
            metric(&m, "talon_escalation_actions_total"),
        )
    };

    let mut tl = Timeline::start(11, "hung probes, heals and agents with grandchildren");
    // Warm up until the whole ladder has turned at least once (heal, agents, a page).
    wait_json(
        &addr,
        "/health",
        "sos",
        Duration::from_secs(30),
        &d,
        |_, v| v["state"] == "sos",
    );
    tl.mark("ladder_turned");
    let (fail0, act0) = counts(&d);

    let run_for = Duration::from_secs(20);
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < run_for {
        let s = sample(pid, &tag);
        assert!(
            s.old.is_empty(),
            "processes outlived their timeout + grace: {:?}\nlog:\n{}",
            s.old,
            d.log()
        );
        samples.push(s);
        std::thread::sleep(Duration::from_millis(250));
    }
    tl.mark("sampled");
    let (fail1, act1) = counts(&d);
    let probe_failures = fail1 - fail0;
    let actions = act1 - act0;
    // Many cycles: four hanging probes fail about every 0.8 s (at least 10 cycles each even on a
    // loaded machine); heals and agents turn at their 0.3 s cooldowns.
    assert!(probe_failures >= 40.0, "{probe_failures} probe failures");
    assert!(actions >= 8.0, "{actions} escalation actions");

    let third = samples.len() / 3;
    let (first, last) = (&samples[..third], &samples[samples.len() - third..]);
    let max = |s: &[Sample], f: fn(&Sample) -> usize| s.iter().map(f).max().unwrap_or(0);
    let min = |s: &[Sample], f: fn(&Sample) -> usize| s.iter().map(f).min().unwrap_or(0);
    // In-flight work is bounded: 4 probes, a heal or agent, a notifier: ~3 processes each.
    assert!(
        max(&samples, |s| s.tagged) <= 40,
        "tagged processes: {:?}",
        samples.iter().map(|s| s.tagged).collect::<Vec<_>>()
    );
    assert!(max(&samples, |s| s.zombies) <= 10, "zombies pile up");
    // A leak of even one fd per cycle would add ~40 over the run.
    assert!(
        min(last, |s| s.fds) <= max(first, |s| s.fds) + 8,
        "fds grew: {:?}",
        samples.iter().map(|s| s.fds).collect::<Vec<_>>()
    );
    assert!(
        min(last, |s| s.threads) <= max(first, |s| s.threads) + 4,
        "threads grew: {:?}",
        samples.iter().map(|s| s.threads).collect::<Vec<_>>()
    );

    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(pid, &tag).tagged > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = sample(pid, &tag);
    assert_eq!(after.tagged, 0, "processes outlived talon: {after:?}");
    tl.mark("all_gone_after_exit");
    tl.note("samples", samples.len() as u64);
    tl.note("probe_failures", probe_failures);
    tl.note("escalation_actions", actions);
    tl.note("fds_min", min(&samples, |s| s.fds) as u64);
    tl.note("fds_max", max(&samples, |s| s.fds) as u64);
    tl.note("threads_min", min(&samples, |s| s.threads) as u64);
    tl.note("threads_max", max(&samples, |s| s.threads) as u64);
    tl.note("tagged_max", max(&samples, |s| s.tagged) as u64);
    tl.finish();
}
