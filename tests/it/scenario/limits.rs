//! Issue 22 item 4, the kinds scenarios 22 (script probe) and 23 (heal) do not cover: an agent
//! and a catalogue action that try to allocate 512 MiB under a per-kind `[limits]` table of
//! 256 MiB (the common `[limits]` allows 4 GiB, so the per-kind table is what holds). Each fails
//! on its own (`MemoryError` on the incident's record), the fix it would have made is never made,
//! Talon escalates to the SOS as configured (a `command` channel captures it), keeps answering,
//! recovers when the fault is cleared by hand and exits cleanly.

use super::flood::wait_json;
use super::{Timeline, wait_for};
use crate::daemon::Daemon;
use crate::support::{free_port, http_get, write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// The full path of `python3` (the configs give it to `sh -c`).
fn python() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A command that allocates 512 MiB and, only if that worked, does `then`.
fn hog(py: &str, then: &str) -> String {
    format!("{py} -c 'x = bytearray(512 * 1024 * 1024); print(len(x))' && {then}")
}

/// The `[notify.cap]` command channel: every message appended to `pages`.
fn capture(pages: &Path) -> String {
    format!(
        "[notify.cap]\nkind = \"command\"\ncommand = \"cat >> {p}; echo ---- >> {p}\"\n",
        p = pages.display()
    )
}

/// The incident's actions of `kind` (`talon incident N --json`).
fn actions(d: &Daemon, id: &str, kind: &str) -> Vec<serde_json::Value> {
    d.json(&["incident", id])["actions"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["kind"] == kind).cloned().collect())
        .unwrap_or_default()
}

/// Wait for the SOS in the captured pages; its text.
fn sos(pages: &Path) -> String {
    let text = wait_for("the SOS on the command channel", LIMIT, || {
        let text = std::fs::read_to_string(pages).ok()?;
        text.contains("SOS:").then_some(text)
    });
    assert_eq!(text.matches("SOS:").count(), 1, "one SOS: {text}");
    text
}

/// Clear the fault by hand: the incident closes, /health is 200 again, Talon exits 0.
fn recover(addr: &str, d: &mut Daemon, broken: &Path, tl: &mut Timeline) {
    let (code, _) = http_get(addr, "/health", Duration::from_secs(10)).expect("/health answers");
    assert_eq!(code, 503, "still answering, still failing");
    std::fs::remove_file(broken).unwrap();
    wait_json(addr, "/health", "healthy again", LIMIT, d, |c, v| {
        c == 200 && v["incident_id"].is_null()
    });
    tl.mark("recovered");
}

/// Scenario 24: the agent (autonomous, one tier) runs a 512 MiB allocation under
/// `[limits.agent] memory_mb = 256`: the run fails with `MemoryError`, its fix is never made, and
/// the incident goes on to critical and the SOS.
#[test]
fn s24_a_memory_hog_agent_is_stopped_by_its_limit_and_talon_pages() {
    let py = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let broken = dir.join("broken");
    let fixed = dir.join("fixed-by-agent");
    let pages = dir.join("pages.txt");
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
heal_settle_secs = 0.2
critical_threshold_secs = 0.5
[agent]
mode = "autonomous"
cloud_command = "{agent}"
timeout_secs = 30
[limits]
memory_mb = 4096
[limits.agent]
memory_mb = 256
[script.target]
command = "test ! -e {broken}"
critical = true
critical_after_consecutive_failures = 2
{cap}"#,
            agent = hog(
                &py,
                &format!("touch {} && rm -f {}", fixed.display(), broken.display())
            ),
            broken = broken.display(),
            cap = capture(&pages),
        ),
    );
    let mut d = Daemon::start(dir, &config);
    wait_json(&addr, "/status", "target passing", LIMIT, &d, |_, s| {
        s["probes"][0]["status"] == "pass"
    });
    let mut tl = Timeline::start(24, "memory hog in an agent under [limits.agent]");
    std::fs::write(&broken, "").unwrap();
    let (_, h) = wait_json(&addr, "/health", "an incident", LIMIT, &d, |c, v| {
        c == 503 && !v["incident_id"].is_null()
    });
    tl.mark("incident_opened");
    let id = h["incident_id"].as_str().unwrap().to_string();
    let agent = wait_for("the agent's failure on the record", LIMIT, || {
        actions(&d, &id, "agent").into_iter().find(|a| {
            a["output"]
                .as_str()
                .is_some_and(|o| o.contains("MemoryError"))
        })
    });
    tl.mark("agent_failed");
    assert_eq!(agent["exit"], "exit 1", "recorded as failed: {agent}");
    let text = sos(&pages);
    tl.mark("sos_sent");
    assert!(
        text.contains("- target: exit 1"),
        "the SOS names the probe: {text}"
    );
    assert!(
        text.contains("- agent #1 (tier 2 cloud): exit 1"),
        "the SOS says the agent failed: {text}"
    );
    assert!(
        !fixed.exists(),
        "the agent's allocation failed, so it fixed nothing"
    );
    assert!(broken.exists());
    let status = d.json(&["status"]);
    assert_eq!(status["state"], "sos", "{status}");
    recover(&addr, &mut d, &broken, &mut tl);
    tl.finish();
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
}

/// Scenario 25: the agent (a scripted stand-in, `propose` mode) proposes the catalogue action
/// `create-marker` (`approval = "auto"`), which allocates 512 MiB under `[limits.action]
/// memory_mb = 256` before it would create the marker: the action fails with `MemoryError` on the
/// incident's record, the marker is never made, and the incident goes on to the SOS.
#[test]
fn s25_a_memory_hog_action_is_stopped_by_its_limit_and_talon_pages() {
    let py = python();
    let standin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/agents/standin.py");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let marker = dir.join("marker");
    let pages = dir.join("pages.txt");
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
heal_settle_secs = 0.2
critical_threshold_secs = 0.5
[agent]
mode = "propose"
cloud_command = "{py} {standin} careful"
timeout_secs = 30
[actions.create-marker]
command = "{action}"
description = "create the marker the probe looks for"
for = ["marker"]
approval = "auto"
timeout_secs = 30
[limits]
memory_mb = 4096
[limits.action]
memory_mb = 256
[script.marker]
command = "test -e {marker} || {{ echo 'marker missing'; exit 1; }}"
critical = true
critical_after_consecutive_failures = 1
{cap}"#,
            standin = standin.display(),
            action = hog(&py, &format!("touch {}", marker.display())),
            marker = marker.display(),
            cap = capture(&pages),
        ),
    );
    // The fault from the start: the marker is missing.
    let mut tl = Timeline::start(25, "memory hog in a catalogue action under [limits.action]");
    let mut d = Daemon::start(dir, &config);
    let (_, h) = wait_json(&addr, "/health", "an incident", LIMIT, &d, |c, v| {
        c == 503 && !v["incident_id"].is_null()
    });
    tl.mark("incident_opened");
    let id = h["incident_id"].as_str().unwrap().to_string();
    let action = wait_for("the action's failure on the record", LIMIT, || {
        actions(&d, &id, "action").into_iter().find(|a| {
            a["output"]
                .as_str()
                .is_some_and(|o| o.contains("MemoryError"))
        })
    });
    tl.mark("action_failed");
    assert_eq!(action["exit"], "exit 1", "recorded as failed: {action}");
    let text = sos(&pages);
    tl.mark("sos_sent");
    assert!(
        text.contains("- marker: exit 1"),
        "the SOS names the probe: {text}"
    );
    assert!(
        text.contains("- action #2 `create-marker`: exit 1"),
        "the SOS says the action failed: {text}"
    );
    assert!(
        !marker.exists(),
        "the action's allocation failed, so it made no marker"
    );
    let status = d.json(&["status"]);
    assert_eq!(status["state"], "sos", "{status}");
    // Clear the fault by hand: the marker the action could not make.
    let (code, _) = http_get(&addr, "/health", Duration::from_secs(10)).expect("/health answers");
    assert_eq!(code, 503, "still answering, still failing");
    std::fs::write(&marker, "").unwrap();
    wait_json(&addr, "/health", "healthy again", LIMIT, &d, |c, v| {
        c == 200 && v["incident_id"].is_null()
    });
    tl.mark("recovered");
    tl.finish();
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
}

/// Scenario 27: a process storm in a script probe under `[limits.script] processes = 8`, with
/// Talon running as root (as the tests do here), where the kernel ignores `RLIMIT_NPROC`: the
/// child's own `pids` cgroup cuts it at the limit, the probe fails saying so, no storm process
/// outlives the run, and Talon goes on. The storm is bounded (60 background 2 s sleeps), never a
/// fork bomb.
#[test]
fn s27_a_process_storm_in_a_script_probe_is_cut_by_its_pids_cgroup_even_as_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: RLIMIT_NPROC holds by itself; this scenario is about root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", crate::support::free_port());
    // The storm's sleeps carry an odd duration, so they can be counted in /proc.
    let mark = format!("2.{:03}7", std::process::id() % 1000);
    let config = crate::support::write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 5
[health]
bind = "{addr}"
[limits.script]
processes = 8
[script.storm]
command = "for i in $(seq 1 60); do sleep {mark} 2>/dev/null & done; wait"
timeout_secs = 4
[script.ok]
command = "true"
"#
        ),
    );
    let mut d = crate::daemon::Daemon::start(dir, &config);
    let mut tl = Timeline::start(
        27,
        "process storm in a script probe under [limits.script] processes",
    );
    let (_, s) = super::flood::wait_json(
        &addr,
        "/status",
        "the storm's failure",
        LIMIT,
        &d,
        |_, s| {
            s["probes"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["name"] == "storm"
                        && p["status"] != serde_json::Value::Null
                        && p["status"] != "pass"
                        && p["output"]
                            .as_str()
                            .is_some_and(|o| o.contains("forks refused by the process limit"))
                })
            })
        },
    );
    tl.mark("storm_cut");
    let probes = s["probes"].as_array().unwrap();
    let ok = probes.iter().find(|p| p["name"] == "ok").unwrap();
    assert_eq!(ok["status"], "pass", "{s}");
    let storm = probes.iter().find(|p| p["name"] == "storm").unwrap();
    tl.note("output", storm["output"].as_str().unwrap_or(""));
    // At most the limit's worth of storm processes ever lives at once.
    let count = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&mark))
                    .unwrap_or(false)
            })
            .count()
    };
    let mut peak = 0;
    for _ in 0..20 {
        peak = peak.max(count());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        peak <= 8,
        "{peak} storm processes alive at once under processes = 8"
    );
    tl.note("peak_storm_processes", peak);
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
    wait_for("no storm process left", LIMIT, || {
        (count() == 0).then_some(())
    });
    tl.finish();
}
