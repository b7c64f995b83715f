//! `logfile` probes: a file written, rotated (renamed) and truncated while the real daemon
//! follows it; `talon check` on a file that already holds matches; validation.

use crate::daemon::Daemon;
use crate::support::{self, write};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn probe<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["probes"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

fn output(v: &serde_json::Value, name: &str) -> String {
    probe(v, name)["output"].as_str().unwrap_or("").to_string()
}

fn last_at(v: &serde_json::Value, name: &str) -> i64 {
    probe(v, name)["started_at"].as_i64().unwrap_or(0)
}

#[test]
fn the_daemon_follows_a_log_through_writes_rotation_and_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let gw = dir.join("gateway.log");
    let app = dir.join("app.log");
    append(&gw, "started\npolling\n");
    append(
        &app,
        &format!("ERROR {} the disk is on fire\n", "x".repeat(200)),
    );
    let config = write(
        dir,
        "config.toml",
        "state_dir = \"state\"\ncheck_interval_secs = 0.2\nservices_file = \"services.toml\"\n",
    );
    write(
        dir,
        "services.toml",
        &format!(
            r#"
[logfile.gateway_telegram_409]
path = "{gw}"
pattern = '409: Conflict'
window_secs = 600
max_matches = 2

[logfile.app_errors]
path = "{app}"
pattern = '^ERROR'
within_lines = 3
"#,
            gw = gw.display(),
            app = app.display()
        ),
    );
    let d = Daemon::start(dir, &config);
    let v = d.wait_status("both probes ran", Duration::from_secs(30), |v| {
        output(v, "gateway_telegram_409").starts_with("0 lines matching")
            && output(v, "app_errors").starts_with("1 line matching")
    });
    assert_eq!(
        probe(&v, "app_errors")["status"],
        "fail",
        "{}",
        output(&v, "app_errors")
    );
    assert!(
        output(&v, "app_errors").contains("more than max_matches = 0; last: ERROR"),
        "{v:#}"
    );

    // Two conflicts: at the limit, still passing — and still two after several more runs (the
    // file is not read again from the start each cycle).
    append(
        &gw,
        "telegram: 409: Conflict: terminated by other getUpdates request\nok\n",
    );
    append(&gw, "telegram: 409: Conflict: again\n");
    let v = d.wait_status("two matches", Duration::from_secs(30), |v| {
        output(v, "gateway_telegram_409").starts_with("2 lines matching")
    });
    assert_eq!(probe(&v, "gateway_telegram_409")["status"], "pass");
    let seen = last_at(&v, "gateway_telegram_409");
    let v = d.wait_status("five more runs", Duration::from_secs(30), |v| {
        last_at(v, "gateway_telegram_409") > seen + 5 * 200
    });
    assert!(
        output(&v, "gateway_telegram_409")
            .starts_with("2 lines matching /409: Conflict/ in the last 10m"),
        "{v:#}"
    );

    // Rotation by rename: one more line lands in the old file after the rename (a writer still
    // holding it), one in the new file. Both are counted, nothing twice.
    let rotated = dir.join("gateway.log.1");
    std::fs::rename(&gw, &rotated).unwrap();
    append(
        &rotated,
        "telegram: 409: Conflict: late write to the old file\n",
    );
    append(&gw, "telegram: 409: Conflict: first in the new file\n");
    let v = d.wait_status(
        "four matches across the rotation",
        Duration::from_secs(30),
        |v| output(v, "gateway_telegram_409").starts_with("4 lines matching"),
    );
    assert_eq!(probe(&v, "gateway_telegram_409")["status"], "fail");
    assert!(
        output(&v, "gateway_telegram_409")
            .contains("more than max_matches = 2; last: telegram: 409: Conflict"),
        "{v:#}"
    );
    let seen = last_at(&v, "gateway_telegram_409");
    let v = d.wait_status(
        "more runs after the rotation",
        Duration::from_secs(30),
        |v| last_at(v, "gateway_telegram_409") > seen + 3 * 200,
    );
    assert!(
        output(&v, "gateway_telegram_409").starts_with("4 lines matching"),
        "{v:#}"
    );

    // Truncation (copytruncate): the file restarts at 0 with three clean lines; the last three
    // lines hold no error any more.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&app, "ok\nok\nok\n");
    let v = d.wait_status("the truncated log is clean", Duration::from_secs(30), |v| {
        probe(v, "app_errors")["status"] == "pass"
    });
    assert!(
        output(&v, "app_errors").starts_with("0 lines matching /^ERROR/ in the last 3 lines"),
        "{v:#}"
    );
    append(&app, "ERROR again\n");
    d.wait_status(
        "a new error after the truncation",
        Duration::from_secs(30),
        |v| output(v, "app_errors").starts_with("1 line matching"),
    );
}

#[test]
fn talon_check_counts_what_is_already_there_and_validation_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("gateway.log");
    let old = dir.join("old.log");
    let body = "a\ntelegram: 409: Conflict\nb\ntelegram: 409: Conflict\n";
    append(&log, body);
    append(&old, body);
    // Lines in a file last written two hours ago are outside a ten-minute window.
    let st = Command::new("touch")
        .arg("-d")
        .arg("2 hours ago")
        .arg(&old)
        .status()
        .unwrap();
    assert!(st.success());
    write(
        dir,
        "config.toml",
        "services_file = \"services.toml\"\nstate_dir = \"state\"\n",
    );
    let probes = format!(
        "[logfile.now]\npath = \"{}\"\npattern = '409: Conflict'\nwindow_secs = 600\n\n\
         [logfile.old]\npath = \"{}\"\npattern = '409: Conflict'\nwindow_secs = 600\n\n\
         [logfile.lines]\npath = \"{}\"\npattern = '409: Conflict'\nwithin_lines = 2\nmax_matches = 1\n\n\
         [logfile.missing]\npath = \"{}\"\npattern = 'x'\nwithin_lines = 2\n",
        log.display(),
        old.display(),
        old.display(),
        dir.join("nope.log").display()
    );
    write(dir, "services.toml", &probes);
    let mut c = support::talon(dir);
    c.arg("--config")
        .arg(dir.join("config.toml"))
        .args(["check", "--json"]);
    let out = support::run(c);
    assert_eq!(out.status.code(), Some(1), "{}", support::stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |n: &str| {
        v.as_array()
            .or_else(|| v["results"].as_array())
            .and_then(|a| a.iter().find(|r| r["name"] == n))
            .cloned()
            .unwrap_or_else(|| panic!("no {n} in {v:#}"))
    };
    let now = find("now");
    assert_eq!(now["status"], "fail", "{now:#}");
    assert!(
        now["output"]
            .as_str()
            .unwrap()
            .starts_with("2 lines matching /409: Conflict/ in the last 10m of"),
        "{now:#}"
    );
    let old = find("old");
    assert_eq!(old["status"], "pass", "{old:#}");
    assert!(
        old["output"]
            .as_str()
            .unwrap()
            .starts_with("0 lines matching"),
        "{old:#}"
    );
    let lines = find("lines");
    assert_eq!(lines["status"], "pass", "{lines:#}");
    assert!(
        lines["output"]
            .as_str()
            .unwrap()
            .starts_with("1 line matching /409: Conflict/ in the last 2 lines"),
        "{lines:#}"
    );
    let missing = find("missing");
    assert_eq!(missing["status"], "fail", "{missing:#}");
    assert!(
        missing["output"]
            .as_str()
            .unwrap()
            .ends_with("nope.log: no such file"),
        "{missing:#}"
    );

    // Validation: a typo, a bad regex, both scopes at once, neither.
    for (body, key, msg) in [
        (
            "path = \"/x\"\npatern = 'a'\nwindow_secs = 5",
            "patern",
            "did you mean `pattern`?",
        ),
        (
            "path = \"/x\"\npattern = '('\nwindow_secs = 5",
            "logfile.t.pattern",
            "invalid regular expression",
        ),
        (
            "path = \"/x\"\npattern = 'a'\nwindow_secs = 5\nwithin_lines = 3",
            "logfile.t.within_lines",
            "not both",
        ),
        (
            "path = \"/x\"\npattern = 'a'",
            "logfile.t.pattern",
            "give window_secs",
        ),
        (
            "path = \"x.log\"\npattern = 'a'\nwindow_secs = 5",
            "logfile.t.path",
            "absolute",
        ),
    ] {
        write(dir, "services.toml", &format!("[logfile.t]\n{body}\n"));
        let mut c = support::talon(dir);
        c.arg("--config")
            .arg(dir.join("config.toml"))
            .arg("validate");
        let out = support::run(c);
        let err = format!("{}{}", support::stdout(&out), support::stderr(&out));
        assert_eq!(out.status.code(), Some(2), "{err}");
        let line = err
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("no diagnostic for {key}:\n{err}"));
        assert!(
            line.contains(msg) && line.contains("services.toml:"),
            "{line}"
        );
    }
}
