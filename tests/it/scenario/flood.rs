//! Scenario 12: /health under a slow-client flood.
//!
//! More idle connections than the server's connection cap (`ServerOptions::max_connections`,
//! 256), clients dribbling a header one byte at a time, garbage requests, and a thread that keeps
//! opening new idle connections throughout: a fresh `GET /health` still gets a current answer,
//! first time, within its timeout. Also the small HTTP helpers the other scenarios share.

use super::{Timeline, wait_for};
use crate::daemon::Daemon;
use crate::support::{free_port, http_get, write};
use serde_json::Value;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `GET path` parsed as JSON.
pub fn get_json(addr: &str, path: &str) -> Option<(u16, Value)> {
    let (code, body) = http_get(addr, path, Duration::from_secs(5))?;
    Some((code, serde_json::from_str(&body).ok()?))
}

/// Poll `GET path` until `pred(code, json)` holds; panic with the daemon's log after `limit`.
pub fn wait_json(
    addr: &str,
    path: &str,
    what: &str,
    limit: Duration,
    d: &Daemon,
    pred: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        if let Some((code, v)) = get_json(addr, path) {
            if pred(code, &v) {
                return (code, v);
            }
            last = Some((code, v));
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; last {path}: {last:?}\nlog:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of a metric in Prometheus text (summed over its label sets); NaN when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let key_end = line.find(['{', ' ']).unwrap_or(line.len());
        if &line[..key_end] != name {
            continue;
        }
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            found = true;
            sum += v;
        }
    }
    if found { sum } else { f64::NAN }
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(65536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The server's default connection cap (`ServerOptions::max_connections`).
const MAX_CONNECTIONS: usize = 256;

#[test]
fn s12_health_answers_under_a_slow_client_flood() {
    // This test holds ~650 sockets: lift the soft fd limit to the hard one (a distribution's
    // default soft limit of 1024 would otherwise fail it on the client side, not talon's).
    raise_fd_limit();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write(
        dir,
        "config.toml",
        &format!(
            "state_dir = \"state\"\ncheck_interval_secs = 0.5\n[health]\nbind = \"{addr}\"\n[script.ok]\ncommand = \"true\"\n"
        ),
    );
    let mut d = Daemon::start(dir, &config);
    wait_json(
        &addr,
        "/health",
        "healthy",
        Duration::from_secs(30),
        &d,
        |c, v| c == 200 && v["probe_count"] == 1 && v["failed_probe_count"] == 0,
    );
    let quiet_t = Instant::now();
    assert!(http_get(&addr, "/health", Duration::from_secs(10)).is_some_and(|(c, _)| c == 200));
    let quiet_ms = quiet_t.elapsed().as_secs_f64() * 1000.0;

    let mut tl = Timeline::start(12, "/health under a slow-client flood");
    let sock: std::net::SocketAddr = addr.parse().unwrap();
    let connect = || TcpStream::connect_timeout(&sock, Duration::from_secs(5));
    // Idle connections, more than the cap.
    let idle_n = MAX_CONNECTIONS + 100;
    let mut held: Vec<TcpStream> = (0..idle_n)
        .map(|_| connect().expect("connect an idle client"))
        .collect();
    // Garbage: not HTTP, a bad version, a huge header, a body that never comes, half a header.
    let garbage: [&[u8]; 6] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"\x00\x00\x00\x00\r\n\r\n",
        b"POST /ack HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n\r\n{",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
        b"BREW /coffee HTCPCP/1.0\r\n\r\n",
    ];
    for g in garbage.iter().cycle().take(60) {
        if let Ok(mut s) = connect() {
            let _ = s.write_all(g);
            held.push(s);
        }
    }
    let mut huge = connect().unwrap();
    let _ = huge.write_all(b"GET /health HTTP/1.1\r\nX-Big: ");
    let _ = huge.write_all(&vec![b'a'; 512 * 1024]);
    held.push(huge);
    // Slow clients dribbling a header a byte at a time, and new idle connections all along.
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for _ in 0..20 {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let Ok(mut s) = TcpStream::connect(sock) else {
                return;
            };
            for b in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: 0123456789"
                .iter()
                .cycle()
            {
                if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    {
        let (stop, opened) = (stop.clone(), opened.clone());
        threads.push(std::thread::spawn(move || {
            let mut churn = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = TcpStream::connect(sock) {
                    churn.push(s);
                    opened.fetch_add(1, Ordering::Relaxed);
                }
                if churn.len() > 200 {
                    churn.drain(..50);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }));
    }
    tl.mark("flood_open");
    wait_for("the churn thread to run", Duration::from_secs(10), || {
        (opened.load(Ordering::Relaxed) >= 20).then_some(())
    });

    // Fresh clients: each must be answered first time, with a current snapshot.
    let mut latencies = Vec::new();
    for i in 0..10 {
        let t = Instant::now();
        let got = http_get(&addr, "/health", Duration::from_secs(10));
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let (code, body) = got.unwrap_or_else(|| {
            panic!(
                "fresh GET /health #{i} under the flood: no answer (connection closed, or nothing within 10 s); log:\n{}",
                d.log()
            )
        });
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let updated = v["updated_at_unix"].as_i64().unwrap();
        assert!(
            now - updated <= 5,
            "the snapshot is current under the flood ({updated} vs {now}): {v}"
        );
        if i == 0 {
            tl.mark("answered");
        }
        latencies.push(ms);
        std::thread::sleep(Duration::from_millis(100));
    }
    // The daemon kept probing through it.
    let (_, s) = get_json(&addr, "/status").expect("/status answers under the flood");
    let started = s["probes"][0]["started_at"].as_i64().unwrap_or(0);
    wait_json(
        &addr,
        "/status",
        "a probe run during the flood",
        Duration::from_secs(20),
        &d,
        |_, s| s["probes"][0]["started_at"].as_i64().unwrap_or(0) > started,
    );
    tl.mark("probing_continues");

    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    drop(held);
    latencies.sort_by(f64::total_cmp);
    tl.note("idle_connections", idle_n as u64);
    tl.note("churned_connections", opened.load(Ordering::Relaxed) as u64);
    tl.note("health_ms_quiet", (quiet_ms * 10.0).round() / 10.0);
    tl.note(
        "health_ms_flood_median",
        (latencies[latencies.len() / 2] * 10.0).round() / 10.0,
    );
    tl.note(
        "health_ms_flood_max",
        (latencies[latencies.len() - 1] * 10.0).round() / 10.0,
    );
    tl.finish();
    assert_eq!(d.terminate(), Some(0));
}
