//! Probe-cycle benchmark (not a test): `cargo bench --bench probe_cycle`.
//!
//! 500 probes (mixed http/tcp/script against local servers), of which 5 hang until their 2 s
//! timeout: cycle wall time. Then CPU time per HTTP probe and per script probe, and memory
//! growth from idle to after cycles. The servers run in a child process (this binary re-run with
//! `TALON_BENCH_SERVE=1`) so their CPU is not counted as the engine's.

mod common;

use std::time::{Duration, Instant};
use talon::config::{self, Config, LoadOptions};
use talon::core::Status;
use talon::probe::Engine;

fn main() {
    if common::serve_if_asked() {
        return;
    }
    // Test runners (`cargo nextest run --all-targets`, `cargo test --all-targets`) run bench
    // binaries too: list no tests and do not run the benchmark unless `cargo bench` asked.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("probe_cycle: a benchmark; run it with `cargo bench --bench probe_cycle`");
        return;
    }
    let servers = common::Servers::start();
    let (http, tcp, silent) = (servers.http, servers.tcp, servers.silent);

    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // --- 1. 500 mixed probes, 5 hanging until a 2 s timeout: last in config order (worst
    // case: they queue for a concurrency slot behind everything else), then spread through it.
    let (n_http, n_tcp, n_script, n_hang) = (250, 145, 100, 5);
    let mut lines: Vec<String> = Vec::new();
    for i in 0..n_http {
        lines.push(format!(
            "[http.h{i}]\nurl = \"http://127.0.0.1:{http}/health\"\n"
        ));
    }
    for i in 0..n_tcp {
        lines.push(format!("[tcp.t{i}]\naddress = \"127.0.0.1:{tcp}\"\n"));
    }
    for i in 0..n_script {
        lines.push(format!(
            "[script.s{i}]\ncommand = \"test -d /tmp && echo ok\"\n"
        ));
    }
    let hang = |i: usize| {
        format!("[http.hang{i}]\nurl = \"http://127.0.0.1:{silent}/\"\ntimeout_secs = 2\n")
    };
    let mut last = lines.clone();
    last.extend((0..n_hang).map(hang));
    let mut spread = lines.clone();
    for i in 0..n_hang {
        spread.insert(i * 100, hang(i));
    }
    let rss_start = rss_kb();
    let mut first_engine_rss = None;
    for (label, probes) in [
        ("hanging probes last", last),
        ("hanging probes spread", spread),
    ] {
        let mixed = load(dir.path(), "mixed", &probes.concat());
        assert_eq!(mixed.probes.len(), 500);
        let engine = Engine::new(&mixed);
        let rss_idle = rss_kb();
        first_engine_rss.get_or_insert(rss_idle);
        println!(
            "== Probe cycle: 500 probes ({n_http} http, {n_tcp} tcp, {n_script} script, {n_hang} hanging http with a 2 s timeout; {label}), concurrency {}",
            mixed.probe_defaults.concurrency
        );
        println!("RSS idle (config loaded, engine built): {rss_idle} KiB");
        let mut walls = Vec::new();
        for round in 1..=5 {
            let t0 = Instant::now();
            let rs = runtime.block_on(engine.run(&mixed.probes));
            let wall = t0.elapsed();
            let count = |s: Status| rs.iter().filter(|r| r.status == s).count();
            println!(
                "cycle {round}: {:>6.3} s   pass {}  timeout {}  other {}   RSS {} KiB",
                wall.as_secs_f64(),
                count(Status::Pass),
                count(Status::Timeout),
                rs.len() - count(Status::Pass) - count(Status::Timeout),
                rss_kb()
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
    }
    let rss_after = rss_kb();
    println!(
        "memory: RSS before config {} KiB, idle with engine {} KiB, after 10 cycles {} KiB (growth idle→cycles {} KiB); peak {} KiB",
        rss_start,
        first_engine_rss.unwrap_or(0),
        rss_after,
        rss_after as i64 - first_engine_rss.unwrap_or(0) as i64,
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

    drop(servers);
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
