//! Scenario 4: a real redis-server stopped, healed by the probe's heal.
//!
//! The test starts its own `redis-server` (daemonized, with its own dir, pidfile and a free
//! port); the probe's `heal` is the very command that started it. Timings come from talon's
//! incident record (`talon incident ID --json`): opened, heal started, closed.

use super::worker::{LIMIT, Reaper, alive, since, wall_ms};
use super::{Timeline, wait_for};
use crate::daemon::Daemon;
use crate::support::{free_port, write};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `PING` → `+PONG` over RESP, with a short timeout.
fn pong(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A redis-server of the test's own; whatever pid its pidfile names is killed on drop.
struct Redis {
    conf: PathBuf,
    pidfile: PathBuf,
    port: u16,
}

impl Redis {
    fn configure(dir: &Path) -> Redis {
        let port = free_port();
        let data = dir.join("redis");
        std::fs::create_dir_all(&data).unwrap();
        let pidfile = dir.join("redis.pid");
        let conf = write(
            dir,
            "redis.conf",
            &format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize yes\npidfile {pid}\n\
                 dir {data}\nlogfile {log}\nsave \"\"\nappendonly no\n",
                pid = pidfile.display(),
                data = data.display(),
                log = dir.join("redis.log").display(),
            ),
        );
        Redis {
            conf,
            pidfile,
            port,
        }
    }

    /// The command that starts it (daemonized: it returns once the server forked).
    fn command(&self) -> String {
        format!("redis-server {}", self.conf.display())
    }

    fn start(&self) {
        let st = std::process::Command::new("redis-server")
            .arg(&self.conf)
            .stdin(std::process::Stdio::null())
            .status()
            .expect("redis-server is installed (scripts/test installs it)");
        assert!(st.success(), "redis-server failed to start");
        wait_for("redis answering PING", LIMIT, || {
            pong(self.port).then_some(())
        });
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(p) = self.pid() {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
}

#[test]
fn s04_stopped_redis_is_started_again_by_the_probe_heal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let redis = Redis::configure(dir);
    redis.start();
    let first = redis.pid().expect("redis pidfile");
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 0.3
[escalation]
heal_settle_secs = 0.3
heal_cooldown_secs = 1
[redis.cache]
url = "127.0.0.1:{port}"
critical = true
critical_after_consecutive_failures = 2
timeout_secs = 0.3
heal = "{heal}"
"#,
            port = redis.port,
            heal = redis.command(),
        ),
    );
    let _reaper = Reaper::new(dir);
    let mut d = Daemon::start(dir, &config);
    d.wait_status("redis probe passing", LIMIT, |v| {
        v["state"] == "healthy"
            && v["probes"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|p| p["name"] == "cache" && p["status"] == "pass")
            })
    });

    let mut t = Timeline::start(
        4,
        "redis stopped → probe fails → probe heal starts it → recovered",
    );
    let fault = wall_ms();
    kill(Pid::from_raw(first), Signal::SIGTERM).unwrap();
    wait_for("redis stopped", LIMIT, || (!alive(first)).then_some(()));
    t.mark("stopped");

    // The incident opens and closes; the heal started a new redis-server.
    let incident = wait_for("a closed incident", LIMIT, || {
        let v = d.json(&["incidents"]);
        let a = v.as_array()?;
        (a.len() == 1 && !a[0]["closed_at"].is_null()).then(|| a[0].clone())
    });
    t.mark("closed_seen");
    assert!(pong(redis.port), "redis answers again");
    let second = redis.pid().expect("redis pidfile after the heal");
    assert_ne!(second, first, "a new redis-server");
    assert!(alive(second));
    assert_eq!(incident["probes"], serde_json::json!(["cache"]));

    let id = incident["id"].as_u64().unwrap().to_string();
    let detail = d.json(&["incident", &id]);
    let heals: Vec<&serde_json::Value> = detail["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "heal")
        .collect();
    assert_eq!(heals.len(), 1, "one heal: {detail:#}");
    let heal = heals[0];
    assert_eq!(heal["exit"], "exit 0", "{detail:#}");
    assert!(
        heal["detail"]
            .as_str()
            .is_some_and(|s| s.contains("cache's heal"))
            && heal["output"]
                .as_str()
                .is_some_and(|s| s.contains("redis-server")),
        "{detail:#}"
    );
    assert!(
        heal["verdict"]
            .as_str()
            .is_some_and(|s| s.contains("fixed") && !s.contains("not fixed")),
        "verified by re-probe: {detail:#}"
    );
    assert!(
        detail["notifications"]
            .as_array()
            .is_none_or(|n| n.is_empty()),
        "healed without paging: {detail:#}"
    );
    let opened = incident["opened_at"].as_i64().unwrap();
    let closed = incident["closed_at"].as_i64().unwrap();
    let heal_start = heal["started_at"].as_i64().unwrap();
    let heal_end = heal["ended_at"].as_i64().unwrap();
    assert!(opened <= heal_start && heal_start <= heal_end && heal_end <= closed);
    t.mark_at("detected", since(fault, opened));
    t.mark_at("acted", since(fault, heal_start));
    t.mark_at("healed", since(fault, heal_end));
    t.mark_at("recovered", since(fault, closed));
    d.wait_status("healthy again", LIMIT, |v| v["state"] == "healthy");
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
    t.note("incident", id.parse::<u64>().unwrap());
    t.finish();
}
