//! Scenario 9: the state dir on a small full filesystem.
//!
//! The state dir is a size-limited tmpfs. Filled to the last page while Talon runs: probing goes
//! on (a fault injected then is seen on `/health`, an incident opens and closes), the worker is
//! still supervised (killed, it is restarted), and the failing store writes are reported in the
//! log, in `/status` and in the metrics. Space back: writes resume (new result rows), the error
//! clears, the incident from the full period is in the history, and the database passes
//! `PRAGMA integrity_check`.
//!
//! Needs root (mount). If mounting fails, the test fails with the reason: no silent skip.

use super::flood::{get_json, metric, wait_json};
use super::{Timeline, wait_for};
use crate::daemon::Daemon;
use crate::support::{free_port, http_get, run, stdout, talon, write};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// A tmpfs mounted for the test; unmounted when dropped (lazily if something still holds it).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap_or_else(|e| panic!("scenario 9 needs `mount` (root): cannot run it: {e}"));
        assert!(
            out.status.success(),
            "scenario 9 needs to mount a tmpfs (run as root): mount -t tmpfs -o size={size} tmpfs {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Fill the filesystem of `dir` with one file until it refuses more; bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    let mut total = 0u64;
    let mut size = chunk.len();
    while size > 0 {
        match f.write(&chunk[..size]) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => size /= 2,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
    total
}

fn worker_pid(addr: &str) -> Option<u64> {
    let (_, s) = get_json(addr, "/status")?;
    s["worker"]["pid"].as_u64()
}

#[test]
fn s09_full_state_dir_keeps_probing_and_supervising_then_writes_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    // Declared after `tmp` and before the daemon: the daemon is killed first, then this unmounts,
    // then the temp dir goes.
    let _mount = Tmpfs::mount(&state, "4m");
    let addr = format!("127.0.0.1:{}", free_port());
    let fault = dir.join("fault");
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 0.2
[log]
file = "{log}"
[health]
bind = "{addr}"
[escalation]
heal_cooldown_secs = 600
heal_settle_secs = 0.2
critical_threshold_secs = 0.5
[notify.pages]
kind = "command"
command = "cat >> {pages}"
[worker]
command = ["sleep", "1000"]
[script.target]
command = "test ! -e {fault}"
critical = true
critical_after_consecutive_failures = 2
[script.ok]
command = "true"
"#,
            log = dir.join("talon.log").display(),
            pages = dir.join("pages.log").display(),
            fault = fault.display()
        ),
    );
    let pages = || std::fs::read_to_string(dir.join("pages.log")).unwrap_or_default();
    let mut d = Daemon::start(dir, &config);
    wait_json(&addr, "/health", "healthy", LIMIT, &d, |c, v| {
        c == 200 && v["state"] == "healthy" && v["probe_count"] == 3
    });
    let pid0 = wait_for("a worker pid", LIMIT, || worker_pid(&addr));
    let log = || std::fs::read_to_string(dir.join("talon.log")).unwrap_or_default();

    let mut tl = Timeline::start(9, "state dir on a full filesystem");
    let filler = state.join("filler");
    let filled = fill(&filler);
    tl.mark("filled");
    let (_, s) = wait_json(
        &addr,
        "/status",
        "a store error on /status",
        LIMIT,
        &d,
        |_, s| !s["store_error"].is_null(),
    );
    tl.mark("detected");
    let err = s["store_error"].as_str().unwrap_or("").to_lowercase();
    assert!(
        err.contains("full") || err.contains("space"),
        "the error says the disk is full: {s}"
    );
    let (_, m) = http_get(&addr, "/metrics", Duration::from_secs(5)).unwrap();
    assert!(metric(&m, "talon_store_errors_total") >= 1.0, "{m}");
    assert!(log().contains("store write failed"), "logged:\n{}", log());
    let (_, h) = get_json(&addr, "/health").unwrap();
    assert_eq!(
        h["store"], "degraded",
        "/health says the store is degraded: {h}"
    );
    let cli = d.json(&["status"]);
    assert!(!cli["store_error"].is_null(), "talon status: {cli}");

    // Probing goes on: a fault is detected and an incident opens; fixed, it closes.
    std::fs::write(&fault, "").unwrap();
    let (_, h) = wait_json(
        &addr,
        "/health",
        "the fault seen while full",
        LIMIT,
        &d,
        |c, v| c == 503 && !v["incident_id"].is_null(),
    );
    let incident = h["incident_id"].as_str().unwrap().to_string();
    tl.mark("fault_seen_while_full");
    // The ladder goes on from memory: the SOS goes out although nothing can be written.
    wait_json(&addr, "/health", "sos while full", LIMIT, &d, |_, v| {
        v["state"] == "sos"
    });
    wait_for("the SOS delivered while full", LIMIT, || {
        pages().contains(&incident).then_some(())
    });
    tl.mark("sos_sent_while_full");
    std::fs::remove_file(&fault).unwrap();
    wait_json(
        &addr,
        "/health",
        "recovered while full",
        LIMIT,
        &d,
        |c, v| c == 200 && v["incident_id"].is_null(),
    );
    // Supervision goes on: the worker, killed, is restarted.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid0 as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let pid1 = wait_for("a new worker", LIMIT, || {
        worker_pid(&addr).filter(|p| *p != pid0)
    });
    tl.mark("worker_restarted_while_full");
    // Still full, still failing (not a one-off).
    let (_, m) = http_get(&addr, "/metrics", Duration::from_secs(5)).unwrap();
    let failures_while_full = metric(&m, "talon_store_errors_total");
    assert!(failures_while_full >= 2.0, "{m}");
    // One rate-limited error, not one line per failed write.
    let logged = log().matches("store write failed").count();
    assert!(
        logged <= 3 && (logged as f64) < failures_while_full,
        "{logged} error lines for {failures_while_full} failures:\n{}",
        log()
    );

    // Space back: writes resume, the error clears, new rows appear.
    std::fs::remove_file(&filler).unwrap();
    tl.mark("freed");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    wait_json(
        &addr,
        "/status",
        "the store error cleared",
        LIMIT,
        &d,
        |_, s| s["store_error"].is_null(),
    );
    tl.mark("recovered");
    let (_, h) = get_json(&addr, "/health").unwrap();
    assert_eq!(h["store"], "ok", "{h}");
    let rows = wait_for("new result rows", LIMIT, || {
        let mut c = talon(dir);
        c.args(["history", "--probe", "ok", "--json", "--config"])
            .arg(&config)
            .current_dir(dir);
        let out = run(c);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).ok()?;
        let n = v["results"]
            .as_array()?
            .iter()
            .filter(|r| r["at"].as_i64().unwrap_or(0) >= since)
            .count();
        (n >= 3).then_some(n)
    });
    tl.mark("rows_written");
    assert_eq!(d.terminate(), Some(0), "log:\n{}", log());

    let store = talon::store::Store::open(&state).expect("the database opens");
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let incidents = store.incidents(false).unwrap();
    assert!(
        incidents
            .iter()
            .any(|i| i.id.to_string() == incident && i.closed_at.is_some()),
        "the incident opened and closed while the disk was full is in the history: {incidents:?}"
    );
    assert_ne!(pid0, pid1);
    tl.note("filled_bytes", filled);
    tl.note("error_lines_logged", logged as u64);
    tl.note("store_failures_while_full", failures_while_full);
    tl.note("rows_after_free", rows as u64);
    tl.finish();
}
