//! `/metrics`: valid for `promtool check metrics`, and scraped by a real Prometheus.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use talon::metrics::Metrics;
use talon::probe::{ProbeResult, Status};
use talon::server::snapshot::{StatusSnapshot, SystemState};
use talon::server::{ServerOptions, ServerState, StatusBoard, serve};

fn busy_metrics() -> Metrics {
    let m = Metrics::new();
    for (name, status, ms) in [
        ("api", Status::Pass, 40),
        ("api", Status::Fail, 1200),
        ("redis \"main\"\nprimary", Status::Timeout, 5000),
        ("disk", Status::Blocked, 0),
    ] {
        m.observe_probe(
            &ProbeResult {
                name: name.into(),
                kind: "http".into(),
                passed: status.passed(),
                status,
                output: String::new(),
                duration_ms: ms,
                started_at: 0,
            },
            true,
        );
    }
    m.set_state(SystemState::Investigating);
    m.escalation_action("heal", "not_fixed");
    m.escalation_action("agent_cloud", "timeout");
    m.worker_restart();
    m.notification("telegram", true);
    m.notification("webhook", false);
    m.heartbeat(true);
    m.reload(true);
    m.reload(false);
    m
}

#[test]
fn promtool_accepts_the_exposition() {
    let text = busy_metrics().render();
    assert!(
        text.contains("talon_config_reload_failures_total 1"),
        "{text}"
    );
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool (Debian package `prometheus`) must be installed: scripts/test installs it",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}\n---\n{text}");
    assert!(said.trim().is_empty(), "promtool lint findings: {said}");
}

#[test]
fn promtool_rejects_a_broken_exposition() {
    // Proves the check above can fail: a sample line with no value.
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"# TYPE talon_x gauge\ntalon_x{a=\"1\"\n")
        .unwrap();
    assert!(!child.wait_with_output().unwrap().status.success());
}

/// A child process killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn query(client: &reqwest::Client, prom: u16, q: &str) -> Option<Vec<serde_json::Value>> {
    let v: serde_json::Value = client
        .get(
            reqwest::Url::parse_with_params(
                &format!("http://127.0.0.1:{prom}/api/v1/query"),
                &[("query", q)],
            )
            .unwrap(),
        )
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    (v["status"] == "success").then(|| v["data"]["result"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_talon() {
    let metrics = Arc::new(busy_metrics());
    let board = StatusBoard::new(StatusSnapshot::new(0));
    let server = serve(
        "127.0.0.1:0".parse().unwrap(),
        ServerState::new(board, metrics.clone()),
        ServerOptions::default(),
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: talon\n    static_configs:\n      - targets: ['{}']\n",
            server.addr()
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package `prometheus`) must be installed"),
    );

    let client = {
        talon::probe::http::install_crypto_provider();
        reqwest::Client::builder()
    }
    .timeout(Duration::from_secs(5))
    .build()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let (up, state) = loop {
        let up = query(&client, prom_port, r#"up{job="talon"}"#).await;
        let state = query(&client, prom_port, r#"talon_state{state="investigating"}"#).await;
        if let (Some(up), Some(state)) = (&up, &state)
            && up.first().is_some_and(|r| r["value"][1] == "1")
            && !state.is_empty()
        {
            break (up.clone(), state.clone());
        }
        last = format!("up={up:?} state={state:?}");
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped talon: {last}\nlog:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = last;
    assert_eq!(up[0]["metric"]["job"], "talon");
    assert_eq!(state[0]["value"][1], "1");
    let failures = query(&client, prom_port, "talon_config_reload_failures_total")
        .await
        .unwrap();
    assert_eq!(failures[0]["value"][1], "1", "{failures:?}");
    let weird = query(
        &client,
        prom_port,
        r#"talon_probe_failures_total{probe="redis \"main\"\nprimary"}"#,
    )
    .await
    .unwrap();
    assert_eq!(weird.len(), 1, "escaped label round-trips: {weird:?}");
    server.shutdown().await;
}
