//! Startup and CLI latency (not a test): wall time of what an operator waits for, median of
//! `RUNS` (default 20), beside monit's equivalents when `monit` is on PATH.
//!
//! Talon (the release binary, 10 local probes: 5 http and 5 tcp against loopback servers in a
//! child process):
//! - `talon run` → `/health` answers (the server is up), and → every probe has a result in
//!   `/status` (the first cycle is done); each run starts from an empty state dir and ends with
//!   SIGTERM;
//! - `talon status` against that running daemon (reads its state: `/status`, else the store);
//! - `talon check` (one cycle of the 10 probes, printed);
//! - `talon validate` (the config check, as `monit -t`).
//!
//! monit 5.x (`set daemon 10`, the same 10 checks as `if failed port … protocol http` /
//! `host … port` services, `set httpd` on a loopback port for the CLI):
//! - `monit -I` → `monit status` answers, and → every service has been checked once (`monit
//!   status` shows no "Not monitored"/"Initializing" entry);
//! - `monit status` against the running monit;
//! - `monit -t` (its config check).
//!
//! `cargo bench --bench startup` (env `RUNS`). Prints a table and writes
//! `target/bench/startup.json`. Nothing is asserted.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TALON: &str = env!("CARGO_BIN_EXE_talon");

fn main() {
    if common::serve_if_asked() {
        return;
    }
    if !common::asked_to_run("startup") {
        return;
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let servers = common::Servers::start();
    let (http, tcp) = (servers.http, servers.tcp);

    let mut rows: Vec<(String, Stats)> = Vec::new();
    let talon = talon_rows(runs, http, tcp);
    rows.extend(talon);
    match monit_version() {
        Some(v) => {
            println!("monit: {v}");
            rows.extend(monit_rows(runs, http, tcp));
        }
        None => println!("monit: not on PATH (apt-get install -y monit); its rows are left out"),
    }
    drop(servers);

    println!(
        "\n{:<58} {:>10} {:>10} {:>10}",
        "(ms, n = runs)", "median", "min", "max"
    );
    for (name, s) in &rows {
        println!(
            "{name:<58} {:>10.1} {:>10.1} {:>10.1}",
            s.median, s.min, s.max
        );
    }
    let out = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench"));
    std::fs::create_dir_all(&out).unwrap();
    let json: serde_json::Map<String, serde_json::Value> = rows
        .iter()
        .map(|(n, s)| (n.clone(), serde_json::json!(s)))
        .collect();
    std::fs::write(
        out.join("startup.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "runs": runs, "rows": json })).unwrap(),
    )
    .unwrap();
    println!("wrote {}", out.join("startup.json").display());
}

#[derive(serde::Serialize, Clone, Copy)]
struct Stats {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn stats(mut xs: Vec<f64>) -> Stats {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let median = if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    Stats {
        median,
        min: xs.first().copied().unwrap_or(f64::NAN),
        max: xs.last().copied().unwrap_or(f64::NAN),
        n,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Run a command to its end; its wall time. Panics when it cannot start.
fn timed(cmd: &mut Command) -> (Duration, std::process::ExitStatus) {
    let t = Instant::now();
    let st = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run the command");
    (t.elapsed(), st)
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        code,
        buf.split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_string(),
    ))
}

/// Poll every millisecond until `done` or 30 s; the time it took (None on timeout).
fn wait_for(start: Instant, mut done: impl FnMut() -> bool) -> Option<Duration> {
    while start.elapsed() < Duration::from_secs(30) {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn stop(mut c: Child) {
    // SAFETY: kill(2) on a child this bench started.
    unsafe {
        libc::kill(c.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = c.kill();
    let _ = c.wait();
}

fn write_talon_config(dir: &Path, http: u16, tcp: u16, health: u16) {
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "state_dir = \"state\"\nservices_file = \"services.toml\"\ncheck_interval_secs = 10\n\
             [health]\nbind = \"127.0.0.1:{health}\"\n"
        ),
    )
    .unwrap();
    let mut s = String::new();
    for i in 0..5 {
        s += &format!("[http.web{i}]\nurl = \"http://127.0.0.1:{http}/health\"\n");
        s += &format!("[tcp.port{i}]\naddress = \"127.0.0.1:{tcp}\"\n");
    }
    std::fs::write(dir.join("services.toml"), s).unwrap();
}

fn talon_cmd(dir: &Path, verb: &str) -> Command {
    let mut c = Command::new(TALON);
    c.arg(verb)
        .arg("--config")
        .arg(dir.join("config.toml"))
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("TALON_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

fn talon_rows(runs: usize, http: u16, tcp: u16) -> Vec<(String, Stats)> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let health = free_port();
    write_talon_config(dir, http, tcp, health);
    let (mut ready, mut first) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(dir.join("state"));
        let t = Instant::now();
        let child = talon_cmd(dir, "run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start talon run");
        let r = wait_for(t, || http_get(health, "/health").is_some());
        let f = wait_for(t, || {
            http_get(health, "/status").is_some_and(|(_, body)| all_probes_ran(&body, 10))
        });
        stop(child);
        ready.extend(r.map(ms));
        first.extend(f.map(ms));
    }
    // `talon status` against one running daemon.
    let _ = std::fs::remove_dir_all(dir.join("state"));
    let daemon = talon_cmd(dir, "run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start talon run");
    wait_for(Instant::now(), || {
        http_get(health, "/status").is_some_and(|(_, body)| all_probes_ran(&body, 10))
    })
    .expect("talon ran every probe once");
    let status: Vec<f64> = (0..runs)
        .map(|_| ms(timed(&mut talon_cmd(dir, "status")).0))
        .collect();
    stop(daemon);
    let check: Vec<f64> = (0..runs)
        .map(|_| {
            let (d, st) = timed(&mut talon_cmd(dir, "check"));
            assert!(st.success(), "talon check failed: {st}");
            ms(d)
        })
        .collect();
    let validate: Vec<f64> = (0..runs)
        .map(|_| {
            let (d, st) = timed(&mut talon_cmd(dir, "validate"));
            assert!(st.success(), "talon validate failed: {st}");
            ms(d)
        })
        .collect();
    vec![
        ("talon run → /health answers".into(), stats(ready)),
        (
            "talon run → first result of all 10 probes".into(),
            stats(first),
        ),
        ("talon status (daemon running)".into(), stats(status)),
        ("talon check (10 local probes)".into(), stats(check)),
        ("talon validate".into(), stats(validate)),
    ]
}

/// Every one of the `n` probes in `/status` has a result.
fn all_probes_ran(body: &str, n: usize) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    let Some(probes) = v["probes"].as_array() else {
        return false;
    };
    // A probe without a result yet has `"status": null`.
    probes.len() >= n && probes.iter().all(|p| p["status"].is_string())
}

fn monit_version() -> Option<String> {
    let out = Command::new("monit").arg("-V").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines().next().map(str::to_string)
}

fn monit_cmd(rc: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("monit");
    c.arg("-c").arg(rc).args(args).stdin(Stdio::null());
    c
}

fn monit_rows(runs: usize, http: u16, tcp: u16) -> Vec<(String, Stats)> {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let port = free_port();
    let rc = d.join("monitrc");
    let mut text = format!(
        "set daemon 10\nset logfile {d}/monit.log\nset pidfile {d}/monit.pid\n\
         set idfile {d}/monit.id\nset statefile {d}/monit.state\n\
         set httpd port {port} and use address 127.0.0.1 allow 127.0.0.1\n",
        d = d.display()
    );
    for i in 0..5 {
        text += &format!(
            "check host web{i} with address 127.0.0.1\n  if failed port {http} protocol http request \"/health\" then alert\n\
             check host port{i} with address 127.0.0.1\n  if failed port {tcp} then alert\n"
        );
    }
    std::fs::write(&rc, text).unwrap();
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (mut ready, mut first) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for f in ["monit.state", "monit.id", "monit.pid"] {
            let _ = std::fs::remove_file(d.join(f));
        }
        let t = Instant::now();
        let child = monit_cmd(&rc, &["-I"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start monit -I");
        let r = wait_for(t, || monit_summary(&rc).is_some());
        let f = wait_for(t, || {
            monit_summary(&rc).is_some_and(|s| all_checked(&s, 10))
        });
        stop(child);
        ready.extend(r.map(ms));
        first.extend(f.map(ms));
    }
    let daemon = monit_cmd(&rc, &["-I"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start monit -I");
    wait_for(Instant::now(), || {
        monit_summary(&rc).is_some_and(|s| all_checked(&s, 10))
    })
    .expect("monit checked every service once");
    let status: Vec<f64> = (0..runs)
        .map(|_| ms(timed(&mut monit_cmd(&rc, &["status"])).0))
        .collect();
    stop(daemon);
    let check: Vec<f64> = (0..runs)
        .map(|_| {
            let (d, st) = timed(&mut monit_cmd(&rc, &["-t"]));
            assert!(st.success(), "monit -t failed: {st}");
            ms(d)
        })
        .collect();
    vec![
        ("monit -I → `monit status` answers".into(), stats(ready)),
        (
            "monit -I → all 10 services checked once".into(),
            stats(first),
        ),
        ("monit status (daemon running)".into(), stats(status)),
        ("monit -t (config check)".into(), stats(check)),
    ]
}

/// `monit summary` output when the daemon answers.
fn monit_summary(rc: &Path) -> Option<String> {
    let out = monit_cmd(rc, &["summary"]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// Every one of the `n` services has a status other than initializing / not monitored.
fn all_checked(summary: &str, n: usize) -> bool {
    let lines: Vec<&str> = summary
        .lines()
        .filter(|l| l.contains("Remote Host"))
        .collect();
    lines.len() >= n
        && lines
            .iter()
            .all(|l| !l.contains("Initializing") && !l.contains("Not monitored"))
}
