//! The real daemon gives start-up memory back (room `memory`): about 30 s after the start, and
//! again after a reload, its own code pages that start-up touched are paged out and the heap is
//! trimmed; `/metrics` reports the resident set.

use crate::daemon::Daemon;
use crate::support::{free_port, http_get, write};
use std::time::{Duration, Instant};

/// Resident KiB of the mappings of the daemon's own executable (`/proc/PID/smaps`).
fn exe_rss_kib(pid: i32) -> u64 {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let exe = exe.to_str().unwrap().to_string();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut total = 0;
    let mut ours = false;
    for line in smaps.lines() {
        if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            ours = line.ends_with(&exe);
        } else if ours && let Some(v) = line.strip_prefix("Rss:") {
            total += v.split_whitespace().next().unwrap().parse::<u64>().unwrap();
        }
    }
    total
}

fn vm_rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn given_back(d: &Daemon) -> Vec<serde_json::Value> {
    d.log()
        .lines()
        .filter(|l| l.contains("start-up memory given back"))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn start_up_code_is_paged_out_after_the_start_and_after_a_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let config = write(
        dir,
        "config.toml",
        &format!(
            "state_dir = \"state\"\nservices_file = \"services.toml\"\ncheck_interval_secs = 2\n\
             [health]\nbind = \"127.0.0.1:{port}\"\n"
        ),
    );
    write(
        dir,
        "services.toml",
        &format!("[tcp.local]\naddress = \"{target}\"\n"),
    );
    // A private copy of the binary: the kernel leaves pages that another process also maps
    // resident, and the tests running beside this one run daemons of the shared binary.
    let bin = dir.join("talon-private");
    std::fs::copy(crate::support::talon_bin(), &bin).unwrap();
    let mut d = Daemon::start_bin(&bin, dir, &config);
    let addr = format!("127.0.0.1:{port}");
    wait("/health", Duration::from_secs(30), || {
        http_get(&addr, "/health", Duration::from_secs(2))
    });
    let pid = d.pid();
    let before = exe_rss_kib(pid);

    let first = wait("the first give-back", Duration::from_secs(90), || {
        given_back(&d).into_iter().next()
    });
    let after = exe_rss_kib(pid);
    let fields = if first["fields"].is_object() {
        &first["fields"]
    } else {
        &first
    };
    let (rss_before, rss_after) = (
        fields["rss_before_kib"].as_u64().unwrap(),
        fields["rss_after_kib"].as_u64().unwrap(),
    );
    assert!(fields["code_bytes"].as_u64().unwrap() > 0, "{first}");
    assert!(
        rss_after < rss_before,
        "the resident set shrank: {rss_before} → {rss_after} KiB ({first})"
    );
    assert!(
        after * 4 < before * 3,
        "the executable's resident pages went down by more than a quarter: {before} → {after} KiB"
    );

    // The daemon goes on probing with its code paged out, and /metrics reports the resident set.
    let (_, metrics) = wait("/metrics", Duration::from_secs(10), || {
        http_get(&addr, "/metrics", Duration::from_secs(2))
    });
    let reported: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("talon_resident_memory_bytes "))
        .expect("talon_resident_memory_bytes in /metrics")
        .trim()
        .parse()
        .unwrap();
    let now_kib = vm_rss_kib(pid) as f64;
    assert!(
        (reported / 1024.0 - now_kib).abs() < now_kib * 0.5,
        "reported {reported} bytes, VmRSS {now_kib} KiB"
    );
    drop(listener);
    wait(
        "a probe result after the page-out",
        Duration::from_secs(30),
        || {
            let (_, body) = http_get(&addr, "/status", Duration::from_secs(2))?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            // The listener is gone: the probe's newest result is a refusal, so it ran again.
            (v["probes"][0]["status"] == "fail").then_some(())
        },
    );

    // A reload runs parsing and validation again: their pages are given back once more.
    write(
        dir,
        "services.toml",
        &format!("[tcp.local]\naddress = \"{target}\"\n[tcp.other]\naddress = \"{target}\"\n"),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait(
        "the give-back after the reload",
        Duration::from_secs(90),
        || (given_back(&d).len() >= 2).then_some(()),
    );
    assert_eq!(d.terminate(), Some(0), "{}", d.log());
}
