//! `/metrics`: valid for `promtool check metrics`, and scraped by a real Prometheus.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use talon::core::{ProbeResult, Status};
use talon::metrics::Metrics;
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
                detail: String::new(),
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
pub(crate) struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Prometheus (Debian package `prometheus`) scraping `target` every second as job
/// `talon`, with its data and log under `dir`; killed when dropped.
pub(crate) struct Prometheus {
    _child: Killed,
    pub port: u16,
    log: std::path::PathBuf,
    client: reqwest::Client,
}

impl Prometheus {
    pub(crate) fn start(dir: &std::path::Path, target: &str) -> Prometheus {
        let cfg = dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: talon\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = crate::support::free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus (Debian package `prometheus`) must be installed: scripts/test installs it");
        talon::net::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        Prometheus {
            _child: Killed(child),
            port,
            log,
            client,
        }
    }

    /// An instant query through the HTTP API; `None` until Prometheus answers successfully.
    pub(crate) async fn query(&self, q: &str) -> Option<Vec<serde_json::Value>> {
        let v: serde_json::Value = self
            .client
            .get(
                reqwest::Url::parse_with_params(
                    &format!("http://127.0.0.1:{}/api/v1/query", self.port),
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
        (v["status"] == "success")
            .then(|| v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Poll every query until each has a result for which `ok` holds (60 s at most); their
    /// results, in order.
    pub(crate) async fn wait_for(
        &self,
        queries: &[&str],
        ok: impl Fn(&str, &[serde_json::Value]) -> bool,
        context: impl Fn() -> String,
    ) -> Vec<Vec<serde_json::Value>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut all = Vec::new();
            for q in queries {
                match self.query(q).await {
                    Some(r) if ok(q, &r) => all.push(r),
                    other => {
                        all.clear();
                        assert!(
                            Instant::now() < deadline,
                            "Prometheus never had {q}: last {other:?}\nprometheus log:\n{}\n{}",
                            std::fs::read_to_string(&self.log).unwrap_or_default(),
                            context()
                        );
                        break;
                    }
                }
            }
            if all.len() == queries.len() {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// `up{job="talon"}` is 1: the target was scraped and parsed.
fn target_up(_: &str, r: &[serde_json::Value]) -> bool {
    r.first().is_some_and(|r| r["value"][1] == "1")
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
    let prom = Prometheus::start(dir.path(), &server.addr().to_string());
    let found = prom
        .wait_for(
            &[
                r#"up{job="talon"}"#,
                r#"talon_state{state="investigating"}"#,
            ],
            |q, r| {
                if q.starts_with("up") {
                    target_up(q, r)
                } else {
                    !r.is_empty()
                }
            },
            String::new,
        )
        .await;
    let (up, state) = (&found[0], &found[1]);
    assert_eq!(up[0]["metric"]["job"], "talon");
    assert_eq!(state[0]["value"][1], "1");
    let failures = prom
        .query("talon_config_reload_failures_total")
        .await
        .unwrap();
    assert_eq!(failures[0]["value"][1], "1", "{failures:?}");
    let weird = prom
        .query(r#"talon_probe_failures_total{probe="redis \"main\"\nprimary"}"#)
        .await
        .unwrap();
    assert_eq!(weird.len(), 1, "escaped label round-trips: {weird:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_running_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", crate::support::free_port());
    let config = crate::support::write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 0.5
[health]
bind = "{addr}"
[script.api]
command = "true"
critical = true
[script.cache]
command = "echo cache is down; exit 1"
"#
        ),
    );
    let mut daemon = crate::daemon::Daemon::start(dir, &config);
    let prom = Prometheus::start(dir, &addr);
    let found = prom
        .wait_for(
            &[
                r#"up{job="talon"}"#,
                r#"talon_probe_up{probe="api"}"#,
                r#"talon_probe_up{probe="cache"}"#,
            ],
            |q, r| {
                if q.starts_with("up") {
                    target_up(q, r)
                } else {
                    !r.is_empty()
                }
            },
            || daemon.log(),
        )
        .await;
    assert_eq!(found[0][0]["metric"]["instance"], addr.as_str());
    assert_eq!(found[1][0]["value"][1], "1", "api passes: {:?}", found[1]);
    assert_eq!(found[1][0]["metric"]["kind"], "script");
    assert_eq!(found[1][0]["metric"]["critical"], "true");
    assert_eq!(found[2][0]["value"][1], "0", "cache fails: {:?}", found[2]);
    let failures = prom
        .wait_for(
            &[r#"talon_probe_failures_total{probe="cache"} > 0"#],
            |_, r| !r.is_empty(),
            || daemon.log(),
        )
        .await;
    assert_eq!(failures[0].len(), 1, "{failures:?}");
    let degraded = prom
        .wait_for(
            &[r#"talon_state{state="degraded"} == 1"#],
            |_, r| !r.is_empty(),
            || daemon.log(),
        )
        .await;
    assert_eq!(
        degraded[0].len(),
        1,
        "a failing non-critical probe: degraded"
    );
    let build = prom.query("talon_build_info").await.unwrap();
    assert_eq!(
        build[0]["metric"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{build:?}"
    );
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log());
}
