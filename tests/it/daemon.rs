//! `talon run` end to end: the real binary, real probes, real heals, the real store.

use crate::support::{http_get, run, stdout, talon, write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A daemon under test; killed (and its group) when dropped.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, config: &Path) -> Daemon {
        Self::start_bin(&crate::support::talon_bin(), dir, config)
    }

    /// [`Daemon::start`] running the binary at `bin` (a private copy, for a test that measures
    /// the pages of its own executable: other tests' daemons map the shared one).
    pub fn start_bin(bin: &Path, dir: &Path, config: &Path) -> Daemon {
        // Tests run in parallel: none may take the default 127.0.0.1:9999 (nor answer another
        // test's `talon status`). A test that wants the HTTP surfaces binds its own free port.
        let text = std::fs::read_to_string(config).unwrap();
        if !text.contains("[health]") {
            std::fs::write(config, format!("{text}\n[health]\nenabled = false\n")).unwrap();
        }
        let mut c = crate::support::talon_at(bin, dir);
        c.arg("run").arg("--config").arg(config).current_dir(dir);
        c.stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("talon.stderr")).unwrap());
        // A freshly copied binary can be "text file busy" for a moment: a child another test
        // forked may still hold the copy's write descriptor until it execs.
        let deadline = Instant::now() + Duration::from_secs(5);
        let child = loop {
            match c.spawn() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r.expect("start talon run"),
            }
        };
        Daemon {
            child: Some(child),
            dir: dir.to_path_buf(),
            config: config.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// `talon <verb> --json` parsed (status, incidents …).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut c = talon(&self.dir);
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--json")
            .current_dir(&self.dir);
        let out = run(c);
        serde_json::from_str(&stdout(&out)).unwrap_or(serde_json::Value::Null)
    }

    /// Wait until `pred` holds for `talon status --json`, or fail with the daemon's log.
    pub fn wait_status(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.json(&["status"]);
            if pred(&v) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; last status: {v:#}\nlog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the daemon wrote to stderr and to its log file (`state/talon.log`).
    pub fn log(&self) -> String {
        let stderr = std::fs::read_to_string(self.dir.join("talon.stderr")).unwrap_or_default();
        let file = std::fs::read_to_string(self.dir.join("state/talon.log")).unwrap_or_default();
        format!("{stderr}{file}")
    }

    /// SIGTERM and wait for the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("talon did not exit after SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn state(v: &serde_json::Value) -> &str {
    v["state"].as_str().unwrap_or("")
}

#[test]
fn failure_is_healed_verified_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = write(
        dir,
        "config.toml",
        r#"
state_dir = "state"
check_interval_secs = 0.3
services_file = "services.toml"
[escalation]
heal_settle_secs = 0.2
heal_cooldown_secs = 1
"#,
    );
    write(
        dir,
        "services.toml",
        &format!(
            "[script.target]\ncommand = \"test ! -e {fault}\"\ncritical = true\nheal = \"rm -f {fault}\"\n",
            fault = dir.join("fault").display()
        ),
    );
    let mut d = Daemon::start(dir, &config);
    d.wait_status(
        "healthy with a passing probe",
        Duration::from_secs(30),
        |v| state(v) == "healthy" && v["probes"][0]["status"] == "pass",
    );

    std::fs::write(dir.join("fault"), "").unwrap();
    // The heal removes the fault; wait for the incident to open and close.
    let deadline = Instant::now() + Duration::from_secs(30);
    let incidents = loop {
        let v = d.json(&["incidents"]);
        if v.as_array()
            .is_some_and(|a| a.len() == 1 && !a[0]["closed_at"].is_null())
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no closed incident: {v:#}\nlog:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!dir.join("fault").exists(), "the heal ran");
    assert_eq!(incidents[0]["probes"][0], "target");
    let id = incidents[0]["id"].as_u64().unwrap().to_string();
    let detail = d.json(&["incident", &id]);
    let text = detail.to_string();
    assert!(
        text.contains("heal"),
        "the heal is in the incident timeline: {detail:#}"
    );
    assert!(text.contains("fixed"), "verified by re-probe: {detail:#}");
    d.wait_status("healthy again", Duration::from_secs(30), |v| {
        state(v) == "healthy"
    });

    assert_eq!(d.terminate(), Some(0), "SIGTERM exits 0; log:\n{}", d.log());
}

#[test]
fn a_second_daemon_on_the_same_state_dir_exits_2_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = write(
        dir,
        "config.toml",
        "state_dir = \"state\"\ncheck_interval_secs = 1\n[script.ok]\ncommand = \"true\"\ntimeout_secs = 1\n",
    );
    let mut first = Daemon::start(dir, &config);
    first.wait_status("running", Duration::from_secs(30), |v| {
        v["probes"][0]["status"] == "pass"
    });
    let mut c = talon(dir);
    c.arg("run").arg("--config").arg(&config).current_dir(dir);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    let err = crate::support::stderr(&out);
    assert!(
        err.contains(&first.pid().to_string()),
        "names the holder's pid: {err}"
    );
    assert_eq!(first.terminate(), Some(0));
}

#[test]
fn invalid_config_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write(tmp.path(), "config.toml", "check_interval_secs = -1\n");
    let mut c = talon(tmp.path());
    c.arg("run").arg("--config").arg(&config);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        crate::support::stderr(&out).contains("check_interval_secs: must be a positive number")
    );
}

/// True while `pid` exists and is not a zombie.
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn read_pid(path: &Path, limit: Duration, d: &Daemon) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && let Ok(p) = s.trim().parse()
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared; log:\n{}",
            path.display(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_leaves_no_worker_grandchild_or_heal_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let p = |n: &str| dir.join(n).display().to_string();
    std::fs::write(dir.join("fault"), "").unwrap();
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"
state_dir = "state"
check_interval_secs = 0.3
heal_timeout_secs = 600
[worker]
command = ["sh", "-c", "sleep 300 & echo $! > {wgc}; wait"]
drain_timeout_secs = 1
[script.target]
command = "test ! -e {fault}"
critical = true
critical_after_consecutive_failures = 1
heal = "sleep 300 & echo $! > {hgc}; sleep 300"
"#,
            wgc = p("worker-grandchild.pid"),
            fault = p("fault"),
            hgc = p("heal-grandchild.pid"),
        ),
    );
    let mut d = Daemon::start(dir, &config);
    let worker_gc = read_pid(
        &dir.join("worker-grandchild.pid"),
        Duration::from_secs(30),
        &d,
    );
    let heal_gc = read_pid(
        &dir.join("heal-grandchild.pid"),
        Duration::from_secs(30),
        &d,
    );
    assert!(running(worker_gc) && running(heal_gc));
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
    let deadline = Instant::now() + Duration::from_secs(10);
    while (running(worker_gc) || running(heal_gc)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !running(worker_gc),
        "the worker's grandchild outlived talon"
    );
    assert!(
        !running(heal_gc),
        "the in-flight heal's grandchild outlived talon"
    );
}

#[test]
fn killed_worker_is_restarted_and_stays_healthy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = crate::support::free_port();
    let addr = format!("127.0.0.1:{}", crate::support::free_port());
    let worker = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/worker.py");
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"
state_dir = "state"
check_interval_secs = 1
[worker]
command = ["python3", "{worker}"]
port = {port}
health_endpoint = "http://127.0.0.1:{port}/health"
health_interval_secs = 0.3
startup_sync_delay_secs = 0.1
[worker.env]
DEMO_PORT = "{port}"
DEMO_DIR = "{demo}"
[health]
bind = "{addr}"
"#,
            worker = worker.display(),
            demo = dir.join("demo").display(),
        ),
    );
    // With the HTTP surfaces on, `talon status` answers from the live daemon (keys `status`,
    // `output`).
    let mut d = Daemon::start(dir, &config);
    let first = d.wait_status("worker healthy", Duration::from_secs(30), |v| {
        v["probes"].as_array().is_some_and(|a| {
            a.iter()
                .any(|p| p["name"] == "worker" && p["status"] == "pass")
        })
    });
    let out = |v: &serde_json::Value| {
        v["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "worker")
            .unwrap()["output"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let first_out = out(&first);
    let pid: i32 = first_out
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.wait_status("a new healthy worker", Duration::from_secs(30), |v| {
        let o = v["probes"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == "worker").cloned());
        o.is_some_and(|p| p["status"] == "pass" && p["output"].as_str() != Some(first_out.as_str()))
    });
    // The restart is counted where Prometheus sees it.
    let restarts = |m: &str| -> Option<f64> {
        m.lines()
            .find(|l| l.starts_with("talon_worker_restarts_total "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = http_get(&addr, "/metrics", Duration::from_secs(5)).map(|(_, b)| b);
        if m.as_deref().and_then(restarts).is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "talon_worker_restarts_total stayed 0: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(d.terminate(), Some(0));
}

fn wait_health(
    addr: &str,
    d: &Daemon,
    what: &str,
    pred: impl Fn(u16, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((code, body)) = http_get(addr, "/health", Duration::from_secs(5)) {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if pred(code, &v) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn health_follows_failure_and_a_bad_reload_keeps_the_last_good_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = crate::support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let fault = dir.join("fault");
    let config = write(
        dir,
        "config.toml",
        &format!(
            "state_dir = \"state\"\ncheck_interval_secs = 0.3\nservices_file = \"services.toml\"\n[health]\nbind = \"{addr}\"\n[escalation]\nheal_cooldown_secs = 600\nheal_settle_secs = 0.2\n"
        ),
    );
    let good = format!(
        "[script.target]\ncommand = \"test ! -e {}\"\ncritical = true\n",
        fault.display()
    );
    write(dir, "services.toml", &good);
    let mut d = Daemon::start(dir, &config);
    wait_health(&addr, &d, "200 healthy", |c, v| {
        c == 200 && v["state"] == "healthy" && v["probe_count"] == 1
    });

    // Break the target: 503 with the state and the failing probe.
    std::fs::write(&fault, "").unwrap();
    let v = wait_health(&addr, &d, "503", |c, _| c == 503);
    assert_eq!(v["ok"], false);
    assert!(
        v["failed_probes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "target"),
        "{v}"
    );
    assert!(!v["incident_id"].is_null());
    std::fs::remove_file(&fault).unwrap();
    wait_health(&addr, &d, "back to 200", |c, v| {
        c == 200 && v["state"] == "healthy"
    });
    // `talon status` prefers the daemon's live view when it answers.
    let live = d.json(&["status"]);
    assert_eq!(live["source"], "daemon", "{live}");
    assert_eq!(live["state"], "healthy", "{live}");
    assert!(
        live["probes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "target"),
        "{live}"
    );

    // A broken probes file, by editor-style rename, then SIGHUP: the probe keeps running and the
    // error is visible with its position; fixing the file clears it.
    let tmpfile = dir.join("services.toml.tmp");
    std::fs::write(&tmpfile, "[script.target\n").unwrap();
    std::fs::rename(&tmpfile, dir.join("services.toml")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let v = wait_health(&addr, &d, "config_error", |_, v| {
        !v["config_error"].is_null()
    });
    assert!(
        v["config_error"]["file"]
            .as_str()
            .unwrap()
            .ends_with("services.toml"),
        "{v}"
    );
    assert_eq!(v["config_error"]["line"], 1);
    assert_eq!(v["probe_count"], 1, "the last good probes keep running");
    let (_, metrics) = http_get(&addr, "/metrics", Duration::from_secs(5)).unwrap();
    assert!(
        metrics.contains("talon_config_reload_failures_total"),
        "{metrics}"
    );
    write(
        dir,
        "services.toml",
        &good.replace(
            "critical = true",
            "critical = true\ntimeout_secs = 1\ninterval_secs = 2",
        ),
    );
    wait_health(&addr, &d, "config_error cleared", |c, v| {
        c == 200 && v["config_error"].is_null()
    });
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn ack_and_silence_reach_the_running_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = crate::support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let fault = dir.join("fault");
    std::fs::write(&fault, "").unwrap();
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
[notify.file]
kind = "command"
command = "cat >> {log}"
[script.target]
command = "test ! -e {fault}"
critical = true
critical_after_consecutive_failures = 1
"#,
            log = dir.join("pages.log").display(),
            fault = fault.display()
        ),
    );
    let mut d = Daemon::start(dir, &config);
    let v = wait_health(&addr, &d, "sos", |_, v| v["state"] == "sos");
    let id = v["incident_id"].as_str().unwrap().to_string();
    let ctl = |args: &[&str]| {
        let mut c = talon(dir);
        c.args(args).arg("--config").arg(&config).current_dir(dir);
        run(c)
    };
    let out = ctl(&["ack", &id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&out)
    );
    let said = stdout(&out);
    assert!(
        said.contains(&format!("incident {id} acknowledged by cli at 20")) && said.contains("Z: "),
        "who and when: {said}"
    );
    let v = d.json(&["status"]);
    assert_eq!(v["incident"]["acked_by"], "cli", "{v:#}");
    assert!(v["incident"]["acked_at_unix"].is_i64(), "{v:#}");
    let detail = d.json(&["incident", &id]).to_string();
    assert!(
        detail.contains("acknowledged by cli"),
        "who is recorded in the incident's timeline: {detail}"
    );
    assert!(
        detail.contains("ack"),
        "the ack is recorded in the incident: {detail}"
    );

    let out = ctl(&["ack", "999"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        crate::support::stderr(&out)
    );

    let out = ctl(&[
        "silence",
        "target",
        "--for",
        "1h",
        "--reason",
        "maintenance",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&out)
    );
    assert!(
        stdout(&out).contains("target silenced for 1h by cli (until 20"),
        "{}",
        stdout(&out)
    );
    let v = d.json(&["status"]);
    let p = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "target")
        .unwrap()
        .clone();
    assert_eq!(p["silenced"]["by"], "cli", "{v:#}");
    assert_eq!(p["silenced"]["reason"], "maintenance", "{v:#}");
    assert!(p["silenced"]["since_unix"].is_i64(), "{v:#}");
    let human = stdout(&ctl(&["status"]));
    assert!(
        human.contains("(acknowledged by cli ")
            && human.contains("silenced: target until ")
            && human.contains("by cli: maintenance"),
        "{human}"
    );
    let out = ctl(&["silence", "nope", "--for", "1h"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(crate::support::stderr(&out).contains("no probe named `nope`"));
    let out = ctl(&["silence", "target", "--for", "forever"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad duration is a usage error"
    );
    assert_eq!(d.terminate(), Some(0));
}

/// `GET path` that must answer within a generous bound: a loop blocked behind the heal would
/// miss it (the bound catches a hang; it is not a latency assertion).
fn prompt_get(addr: &str, path: &str, d: &Daemon) -> (u16, serde_json::Value) {
    let t = Instant::now();
    let answer = http_get(addr, path, Duration::from_secs(5));
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "GET {path} took {took:?} while a heal runs; log:\n{}",
        d.log()
    );
    let (code, body) = answer.unwrap_or_else(|| panic!("GET {path}: no answer; log:\n{}", d.log()));
    (code, serde_json::from_str(&body).unwrap_or_default())
}

fn probe<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["probes"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn health_and_status_stay_current_while_a_long_heal_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let p = |n: &str| dir.join(n).display().to_string();
    let port = crate::support::free_port();
    let addr = format!("127.0.0.1:{port}");
    std::fs::write(dir.join("fault"), "").unwrap();
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"
state_dir = "state"
check_interval_secs = 0.3
heal_timeout_secs = 600
[health]
bind = "{addr}"
[script.target]
command = "test ! -e {fault}"
critical = true
critical_after_consecutive_failures = 1
heal = "sleep 60 & echo $! > {hgc}; echo $$ > {heal}; sleep 60"
[script.flip]
command = "test ! -e {flip}"
"#,
            fault = p("fault"),
            flip = p("flip"),
            hgc = p("heal-grandchild.pid"),
            heal = p("heal.pid"),
        ),
    );
    let mut d = Daemon::start(dir, &config);
    let heal = read_pid(&dir.join("heal.pid"), Duration::from_secs(30), &d);
    let heal_gc = read_pid(
        &dir.join("heal-grandchild.pid"),
        Duration::from_secs(30),
        &d,
    );
    // The heal is in flight: the state says so and the second probe is passing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, v) = prompt_get(&addr, "/health", &d);
        if code == 503 && v["failed_probes"] == serde_json::json!(["target"]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never 503 with only target failing: {code} {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, status) = prompt_get(&addr, "/status", &d);
    assert_eq!(probe(&status, "flip")["status"], "pass", "{status:#}");

    // The second probe flips while the heal runs: both surfaces show the new result.
    std::fs::write(dir.join("flip"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let (code, v) = prompt_get(&addr, "/health", &d);
        let failed = v["failed_probes"].as_array().cloned().unwrap_or_default();
        if failed.iter().any(|p| p == "flip") {
            assert_eq!(code, 503, "{v}");
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "/health never showed flip failing while the heal ran: {v}\nlog:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health["failed_probe_count"], 2, "{health}");
    let (_, status) = prompt_get(&addr, "/status", &d);
    assert_eq!(probe(&status, "flip")["status"], "fail", "{status:#}");
    assert!(
        running(heal) && running(heal_gc),
        "the heal is still in flight while the new result shows"
    );
    // ...and back: flip passes again, still during the heal.
    std::fs::remove_file(dir.join("flip")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = prompt_get(&addr, "/status", &d);
        if probe(&v, "flip")["status"] == "pass" {
            break;
        }
        assert!(Instant::now() < deadline, "flip never passed again: {v:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, v) = prompt_get(&addr, "/health", &d);
    assert_eq!(
        (code, &v["failed_probes"]),
        (503, &serde_json::json!(["target"]))
    );
    assert!(running(heal) && running(heal_gc), "the heal still runs");

    // SIGTERM kills the heal's whole group, grandchild included.
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
    let deadline = Instant::now() + Duration::from_secs(10);
    while (running(heal) || running(heal_gc)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!running(heal), "the heal outlived talon");
    assert!(!running(heal_gc), "the heal's grandchild outlived talon");
}
