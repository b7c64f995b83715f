//! Probe-cycle benchmark (not a test): `cargo bench --bench probe_cycle`.
//!
//! 500 probes (mixed http/tcp/script against local servers), of which 5 hang until their 2 s
//! timeout: cycle wall time. Then CPU time per HTTP probe and per script probe, and memory
//! growth from idle to after cycles. The servers run in a child process (this binary re-run with
//! `TALON_BENCH_SERVE=1`) so their CPU is not counted as the engine's.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use talon::config::{self, Config, LoadOptions};
use talon::probe::{Engine, Status};

fn main() {
    if std::env::var_os("TALON_BENCH_SERVE").is_some() {
        serve();
        return;
    }
    // Servers in a child process; it exits when our end of its stdin closes.
    let mut server = Command::new(std::env::current_exe().unwrap())
        .env("TALON_BENCH_SERVE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ports: Vec<u16> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let (http, tcp, silent) = (ports[0], ports[1], ports[2]);

    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // --- 1. 500 mixed probes, 5 hanging until a 2 s timeout.
    let mut probes = String::new();
    let (n_http, n_tcp, n_script, n_hang) = (250, 145, 100, 5);
    for i in 0..n_http {
        probes += &format!("[http.h{i}]\nurl = \"http://127.0.0.1:{http}/health\"\n");
    }
    for i in 0..n_tcp {
        probes += &format!("[tcp.t{i}]\naddress = \"127.0.0.1:{tcp}\"\n");
    }
    for i in 0..n_script {
        probes += &format!("[script.s{i}]\ncommand = \"test -d /tmp && echo ok\"\n");
    }
    for i in 0..n_hang {
        probes +=
            &format!("[http.hang{i}]\nurl = \"http://127.0.0.1:{silent}/\"\ntimeout_secs = 2\n");
    }
    let mixed = load(dir.path(), "mixed", &probes);
    assert_eq!(mixed.probes.len(), 500);
    let engine = Engine::new(&mixed);
    let rss_idle = rss_kb();
    println!(
        "== Probe cycle: 500 probes ({n_http} http, {n_tcp} tcp, {n_script} script, {n_hang} hanging http with a 2 s timeout), concurrency {}",
        mixed.probe_defaults.concurrency
    );
    let mut walls = Vec::new();
    for round in 1..=5 {
        let t0 = Instant::now();
        let rs = runtime.block_on(engine.run(&mixed.probes));
        let wall = t0.elapsed();
        let count = |s: Status| rs.iter().filter(|r| r.status == s).count();
        println!(
            "cycle {round}: {:>6.3} s   pass {}  timeout {}  other {}",
            wall.as_secs_f64(),
            count(Status::Pass),
            count(Status::Timeout),
            rs.len() - count(Status::Pass) - count(Status::Timeout)
        );
        if let Some(bad) = rs
            .iter()
            .find(|r| r.status != Status::Pass && !r.name.starts_with("hang"))
        {
            println!("  unexpected: {bad:?}");
        }
        walls.push(wall);
    }
    walls.sort();
    println!(
        "cycle wall time: median {:.3} s, min {:.3} s, max {:.3} s (target < 2.5 s)",
        walls[walls.len() / 2].as_secs_f64(),
        walls[0].as_secs_f64(),
        walls[walls.len() - 1].as_secs_f64()
    );
    let rss_after = rss_kb();
    println!(
        "memory: RSS idle (engine built) {} KiB, after 5 cycles {} KiB, growth {} KiB; peak {} KiB",
        rss_idle,
        rss_after,
        rss_after as i64 - rss_idle as i64,
        hwm_kb()
    );

    // --- 2. CPU per probe, by kind (several cycles each, averaged).
    let per_kind = |kind: &str, body: &dyn Fn(usize) -> String, n: usize, rounds: usize| {
        let mut text = String::new();
        for i in 0..n {
            text += &body(i);
        }
        let c = load(dir.path(), kind, &text);
        let engine = Engine::new(&c);
        runtime.block_on(engine.run(&c.probes)); // warm-up (clients built, pages touched)
        let (s0, c0) = cpu();
        let t0 = Instant::now();
        for _ in 0..rounds {
            let rs = runtime.block_on(engine.run(&c.probes));
            assert!(
                rs.iter().all(|r| r.passed),
                "{:?}",
                rs.iter().find(|r| !r.passed)
            );
        }
        let wall = t0.elapsed();
        let (s1, c1) = cpu();
        let probes = (n * rounds) as f64;
        println!(
            "{kind:>6}: {n} probes x {rounds} cycles: talon CPU {:.1} µs/probe, child processes CPU {:.1} µs/probe, cycle wall {:.0} ms",
            (s1 - s0).as_secs_f64() * 1e6 / probes,
            (c1 - c0).as_secs_f64() * 1e6 / probes,
            wall.as_secs_f64() * 1e3 / rounds as f64
        );
    };
    println!("== CPU time per probe");
    per_kind(
        "http",
        &|i| format!("[http.h{i}]\nurl = \"http://127.0.0.1:{http}/health\"\n"),
        200,
        5,
    );
    per_kind(
        "tcp",
        &|i| format!("[tcp.t{i}]\naddress = \"127.0.0.1:{tcp}\"\n"),
        200,
        5,
    );
    per_kind(
        "script",
        &|i| format!("[script.s{i}]\ncommand = \"test -d /tmp && echo ok\"\n"),
        200,
        5,
    );

    drop(server.stdin.take());
    let _ = server.wait();
}

/// Write a config with these probes and load it (as `talon check` would).
fn load(dir: &std::path::Path, name: &str, probes: &str) -> Config {
    let main = dir.join(format!("{name}.toml"));
    let services = dir.join(format!("{name}-probes.toml"));
    std::fs::write(&services, probes).unwrap();
    std::fs::write(
        &main,
        format!(
            "services_file = \"{}\"\nstate_dir = \"{}\"\n",
            services.display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    let l = config::load(&LoadOptions {
        config: Some(main),
        resolve: false,
        ..Default::default()
    });
    match l.config {
        Some(c) => c,
        None => panic!("{:?}", l.diags.items.first()),
    }
}

/// (this process's CPU time, reaped children's CPU time).
fn cpu() -> (Duration, Duration) {
    let get = |who| {
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes into the struct we own.
        unsafe { libc::getrusage(who, &mut u) };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN))
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
fn rss_kb() -> u64 {
    status_kb("VmRSS:")
}
fn hwm_kb() -> u64 {
    status_kb("VmHWM:")
}

/// The server side: HTTP 200, TCP accept-and-close, and a silent listener that never answers.
fn serve() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ports = [&http, &tcp, &silent].map(|l| l.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(http, app).await });
        tokio::spawn(async move {
            while let Ok((s, _)) = tcp.accept().await {
                drop(s);
            }
        });
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let mut out = std::io::stdout();
        writeln!(out, "{} {} {}", ports[0], ports[1], ports[2]).unwrap();
        out.flush().unwrap();
        // Until the parent closes our stdin.
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
    });
}
