//! Escalation policies and maintenance windows through the real binary: `talon validate`
//! names every problem with file:line:column, and `talon maintenance` reaches the running
//! daemon (token-protected), holds its pages during a window and lets them go after it, to the
//! channels of the policy's step only.

use crate::daemon::Daemon;
use crate::support::{free_port, run, stderr, stdout, talon, write};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

fn validate_json(dir: &Path, main: &str, services: &str) -> (Option<i32>, serde_json::Value) {
    write(dir, "services.toml", services);
    let cfg = write(
        dir,
        "config.toml",
        &format!("services_file = \"services.toml\"\n{main}"),
    );
    let mut c = talon(dir);
    c.args(["validate", "--json", "--no-resolve", "--config"])
        .arg(&cfg);
    let out = run(c);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("json: {} {}", stdout(&out), stderr(&out));
    });
    (out.status.code(), v)
}

fn find<'a>(list: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
        .unwrap_or_else(|| panic!("nothing at {key}: {list:#}"))
}

fn at(e: &serde_json::Value, file: &str, line: u64, column: u64, msg: &str) {
    assert!(e["file"].as_str().unwrap().ends_with(file), "{e}");
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(line), Some(column)),
        "{e}"
    );
    assert!(
        e["message"].as_str().unwrap().contains(msg),
        "{e} lacks {msg:?}"
    );
}

const MAIN: &str = r#"[notify.ops]
kind = "command"
command = "cat"

[[policy.default.step]]
after_secs = 0
channels = ["ops"]

[[policy.default.step]]
after_secs = 0
channels = ["pager"]

[[maintenance]]
probes = ["api"]
schedule = "sun 02:00-02:00"

[[maintenance]]
name = "long"
probes = ["api"]
start = "2026-12-01T00:00:00Z"
end = "2026-12-20T00:00:00Z"
"#;

const SERVICES: &str = r#"[script.api]
command = "true"
critical = true
policy = "nope"

[script.db]
command = "true"
severity = "urgent"
"#;

#[test]
fn validate_names_every_policy_and_window_problem_with_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, v) = validate_json(tmp.path(), MAIN, SERVICES);
    assert_eq!(code, Some(2), "{v:#}");
    let errors = &v["errors"];
    at(
        find(errors, "policy.default.step[1].channels"),
        "config.toml",
        12,
        12,
        "unknown channel `pager` (channels: ops)",
    );
    at(
        find(errors, "policy.default.step[1].after_secs"),
        "config.toml",
        11,
        14,
        "overlapping steps",
    );
    at(
        find(errors, "maintenance[0].schedule"),
        "config.toml",
        16,
        12,
        "never matches",
    );
    at(
        find(errors, "script.api.policy"),
        "services.toml",
        4,
        10,
        "unknown policy `nope` (policies: default)",
    );
    at(
        find(errors, "script.db.severity"),
        "services.toml",
        8,
        12,
        "must be \"page\" or \"ticket\"",
    );
    // A window longer than a week is a warning, not an error.
    at(
        find(&v["warnings"], "maintenance[1].end"),
        "config.toml",
        22,
        7,
        "longer than a week",
    );
}

#[test]
fn a_typo_in_a_step_and_a_ticket_without_a_route_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let main = "[notify.ops]\nkind = \"command\"\ncommand = \"cat\"\n\n[[policy.db.step]]\nafter_secs = 0\nchanels = [\"ops\"]\n";
    let services = "[script.api]\ncommand = \"true\"\nseverity = \"ticket\"\n";
    let (code, v) = validate_json(tmp.path(), main, services);
    assert_eq!(code, Some(2), "{v:#}");
    let text = v["errors"].to_string();
    assert!(text.contains("chanels"), "{text}");
    at(
        find(&v["errors"], "script.api.severity"),
        "services.toml",
        3,
        12,
        "needs a [policy.ticket]",
    );
}

#[test]
fn a_valid_policy_and_windows_pass_and_show_in_talon_config() {
    let tmp = tempfile::tempdir().unwrap();
    let main = r#"[notify.ops]
kind = "command"
command = "cat"

[[policy.default.step]]
after_secs = 0
channels = ["ops"]

[[maintenance]]
name = "sunday"
probes = ["api*"]
schedule = ["sun 02:00-04:00", "wed 23:00-01:00"]
heal = true
"#;
    let services = "[script.api]\ncommand = \"true\"\ncritical = true\n";
    let (code, v) = validate_json(tmp.path(), main, services);
    assert_eq!(code, Some(0), "{v:#}");
    let mut c = talon(tmp.path());
    c.args(["config", "--json", "--config"])
        .arg(tmp.path().join("config.toml"));
    let out = run(c);
    let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        cfg["policy"]["default"]["step"][0]["channels"][0], "ops",
        "{cfg:#}"
    );
    assert_eq!(
        cfg["maintenance"][0]["schedule"][1], "wed 23:00-01:00",
        "{cfg:#}"
    );
    assert_eq!(cfg["maintenance"][0]["heal"], true);
}

/// A raw HTTP POST (no client library needed for one request).
fn post(addr: &str, path: &str, token: Option<&str>, body: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn talon_maintenance_holds_pages_and_the_chain_pages_only_its_step() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let fault = dir.join("fault");
    let (a_log, b_log) = (dir.join("a.log"), dir.join("b.log"));
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 0.3
[health]
bind = "{addr}"
[escalation]
critical_threshold_secs = 0.5
[notify.a]
kind = "command"
command = "cat >> {a}"
[notify.b]
kind = "command"
command = "cat >> {b}"
[[policy.default.step]]
after_secs = 0
channels = ["a"]
[[policy.default.step]]
after_secs = 3600
channels = ["b"]
[script.target]
command = "test ! -e {fault}"
critical = true
critical_after_consecutive_failures = 1
"#,
            a = a_log.display(),
            b = b_log.display(),
            fault = fault.display()
        ),
    );
    let d = Daemon::start(dir, &config);
    let ctl = |args: &[&str]| {
        let mut c = talon(dir);
        c.args(args).arg("--config").arg(&config).current_dir(dir);
        run(c)
    };
    d.wait_status("healthy", Duration::from_secs(30), |v| {
        v["state"] == "healthy"
    });
    // Without the token the endpoint refuses.
    assert_eq!(
        post(&addr, "/maintenance", None, r#"{"action":"list"}"#),
        401
    );
    let out = ctl(&["maintenance", "start", "--probes", "targ*", "--for", "1h"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("manual-1"), "{}", stdout(&out));
    let out = ctl(&["maintenance", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("manual-1 (runtime): targ* — OPEN until"),
        "{}",
        stdout(&out)
    );
    // A pattern that matches nothing is refused (exit 1), as is ending an unknown window.
    let out = ctl(&[
        "maintenance",
        "start",
        "--probes",
        "nothing*",
        "--for",
        "1h",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = ctl(&["maintenance", "end", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // The probe fails inside the window: probed and recorded, but no incident, no page.
    std::fs::write(&fault, "").unwrap();
    d.wait_status("target failing 5 times", Duration::from_secs(30), |v| {
        v["probes"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "target"))
            .is_some_and(|p| p["passed"] == false && p["streak"].as_u64().unwrap_or(0) >= 5)
    });
    let v = d.json(&["status"]);
    assert_eq!(v["state"], "degraded", "{v:#}");
    assert!(v["incident"].is_null(), "{v:#}");
    assert!(
        !a_log.exists() && !b_log.exists(),
        "nothing paged inside the window"
    );

    // The window ends: the incident opens at once and the SOS goes to step 1's channel only.
    let out = ctl(&["maintenance", "end"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    d.wait_status("sos", Duration::from_secs(30), |v| v["state"] == "sos");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&a_log)
        .unwrap_or_default()
        .contains("SOS")
    {
        assert!(Instant::now() < deadline, "no SOS on a; log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!b_log.exists(), "step 2 (b) is an hour away");
    let out = ctl(&["status"]);
    let text = stdout(&out);
    assert!(text.contains("reached:  default step 1 of 2"), "{text}");
    assert!(
        text.contains("escalation: default step 2 of 2: b"),
        "{text}"
    );
}
