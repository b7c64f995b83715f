//! Issue 22: Talon's own state, damaged, at start.
//!
//! Scenario 15: a garbage `talon.db`, half a `state.json` and a lock file left by a dead process:
//! Talon sets the database aside as `talon.db.corrupt-<time>`, starts clean, says so in the log,
//! on `/status` and once on a command channel, and probes. Scenario 16: a database cut in half
//! under an open incident: the incident is kept from `state.json`. Scenario 17: a torn WAL (a half frame appended after a
//! SIGKILL) is not corruption: nothing is quarantined and every committed row is still there.
//! Scenario 18: a state dir on a read-only filesystem is exit 2 naming the path and the errno.

use super::flood::wait_json;
use super::{Timeline, wait_for};
use crate::daemon::Daemon;
use crate::support::{free_port, run, stderr, talon, write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn config(dir: &Path, addr: &str, fault: &Path) -> PathBuf {
    config_with(dir, addr, fault, "")
}

/// [`config`] with `extra` TOML appended (e.g. a channel).
fn config_with(dir: &Path, addr: &str, fault: &Path, extra: &str) -> PathBuf {
    write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 0.2
[log]
file = "{log}"
[health]
bind = "{addr}"
[script.target]
command = "test ! -e {fault}"
critical = true
critical_after_consecutive_failures = 1
[script.ok]
command = "true"
{extra}
"#,
            log = dir.join("talon.log").display(),
            fault = fault.display()
        ),
    )
}

fn quarantined(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("talon.db.corrupt-"))
        })
        .collect();
    v.sort();
    v
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("talon.log")).unwrap_or_default()
}

#[test]
fn s15_garbage_database_half_a_state_file_and_a_stale_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let garbage: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(state.join("talon.db"), &garbage).unwrap();
    std::fs::write(state.join("talon.db-wal"), b"not a wal").unwrap();
    std::fs::write(
        state.join("state.json"),
        "{\n  \"current_state\": \"sos\",\n  \"consecutive_fail",
    )
    .unwrap();
    // A lock file from a process that is long gone (pid beyond pid_max).
    std::fs::write(state.join("talon.lock"), "4194399\n").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let fault = dir.join("fault");
    // A command channel captures what is sent: the quarantine is told once, at start.
    let pages = dir.join("pages.log");
    let config = config_with(
        dir,
        &addr,
        &fault,
        &format!(
            "[notify.cap]\nkind = \"command\"\ncommand = \"cat >> {p}; echo ---- >> {p}\"\n",
            p = pages.display()
        ),
    );

    let mut tl = Timeline::start(15, "garbage talon.db, half a state.json, stale lock");
    let mut d = Daemon::start(dir, &config);
    let (_, s) = wait_json(
        &addr,
        "/status",
        "started and probing",
        LIMIT,
        &d,
        |_, s| {
            // Not empty: before the first publish the list is empty, and "all pass" is vacuous.
            s["probes"]
                .as_array()
                .is_some_and(|p| !p.is_empty() && p.iter().all(|p| p["status"] == "pass"))
        },
    );
    tl.mark("probing");
    let said = s["store_recovered"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        said.contains("could not be read") && said.contains("talon.db.corrupt-"),
        "/status says what was set aside: {s}"
    );
    assert!(
        said.contains("state.json is unreadable too"),
        "and that state.json was half: {said}"
    );
    let l = log(dir);
    assert!(l.contains("could not be read"), "logged:\n{l}");
    let q = quarantined(&state);
    assert!(!q.is_empty(), "the database was set aside");
    assert_eq!(std::fs::read(&q[0]).unwrap(), garbage, "kept untouched");
    let sent = wait_for("the quarantine notice on the channel", LIMIT, || {
        std::fs::read_to_string(&pages)
            .ok()
            .filter(|t| t.contains("----"))
    });
    tl.mark("notice_sent");
    assert!(
        sent.contains("Notice: Talon on")
            && sent.contains("unreadable state set aside")
            && sent.contains("talon.db.corrupt-"),
        "the notice says what was set aside and where: {sent}"
    );
    // A fault now is seen: the fresh store records and the ladder runs.
    std::fs::write(&fault, "").unwrap();
    wait_json(&addr, "/health", "an incident", LIMIT, &d, |c, v| {
        c == 503 && !v["incident_id"].is_null()
    });
    tl.mark("incident_on_fresh_store");
    let human = d.json(&["status"]);
    assert!(!human["store_recovered"].is_null(), "{human}");
    assert_eq!(d.terminate(), Some(0), "log:\n{}", log(dir));
    let all = std::fs::read_to_string(&pages).unwrap();
    assert_eq!(
        all.matches("unreadable state set aside").count(),
        1,
        "told once, not on every cycle or page: {all}"
    );
    let store = talon::store::Store::open(&state).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    assert_eq!(store.incidents(false).unwrap().len(), 1);
    tl.finish();
}

#[test]
fn s16_a_truncated_database_keeps_the_open_incident_from_state_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    let addr = format!("127.0.0.1:{}", free_port());
    let fault = dir.join("fault");
    let config = config(dir, &addr, &fault);
    std::fs::write(&fault, "").unwrap();
    let mut d = Daemon::start(dir, &config);
    let (_, h) = wait_json(&addr, "/health", "an incident", LIMIT, &d, |c, v| {
        c == 503 && !v["incident_id"].is_null()
    });
    let id = h["incident_id"].as_str().unwrap().to_string();
    // Some history so the database spans many pages.
    wait_for("history", LIMIT, || {
        let s = talon::store::Store::open_existing(&state).ok()??;
        (s.results(None, None).ok()?.len() >= 20).then_some(())
    });
    assert_eq!(d.terminate(), Some(0));
    let db = state.join("talon.db");
    let len = std::fs::metadata(&db).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let _ = std::fs::remove_file(state.join("talon.db-wal"));
    let _ = std::fs::remove_file(state.join("talon.db-shm"));

    let mut tl = Timeline::start(16, "truncated talon.db under an open incident");
    let mut d = Daemon::start(dir, &config);
    let (_, h) = wait_json(&addr, "/health", "the incident again", LIMIT, &d, |_, v| {
        !v["incident_id"].is_null()
    });
    tl.mark("incident_restored");
    assert_eq!(
        h["incident_id"],
        id.as_str(),
        "the same incident: {h}\n{}",
        log(dir)
    );
    let (_, s) = super::flood::get_json(&addr, "/status").unwrap();
    let said = s["store_recovered"].as_str().unwrap_or_default();
    assert!(
        said.contains(&format!("open incident {id} was kept")),
        "{s}"
    );
    assert_eq!(quarantined(&state).len(), 1);
    // Fixed: it closes, with the same id, in the fresh store.
    std::fs::remove_file(&fault).unwrap();
    wait_json(&addr, "/health", "recovered", LIMIT, &d, |c, v| {
        c == 200 && v["incident_id"].is_null()
    });
    tl.mark("resolved");
    assert_eq!(d.terminate(), Some(0), "log:\n{}", log(dir));
    tl.finish();
}

#[test]
fn s17_a_torn_wal_loses_nothing_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    let addr = format!("127.0.0.1:{}", free_port());
    let fault = dir.join("fault");
    let config = config(dir, &addr, &fault);
    let mut d = Daemon::start(dir, &config);
    let rows = |s: &talon::store::Store| s.results(None, None).unwrap().len();
    let before = wait_for("history", LIMIT, || {
        let s = talon::store::Store::open_existing(&state).ok()??;
        let n = rows(&s);
        (n >= 20).then_some(n)
    });
    // Killed mid-flight: the WAL is not checkpointed.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = d.child.take().map(|mut c| c.wait());
    let wal = state.join("talon.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(wal_len > 32, "the WAL holds frames ({wal_len} bytes)");
    // Tear it: half a frame of garbage after the last one.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
    f.write_all(&vec![0xA5u8; 2500]).unwrap();
    drop(f);

    let mut tl = Timeline::start(17, "torn WAL after SIGKILL");
    let mut d = Daemon::start(dir, &config);
    wait_json(&addr, "/health", "healthy", LIMIT, &d, |c, _| c == 200);
    tl.mark("started");
    assert_eq!(d.terminate(), Some(0));
    assert!(
        quarantined(&state).is_empty(),
        "a torn WAL is not corruption"
    );
    let s = talon::store::Store::open(&state).unwrap();
    assert_eq!(s.integrity_check().unwrap(), "ok");
    let after = rows(&s);
    assert!(
        after >= before,
        "{after} rows now, {before} seen before the kill"
    );
    tl.note("rows_before_kill", before as u64);
    tl.finish();
}

#[test]
fn s18_a_read_only_state_dir_is_exit_2_with_path_and_errno() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m,mode=0700", "tmpfs"])
        .arg(&state)
        .output()
        .expect("scenario 18 needs `mount` (root)");
    assert!(
        out.status.success(),
        "scenario 18 needs to mount a read-only tmpfs (run as root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _u = Unmount(state.clone());
    let config = write(
        dir,
        "config.toml",
        &format!(
            "state_dir = \"state\"\n[log]\nfile = \"{}\"\n[health]\nenabled = false\n[script.ok]\ncommand = \"true\"\n",
            dir.join("talon.log").display()
        ),
    );
    let mut tl = Timeline::start(18, "read-only state dir at start");
    let mut c = talon(dir);
    c.arg("run").arg("--config").arg(&config).current_dir(dir);
    let out = run(c);
    tl.mark("exited");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(
        err.contains(&state.display().to_string()),
        "names the path: {err}"
    );
    assert!(err.contains("EROFS"), "names the errno: {err}");
    assert!(!err.contains("panicked"), "{err}");
    tl.finish();
}
