//! Scenario 13: a program deleted from PATH after start.
//!
//! A script probe runs `myprog` and its heal runs `myheal`, both found in a bin dir on the PATH
//! Talon inherited. Both are deleted while Talon runs: the probe fails naming the missing
//! program, the incident opens, the heal fails (it is missing too) and that failure escalates to
//! an SOS on a local command channel whose text names `myprog`: not silence. Putting the
//! programs back resolves the incident.

use super::Timeline;
use super::flood::wait_json;
use crate::daemon::Daemon;
use crate::support::{free_port, talon, write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn install(bin: &Path, name: &str, body: &str) {
    let p = bin.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn s13_program_deleted_from_path_fails_and_escalates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    install(&bin, "myprog", "echo all good");
    install(&bin, "myheal", "echo healed");
    let pages = dir.join("pages.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 0.2
[health]
bind = "{addr}"
[escalation]
heal_settle_secs = 0.2
heal_cooldown_secs = 600
critical_threshold_secs = 0.5
[notify.pager]
kind = "command"
command = "cat >> {pages}; echo >> {pages}; echo ---- >> {pages}"
[script.tool]
command = "myprog"
critical = true
critical_after_consecutive_failures = 2
heal = "myheal"
"#,
            pages = pages.display()
        ),
    );
    // The PATH Talon inherits (as from a service manager): the bin dir first.
    let mut c = talon(dir);
    c.env(
        "PATH",
        format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    )
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
    wait_json(&addr, "/status", "tool passing", LIMIT, &d, |_, s| {
        s["probes"][0]["status"] == "pass" && s["probes"][0]["streak"].as_u64() >= Some(2)
    });

    let mut tl = Timeline::start(13, "program deleted from PATH after start");
    std::fs::remove_file(bin.join("myprog")).unwrap();
    std::fs::remove_file(bin.join("myheal")).unwrap();
    let (_, s) = wait_json(&addr, "/status", "tool failing", LIMIT, &d, |_, s| {
        s["probes"][0]["status"] == "fail"
    });
    tl.mark("detected");
    let out = s["probes"][0]["output"].as_str().unwrap_or("").to_string();
    assert!(
        out.contains("myprog") && out.contains("not found"),
        "the failure names the missing program: {out}"
    );
    let (_, h) = wait_json(&addr, "/health", "an incident", LIMIT, &d, |c, v| {
        c == 503 && !v["incident_id"].is_null()
    });
    tl.mark("incident_opened");
    let id = h["incident_id"].as_str().unwrap().to_string();
    wait_json(&addr, "/health", "the SOS", LIMIT, &d, |_, v| {
        v["state"] == "sos"
    });
    let paged = super::wait_for("the SOS on the command channel", LIMIT, || {
        std::fs::read_to_string(&pages)
            .ok()
            .filter(|t| t.contains("myprog"))
    });
    tl.mark("paged");
    assert!(
        paged.contains("not found"),
        "the page says the program is missing: {paged}"
    );
    // The failed heal is on the incident's record, naming its own missing program.
    let detail = d.json(&["incident", &id]).to_string();
    assert!(
        detail.contains("myheal") && detail.contains("127"),
        "the heal ran and failed: {detail}"
    );

    // Programs back: recovered, incident closed, resolved sent.
    install(&bin, "myprog", "echo all good");
    install(&bin, "myheal", "echo healed");
    tl.mark("restored");
    wait_json(&addr, "/health", "healthy again", LIMIT, &d, |c, v| {
        c == 200 && v["incident_id"].is_null()
    });
    tl.mark("recovered");
    super::wait_for("the resolved message", LIMIT, || {
        std::fs::read_to_string(&pages)
            .ok()
            .filter(|t| t.to_lowercase().contains("resolved"))
    });
    tl.mark("resolved_sent");
    let pages_text = std::fs::read_to_string(&pages).unwrap();
    tl.note("messages", pages_text.matches("----").count() as u64);
    tl.finish();
    assert_eq!(d.terminate(), Some(0));
}
