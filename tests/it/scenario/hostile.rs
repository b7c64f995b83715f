//! Issue 22: Talon's own world turned hostile — clients of its loopback HTTP server.
//!
//! Scenario 14: DNS rebinding (foreign `Host` → 421), browser-forgeable writes refused (form and
//! `text/plain` bodies, foreign `Origin`, `Sec-Fetch-Site: cross-site`), token required, `curl
//! -X POST` from a cron job still works, oversized heads (431) and bodies (413), a slow client
//! cut off, and 10 000 connections opened against the server while `/health` keeps answering and
//! probes keep running.

use super::flood::{get_json, wait_json};
use super::{Timeline, wait_for};
use crate::daemon::Daemon;
use crate::support::{free_port, http_get, write};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

/// Send raw bytes, read the answer to the end (or the timeout); the status code.
fn raw(addr: &str, req: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(req).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text))
}

/// `curl` as a cron job would run it; (HTTP code, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A process's resident set size in KiB (`VmRSS` in /proc).
pub(crate) fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = lim.rlim_max.min(want);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[test]
fn s14_hostile_local_clients_are_refused_and_health_keeps_answering() {
    raise_fd_limit(12_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = write(
        dir,
        "config.toml",
        &format!(
            "state_dir = \"state\"\ncheck_interval_secs = 0.5\n[health]\nbind = \"{addr}\"\n[script.ok]\ncommand = \"true\"\n"
        ),
    );
    let mut d = Daemon::start(dir, &config);
    wait_json(&addr, "/health", "healthy", LIMIT, &d, |c, v| {
        c == 200 && v["probe_count"] == 1
    });
    let token = std::fs::read_to_string(dir.join("state/api.token"))
        .unwrap()
        .trim()
        .to_string();
    let auth = format!("Authorization: Bearer {token}");
    let url = |p: &str| format!("http://{addr}{p}");
    let mut tl = Timeline::start(14, "hostile local clients");

    // DNS rebinding: the browser sends the attacker's name as Host.
    for host in ["evil.example", &format!("evil.example:{port}"), "10.9.8.7"] {
        let req = format!("GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (code, text) = raw(&addr, req.as_bytes()).expect("an answer");
        assert_eq!(code, 421, "Host {host}: {text}");
        assert!(!text.contains("probes"), "no status leaks: {text}");
    }
    let rebind_post = format!(
        "POST /ack HTTP/1.1\r\nHost: evil.example\r\n{auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw(&addr, rebind_post.as_bytes()).unwrap().0, 421);
    // Our own names pass.
    for host in [addr.clone(), format!("localhost:{port}"), "[::1]".into()] {
        let req = format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        assert_eq!(raw(&addr, req.as_bytes()).unwrap().0, 200, "Host {host}");
    }
    tl.mark("rebinding_refused");

    // Writes: no token → 401; what a browser page can forge → 403/415 even with the token.
    assert_eq!(curl(&["-X", "POST", &url("/ack")]).0, 401);
    let forged: [&[&str]; 4] = [
        &["-H", "Content-Type: text/plain", "--data", "{}"],
        &["--data", "incident=1"],
        &[
            "-H",
            "Origin: http://evil.example",
            "-H",
            "Content-Type: application/json",
            "--data",
            "{}",
        ],
        &["-H", "Sec-Fetch-Site: cross-site"],
    ];
    for extra in forged {
        let mut args = vec!["-X", "POST", "-H", &auth];
        args.extend_from_slice(extra);
        let u = url("/ack");
        args.push(&u);
        let (code, body) = curl(&args);
        assert!(code == 403 || code == 415, "{extra:?}: {code} {body}");
        assert!(
            body.contains("refused"),
            "{extra:?}: the answer says why: {body}"
        );
    }
    // A cron job's curl passes the guard and reaches the runtime (no open incident: 409).
    let (code, body) = curl(&["-X", "POST", "-H", &auth, &url("/ack")]);
    assert_eq!(code, 409, "{body}");
    let (code, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"probe":"ok","for":"1m","reason":"cron"}"#,
        &url("/silence"),
    ]);
    assert_eq!(code, 200, "{body}");
    // A wrong token of the right length is refused too (compared in constant time).
    let wrong = format!("Authorization: Bearer {}", "0".repeat(token.len()));
    assert_eq!(curl(&["-X", "POST", "-H", &wrong, &url("/ack")]).0, 401);
    tl.mark("writes_guarded");

    // Bounded heads and bodies.
    let big_head = format!(
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (code, _) = raw(&addr, big_head.as_bytes()).expect("an answer to a huge head");
    assert_eq!(code, 431);
    let many = (0..200)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect::<String>();
    let many_headers =
        format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n{many}Connection: close\r\n\r\n");
    assert_eq!(raw(&addr, many_headers.as_bytes()).unwrap().0, 431);
    let big_body = format!(
        "POST /silence HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\nContent-Type: application/json\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n{body}",
        n = 64 * 1024,
        body = "x".repeat(64 * 1024)
    );
    assert_eq!(raw(&addr, big_body.as_bytes()).unwrap().0, 413);
    tl.mark("limits_enforced");

    // A slow client (half a head, then silence) is cut off by the header timeout (5 s).
    let t = Instant::now();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let slow_cut = t.elapsed();
    assert!(
        slow_cut < Duration::from_secs(25),
        "the slow client was closed by the server, not by our read timeout: {slow_cut:?}"
    );
    tl.mark("slow_client_cut");

    // 10 000 connections, opened as fast as 8 threads can, half of them sending half a request.
    let (_, s) = get_json(&addr, "/status").unwrap();
    let started = s["probes"][0]["started_at"].as_i64().unwrap_or(0);
    let rss_before = rss_kib(d.pid());
    let sock: std::net::SocketAddr = addr.parse().unwrap();
    let flood_t = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut held = Vec::new();
                let mut ok = 0usize;
                for i in 0..1250 {
                    if let Ok(mut s) = TcpStream::connect_timeout(&sock, Duration::from_secs(2)) {
                        if (i + t) % 2 == 0 {
                            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
                        }
                        held.push(s);
                        ok += 1;
                    }
                }
                (ok, held)
            })
        })
        .collect();
    // While they pile up: fresh clients are answered.
    let mut latencies = Vec::new();
    while latencies.len() < 10 || threads.iter().any(|t| !t.is_finished()) {
        let t = Instant::now();
        let got = http_get(&addr, "/health", Duration::from_secs(10));
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        let (code, body) = got.unwrap_or_else(|| {
            panic!(
                "GET /health during the 10k flood: no answer\nlog:\n{}",
                d.log()
            )
        });
        assert_eq!(code, 200, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut held = Vec::new();
    let mut opened = 0;
    for t in threads {
        let (ok, h) = t.join().unwrap();
        opened += ok;
        held.extend(h);
    }
    tl.mark("flood_opened");
    assert!(
        opened >= 9_000,
        "the flood opened {opened} of 10000 connections"
    );
    // Probes kept running through it.
    wait_json(
        &addr,
        "/status",
        "a probe run after the flood",
        LIMIT,
        &d,
        |_, s| s["probes"][0]["started_at"].as_i64().unwrap_or(0) > started,
    );
    tl.mark("probing_continues");
    let rss_during = rss_kib(d.pid());
    drop(held);
    let _ = wait_for("health after the flood", LIMIT, || {
        http_get(&addr, "/health", Duration::from_secs(5)).filter(|(c, _)| *c == 200)
    });
    latencies.sort_by(f64::total_cmp);
    tl.note("connections_opened", opened as u64);
    tl.note(
        "flood_secs",
        (flood_t.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    );
    tl.note("health_answers_during_flood", latencies.len() as u64);
    tl.note(
        "health_ms_median",
        (latencies[latencies.len() / 2] * 10.0).round() / 10.0,
    );
    tl.note(
        "health_ms_max",
        (latencies[latencies.len() - 1] * 10.0).round() / 10.0,
    );
    tl.note("slow_client_cut_ms", slow_cut.as_millis() as u64);
    tl.note("rss_kib_before", rss_before);
    tl.note("rss_kib_after_flood", rss_during);
    tl.finish();
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
}

/// Scenario 22: a script probe that tries to allocate 512 MiB under `[limits.script] memory_mb
/// = 256` fails on its own and is reported as that probe's failure; the other probe and Talon
/// go on (its RSS and `/health` latency are measured while the hog runs every cycle).
#[test]
fn s22_a_memory_hog_script_probe_is_stopped_by_its_limit_and_talon_goes_on() {
    let py = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed");
    let py = String::from_utf8_lossy(&py.stdout).trim().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 0.3
[health]
bind = "{addr}"
[limits]
cpu_secs = 30
[limits.script]
memory_mb = 256
[script.hog]
command = "{py} -c 'x = bytearray(512 * 1024 * 1024); print(len(x))'"
[script.ok]
command = "true"
"#
        ),
    );
    let mut d = Daemon::start(dir, &config);
    let rss_before = wait_for("talon up", LIMIT, || {
        get_json(&addr, "/health").map(|_| rss_kib(d.pid()))
    });
    let mut tl = Timeline::start(22, "memory hog in a script probe under [limits]");
    let (_, s) = wait_json(&addr, "/status", "the hog's failure", LIMIT, &d, |_, s| {
        s["probes"].as_array().is_some_and(|ps| {
            ps.iter().any(|p| {
                p["name"] == "hog" && p["status"] == "fail" && p["streak"].as_u64() >= Some(3)
            })
        })
    });
    tl.mark("hog_failed_3_times");
    let hog = s["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hog")
        .unwrap();
    assert!(
        hog["output"].as_str().unwrap_or("").contains("MemoryError"),
        "reported as the probe's own failure: {hog}"
    );
    let ok = s["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ok")
        .unwrap();
    assert_eq!(ok["status"], "pass", "{s}");
    // Talon while the hog keeps running: latency and RSS.
    let mut lat = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let (code, _) = http_get(&addr, "/health", Duration::from_secs(10)).unwrap();
        assert!(code == 200 || code == 503);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss_during = rss_kib(d.pid());
    assert!(
        rss_during < rss_before + 64 * 1024,
        "talon's own memory stayed put: {rss_before} → {rss_during} KiB"
    );
    lat.sort_by(f64::total_cmp);
    tl.note("rss_kib_before", rss_before);
    tl.note("rss_kib_during", rss_during);
    tl.note(
        "health_ms_median",
        (lat[lat.len() / 2] * 10.0).round() / 10.0,
    );
    tl.note("health_ms_max", (lat[lat.len() - 1] * 10.0).round() / 10.0);
    tl.finish();
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
}

/// Scenario 23: a heal that tries to allocate 512 MiB under `[limits.heal] memory_mb = 256` (the
/// common `[limits]` allows 4 GiB, so the per-kind table is what holds) fails on its own: the
/// incident's record shows the `MemoryError`, the probe stays failing, and Talon keeps answering,
/// recovers when the fault is cleared by hand and exits cleanly.
#[test]
fn s23_a_memory_hog_heal_is_stopped_by_its_limit_and_talon_goes_on() {
    let py = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed");
    let py = String::from_utf8_lossy(&py.stdout).trim().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let broken = dir.join("broken");
    let healed = dir.join("healed");
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
[limits]
memory_mb = 4096
[limits.heal]
memory_mb = 256
[script.target]
command = "test ! -e {broken}"
critical = true
critical_after_consecutive_failures = 2
heal = "{py} -c 'x = bytearray(512 * 1024 * 1024); print(len(x))' && touch {healed} && rm -f {broken}"
"#,
            broken = broken.display(),
            healed = healed.display(),
        ),
    );
    let mut d = Daemon::start(dir, &config);
    wait_json(&addr, "/status", "target passing", LIMIT, &d, |_, s| {
        s["probes"][0]["status"] == "pass"
    });
    let mut tl = Timeline::start(23, "memory hog in a heal under [limits.heal]");
    std::fs::write(&broken, "").unwrap();
    let (_, h) = wait_json(&addr, "/health", "an incident", LIMIT, &d, |c, v| {
        c == 503 && !v["incident_id"].is_null()
    });
    tl.mark("incident_opened");
    let id = h["incident_id"].as_str().unwrap().to_string();
    let detail = wait_for("the heal's failure on the record", LIMIT, || {
        let v = d.json(&["incident", &id]).to_string();
        v.contains("MemoryError").then_some(v)
    });
    tl.mark("heal_failed");
    assert!(
        !healed.exists(),
        "the heal's allocation failed, so it went no further: {detail}"
    );
    assert!(broken.exists(), "nothing healed the fault");
    // Talon itself goes on: /health answers, and clearing the fault closes the incident.
    let (code, _) = http_get(&addr, "/health", Duration::from_secs(10)).unwrap();
    assert_eq!(code, 503, "still answering, still failing");
    std::fs::remove_file(&broken).unwrap();
    wait_json(&addr, "/health", "healthy again", LIMIT, &d, |c, v| {
        c == 200 && v["incident_id"].is_null()
    });
    tl.mark("recovered");
    tl.finish();
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
}
