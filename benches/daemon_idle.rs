//! The real daemon at rest, and `/health` while a long heal runs.
//!
//! 1. **Idle footprint**: the release `talon run` with 100 probes (50 http and 40 tcp against
//!    local servers, 10 `sh -c` script probes) at `interval_secs = 10`, then at 1 s. After a
//!    warm-up, CPU time from `/proc/PID/stat` (utime+stime of Talon itself; cutime+cstime of the
//!    script probes it reaped, separately) and memory (VmRSS sampled every second, VmHWM, the
//!    anonymous/file split from `smaps_rollup`) over a window of `IDLE_SECS` (default 60).
//! 2. **`/health` with a 60 s heal in flight**: the same 100 probes at 10 s plus a critical probe
//!    that fails at once and whose heal is `sleep 60` with a grandchild. While it runs: 1000
//!    sequential `GET /health` (a new connection each, like a monitoring agent), 1000 more from
//!    16 concurrent clients, 200 `GET /status`, and how long a probe flipping from pass to fail
//!    takes to show in `/health` (bounded by that probe's 1 s interval).
//!
//! The local servers run in a child process (this binary again with `TALON_BENCH_SERVE=1`) so
//! their CPU is not counted as Talon's. Prints a table and writes
//! `target/bench/daemon_idle.json`. Nothing is asserted: numbers go to BENCHMARKS.md.
//!
//! `cargo bench --bench daemon_idle` (env `IDLE_SECS`, `WARMUP_SECS`, default 60 and 15).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TALON: &str = env!("CARGO_BIN_EXE_talon");
const REQUESTS: usize = 1000;

fn main() {
    if common::serve_if_asked() {
        return;
    }
    if !common::asked_to_run("daemon_idle") {
        return;
    }
    let env_secs = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let idle = Duration::from_secs(env_secs("IDLE_SECS", 60));
    let warmup = Duration::from_secs(env_secs("WARMUP_SECS", 15));

    let servers = common::Servers::start();
    let (http, tcp) = (servers.http, servers.tcp);

    let mut json = serde_json::Map::new();
    json.insert("window_secs".into(), serde_json::json!(idle.as_secs_f64()));
    json.insert(
        "machine".into(),
        serde_json::json!({ "cpus": cpus(), "loadavg": loadavg() }),
    );
    let mut rows = Vec::new();
    for interval in [10u64, 1] {
        let m = idle_run(http, tcp, interval, warmup, idle);
        rows.push((interval, m.clone()));
        json.insert(format!("idle_{interval}s"), m);
    }
    println!();
    println!(
        "== Daemon idle: 100 probes (50 http, 40 tcp, 10 script), window {} s after a {} s warm-up; load average {}",
        idle.as_secs(),
        warmup.as_secs(),
        loadavg()
    );
    println!(
        "| interval | talon CPU (% of one core) | script children CPU | RSS min / mean / max | VmHWM | anon / file RSS | threads |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (interval, m) in &rows {
        println!(
            "| {interval} s | {:.2} % | {:.2} % | {:.1} / {:.1} / {:.1} MiB | {:.1} MiB | {:.1} / {:.1} MiB | {} |",
            m["cpu_percent"].as_f64().unwrap_or(0.0),
            m["children_cpu_percent"].as_f64().unwrap_or(0.0),
            kib_to_mib(&m["rss_kib_min"]),
            kib_to_mib(&m["rss_kib_mean"]),
            kib_to_mib(&m["rss_kib_max"]),
            kib_to_mib(&m["vm_hwm_kib"]),
            kib_to_mib(&m["rss_anon_kib"]),
            kib_to_mib(&m["rss_file_kib"]),
            m["threads"]
        );
    }

    json.insert("health_during_heal".into(), health_during_heal(http, tcp));

    let out = target_dir().join("bench/daemon_idle.json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&serde_json::Value::Object(json)).unwrap(),
    )
    .unwrap();
    println!("\nwrote {}", out.display());
    drop(servers);
}

fn kib_to_mib(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(0.0) / 1024.0
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 100 probes: 50 http, 40 tcp, 10 script, each at `interval` seconds.
fn probes(http: u16, tcp: u16, interval: u64) -> String {
    // A timeout may not exceed the interval (validation); 1 s is far above what these take.
    let interval = format!("{interval}\ntimeout_secs = {}", interval.min(5));
    let mut s = String::new();
    for i in 0..50 {
        s += &format!(
            "[http.h{i:02}]\nurl = \"http://127.0.0.1:{http}/health\"\ninterval_secs = {interval}\n"
        );
    }
    for i in 0..40 {
        s += &format!("[tcp.t{i:02}]\naddress = \"127.0.0.1:{tcp}\"\ninterval_secs = {interval}\n");
    }
    for i in 0..10 {
        s += &format!(
            "[script.s{i:02}]\ncommand = \"test -d /tmp && echo ok\"\ninterval_secs = {interval}\n"
        );
    }
    s
}

/// A running `talon run`, killed (with a grace period for SIGTERM) when dropped.
struct Daemon {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

impl Daemon {
    fn start(main_extra: &str, probes: &str) -> Daemon {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let addr = format!("127.0.0.1:{}", free_port());
        std::fs::write(dir.join("services.toml"), probes).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "state_dir = \"state\"\nservices_file = \"services.toml\"\n{main_extra}\n[health]\nbind = \"{addr}\"\n"
            ),
        )
        .unwrap();
        let child = Command::new(TALON)
            .arg("run")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .current_dir(&dir)
            .env("HOME", &dir)
            .env_remove("RUST_LOG")
            .env_remove("TALON_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("talon.stderr")).unwrap())
            .spawn()
            .expect("start talon run");
        Daemon {
            child,
            addr,
            _dir: tmp,
            dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        let a = std::fs::read_to_string(self.dir.join("talon.stderr")).unwrap_or_default();
        let b = std::fs::read_to_string(self.dir.join("state/talon.log")).unwrap_or_default();
        let text = format!("{a}{b}");
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Poll `GET /status` until `pred` holds (60 s at most).
    fn wait_status(&mut self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("talon exited ({st}) before {what}; log:\n{}", self.log());
            }
            if let Some((_, body)) = get(&self.addr, "/status")
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
                && pred(&v)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) -> Option<i32> {
        // SAFETY: kill(2) on the child we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One `GET` on a fresh connection: (status, body).
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.set_nodelay(true).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// Ticks of (utime+stime, cutime+cstime) and the thread count, from `/proc/PID/stat`.
fn stat(pid: u32) -> (u64, u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest: Vec<u64> = s
        .rsplit_once(')')
        .map(|x| x.1)
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // After the state letter: ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime(10) stime(11) cutime(12) cstime(13) priority nice num_threads(16).
    let f = |i: usize| rest.get(i).copied().unwrap_or(0);
    (f(10) + f(11), f(12) + f(13), f(16))
}

/// A `kB` field of `/proc/PID/<file>`.
fn kib(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn idle_run(
    http: u16,
    tcp: u16,
    interval: u64,
    warmup: Duration,
    window: Duration,
) -> serde_json::Value {
    println!("== 100 probes at interval_secs = {interval}: starting talon run");
    let mut d = Daemon::start("", &probes(http, tcp, interval));
    d.wait_status("every probe passed once", |v| {
        v["probes"]
            .as_array()
            .is_some_and(|a| a.len() == 100 && a.iter().all(|p| p["status"] == "pass"))
    });
    let rss_started = kib(d.pid(), "status", "VmRSS:");
    println!(
        "   all 100 probes pass (RSS {rss_started} KiB); warm-up {} s",
        warmup.as_secs()
    );
    std::thread::sleep(warmup);
    let pid = d.pid();
    let (cpu0, child0, _) = stat(pid);
    let t0 = Instant::now();
    let mut rss = Vec::new();
    while t0.elapsed() < window {
        rss.push(kib(pid, "status", "VmRSS:"));
        std::thread::sleep(Duration::from_secs(1));
    }
    let (cpu1, child1, threads) = stat(pid);
    let wall = t0.elapsed().as_secs_f64();
    let tck = clk_tck();
    let cpu_pct = (cpu1 - cpu0) as f64 / tck / wall * 100.0;
    let child_pct = (child1 - child0) as f64 / tck / wall * 100.0;
    let rss_end = kib(pid, "status", "VmRSS:");
    let hwm = kib(pid, "status", "VmHWM:");
    let anon = kib(pid, "smaps_rollup", "Anonymous:");
    let rss_rollup = kib(pid, "smaps_rollup", "Rss:");
    // Every probe still passing at the end: the load was real, not failing fast.
    let (passing, failing) = match get(&d.addr, "/health")
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
    {
        Some(v) => (
            v["probe_count"].as_u64().unwrap_or(0) - v["failed_probe_count"].as_u64().unwrap_or(0),
            v["failed_probe_count"].as_u64().unwrap_or(0),
        ),
        None => (0, 0),
    };
    let cycles = window.as_secs_f64() / interval as f64;
    println!(
        "   window {wall:.1} s (~{cycles:.0} cycles): talon {} ticks = {cpu_pct:.2} % of one core; script children {} ticks = {child_pct:.2} %; RSS {}..{} KiB (end {rss_end}), VmHWM {hwm} KiB, anon {anon} KiB of {rss_rollup}; {threads} threads; {passing} passing, {failing} failing",
        cpu1 - cpu0,
        child1 - child0,
        rss.iter().min().unwrap_or(&0),
        rss.iter().max().unwrap_or(&0),
    );
    let exit = d.stop();
    let mean = rss.iter().sum::<u64>() as f64 / rss.len().max(1) as f64;
    serde_json::json!({
        "interval_secs": interval,
        "probes": 100,
        "window_secs": wall,
        "cpu_ticks": cpu1 - cpu0,
        "children_cpu_ticks": child1 - child0,
        "clk_tck": tck,
        "cpu_percent": cpu_pct,
        "children_cpu_percent": child_pct,
        "rss_kib_after_first_cycle": rss_started,
        "rss_kib_min": rss.iter().min(),
        "rss_kib_mean": mean,
        "rss_kib_max": rss.iter().max(),
        "rss_kib_end": rss_end,
        "vm_hwm_kib": hwm,
        "rss_anon_kib": anon,
        "rss_file_kib": rss_rollup.saturating_sub(anon),
        "threads": threads,
        "probes_passing_at_end": passing,
        "probes_failing_at_end": failing,
        "sigterm_exit": exit,
        "loadavg": loadavg(),
    })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut lat: Vec<Duration>, wall: Duration, codes: &[u16]) -> serde_json::Value {
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ok503 = codes.iter().filter(|c| **c == 503).count();
    let other = codes.len() - ok503 - codes.iter().filter(|c| **c == 200).count();
    println!(
        "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} req/s | {ok503} × 503, {other} errors |",
        lat.len(),
        ms(pct(&lat, 0.50)),
        ms(pct(&lat, 0.90)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().unwrap()),
        lat.len() as f64 / wall.as_secs_f64(),
    );
    serde_json::json!({
        "n": lat.len(),
        "p50_ms": ms(pct(&lat, 0.50)),
        "p90_ms": ms(pct(&lat, 0.90)),
        "p99_ms": ms(pct(&lat, 0.99)),
        "max_ms": ms(*lat.last().unwrap()),
        "req_per_s": lat.len() as f64 / wall.as_secs_f64(),
        "status_503": ok503,
        "errors": other,
    })
}

fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|x| !x.1.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn health_during_heal(http: u16, tcp: u16) -> serde_json::Value {
    println!(
        "\n== /health with a 60 s heal in flight (100 probes at 10 s + a failing critical probe)"
    );
    let tmp_marker = tempfile::tempdir().unwrap();
    let m = tmp_marker.path();
    let fault = m.join("fault");
    let flip = m.join("flip");
    let heal_gc = m.join("heal-grandchild.pid");
    std::fs::write(&fault, "").unwrap();
    let mut extra = probes(http, tcp, 10);
    extra += &format!(
        "[script.target]\ncommand = \"test ! -e {}\"\ncritical = true\ncritical_after_consecutive_failures = 1\ninterval_secs = 1\ntimeout_secs = 1\nheal = \"sleep 60 & echo $! > {}; sleep 60\"\n",
        fault.display(),
        heal_gc.display()
    );
    extra += &format!(
        "[script.flip]\ncommand = \"test ! -e {}\"\ninterval_secs = 1\ntimeout_secs = 1\n",
        flip.display()
    );
    let mut d = Daemon::start("heal_timeout_secs = 120\n", &extra);
    let deadline = Instant::now() + Duration::from_secs(60);
    let gc: i32 = loop {
        if let Ok(s) = std::fs::read_to_string(&heal_gc)
            && let Ok(p) = s.trim().parse()
        {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the heal never started; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let heal_started = Instant::now();
    d.wait_status("flip passing", |v| {
        v["probes"].as_array().is_some_and(|a| {
            a.iter()
                .any(|p| p["name"] == "flip" && p["status"] == "pass")
        })
    });
    println!(
        "   heal running (grandchild pid {gc}); load average {}",
        loadavg()
    );
    println!("| request (heal in flight) | n | p50 | p90 | p99 | max | throughput | answers |");
    println!("|---|---|---|---|---|---|---|---|");

    let timed = |path: &str| {
        let t = Instant::now();
        let r = get(&d.addr, path);
        (t.elapsed(), r.map(|x| x.0).unwrap_or(0))
    };
    let seq = |path: &str, n: usize| {
        let start = Instant::now();
        let (lat, codes): (Vec<_>, Vec<_>) = (0..n).map(|_| timed(path)).unzip();
        (lat, codes, start.elapsed())
    };
    let (lat, codes, wall) = seq("/health", REQUESTS);
    let sequential = summary("`GET /health`, sequential", lat, wall, &codes);

    let start = Instant::now();
    let clients = 16;
    let per = REQUESTS / clients;
    let results: Vec<(Duration, u16)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|_| s.spawn(|| (0..per).map(|_| timed("/health")).collect::<Vec<_>>()))
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let wall = start.elapsed();
    let (lat, codes): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    let concurrent = summary(
        &format!("`GET /health`, {clients} concurrent clients"),
        lat,
        wall,
        &codes,
    );
    let (lat, codes, wall) = seq("/status", 200);
    let status = summary("`GET /status` (102 probes), sequential", lat, wall, &codes);

    // A probe flips while the heal runs: how long until /health says so.
    std::fs::write(&flip, "").unwrap();
    let t = Instant::now();
    let seen = loop {
        if let Some((_, b)) = get(&d.addr, "/health")
            && b.contains("\"flip\"")
        {
            break Some(t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let heal_still_running = running(gc);
    let heal_elapsed = heal_started.elapsed();
    println!(
        "   a probe flipped to failing showed in /health after {} (interval 1 s); heal still running after {:.1} s: {heal_still_running}",
        seen.map(|s| format!("{:.0} ms", s.as_secs_f64() * 1e3))
            .unwrap_or_else(|| "never (30 s)".into()),
        heal_elapsed.as_secs_f64()
    );
    let exit = d.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(gc) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let gc_left = running(gc);
    println!("   SIGTERM: exit {exit:?}; heal grandchild left behind: {gc_left}");
    serde_json::json!({
        "health_sequential": sequential,
        "health_concurrent_16": concurrent,
        "status_sequential": status,
        "flip_visible_ms": seen.map(|s| s.as_secs_f64() * 1e3),
        "heal_still_running_at_end": heal_still_running,
        "heal_elapsed_at_end_secs": heal_elapsed.as_secs_f64(),
        "sigterm_exit": exit,
        "heal_grandchild_left": gc_left,
        "loadavg": loadavg(),
    })
}
