//! `push` probes end to end: the real daemon, pings over raw HTTP from the test and through
//! `talon ping`, the per-probe token, failure bodies, and a restart that keeps the deadline.

use crate::daemon::Daemon;
use crate::support::{run, stderr, stdout, talon, write};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// `POST target` with `body` on a raw TCP connection; `(status, body)`.
fn post(addr: &str, target: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (code, body)
}

fn probe_of(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["probes"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .cloned()
        .unwrap_or_default()
}

fn output(status: &serde_json::Value, name: &str) -> String {
    probe_of(status, name)["output"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn cli(dir: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    let mut c = talon(dir);
    c.args(args).arg("--config").arg(config).current_dir(dir);
    run(c)
}

#[test]
fn pings_fail_and_recover_a_push_probe_and_a_restart_keeps_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = crate::support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 0.3
redact = ["hunter2-[0-9]+"]
[health]
bind = "{addr}"
[push.backup]
period_secs = 6
grace_secs = 1
critical = true
critical_after_consecutive_failures = 1
[push.other]
schedule = "0 3 * * *"
grace_secs = 600
"#
        ),
    );
    let mut d = Daemon::start(dir, &config);
    let limit = Duration::from_secs(60);
    d.wait_status("the push probe waiting for its first ping", limit, |v| {
        output(v, "backup").contains("no ping yet") && probe_of(v, "backup")["passed"] == true
    });

    // The URL carries the probe's own token.
    let out = cli(dir, &config, &["push-token", "backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let url = stdout(&out).trim().to_string();
    let prefix = format!("http://{addr}/ping/backup?token=");
    assert!(url.starts_with(&prefix), "{url}");
    let token = url[prefix.len()..].to_string();
    assert_eq!(token.len(), 32, "{url}");
    let other = cli(dir, &config, &["push-token", "other"]);
    let other_token = stdout(&other)
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(other_token, token, "each probe has its own token");
    let unknown = cli(dir, &config, &["push-token", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no push probe named `nope`"),
        "{}",
        stderr(&unknown)
    );

    // Wrong or missing tokens, another probe's token, unknown events: refused.
    assert_eq!(post(&addr, "/ping/backup", None, "").0, 401);
    assert_eq!(post(&addr, "/ping/backup?token=0000", None, "").0, 401);
    assert_eq!(
        post(
            &addr,
            &format!("/ping/backup?token={other_token}"),
            None,
            ""
        )
        .0,
        401
    );
    assert_eq!(
        post(
            &addr,
            &format!("/ping/backup/explode?token={token}"),
            None,
            ""
        )
        .0,
        404
    );

    // A valid token for a name that is not a push probe: the runtime answers 404.
    let api = std::fs::read_to_string(dir.join("state/api.token")).unwrap();
    let not_push = talon::probe::push::token(&api, "nope");
    let (code, body) = post(&addr, &format!("/ping/nope?token={not_push}"), None, "");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no push probe named `nope`"), "{body}");

    // A start, then a failure with the job's output as the body (raw HTTP, bearer token).
    let (code, body) = post(&addr, "/ping/backup/start", Some(&token), "");
    assert_eq!(code, 200, "{body}");
    let job_output = "copying 42 files with key=hunter2-991\nrsync: write failed: No space left on device (28)\n";
    let (code, body) = post(&addr, "/ping/backup/fail", Some(&token), job_output);
    assert_eq!(code, 200, "{body}");
    let v = d.wait_status("the failure report", limit, |v| {
        output(v, "backup").contains("No space left on device")
    });
    assert_eq!(probe_of(&v, "backup")["passed"], false, "{v:#}");
    // Kept in the store (so a restart remembers it), masked like any probe output.
    let deadline = Instant::now() + limit;
    let kept = loop {
        let kept = talon::store::Store::open_existing(&dir.join("state"))
            .ok()
            .flatten()
            .and_then(|s| s.kv_get("push.backup").ok().flatten())
            .unwrap_or_default();
        if kept.contains("No space left") || Instant::now() > deadline {
            break kept;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(kept.contains("No space left on device"), "{kept}");
    assert!(
        !kept.contains("hunter2-991"),
        "the secret was stored: {kept}"
    );
    // The incident carries the failing probe's output.
    let v = d.wait_status("an incident", limit, |v| !v["incident"]["id"].is_null());
    let id = match &v["incident"]["id"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let incident = d
        .json(&["incident", id.trim_start_matches('#')])
        .to_string();
    assert!(
        incident.contains("No space left on device"),
        "the incident names the job's failure: {incident}"
    );

    // `talon ping` from a script: success, with the run's duration measured from a start.
    let out = cli(dir, &config, &["ping", "backup", "--start"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = cli(dir, &config, &["ping", "backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("recorded"), "{}", stdout(&out));
    let v = d.wait_status("the success ping", limit, |v| {
        probe_of(v, "backup")["passed"] == true && output(v, "backup").contains("last ping")
    });
    assert!(output(&v, "backup").contains("ran "), "{v:#}");
    let last_ping_line = output(&v, "backup");
    let stamp = last_ping_line
        .split(['(', ';'])
        .next()
        .unwrap()
        .trim()
        .to_string();

    // A restart keeps the last ping (and so the deadline), then the probe fails when overdue.
    assert_eq!(d.terminate(), Some(0));
    let d = Daemon::start(dir, &config);
    let v = d.wait_status("the restarted daemon's first push result", limit, |v| {
        !output(v, "backup").is_empty()
    });
    let after = output(&v, "backup");
    assert!(
        after.starts_with(&stamp) || after.contains("late"),
        "the restart kept the last ping ({stamp}): {after}"
    );
    assert!(!after.contains("no ping yet"), "{after}");
    let v = d.wait_status("the overdue push probe", limit, |v| {
        output(v, "backup").contains("late")
    });
    assert_eq!(probe_of(&v, "backup")["passed"], false);

    // `talon check` reads the same record from the store.
    let out = cli(dir, &config, &["check", "--probe", "backup"]);
    assert!(
        stdout(&out).contains("late"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // The token never reaches the log.
    assert!(!d.log().contains(&token), "the ping token was logged");
    let t = Instant::now();
    drop(d);
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn push_probe_config_is_validated_with_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = write(
        dir,
        "config.toml",
        r#"state_dir = "state"
[push.none]
grace_secs = 5
[push.both]
period_secs = 60
schedule = "* * * * *"
[push.badcron]
schedule = "61 * * * *"
[push.typo]
period_secs = 60
grase_secs = 5
[push.never]
schedule = "0 0 31 feb *"
"#,
    );
    let out = cli(dir, &config, &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out) + &stdout(&out);
    for want in [
        "config.toml:2:1: error: push.none.period_secs",
        "needs `period_secs`",
        "config.toml:6:12: error: push.both.schedule",
        "not both",
        "minute field `61`: 61 is outside 0-59",
        "config.toml:11:1: error: push.typo.grase_secs",
        "never matches",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
}
