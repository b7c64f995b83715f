//! The HTTP server: endpoints through `oneshot`, and a real bound server for timeouts, limits,
//! shutdown and rebinding.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use talon::core::{ProbeResult, Status};
use talon::metrics::Metrics;
use talon::server::control::{ControlReply, ControlRequest};
use talon::server::snapshot::{
    ConfigError, IncidentStatus, StatusSnapshot, SystemState, TimelineEntry, WorkerStatus,
};
use talon::server::{ServerOptions, ServerState, StatusBoard, router, serve};
use tokio::sync::mpsc;
use tower::ServiceExt;

const TOKEN: &str = "0123456789abcdef";

fn result(name: &str, status: Status) -> ProbeResult {
    ProbeResult {
        name: name.into(),
        kind: "http".into(),
        passed: status.passed(),
        status,
        output: format!("{name} said {}", status.as_str()),
        detail: String::new(),
        duration_ms: 12,
        started_at: 1_790_000_000_000,
    }
}

fn board() -> StatusBoard {
    let mut s = StatusSnapshot::new(1_790_000_000);
    s.record_probe(&result("api", Status::Pass), true);
    s.record_probe(&result("disk", Status::Pass), false);
    StatusBoard::new(s)
}

fn fail(board: &StatusBoard) {
    board.update(1_790_000_100, |s| {
        s.record_probe(&result("api", Status::Fail), true);
        s.state = SystemState::Failed;
        s.consecutive_failures = 3;
        s.worker = Some(WorkerStatus {
            pid: Some(4242),
            state: "running".into(),
            restarts: 2,
            last_exit: Some("exit 1".into()),
            since_unix: Some(1_790_000_050),
            operator_actions: Vec::new(),
        });
        s.incident = Some(IncidentStatus {
            id: "7".into(),
            started_unix: 1_790_000_090,
            failing_probes: vec!["api".into()],
            acknowledged: false,
            acked_by: None,
            acked_at_unix: None,
            timeline: vec![TimelineEntry {
                at_unix: 1_790_000_090,
                kind: "transition".into(),
                text: "degraded → failed".into(),
            }],
            paged_channels: None,
            paged_at_unix: None,
            heals: 0,
            agents: 0,
        });
        s.config_error = Some(ConfigError {
            file: "/etc/talon/services.toml".into(),
            line: 4,
            column: 1,
            message: "http.api.critcal: unknown key".into(),
        });
    });
}

fn app(board: &StatusBoard) -> axum::Router {
    router(
        ServerState::new(board.clone(), Arc::new(Metrics::new())),
        &ServerOptions::default(),
    )
}

async fn get(app: &axum::Router, path: &str) -> (StatusCode, String, String) {
    let resp = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let code = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (code, ctype, String::from_utf8(body.to_vec()).unwrap())
}

async fn post(
    app: &axum::Router,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let code = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()));
    (code, v)
}

#[tokio::test]
async fn health_is_200_when_ok_and_503_otherwise() {
    let b = board();
    let app = app(&b);
    let (code, ctype, body) = get(&app, "/health").await;
    assert_eq!(code, StatusCode::OK);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    for key in [
        "ok",
        "state",
        "consecutive_failures",
        "probe_count",
        "failed_probe_count",
        "failed_probes",
        "worker_restarts",
        "updated_at_unix",
        "config_error",
        "incident_id",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["ok"], true);
    assert_eq!(v["state"], "healthy");
    assert_eq!(v["probe_count"], 2);

    b.update(1_790_000_001, |s| s.state = SystemState::Degraded);
    assert_eq!(get(&app, "/health").await.0, StatusCode::OK);

    fail(&b);
    let (code, _, body) = get(&app, "/health").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["state"], "failed");
    assert_eq!(v["consecutive_failures"], 3);
    assert_eq!(v["failed_probes"], serde_json::json!(["api"]));
    assert_eq!(v["failed_probe_count"], 1);
    assert_eq!(v["worker_restarts"], 2);
    assert_eq!(v["incident_id"], "7");
    assert_eq!(v["updated_at_unix"], 1_790_000_100);
    assert_eq!(v["config_error"]["line"], 4);
    assert_eq!(v["config_error"]["file"], "/etc/talon/services.toml");

    for st in [
        SystemState::Investigating,
        SystemState::Critical,
        SystemState::Sos,
    ] {
        b.update(1, |s| s.state = st);
        assert_eq!(
            get(&app, "/health").await.0,
            StatusCode::SERVICE_UNAVAILABLE,
            "{st}"
        );
    }
}

#[tokio::test]
async fn status_is_the_whole_snapshot() {
    let b = board();
    fail(&b);
    let app = app(&b);
    let (code, _, body) = get(&app, "/status").await;
    assert_eq!(code, StatusCode::OK);
    let got: StatusSnapshot = serde_json::from_str(&body).unwrap();
    assert_eq!(got, b.get());
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["probes"][0]["name"], "api");
    assert_eq!(v["probes"][0]["status"], "fail");
    assert_eq!(v["probes"][0]["streak"], 1);
    assert_eq!(v["incident"]["timeline"][0]["kind"], "transition");
}

#[tokio::test]
async fn metrics_and_page_and_unknown_paths() {
    let b = board();
    let m = Arc::new(Metrics::new());
    m.observe_probe(&result("api", Status::Fail), true);
    let app = router(
        ServerState::new(b.clone(), m.clone()),
        &ServerOptions::default(),
    );
    let (code, ctype, body) = get(&app, "/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    assert!(body.contains(r#"talon_probe_up{probe="api",kind="http",critical="true"} 0"#));
    assert!(!body.contains("# EOF"));
    // Content negotiation: what Prometheus asks for.
    let resp = app
        .clone()
        .oneshot(
            Request::get("/metrics")
                .header(
                    header::ACCEPT,
                    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let ctype = resp.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).ends_with("# EOF\n"));

    let (code, ctype, body) = get(&app, "/").await;
    assert_eq!(code, StatusCode::OK);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(body.contains("data-probe=\"api\""));
    assert!(body.contains("api said pass"));

    assert_eq!(get(&app, "/nope").await.0, StatusCode::NOT_FOUND);
    let resp = app
        .clone()
        .oneshot(Request::post("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// Answers control requests like a runtime would, recording them.
fn fake_runtime(mut rx: mpsc::Receiver<ControlRequest>) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(req) = rx.recv().await {
            match req {
                ControlRequest::Ack {
                    incident,
                    by,
                    reply,
                } => {
                    seen.push(format!("ack {incident:?} by {by}"));
                    let r = match incident.as_deref() {
                        Some("missing") => ControlReply::NotFound("no incident missing".into()),
                        _ => ControlReply::Done("acknowledged".into()),
                    };
                    let _ = reply.send(r);
                }
                ControlRequest::Silence {
                    probe,
                    duration,
                    reason,
                    by,
                    reply,
                } => {
                    seen.push(format!(
                        "silence {probe} {}s {reason:?} by {by}",
                        duration.as_secs()
                    ));
                    let _ = reply.send(ControlReply::Done(format!("{probe} silenced")));
                }
                ControlRequest::Approve {
                    approval,
                    by,
                    reply,
                } => {
                    seen.push(format!("approve {approval} by {by}"));
                    let _ =
                        reply.send(ControlReply::Done(format!("approval #{approval} approved")));
                }
                ControlRequest::Deny {
                    approval,
                    by,
                    reply,
                } => {
                    seen.push(format!("deny {approval} by {by}"));
                    let _ = reply.send(ControlReply::NotFound(format!(
                        "no pending approval #{approval}"
                    )));
                }
                ControlRequest::AgentReset { by, reply } => {
                    seen.push(format!("agent reset by {by}"));
                    let _ = reply.send(ControlReply::Done("reset".into()));
                }
                ControlRequest::Worker { action, by, reply } => {
                    seen.push(format!("worker {} by {by}", action.as_str()));
                    let r = match action {
                        talon::supervise::WorkerAction::Start => {
                            ControlReply::Rejected("could not be started".into())
                        }
                        _ => ControlReply::Done(format!("worker {}", action.as_str())),
                    };
                    let _ = reply.send(r);
                }
                ControlRequest::Push {
                    probe,
                    event,
                    body,
                    reply,
                } => {
                    seen.push(format!("push {probe} {} {}", event.as_str(), body.len()));
                    let _ = reply.send(ControlReply::Done(format!("{probe} recorded")));
                }
                ControlRequest::Maintenance { op, reply } => {
                    seen.push(format!("maintenance {op:?}"));
                    let _ = reply.send(ControlReply::Done("ok".into()));
                }
            }
        }
        seen
    })
}

/// A router with the control endpoints open (token [`TOKEN`]) in front of [`fake_runtime`].
fn controlled_app() -> (axum::Router, tokio::task::JoinHandle<Vec<String>>) {
    let (tx, rx) = mpsc::channel(4);
    let rt = fake_runtime(rx);
    let app = router(
        ServerState::new(board(), Arc::new(Metrics::new())).with_control(tx, Some(TOKEN.into())),
        &ServerOptions::default(),
    );
    (app, rt)
}

/// Drop the router and return what the fake runtime was asked, in order.
async fn requests_seen(app: axum::Router, rt: tokio::task::JoinHandle<Vec<String>>) -> Vec<String> {
    drop(app);
    tokio::time::timeout(Duration::from_secs(5), rt)
        .await
        .expect("a sender outlived the router")
        .unwrap()
}

#[tokio::test]
async fn write_endpoints_need_the_token_and_reach_the_runtime() {
    let (app, rt) = controlled_app();
    let bearer = format!("Bearer {TOKEN}");

    let (code, v) = post(&app, "/ack", None, "{}").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(
        post(&app, "/ack", Some("Bearer wrong-token-xxxxx"), "{}")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&app, "/silence", Some(TOKEN), r#"{"probe":"api","for":60}"#)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "the token without `Bearer ` is not accepted"
    );

    let (code, v) = post(&app, "/ack", Some(&bearer), "").await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["message"], "acknowledged");
    let (code, v) = post(
        &app,
        "/ack",
        Some(&bearer),
        r#"{"incident":"missing","by":"cli"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"], "no incident missing");

    let (code, v) = post(
        &app,
        "/silence",
        Some(&bearer),
        r#"{"probe":"api","for":"30m","reason":"deploy"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "api silenced");

    // Bad input is a 400 naming the problem, and never reaches the runtime.
    for (body, want) in [
        (r#"{"probe":"api","for":"5 fortnights"}"#, "not a duration"),
        (r#"{"probe":"api"}"#, "missing field `for`"),
        (
            r#"{"probe":"api","for":60,"typo":1}"#,
            "unknown field `typo`",
        ),
        (r#"{"probe":" ","for":60}"#, "`probe` must not be empty"),
        ("not json", "bad JSON body"),
    ] {
        let (code, v) = post(&app, "/silence", Some(&bearer), body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(want),
            "{body}: {v} should mention {want}"
        );
    }
    let huge = format!(r#"{{"incident":"{}"}}"#, "x".repeat(64 * 1024));
    assert_eq!(
        post(&app, "/ack", Some(&bearer), &huge).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    let seen = requests_seen(app, rt).await;
    assert_eq!(
        seen,
        [
            "ack None by http",
            "ack Some(\"missing\") by cli",
            "silence api 1800s Some(\"deploy\") by http"
        ]
    );
}

/// One rule for "who" on every write endpoint: the name the caller gives (cleaned), else `http`.
#[tokio::test]
async fn every_write_endpoint_records_the_named_caller_else_http() {
    let (app, rt) = controlled_app();
    let bearer = format!("Bearer {TOKEN}");
    let long = "x".repeat(100);
    for (path, body) in [
        ("/ack", r#"{"by":"alice"}"#.to_string()),
        ("/ack", "{}".to_string()),
        ("/approve", r#"{"approval":1}"#.to_string()),
        (
            "/approve",
            r#"{"approval":1,"by":"  bob\u0007\n "}"#.to_string(),
        ),
        ("/deny", r#"{"approval":2,"by":"cli"}"#.to_string()),
        ("/agent/reset", String::new()),
        ("/agent/reset", r#"{"by":"   "}"#.to_string()),
        ("/worker", r#"{"action":"stop","by":"carol"}"#.to_string()),
        (
            "/silence",
            format!(r#"{{"probe":"api","for":60,"by":"{long}"}}"#),
        ),
    ] {
        let (code, v) = post(&app, path, Some(&bearer), &body).await;
        // The fake runtime answers a deny with "no pending approval".
        let want = if path == "/deny" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(code, want, "{path} {body}: {v}");
    }
    let seen = requests_seen(app, rt).await;
    assert_eq!(
        seen,
        [
            "ack None by alice".to_string(),
            "ack None by http".into(),
            "approve 1 by http".into(),
            "approve 1 by bob".into(),
            "deny 2 by cli".into(),
            "agent reset by http".into(),
            "agent reset by http".into(),
            "worker stop by carol".into(),
            format!("silence api 60s None by {}", "x".repeat(64)),
        ]
    );
}

#[tokio::test]
async fn write_endpoints_stay_closed_without_a_token_or_runtime() {
    let (tx, rx) = mpsc::channel(4);
    let app = router(
        ServerState::new(board(), Arc::new(Metrics::new())).with_control(tx, None),
        &ServerOptions::default(),
    );
    let (code, v) = post(&app, "/ack", Some("Bearer "), "{}").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    drop(rx);

    // Token set, but the runtime is gone.
    let (tx, rx) = mpsc::channel(4);
    drop(rx);
    let app = router(
        ServerState::new(board(), Arc::new(Metrics::new())).with_control(tx, Some(TOKEN.into())),
        &ServerOptions::default(),
    );
    let (code, v) = post(&app, "/ack", Some(&format!("Bearer {TOKEN}")), "{}").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not accepting"));
}

#[tokio::test]
async fn a_runtime_that_never_answers_gets_a_504_or_a_408() {
    let (tx, mut rx) = mpsc::channel::<ControlRequest>(4);
    // Hold requests without answering them.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(r) = rx.recv().await {
            held.push(r);
        }
        held.len()
    });
    {
        let state = ServerState::new(board(), Arc::new(Metrics::new()))
            .with_control(tx.clone(), Some(TOKEN.into()))
            .with_control_timeout(Duration::from_millis(100));
        let app = router(state, &ServerOptions::default());
        let (code, _) = post(&app, "/ack", Some(&format!("Bearer {TOKEN}")), "{}").await;
        assert_eq!(code, StatusCode::GATEWAY_TIMEOUT);
    }
    {
        // The request timeout is shorter than the control timeout: 408.
        let state = ServerState::new(board(), Arc::new(Metrics::new()))
            .with_control(tx, Some(TOKEN.into()))
            .with_control_timeout(Duration::from_secs(30));
        let opts = ServerOptions {
            request_timeout: Duration::from_millis(100),
            ..Default::default()
        };
        let app = router(state, &opts);
        let (code, _) = post(&app, "/ack", Some(&format!("Bearer {TOKEN}")), "{}").await;
        assert_eq!(code, StatusCode::REQUEST_TIMEOUT);
    }
    // Every sender is gone now, so the holder ends.
    let held = tokio::time::timeout(Duration::from_secs(5), holder)
        .await
        .expect("a sender outlived the routers")
        .unwrap();
    assert_eq!(held, 2);
}

#[tokio::test]
async fn requests_over_the_in_flight_limit_are_shed_not_queued() {
    let (tx, mut rx) = mpsc::channel::<ControlRequest>(4);
    let state = ServerState::new(board(), Arc::new(Metrics::new()))
        .with_control(tx, Some(TOKEN.into()))
        .with_control_timeout(Duration::from_secs(30));
    let opts = ServerOptions {
        max_in_flight: 1,
        ..Default::default()
    };
    let app = router(state, &opts);
    let stuck = {
        let app = app.clone();
        tokio::spawn(
            async move { post(&app, "/ack", Some(&format!("Bearer {TOKEN}")), "{}").await },
        )
    };
    // Once the runtime holds the request, the one slot is taken.
    let held = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let (code, _, body) = get(&app, "/health").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("busy"), "{body}");
    let ControlRequest::Ack { reply, .. } = held else {
        panic!("expected ack")
    };
    reply.send(ControlReply::Done("ok".into())).unwrap();
    assert_eq!(stuck.await.unwrap().0, StatusCode::OK);
    assert_eq!(get(&app, "/health").await.0, StatusCode::OK);
}

fn read_until_closed(mut s: TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    s.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("connection still open after {limit:?}: {e}"),
        }
    }
    (start.elapsed(), got)
}

async fn start(opts: ServerOptions) -> (talon::server::ServerHandle, StatusBoard) {
    let b = board();
    let state = ServerState::new(b.clone(), Arc::new(Metrics::new()));
    let h = serve("127.0.0.1:0".parse().unwrap(), state, opts)
        .await
        .unwrap();
    (h, b)
}

async fn http_get(addr: SocketAddr, path: &str) -> reqwest::Result<reqwest::Response> {
    {
        talon::net::install_tls_provider();
        reqwest::Client::builder()
    }
    .timeout(Duration::from_secs(5))
    .build()
    .unwrap()
    .get(format!("http://{addr}{path}"))
    .send()
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_cut_off() {
    let (h, _) = start(ServerOptions {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let addr = h.addr();
    let res = tokio::task::spawn_blocking(move || {
        // Says nothing.
        let silent = TcpStream::connect(addr).unwrap();
        // Starts a request and never finishes its headers (slowloris).
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        let a = read_until_closed(silent, Duration::from_secs(10));
        let b = read_until_closed(slow, Duration::from_secs(10));
        (a, b)
    })
    .await
    .unwrap();
    assert!(res.0.0 < Duration::from_secs(10));
    assert!(res.1.0 < Duration::from_secs(10));
    // A well-behaved client on the same server is still served.
    assert_eq!(http_get(addr, "/health").await.unwrap().status(), 200);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_a_new_connection_closes_the_oldest_idle_one() {
    let (h, _) = start(ServerOptions {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let addr = h.addr();
    let (fresh, oldest, newer) = tokio::task::spawn_blocking(move || {
        // Two silent clients fill the cap (accepted in connect order).
        let oldest = TcpStream::connect(addr).unwrap();
        let newer = TcpStream::connect(addr).unwrap();
        // A fresh client is still served: the oldest silent one makes room.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let fresh = read_until_closed(s, Duration::from_secs(10));
        let oldest = read_until_closed(oldest, Duration::from_secs(10));
        newer.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        let newer = (&newer).read(&mut buf).map_err(|e| e.kind());
        (fresh, oldest, newer)
    })
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&fresh.1).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&fresh.1)
    );
    assert!(oldest.1.is_empty() && oldest.0 < Duration::from_secs(10));
    assert_eq!(
        newer,
        Err(std::io::ErrorKind::WouldBlock),
        "only the oldest idle connection was closed"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_with_every_connection_mid_request_a_new_one_is_closed_at_once() {
    let (tx, mut rx) = mpsc::channel::<ControlRequest>(4);
    let state = ServerState::new(board(), Arc::new(Metrics::new()))
        .with_control(tx, Some(TOKEN.into()))
        .with_control_timeout(Duration::from_secs(30));
    let opts = ServerOptions {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let h = serve("127.0.0.1:0".parse().unwrap(), state, opts)
        .await
        .unwrap();
    let addr = h.addr();
    // Two requests the runtime holds (it has not answered yet): both connections are busy.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            tokio::task::spawn_blocking(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                write!(
                    s,
                    "POST /ack HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                )
                .unwrap();
                read_until_closed(s, Duration::from_secs(20)).1
            })
        })
        .collect();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let extra = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        read_until_closed(s, Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert!(
        extra.1.is_empty(),
        "a third connection was served past the cap"
    );
    assert!(extra.0 < Duration::from_secs(10));
    for r in held {
        let ControlRequest::Ack { reply, .. } = r else {
            panic!("expected ack")
        };
        reply.send(ControlReply::Done("ok".into())).unwrap();
    }
    for b in busy {
        let got = b.await.unwrap();
        assert!(
            String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    // Slots come back once the busy ones are done.
    assert_eq!(http_get(addr, "/health").await.unwrap().status(), 200);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_serves_updates_shuts_down_and_rebinds() {
    let (h, b) = start(ServerOptions::default()).await;
    let addr = h.addr();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    assert_eq!(http_get(addr, "/health").await.unwrap().status(), 200);
    fail(&b);
    let r = http_get(addr, "/health").await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["state"],
        "failed"
    );

    // A bad address leaves the server where it was.
    let bad: SocketAddr = "192.0.2.1:80".parse().unwrap();
    let (h, err) = h.rebind(bad).await.unwrap_err();
    assert_eq!(h.addr(), addr);
    assert!(!err.to_string().is_empty());
    assert_eq!(http_get(addr, "/health").await.unwrap().status(), 503);

    // A new port: the new one serves, the old one is closed.
    let h = h.rebind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let new = h.addr();
    assert_ne!(new, addr);
    assert_eq!(http_get(new, "/health").await.unwrap().status(), 503);
    assert!(
        http_get(addr, "/health").await.is_err(),
        "old port still open"
    );

    // The same address (cannot be bound twice): stop, then bind again.
    let h = h.rebind(new).await.unwrap();
    assert_eq!(h.addr(), new);
    assert_eq!(http_get(new, "/health").await.unwrap().status(), 503);

    h.shutdown().await;
    assert!(
        http_get(new, "/health").await.is_err(),
        "still listening after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_stays_consistent_under_concurrent_updates() {
    let (h, b) = start(ServerOptions::default()).await;
    let addr = h.addr();
    let writer = {
        let b = b.clone();
        tokio::spawn(async move {
            for i in 0..2000i64 {
                b.update(i, |s| {
                    s.state = if i % 2 == 0 {
                        SystemState::Healthy
                    } else {
                        SystemState::Failed
                    };
                    s.consecutive_failures = (i % 2) as u32;
                });
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    talon::net::install_tls_provider();
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let r = client
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap();
        // Status code and body always come from the same snapshot.
        match v["state"].as_str().unwrap() {
            "healthy" => assert_eq!((code, &v["consecutive_failures"]), (200, &0.into())),
            "failed" => assert_eq!((code, &v["consecutive_failures"]), (503, &1.into())),
            other => panic!("unexpected state {other}"),
        }
    }
    writer.await.unwrap();
    h.shutdown().await;
}

#[tokio::test]
async fn pings_need_their_own_probe_token_and_take_job_output_beyond_the_json_limit() {
    let (app, rt) = controlled_app();
    let tok = talon::probe::push::token(TOKEN, "backup");
    let api_bearer = format!("Bearer {TOKEN}");
    // The API token itself is not a ping token, nor is another probe's.
    assert_eq!(
        post(&app, "/ping/backup", Some(&api_bearer), "").await.0,
        StatusCode::UNAUTHORIZED
    );
    let other = talon::probe::push::token(TOKEN, "other");
    let (code, _) = post(&app, &format!("/ping/backup?token={other}"), None, "").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, v) = post(&app, &format!("/ping/backup?token={tok}"), None, "").await;
    assert_eq!(code, StatusCode::OK, "{v}");
    // A job's output may be far larger than the JSON endpoints' 16 KiB limit.
    let big = "x".repeat(200 * 1024);
    let bearer = format!("Bearer {tok}");
    let (code, v) = post(&app, "/ping/backup/fail", Some(&bearer), &big).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let (code, _) = post(&app, "/ping/backup/start", Some(&bearer), "").await;
    assert_eq!(code, StatusCode::OK);
    // Beyond the ping limit: refused before the runtime sees it.
    let huge = "x".repeat(talon::probe::push::MAX_PING_BODY + 1);
    let (code, _) = post(&app, "/ping/backup/fail", Some(&bearer), &huge).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    let seen = requests_seen(app, rt).await;
    assert_eq!(
        seen,
        vec![
            "push backup ping 0".to_string(),
            format!("push backup fail {}", 200 * 1024),
            "push backup start 0".to_string(),
        ]
    );
}

#[tokio::test]
async fn worker_controls_need_the_token_take_only_known_actions_and_reach_the_runtime() {
    let (app, rt) = controlled_app();
    let bearer = format!("Bearer {TOKEN}");
    let (code, _) = post(&app, "/worker", None, r#"{"action":"stop"}"#).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    for (body, want) in [
        (r#"{"action":"explode"}"#, "unknown variant `explode`"),
        (r#"{}"#, "missing field `action`"),
        ("", "bad JSON body"),
    ] {
        let (code, v) = post(&app, "/worker", Some(&bearer), body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{body}: {v}");
    }
    let (code, v) = post(
        &app,
        "/worker",
        Some(&bearer),
        r#"{"action":"restart","by":"cli"}"#,
    )
    .await;
    assert_eq!(
        (code, v["message"].as_str()),
        (StatusCode::OK, Some("worker restart"))
    );
    // The caller's own name is recorded (the rule every write endpoint follows).
    let (code, v) = post(
        &app,
        "/worker",
        Some(&bearer),
        r#"{"action":"start","by":"alice"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT, "a failed action is a 409: {v}");
    let seen = requests_seen(app, rt).await;
    assert_eq!(seen, ["worker restart by cli", "worker start by alice"]);
}
