//! The status page at `/`, rendered by a real headless Chromium.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use talon::core::{ProbeResult, Status};
use talon::metrics::Metrics;
use talon::server::snapshot::{
    IncidentStatus, StatusSnapshot, SystemState, TimelineEntry, Transition,
};
use talon::server::{ServerOptions, ServerState, StatusBoard, serve};

fn snapshot() -> StatusSnapshot {
    let mut s = StatusSnapshot::new(1_795_000_000);
    for (name, kind, status, out) in [
        (
            "api",
            "http",
            Status::Fail,
            "HTTP 503 from http://127.0.0.1:3018/health in 12 ms",
        ),
        ("redis-main", "redis", Status::Pass, "PONG in 1 ms"),
        ("disk-root", "disk", Status::Pass, "41% used"),
        (
            "evil",
            "script",
            Status::Fail,
            "<img src=x onerror=alert(1)> & done",
        ),
    ] {
        s.record_probe(
            &ProbeResult {
                name: name.into(),
                kind: kind.into(),
                passed: status.passed(),
                status,
                output: out.into(),
                detail: String::new(),
                duration_ms: 12,
                started_at: 1_795_000_000_000,
            },
            name == "api",
        );
    }
    s.state = SystemState::Investigating;
    s.consecutive_failures = 4;
    s.incident = Some(IncidentStatus {
        id: "INC-42".into(),
        started_unix: 1_795_000_000,
        failing_probes: vec!["api".into()],
        acknowledged: false,
        acked_by: None,
        acked_at_unix: None,
        timeline: vec![
            TimelineEntry {
                at_unix: 1_795_000_000,
                kind: "transition".into(),
                text: "degraded → failed".into(),
            },
            TimelineEntry {
                at_unix: 1_795_000_030,
                kind: "heal".into(),
                text: "heal exited 0; api still failing".into(),
            },
        ],
        paged_channels: None,
        paged_at_unix: None,
        heals: 0,
        agents: 0,
    });
    s.transitions = vec![Transition {
        at_unix: 1_795_000_040,
        from: SystemState::Failed,
        to: SystemState::Investigating,
        reason: "heal did not fix api".into(),
    }];
    s
}

/// Run chromium in its own process group with a deadline; the whole group is killed after.
fn chromium(args: &[String]) -> Output {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("chromium (Debian package) must be installed: scripts/test installs it");
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Drain output on threads so a chatty chromium cannot stall on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut so, &mut b);
        b
    });
    let t2 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut se, &mut b);
        b
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let s = child.wait().unwrap();
            panic!("chromium did not finish within 90 s ({s})");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Chromium leaves helpers (zygote, crashpad) behind sometimes: end the whole group.
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

fn artifacts_dir() -> PathBuf {
    // target/<profile>/talon → target/artifacts
    let bin = Path::new(env!("CARGO_BIN_EXE_talon"));
    bin.parent()
        .and_then(Path::parent)
        .unwrap()
        .join("artifacts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_state_probes_incident_and_a_screenshot() {
    let board = StatusBoard::new(snapshot());
    let server = serve(
        "127.0.0.1:0".parse().unwrap(),
        ServerState::new(board, Arc::new(Metrics::new())),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let url = format!("http://{}/", server.addr());
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());

    let dom = {
        let args = vec![profile_arg.clone(), "--dump-dom".into(), url.clone()];
        tokio::task::spawn_blocking(move || chromium(&args))
            .await
            .unwrap()
    };
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        dom.status.success() && !html.is_empty(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(html.contains("data-state=\"investigating\""), "{html}");
    assert!(html.contains("<h1>investigating</h1>"), "{html}");
    for probe in ["api", "redis-main", "disk-root", "evil"] {
        assert!(
            html.contains(&format!("data-probe=\"{probe}\"")),
            "probe {probe} missing:\n{html}"
        );
    }
    assert!(html.contains("HTTP 503 from http://127.0.0.1:3018/health in 12 ms"));
    assert!(html.contains("Incident INC-42"));
    assert!(html.contains("heal exited 0; api still failing"));
    assert!(html.contains("heal did not fix api"));
    // The hostile probe output stayed text: no element was created from it.
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; done"),
        "{html}"
    );
    assert!(!html.contains("<img"), "{html}");

    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("status.png");
    let _ = std::fs::remove_file(&png);
    let shot = {
        let args = vec![
            profile_arg,
            format!("--screenshot={}", png.display()),
            "--window-size=1200,900".into(),
            "--hide-scrollbars".into(),
            url,
        ];
        tokio::task::spawn_blocking(move || chromium(&args))
            .await
            .unwrap()
    };
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).expect("no screenshot written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 10_000,
        "suspiciously small screenshot: {} bytes",
        bytes.len()
    );
    server.shutdown().await;
}
