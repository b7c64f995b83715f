//! Soak (not a test): the real release `talon run` with ~200 probes for a while, sampled for
//! leaks.
//!
//! `cargo bench --bench soak` — `SOAK_SECS` (default 120) long, a sample every
//! `SOAK_SAMPLE_SECS` (default 10). The 10-minute run in BENCHMARKS.md:
//! `SOAK_SECS=600 nice -n 5 cargo bench --bench soak`. Needs `python3` (the worker) and `sh`;
//! nothing else, and only loopback.
//!
//! The daemon gets its own temp HOME and state dir, `check_interval_secs = 5`, and:
//! - passing probes: http and tcp against local servers that run in a child process (this
//!   binary re-run with `TALON_BENCH_SERVE=1`, so their CPU and fds are not Talon's), and scripts;
//! - failing probes: non-critical ones (HTTP 503, TCP refused) that only degrade, and critical
//!   ones whose fault the bench switches on for 40 s of every 60 s, with heals that fail (and
//!   one that hangs past `heal_timeout_secs` with a grandchild), an agent whose cloud and local
//!   commands fail, and two `command` notification channels (one appending to a file, one
//!   failing), so incidents open, heal, escalate, page, remind and resolve over and over;
//! - flapping probes: scripts that alternate pass/fail on a counter file (non-critical, so they
//!   are reported `flapping` without holding an incident open between faults);
//! - hanging probes: scripts `sleep 600 & sleep 600` (a grandchild) and HTTP requests to a
//!   listener that never answers, all past their 2 s timeout;
//! - a supervised worker (`tests/fixtures/worker.py`) SIGKILLed every 20 s;
//! - a notification channel that fails every other delivery (besides one that always fails);
//! - a reload every `SOAK_RELOAD_SECS` (default 60): `services.toml` gains or loses one probe,
//!   then SIGHUP (the applied reloads are counted from Talon's log);
//! - a short history retention (`SOAK_RETENTION_SECS`, default 900) so pruning runs during the
//!   soak: the stored probe results must stop growing once the retention is reached.
//!
//! Each sample: Talon's VmRSS, open fds, threads, CPU since the last sample; its live
//! descendants (by parent pid), zombies among them, and every live process carrying this run's
//! environment tag (which catches a grandchild that escaped the tree — an orphan is reparented
//! away from Talon but keeps its environment); the size of `talon.db` + `talon.db-wal`; the
//! stored row counts; and one `GET /health` (latency and state). A table goes to stdout and
//! everything to `target/bench/soak.json`. The verdict is the least-squares slope of RSS, fds,
//! threads and processes over the second half of the run (after warm-up), called flat when the
//! change it predicts over that half is within a small tolerance. At the end, Talon gets SIGTERM
//! and the tagged processes still alive are counted (must be 0). For runs of 20 minutes or more,
//! RSS over the last two minutes is compared with RSS around minute 10 (target: at most 1 MiB
//! more), and `target/bench/soak.svg` plots RSS, fds, threads and processes over time.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WORKER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/worker.py");
const TAG: &str = "TALON_SOAK_TAG";

/// Probe counts by role (200 in all).
const HTTP_OK: usize = 100;
const TCP_OK: usize = 40;
const SCRIPT_OK: usize = 16;
const HTTP_503: usize = 5;
const TCP_REFUSED: usize = 5;
const CRITICAL_FAULT: usize = 8;
const FLAPPING: usize = 10;
const HANG_SCRIPT: usize = 10;
const HANG_HTTP: usize = 6;

fn main() {
    if common::serve_if_asked() {
        return;
    }
    if !common::asked_to_run("soak") {
        return;
    }
    let secs = env_u64("SOAK_SECS", 120);
    let sample_every = Duration::from_secs(env_u64("SOAK_SAMPLE_SECS", 10).max(1));
    let total = Duration::from_secs(secs);

    let servers = common::Servers::start();
    let (http, tcp, silent) = (servers.http, servers.tcp, servers.silent);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    let tag = format!("soak-{}", std::process::id());
    let health_port = free_port();
    let worker_port = free_port();
    let fault = dir.join("fault");
    let notices = dir.join("notices");
    let reload_every = Duration::from_secs(env_u64("SOAK_RELOAD_SECS", 60).max(1));
    let retention_secs = env_u64("SOAK_RETENTION_SECS", 900).max(60);
    write_config(
        dir,
        Ports {
            http,
            tcp,
            silent,
            refused: free_port(),
            health: health_port,
            worker: worker_port,
        },
        &fault,
        &notices,
        retention_secs,
    );

    let child = Command::new(env!("CARGO_BIN_EXE_talon"))
        .arg("run")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .current_dir(dir)
        .env("HOME", dir)
        .env(TAG, &tag)
        .env_remove("TALON_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("talon.stderr")).unwrap())
        .spawn()
        .expect("start talon run");
    let mut talon = Stop(Some(child));
    let pid = talon.pid();
    println!(
        "soak: talon run (pid {pid}) with {} probes, {secs} s, a sample every {} s; state {}",
        total_probes(),
        sample_every.as_secs(),
        state.display()
    );

    let mut samples: Vec<Sample> = Vec::new();
    let mut kills = 0u32;
    let start = Instant::now();
    let mut next_sample = start + sample_every;
    let mut next_kill = start + Duration::from_secs(20);
    let mut next_reload = start + reload_every;
    let mut reloads = 0u32;
    let mut prev_cpu = (start, cpu_ticks(pid));
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>5} {:>5} {:>6} {:>6} {:>6} {:>10} {:>9} {:>8} {:>9} {:>7} {:>9}",
        "t(s)",
        "RSS(KiB)",
        "anon",
        "file",
        "fds",
        "thr",
        "desc",
        "zomb",
        "tagged",
        "db+wal(KB)",
        "results",
        "incid",
        "notices",
        "cpu%",
        "health"
    );
    while start.elapsed() < total + Duration::from_millis(500) {
        let now = Instant::now();
        if let Some(code) = talon.exited() {
            panic!(
                "talon exited ({code:?}) during the soak; stderr:\n{}",
                std::fs::read_to_string(dir.join("talon.stderr")).unwrap_or_default()
            );
        }
        // The critical fault is on for 40 s of every 60 s.
        let phase = start.elapsed().as_secs() % 60;
        let want_fault = (10..50).contains(&phase);
        if want_fault != fault.exists() {
            if want_fault {
                std::fs::write(&fault, "").unwrap();
            } else {
                let _ = std::fs::remove_file(&fault);
            }
        }
        if now >= next_kill {
            if let Some(w) = worker_pid(worker_port) {
                kill(w, libc::SIGKILL);
                kills += 1;
            }
            next_kill = now + Duration::from_secs(20);
        }
        if now >= next_reload {
            // One probe more or one fewer, so every reload changes what runs.
            reloads += 1;
            let mut services = std::fs::read_to_string(dir.join("services.toml")).unwrap();
            let extra = "[script.reloaded]\ncommand = \"echo reloaded\"\n";
            if reloads % 2 == 1 {
                services.push_str(extra);
            } else {
                services = services.replace(extra, "");
            }
            std::fs::write(dir.join("services.toml"), services).unwrap();
            kill(pid, libc::SIGHUP);
            next_reload = now + reload_every;
        }
        if now >= next_sample {
            let ticks = cpu_ticks(pid);
            let cpu = cpu_percent(prev_cpu, (now, ticks));
            prev_cpu = (now, ticks);
            let s = sample(start, pid, &tag, &state, health_port, &notices, cpu);
            println!(
                "{:>6.0} {:>9} {:>8} {:>8} {:>5} {:>5} {:>6} {:>6} {:>6} {:>10.0} {:>9} {:>8} {:>9} {:>7.1} {:>9}",
                s.t,
                s.rss_kib,
                s.rss_anon_kib,
                s.rss_file_kib,
                s.fds,
                s.threads,
                s.descendants,
                s.zombies,
                s.tagged,
                s.db_bytes as f64 / 1000.0,
                s.probe_results,
                s.incidents,
                s.notices,
                s.cpu_percent,
                s.health
            );
            samples.push(s);
            next_sample += sample_every;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Shut down and look for anything left behind.
    let exit = talon.terminate(Duration::from_secs(30));
    let leftover = wait_tagged_gone(&tag, Duration::from_secs(5));
    drop(servers);

    let final_counts = talon::store::Store::open_existing(&state)
        .ok()
        .flatten()
        .and_then(|s| s.counts().ok());
    let final_db = checkpointed_db_bytes(&state);
    let verdict = Verdict::of(&samples);
    let applied_reloads = count_in_logs(dir, &state, "config reloaded");
    let late = rss_late_vs_minute_10(&samples);
    let retention = retention_check(&samples, retention_secs);
    println!("\nworker SIGKILLs: {kills}; talon exit code after SIGTERM: {exit:?}");
    println!(
        "reloads sent: {reloads}; applied (\"config reloaded\" in the log): {applied_reloads}"
    );
    if let Some(l) = &late {
        println!(
            "RSS around minute 10 (mean of t in [540, 660] s): {:.0} KiB; last two minutes: {:.0} KiB; \
             difference {:+.0} KiB (target <= +1024): {}",
            l.at_10_min_kib,
            l.last_kib,
            l.difference_kib,
            if l.met { "met" } else { "NOT MET" }
        );
    }
    println!(
        "stored probe results: max {} after the retention ({} s) was first reached, {} at the end: {}",
        retention.max_after_cap,
        retention_secs,
        retention.at_end,
        if retention.bounded {
            "bounded"
        } else {
            "STILL GROWING"
        }
    );
    println!("tagged processes alive after talon exited: {leftover}");
    if let Some(c) = &final_counts {
        println!(
            "stored: {} probe results, {} transitions, {} incidents, {} actions, {} notifications",
            c.probe_results, c.transitions, c.incidents, c.actions, c.notifications
        );
        if c.probe_results > 0 {
            println!(
                "db after checkpoint: {} bytes = {:.0} bytes per stored probe result (all tables)",
                final_db,
                final_db as f64 / c.probe_results as f64
            );
        }
    }
    println!(
        "\nsecond half (t >= {:.0} s), least-squares slope:",
        verdict.from_t
    );
    for l in &verdict.lines {
        println!(
            "  {:<12} {:>+10.3} /min  (predicts {:>+9.1} over the half; mean {:>9.1} → {:>9.1}; tolerance {}) {}",
            l.what,
            l.slope_per_min,
            l.predicted_change,
            l.first_half_mean,
            l.second_half_mean,
            l.tolerance,
            if l.flat { "flat" } else { "GROWING" }
        );
    }
    let ok = verdict.lines.iter().all(|l| l.flat)
        && leftover == 0
        && late.as_ref().is_none_or(|l| l.met)
        && retention.bounded;
    println!(
        "verdict: {}",
        if ok {
            "flat (no growth in RSS, fds, threads or processes; nothing left behind)"
        } else {
            "NOT FLAT — see above"
        }
    );

    let out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench"));
    std::fs::create_dir_all(&out).unwrap();
    let json = serde_json::json!({
        "secs": secs,
        "sample_secs": sample_every.as_secs(),
        "probes": total_probes(),
        "check_interval_secs": 5,
        "worker_sigkills": kills,
        "reloads_sent": reloads,
        "reloads_applied": applied_reloads,
        "retention_secs": retention_secs,
        "rss_late_vs_minute_10": late,
        "retention_check": retention,
        "exit_code": exit,
        "leftover_processes": leftover,
        "final_counts": final_counts,
        "final_db_bytes_checkpointed": final_db,
        "samples": samples,
        "verdict": verdict,
        "flat": ok,
    });
    std::fs::write(
        out.join("soak.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    println!("wrote {}", out.join("soak.json").display());
    if secs >= 1200 {
        std::fs::write(out.join("soak.svg"), plot(&samples)).unwrap();
        println!("wrote {}", out.join("soak.svg").display());
    }
}

#[derive(serde::Serialize)]
struct Late {
    at_10_min_kib: f64,
    last_kib: f64,
    difference_kib: f64,
    met: bool,
}

/// RSS over the last two minutes against RSS around minute 10 (runs of 20 minutes or more).
fn rss_late_vs_minute_10(samples: &[Sample]) -> Option<Late> {
    let end = samples.last()?.t;
    if end < 1200.0 {
        return None;
    }
    let mean = |lo: f64, hi: f64| {
        let xs: Vec<f64> = samples
            .iter()
            .filter(|s| s.t >= lo && s.t <= hi)
            .map(|s| s.rss_kib as f64)
            .collect();
        xs.iter().sum::<f64>() / xs.len().max(1) as f64
    };
    let at_10_min_kib = mean(540.0, 660.0);
    let last_kib = mean(end - 120.0, end);
    let difference_kib = last_kib - at_10_min_kib;
    Some(Late {
        at_10_min_kib,
        last_kib,
        difference_kib,
        met: difference_kib <= 1024.0,
    })
}

#[derive(serde::Serialize)]
struct Retention {
    max_after_cap: u64,
    at_end: u64,
    bounded: bool,
}

/// Stored probe results once the retention (plus one prune period, a tenth of it, and a minute
/// of slack) has passed must not keep growing: the last third's maximum is at most 10 % above
/// the maximum seen in the first sample after the cap applies.
fn retention_check(samples: &[Sample], retention_secs: u64) -> Retention {
    let cap_t = retention_secs as f64 * 1.1 + 60.0;
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= cap_t).collect();
    let at_end = samples.last().map_or(0, |s| s.probe_results);
    if after.len() < 3 {
        return Retention {
            max_after_cap: 0,
            at_end,
            bounded: true,
        };
    }
    let third = after.len() / 3;
    let first = after[..third.max(1)]
        .iter()
        .map(|s| s.probe_results)
        .max()
        .unwrap_or(0);
    let last = after[after.len() - third.max(1)..]
        .iter()
        .map(|s| s.probe_results)
        .max()
        .unwrap_or(0);
    Retention {
        max_after_cap: last.max(first),
        at_end,
        bounded: last as f64 <= first as f64 * 1.1,
    }
}

/// A small SVG: RSS (total, anon, file; MiB) above, fds / threads / live descendants below,
/// against minutes.
fn plot(samples: &[Sample]) -> String {
    let (w, h, pad) = (720.0, 200.0, 40.0);
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let x = |t: f64| pad + t / t_max * (w - 2.0 * pad);
    type Get = fn(&Sample) -> f64;
    let panel = |top: f64, title: &str, series: &[(&str, &str, Get)]| -> String {
        let y_max = series
            .iter()
            .flat_map(|(_, _, g)| samples.iter().map(g))
            .fold(1.0_f64, f64::max)
            * 1.1;
        let y = |v: f64| top + h - v / y_max * h;
        let mut out = format!(
            "<text x=\"{pad}\" y=\"{}\" font-size=\"12\">{title} (max {y_max:.1})</text>\n\
             <rect x=\"{pad}\" y=\"{top}\" width=\"{}\" height=\"{h}\" fill=\"none\" stroke=\"#999\"/>\n",
            top - 6.0,
            w - 2.0 * pad
        );
        for (i, (name, colour, get)) in series.iter().enumerate() {
            let pts: Vec<String> = samples
                .iter()
                .map(|s| format!("{:.1},{:.1}", x(s.t), y(get(s))))
                .collect();
            out += &format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.2\" points=\"{}\"/>\n\
                 <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{colour}\">{name}</text>\n",
                pts.join(" "),
                w - pad - 150.0 + 50.0 * i as f64,
                top - 6.0
            );
        }
        out
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\">\n",
        2.0 * h + 3.0 * pad
    );
    svg += &panel(
        pad,
        "RSS MiB",
        &[
            ("total", "#c00", |s| s.rss_kib as f64 / 1024.0),
            ("anon", "#06c", |s| s.rss_anon_kib as f64 / 1024.0),
            ("file", "#090", |s| s.rss_file_kib as f64 / 1024.0),
        ],
    );
    svg += &panel(
        2.0 * pad + h,
        "fds / threads / processes",
        &[
            ("fds", "#c60", |s| s.fds as f64),
            ("thr", "#60c", |s| s.threads as f64),
            ("procs", "#666", |s| s.descendants as f64),
        ],
    );
    for m in (0..=(t_max / 60.0) as u64).step_by(((t_max / 600.0).ceil() as usize).max(1) * 5) {
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{m} min</text>\n",
            x(m as f64 * 60.0),
            3.0 * pad + 2.0 * h - 12.0
        );
    }
    svg + "</svg>\n"
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How often `needle` occurs in Talon's log: its file under the state dir (`[log] file`'s default)
/// with the rotated ones (`talon.log.1` …), and its stderr.
fn count_in_logs(dir: &Path, state: &Path, needle: &str) -> usize {
    let mut files = vec![dir.join("talon.stderr")];
    if let Ok(entries) = std::fs::read_dir(state) {
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("talon.log"))
        }));
    }
    files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .matches(needle)
                .count()
        })
        .sum()
}

fn total_probes() -> usize {
    HTTP_OK
        + TCP_OK
        + SCRIPT_OK
        + HTTP_503
        + TCP_REFUSED
        + CRITICAL_FAULT
        + FLAPPING
        + HANG_SCRIPT
        + HANG_HTTP
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Ports {
    http: u16,
    tcp: u16,
    silent: u16,
    refused: u16,
    health: u16,
    worker: u16,
}

fn write_config(dir: &Path, p: Ports, fault: &Path, notices: &Path, retention_secs: u64) {
    let st = dir.join("worker-state");
    std::fs::create_dir_all(&st).unwrap();
    let d = dir.display();
    let config = format!(
        r#"state_dir = "state"
services_file = "services.toml"
check_interval_secs = 5
heal_timeout_secs = 3

[escalation]
heal_cooldown_secs = 5
heal_settle_secs = 1
max_heals_per_incident = 3
agent_cooldown_secs = 10
critical_threshold_secs = 5
sos_cooldown_secs = 15
flap_threshold = 4
flap_window_secs = 60

[agent]
cloud_command = "cat >/dev/null; echo cloud agent unavailable; exit 1"
local_command = "cat >/dev/null; exit 2"
timeout_secs = 5

[notify.file]
kind = "command"
command = "cat >> '{notices}'; echo >> '{notices}'"

[notify.broken]
kind = "command"
command = "exit 1"

[notify.flaky]
kind = "command"
command = "c=$(cat '{flaky}' 2>/dev/null || echo 0); echo $((c + 1)) > '{flaky}'; cat >/dev/null; test $((c % 2)) -eq 0"

[store]
retention_days = {retention_days}

[health]
bind = "127.0.0.1:{health}"

[worker]
command = ["python3", "{WORKER}"]
port = {worker}
health_endpoint = "http://127.0.0.1:{worker}/health"
health_interval_secs = 1
max_restarts = 100000
log_stdout = "{d}/worker.out"
log_stderr = "{d}/worker.err"
[worker.env]
PORT = "{worker}"
STATE = "{st}"
"#,
        notices = notices.display(),
        flaky = dir.join("flaky.count").display(),
        retention_days = retention_secs as f64 / 86_400.0,
        health = p.health,
        worker = p.worker,
        st = st.display(),
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();

    let mut s = String::new();
    let (http, tcp, silent) = (p.http, p.tcp, p.silent);
    for i in 0..HTTP_OK {
        s += &format!("[http.ok{i}]\nurl = \"http://127.0.0.1:{http}/health\"\n");
    }
    for i in 0..TCP_OK {
        s += &format!("[tcp.tcp{i}]\naddress = \"127.0.0.1:{tcp}\"\n");
    }
    for i in 0..SCRIPT_OK {
        s += &format!("[script.sh{i}]\ncommand = \"test -d /tmp && echo ok {i}\"\n");
    }
    for i in 0..HTTP_503 {
        s += &format!("[http.degraded{i}]\nurl = \"http://127.0.0.1:{http}/fail\"\n");
    }
    for i in 0..TCP_REFUSED {
        s += &format!("[tcp.refused{i}]\naddress = \"127.0.0.1:{}\"\n", p.refused);
    }
    for i in 0..CRITICAL_FAULT {
        // Heals that fail; one of them hangs past heal_timeout_secs with a grandchild.
        let heal = if i == 0 {
            "sleep 600 & sleep 600"
        } else {
            "echo heal tried; exit 1"
        };
        s += &format!(
            "[script.critical{i}]\ncommand = \"test ! -e '{}'\"\ncritical = true\nheal = \"{heal}\"\n",
            fault.display()
        );
    }
    for i in 0..FLAPPING {
        let counter = dir.join(format!("flap{i}"));
        s += &format!(
            "[script.flap{i}]\ncommand = \"c=$(cat '{c}' 2>/dev/null || echo 0); echo $((c + 1)) > '{c}'; test $((c % 2)) -eq 0\"\n\
             critical_after_consecutive_failures = 1\n",
            c = counter.display()
        );
    }
    for i in 0..HANG_SCRIPT {
        s += &format!("[script.hang{i}]\ncommand = \"sleep 600 & sleep 600\"\ntimeout_secs = 2\n");
    }
    for i in 0..HANG_HTTP {
        s += &format!("[http.silent{i}]\nurl = \"http://127.0.0.1:{silent}/\"\ntimeout_secs = 2\n");
    }
    std::fs::write(dir.join("services.toml"), s).unwrap();
}

#[derive(serde::Serialize)]
struct Sample {
    t: f64,
    rss_kib: u64,
    /// RssAnon (heap, stacks): where a leak shows.
    rss_anon_kib: u64,
    /// RssFile + RssShmem: the binary's pages faulted in as code paths first run, and
    /// SQLite's WAL index (`talon.db-shm`).
    rss_file_kib: u64,
    fds: u64,
    threads: u64,
    /// Live (non-zombie) processes below Talon in the parent tree.
    descendants: u64,
    /// Zombies below Talon (children not reaped yet).
    zombies: u64,
    /// Live processes other than Talon carrying this run's environment tag, wherever they are.
    tagged: u64,
    db_bytes: u64,
    wal_bytes: u64,
    probe_results: u64,
    incidents: u64,
    /// Notices the file channel received so far.
    notices: u64,
    cpu_percent: f64,
    health: String,
    health_ms: f64,
    worker_restarts: u64,
}

fn sample(
    start: Instant,
    pid: u32,
    tag: &str,
    state: &Path,
    health_port: u16,
    notices: &Path,
    cpu_percent: f64,
) -> Sample {
    let t = start.elapsed().as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let procs = processes();
    let (descendants, zombies) = descendants(&procs, pid);
    let tagged = procs
        .iter()
        .filter(|p| p.pid != pid && p.state != 'Z' && has_tag(p.pid, tag))
        .count() as u64;
    let size = |name: &str| {
        std::fs::metadata(state.join(name))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let counts = talon::store::Store::open_existing(state)
        .ok()
        .flatten()
        .and_then(|s| s.counts().ok());
    let notices = std::fs::read_to_string(notices)
        .map(|t| t.matches("Incident:").count() as u64)
        .unwrap_or(0);
    let t0 = Instant::now();
    let body = http_get(health_port, "/health");
    let health_ms = t0.elapsed().as_secs_f64() * 1e3;
    let v: serde_json::Value = body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or_default();
    Sample {
        t,
        rss_kib: field("VmRSS:"),
        rss_anon_kib: field("RssAnon:"),
        rss_file_kib: field("RssFile:") + field("RssShmem:"),
        fds,
        threads: field("Threads:"),
        descendants,
        zombies,
        tagged,
        db_bytes: size("talon.db") + size("talon.db-wal"),
        wal_bytes: size("talon.db-wal"),
        probe_results: counts.map_or(0, |c| c.probe_results),
        incidents: counts.map_or(0, |c| c.incidents),
        notices,
        cpu_percent,
        health: v["state"].as_str().unwrap_or("no answer").to_string(),
        health_ms,
        worker_restarts: v["worker_restarts"].as_u64().unwrap_or(0),
    }
}

/// The database's size once its WAL is folded in (`wal_checkpoint(TRUNCATE)` by a reader after
/// Talon has exited).
fn checkpointed_db_bytes(state: &Path) -> u64 {
    if let Ok(c) = rusqlite::Connection::open(state.join("talon.db")) {
        let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
    let size = |name: &str| {
        std::fs::metadata(state.join(name))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    size("talon.db") + size("talon.db-wal")
}

struct Proc {
    pid: u32,
    ppid: u32,
    state: char,
}

fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push(Proc { pid, ppid, state });
    }
    out
}

/// (live descendants, zombie descendants) of `root`.
fn descendants(procs: &[Proc], root: u32) -> (u64, u64) {
    let mut frontier = vec![root];
    let (mut live, mut zombies) = (0, 0);
    while let Some(p) = frontier.pop() {
        for c in procs.iter().filter(|c| c.ppid == p) {
            if c.state == 'Z' {
                zombies += 1;
            } else {
                live += 1;
            }
            frontier.push(c.pid);
        }
    }
    (live, zombies)
}

fn has_tag(pid: u32, tag: &str) -> bool {
    let needle = format!("{TAG}={tag}");
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
        .unwrap_or(false)
}

fn wait_tagged_gone(tag: &str, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let live: Vec<u32> = processes()
            .iter()
            .filter(|p| p.state != 'Z' && has_tag(p.pid, tag))
            .map(|p| p.pid)
            .collect();
        if live.is_empty() || Instant::now() > deadline {
            for p in &live {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                eprintln!(
                    "left behind: pid {p}: {}",
                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                );
                kill(*p, libc::SIGKILL);
            }
            return live.len();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = &s[s.rfind(')').map(|i| i + 1).unwrap_or(0)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the command name.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn cpu_percent(a: (Instant, u64), b: (Instant, u64)) -> f64 {
    // SAFETY: sysconf is a plain query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let wall = b.0.duration_since(a.0).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    b.1.saturating_sub(a.1) as f64 / hz / wall * 100.0
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// The worker's pid, from its health answer (`ok PID`).
fn worker_pid(port: u16) -> Option<u32> {
    http_get(port, "/health")?
        .trim()
        .strip_prefix("ok ")?
        .parse()
        .ok()
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid this bench started or that carries its tag.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Talon's process; SIGKILLed when dropped if still running.
struct Stop(Option<Child>);

impl Stop {
    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    fn exited(&mut self) -> Option<Option<i32>> {
        let c = self.0.as_mut()?;
        c.try_wait().ok().flatten().map(|st| st.code())
    }

    fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let mut c = self.0.take()?;
        kill(c.id(), libc::SIGTERM);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("talon did not exit within {limit:?} of SIGTERM; killing it");
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(serde::Serialize)]
struct Line {
    what: &'static str,
    slope_per_min: f64,
    predicted_change: f64,
    first_half_mean: f64,
    second_half_mean: f64,
    tolerance: f64,
    flat: bool,
}

#[derive(serde::Serialize)]
struct Verdict {
    from_t: f64,
    lines: Vec<Line>,
}

impl Verdict {
    /// Slopes over the second half of the samples. Tolerances: RSS may move by 2 MiB (allocator
    /// noise; a leak of one buffer per probe result would be hundreds of KiB per minute), fds and
    /// threads by 2, processes by 3. fds and processes are bimodal — a sample that lands while a
    /// cycle's scripts run sees ~100 pipes and dozens of children, one between cycles sees the
    /// floor — so their verdict compares the floor of the last third of the half with the first.
    fn of(samples: &[Sample]) -> Verdict {
        let half = &samples[samples.len() / 2..];
        let first = &samples[..samples.len() / 2];
        let from_t = half.first().map_or(0.0, |s| s.t);
        let span = half.last().map_or(0.0, |s| s.t) - from_t;
        type Get = fn(&Sample) -> f64;
        let metrics: [(&'static str, Get, f64, bool); 7] = [
            ("rss_kib", |s| s.rss_kib as f64, 2048.0, false),
            ("rss_anon_kib", |s| s.rss_anon_kib as f64, 2048.0, false),
            ("rss_file_kib", |s| s.rss_file_kib as f64, 2048.0, false),
            ("fds", |s| s.fds as f64, 2.0, true),
            ("threads", |s| s.threads as f64, 2.0, false),
            ("descendants", |s| s.descendants as f64, 3.0, true),
            ("tagged", |s| s.tagged as f64, 3.0, true),
        ];
        let mean = |xs: &[Sample], get: Get| {
            if xs.is_empty() {
                0.0
            } else {
                xs.iter().map(get).sum::<f64>() / xs.len() as f64
            }
        };
        let lines = metrics
            .into_iter()
            .map(|(what, get, tolerance, floor)| {
                let slope = slope(half.iter().map(|s| (s.t, get(s))));
                let predicted_change = if floor {
                    floor_change(half, get)
                } else {
                    slope * span
                };
                Line {
                    what,
                    slope_per_min: slope * 60.0,
                    predicted_change,
                    first_half_mean: mean(first, get),
                    second_half_mean: mean(half, get),
                    tolerance,
                    // Only growth is a leak; a falling floor (warm-up settling) is not.
                    flat: predicted_change <= tolerance,
                }
            })
            .collect();
        Verdict { from_t, lines }
    }
}

/// How the floor moved over `samples`: the minimum of the last third minus the minimum of the
/// first third (a sample taken during a cycle only raises a value, never lowers the floor).
fn floor_change(samples: &[Sample], get: fn(&Sample) -> f64) -> f64 {
    let third = (samples.len() / 3).max(1);
    let min = |xs: &[Sample]| xs.iter().map(get).fold(f64::INFINITY, f64::min);
    if samples.is_empty() {
        return 0.0;
    }
    min(&samples[samples.len() - third..]) - min(&samples[..third])
}

/// Least-squares slope of y over x (per unit of x).
fn slope(points: impl Iterator<Item = (f64, f64)>) -> f64 {
    let p: Vec<(f64, f64)> = points.collect();
    let n = p.len() as f64;
    if p.len() < 2 {
        return 0.0;
    }
    let mx = p.iter().map(|q| q.0).sum::<f64>() / n;
    let my = p.iter().map(|q| q.1).sum::<f64>() / n;
    let sxx: f64 = p.iter().map(|q| (q.0 - mx).powi(2)).sum();
    let sxy: f64 = p.iter().map(|q| (q.0 - mx) * (q.1 - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}
