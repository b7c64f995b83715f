//! Worker restart latency: SIGKILL of the worker → a new worker answering its health endpoint,
//! for Talon (`talon run --worker-only`) and, side by side in the same run, supervisord, monit and
//! Horust supervising the same worker (`tests/fixtures/worker.py`, a small Python HTTP server).
//! Then, for those with HTTP health checks (Talon, monit, Horust; supervisord has none), **hang →
//! healthy**: the worker's `/health` stops answering (`hang.PID` in its state dir, at a spread of
//! moments against the supervisor's check period) → a new worker answers; every supervisor checks
//! every 1 s with a 1 s timeout and restarts at the 3rd failure where it can be told so.
//! Also: the worker's own cold start (the floor), and idle CPU and RSS of each supervisor.
//!
//! Horust is taken from `target/bench-horust/bin/horust` (`cargo install horust --root
//! target/bench-horust`) or PATH; its health checks run on its own fixed cadence (a HEAD with a
//! 1 s timeout, then 1 s of sleep; not settable) and it restarts when more than `max-failed`
//! checks failed (`max-failed = 2`: at the 3rd).
//!
//! `cargo bench --bench worker_restart` (RUNS=20 by default). Requirements: `python3` (with
//! `venv`); supervisord is the system's on PATH (`apt-get install -y supervisor`, which
//! `scripts/bench` does when it is missing), else taken from `target/bench-venv` (created with
//! `python3 -m venv` + `pip install supervisor` when missing); monit is the system's `monit` on
//! PATH (`apt-get install -y monit`, also installed by `scripts/bench`). A supervisor that is missing is reported as "not available" and
//! skipped. Nothing here is asserted: numbers go to BENCHMARKS.md.
//!
//! How monit is run: a `monitrc` (mode 0600) in a temp dir with `set daemon 1` (its shortest
//! poll cycle), `check process worker matching "<unique argument>"` and a `start program` that
//! execs the worker; `monit -I -c monitrc` keeps it in the foreground. monit has no event on a
//! child's death: it notices the worker is gone on its next 1 s poll and runs the start program,
//! so its latency is up to one poll plus the worker's start — the same worker start every
//! supervisor pays.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WORKER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/worker.py");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The pid of the worker answering `GET /health` on `port`, if one does.
fn health(port: u16) -> Option<u32> {
    health_within(port, Duration::from_millis(500))
}

/// [`health`] with a read limit (short while the old worker hangs, so polls stay frequent).
fn health_within(port: u16, read: Duration) -> Option<u32> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(read)).ok()?;
    s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    if !buf.starts_with("HTTP/1.0 200") && !buf.starts_with("HTTP/1.1 200") {
        return None;
    }
    buf.rsplit("ok ").next()?.trim().parse().ok()
}

fn wait_health(port: u16, not: Option<u32>, limit: Duration) -> Option<u32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(p) = health(port).filter(|p| Some(*p) != not) {
            return Some(p);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Make the worker answering on `port` hang `runs` times; each time, the time until another
/// worker answers. The hangs start at moments spread over a second (the check period), after
/// each worker has been up for over 1.5 s.
fn hangs(state: &Path, port: u16, runs: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    let Some(mut pid) = wait_health(port, None, Duration::from_secs(30)) else {
        return out;
    };
    for i in 0..runs {
        std::thread::sleep(Duration::from_millis(1500 + (i as u64 * 617) % 1000));
        let t0 = Instant::now();
        std::fs::write(state.join(format!("hang.{pid}")), "").unwrap();
        let deadline = t0 + Duration::from_secs(60);
        let next = loop {
            if let Some(p) = health_within(port, Duration::from_millis(50)).filter(|p| *p != pid) {
                break Some(p);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        match next {
            Some(p) => {
                out.push(t0.elapsed());
                pid = p;
            }
            // Never replaced: the rest of the runs would measure nothing.
            None => break,
        }
    }
    out
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we started (directly or through the supervisor under test).
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// SIGKILL the worker `runs` times; each time, the time until a new worker answers health.
/// Each worker is left up for 1.2 s first (both supervisors treat quicker deaths as failed
/// starts and back off).
fn restarts(port: u16, runs: usize) -> Vec<Duration> {
    let mut pid = wait_health(port, None, Duration::from_secs(30)).expect("worker never healthy");
    let mut out = Vec::new();
    for _ in 0..runs {
        std::thread::sleep(Duration::from_millis(1200));
        kill(pid, libc::SIGKILL);
        let t0 = Instant::now();
        match wait_health(port, Some(pid), Duration::from_secs(30)) {
            Some(p) => {
                out.push(t0.elapsed());
                pid = p;
            }
            None => {
                eprintln!("no new worker within 30 s");
                break;
            }
        }
    }
    out
}

fn stats(d: &[Duration]) -> String {
    if d.is_empty() {
        return "n/a".into();
    }
    let mut ms: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = if ms.len() % 2 == 1 {
        ms[ms.len() / 2]
    } else {
        (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0
    };
    format!(
        "median {median:7.1} ms   min {:7.1} ms   max {:7.1} ms   (n={})",
        ms[0],
        ms[ms.len() - 1],
        ms.len()
    )
}

/// How long a process has been running (from `/proc/PID/stat`'s start time and `/proc/uptime`).
fn age(pid: u32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = &s[s.rfind(')').map(|i| i + 1).unwrap_or(0)..];
    // starttime is field 22 (1-based) of the whole line; 20 here.
    let start_ticks: f64 = rest
        .split_whitespace()
        .nth(19)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf is a plain query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Duration::from_secs_f64((up - start_ticks / hz).max(0.0))
}

/// Every supervisor is measured idle only once it has run this long: start-up is over (Talon
/// gives start-up memory back 30 s after its start, see `src/memory.rs`).
const SETTLE: Duration = Duration::from_secs(45);

/// (CPU % of one core over `window`, RSS in MB) of a process, at least [`SETTLE`] after its
/// start.
fn idle_footprint(pid: u32, window: Duration) -> (f64, f64) {
    let a = age(pid);
    if a < SETTLE {
        std::thread::sleep(SETTLE - a);
    }
    let ticks = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let rest = &s[s.rfind(')').map(|i| i + 1).unwrap_or(0)..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime, stime are fields 14 and 15 (1-based) of the whole line; 12 and 13 here.
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    // SAFETY: sysconf is a plain query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let a = ticks(pid);
    std::thread::sleep(window);
    let b = ticks(pid);
    let cpu = (b - a) as f64 / hz / window.as_secs_f64() * 100.0;
    let rss_kb: f64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    (cpu, rss_kb / 1024.0)
}

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        kill(self.0.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker_env(dir: &Path, port: u16) -> Vec<(String, String)> {
    let st = dir.join("st");
    std::fs::create_dir_all(&st).unwrap();
    vec![
        ("PORT".into(), port.to_string()),
        ("STATE".into(), st.display().to_string()),
    ]
}

fn cold_start(runs: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for _ in 0..runs {
        let port = free_port();
        let t0 = Instant::now();
        let child = Command::new("python3")
            .arg(WORKER)
            .envs(worker_env(dir.path(), port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _stop = Stop(child);
        if wait_health(port, None, Duration::from_secs(30)).is_some() {
            out.push(t0.elapsed());
        }
    }
    out
}

fn talon(runs: usize, hang_runs: usize) -> (Vec<Duration>, (f64, f64), Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env: String = worker_env(dir.path(), port)
        .iter()
        .map(|(k, v)| format!("{k} = \"{v}\"\n"))
        .collect();
    let cfg = dir.path().join("talon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[worker]\ncommand = [\"python3\", \"{WORKER}\"]\nport = {port}\n\
             health_endpoint = \"/health\"\nhealth_interval_secs = 1\nhttp_timeout_secs = 1\n\
             health_failures_before_restart = 3\nstartup_sync_delay_secs = 0.01\n\
             max_restarts = 10000\n[worker.env]\n{env}"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_talon"))
        .args(["run", "--worker-only", "--config"])
        .arg(&cfg)
        .env("HOME", dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _stop = Stop(child);
    let r = restarts(port, runs);
    let idle = idle_footprint(pid, Duration::from_secs(10));
    let h = hangs(&dir.path().join("st"), port, hang_runs);
    (r, idle, h)
}

fn supervisord_bin() -> Option<PathBuf> {
    // The system's (apt-get install supervisor, as scripts/bench does) when there is one.
    let system = Command::new("supervisord").arg("--version").output();
    if system.is_ok_and(|o| o.status.success()) {
        return Some(PathBuf::from("supervisord"));
    }
    let venv = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-venv"));
    let bin = venv.join("bin/supervisord");
    if !bin.exists() {
        eprintln!("creating {} with supervisor from PyPI…", venv.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "supervisor"])
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
    }
    bin.exists().then_some(bin)
}

fn supervisord(bin: &Path, runs: usize) -> (Vec<Duration>, (f64, f64), String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env: Vec<String> = worker_env(dir.path(), port)
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    let d = dir.path().display();
    let conf = dir.path().join("supervisord.conf");
    std::fs::write(
        &conf,
        format!(
            "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n\
             [program:worker]\ncommand=python3 {WORKER}\nenvironment={}\nautorestart=true\n\
             startsecs=1\nstartretries=10000\nstopasgroup=true\nkillasgroup=true\n\
             stdout_logfile={d}/w.out\nstderr_logfile={d}/w.err\n",
            env.join(",")
        ),
    )
    .unwrap();
    let version = Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let child = Command::new(bin)
        .args(["-n", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _stop = Stop(child);
    let r = restarts(port, runs);
    let idle = idle_footprint(pid, Duration::from_secs(10));
    (r, idle, version)
}

/// monit 5.x on PATH: its version line, if it runs.
fn monit_version() -> Option<String> {
    let out = Command::new("monit").arg("-V").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim().to_string();
    (out.status.success() && line.contains("Monit")).then_some(line)
}

fn monit(runs: usize, hang_runs: usize) -> (Vec<Duration>, (f64, f64), Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env: Vec<String> = worker_env(dir.path(), port)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    // A unique argument (the worker ignores its arguments) for `matching`.
    let mark = format!("talon-bench-monit-{}-{port}", std::process::id());
    let d = dir.path().display();
    let rc = dir.path().join("monitrc");
    // monit waits for a start program to exit (it expects daemons that fork): the worker is
    // started in the background by `sh`, with its output detached from monit's pipes.
    std::fs::write(
        &rc,
        format!(
            "set daemon 1\nset logfile {d}/monit.log\nset pidfile {d}/monit.pid\n\
             set idfile {d}/monit.id\nset statefile {d}/monit.state\n\
             check process worker matching \"{mark}\"\n  \
             start program = \"/bin/sh -c '{} exec python3 {WORKER} {mark} >/dev/null 2>&1 &'\" \
             with timeout 30 seconds\n  \
             stop program = \"/bin/sh -c 'kill $MONIT_PROCESS_PID'\"\n  \
             if failed host 127.0.0.1 port {port} protocol http request \"/health\" \
             with timeout 1 seconds for 3 cycles then restart\n",
            env.join(" ")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // monit runs under a reaper (this binary, see `reaper`) that adopts the backgrounded worker
    // and reaps it the moment it dies, as init does on a normal host.
    let mut reaper = Command::new(std::env::current_exe().unwrap())
        .env("TALON_BENCH_REAPER", "1")
        .arg("monit")
        .arg("-I")
        .arg("-c")
        .arg(&rc)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(reaper.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let pid: u32 = line.trim().parse().expect("monit pid from the reaper");
    let reaper = Stop(reaper);
    let r = restarts(port, runs);
    let idle = idle_footprint(pid, Duration::from_secs(10));
    let h = hangs(&dir.path().join("st"), port, hang_runs);
    // Stop monit (the reaper exits with it); monit leaves the worker running: stop it too.
    kill(pid, libc::SIGTERM);
    drop(reaper);
    if let Some(w) = health(port) {
        kill(w, libc::SIGKILL);
    }
    (r, idle, h)
}

/// Horust: `target/bench-horust/bin/horust` (from `cargo install horust --root
/// target/bench-horust`) or on PATH, with its version line.
fn horust_bin() -> Option<(PathBuf, String)> {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-horust/bin/horust");
    let bin = if local.is_file() {
        local
    } else {
        PathBuf::from("horust")
    };
    // Horust 0.1.14 has no `--version`: `--help` proves it runs, the version comes from cargo's
    // install record next to it.
    let out = Command::new(&bin).arg("--help").output().ok()?;
    let installed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-horust/.crates.toml"),
    )
    .unwrap_or_default();
    let v = installed
        .split('"')
        .find_map(|s| s.strip_prefix("horust "))
        .and_then(|s| s.split_whitespace().next())
        .map_or_else(|| "horust".to_string(), |v| format!("horust {v}"));
    out.status.success().then_some((bin, v))
}

/// Horust supervising the worker: restart always, no backoff, HTTP health (a HEAD request, 1 s
/// timeout, then 1 s until the next) with `max-failed = 2`: Horust kills when the count of failed
/// checks is *greater* than `max-failed`, so 2 is "at the 3rd failure" like the others.
fn horust(bin: &Path, runs: usize, hang_runs: usize) -> (Vec<Duration>, (f64, f64), Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let services = dir.path().join("services");
    std::fs::create_dir_all(&services).unwrap();
    let env: Vec<String> = worker_env(dir.path(), port)
        .iter()
        .map(|(k, v)| format!("{k} = \"{v}\""))
        .collect();
    std::fs::write(
        services.join("worker.toml"),
        format!(
            "command = \"python3 {WORKER}\"\nstdout = \"/dev/null\"\nstderr = \"/dev/null\"\n\
             [restart]\nstrategy = \"always\"\nbackoff = \"0s\"\nattempts = 0\n\
             [healthiness]\nhttp-endpoint = \"http://127.0.0.1:{port}/health\"\nmax-failed = 2\n\
             [termination]\nwait = \"5s\"\n\
             [environment]\nadditional = {{ {} }}\n",
            env.join(", ")
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("--services-path")
        .arg(&services)
        .arg("--uds-folder-path")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _stop = Stop(child);
    let r = restarts(port, runs);
    let idle = idle_footprint(pid, Duration::from_secs(10));
    let h = hangs(&dir.path().join("st"), port, hang_runs);
    if let Some(w) = health(port) {
        kill(w, libc::SIGKILL);
    }
    (r, idle, h)
}

/// `TALON_BENCH_REAPER=1 <this binary> PROGRAM ARGS…`: become a child subreaper, start the
/// program, print its pid, and reap every process that ends up as our child (the program's
/// orphans included) until the program itself exits.
fn reaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only changes how this process adopts orphans.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the supervised program");
    let target = child.id() as i32;
    println!("{target}");
    let _ = std::io::stdout().flush();
    // Waited for below with waitpid, not through `Child`.
    std::mem::forget(child);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on any child of this process.
        let p = unsafe { libc::waitpid(-1, &mut status, 0) };
        if p == target
            || (p < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
        {
            return;
        }
    }
}

fn main() {
    if std::env::var_os("TALON_BENCH_REAPER").is_some() {
        reaper();
        return;
    }
    // `cargo bench` passes `--bench`; nothing else is expected.
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let hang_runs: usize = std::env::var("HANG_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    println!("worker: python3 {WORKER} ({runs} runs each)\n");
    let cold = cold_start(runs);
    println!("worker cold start (floor)      {}", stats(&cold));
    let (t, (tcpu, trss), thang) = talon(runs, hang_runs);
    println!("talon run --worker-only        {}", stats(&t));
    let sup = supervisord_bin().map(|b| supervisord(&b, runs));
    if let Some((s, _, v)) = &sup {
        println!("supervisord {v:<18} {}", stats(s));
    } else {
        println!("supervisord                    not available");
    }
    let mon = monit_version().map(|v| (v, monit(runs, hang_runs)));
    if let Some((v, (m, _, _))) = &mon {
        let v = v
            .trim_start_matches("This is ")
            .trim_start_matches("Monit version ");
        println!("monit {v:<24} {}", stats(m));
    } else {
        println!("monit                          not available");
    }
    let hor = horust_bin().map(|(b, v)| (v, horust(&b, runs, hang_runs)));
    if let Some((v, (h, _, _))) = &hor {
        println!("{v:<30} {}", stats(h));
    } else {
        println!("horust                         not available");
    }
    println!(
        "\nhang → healthy new worker ({hang_runs} hangs each; checks every 1 s, 1 s timeout, \
         restart at the 3rd failure; worker cold start above is the floor):"
    );
    println!("talon                          {}", stats(&thang));
    println!("supervisord                    no HTTP health checks");
    if let Some((_, (_, _, mh))) = &mon {
        println!("monit (set daemon 1, 3 cycles) {}", stats(mh));
    }
    if let Some((v, (_, _, hh))) = &hor {
        println!("{:<30} {}", format!("{v} (max-failed 2)"), stats(hh));
    }
    println!(
        "\nidle, supervising one worker (health every 1 s for Talon, monit and Horust), 10 s window at least 45 s after each one started:"
    );
    println!("talon        CPU {tcpu:5.2} % of one core   RSS {trss:5.1} MB");
    if let Some((_, (scpu, srss), _)) = &sup {
        println!("supervisord  CPU {scpu:5.2} % of one core   RSS {srss:5.1} MB");
    }
    if let Some((_, (_, (mcpu, mrss), _))) = &mon {
        println!("monit        CPU {mcpu:5.2} % of one core   RSS {mrss:5.1} MB");
    }
    if let Some((_, (_, (hcpu, hrss), _))) = &hor {
        println!("horust       CPU {hcpu:5.2} % of one core   RSS {hrss:5.1} MB");
    }
}
