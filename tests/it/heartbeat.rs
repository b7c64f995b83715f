//! The outbound heartbeat against a local HTTP server.

use axum::extract::State;
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use talon::config::HeartbeatConfig;
use talon::metrics::Metrics;
use talon::server::StatusBoard;
use talon::server::snapshot::{StatusSnapshot, SystemState};

async fn receiver() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/ping/abc",
            get(|State(h): State<Arc<AtomicUsize>>| async move {
                h.fetch_add(1, Ordering::SeqCst);
                "OK"
            }),
        )
        .with_state(hits.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ping/abc", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(l, app).await.unwrap();
    });
    (url, hits, task)
}

async fn wait_for(hits: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while hits.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "only {} pings",
            hits.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_while_ok_and_pauses_while_failing() {
    let (url, hits, server) = receiver().await;
    let board = StatusBoard::new(StatusSnapshot::new(0));
    let metrics = Arc::new(Metrics::new());
    let hb = talon::heartbeat::spawn(
        HeartbeatConfig {
            url,
            interval: Duration::from_millis(100),
        },
        board.subscribe(),
        Some(metrics.clone()),
    )
    .unwrap();

    wait_for(&hits, 3).await;
    board.update(1, |s| s.state = SystemState::Failed);
    // One ping already on its way may still land; no more over many intervals.
    let failed_at = hits.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let paused_at = hits.load(Ordering::SeqCst);
    assert!(
        paused_at <= failed_at + 1,
        "pinged while failed: {failed_at} → {paused_at}"
    );

    // Degraded still counts as OK (same as /health's 200): pings resume at once.
    board.update(2, |s| s.state = SystemState::Degraded);
    wait_for(&hits, paused_at + 2).await;
    assert!(
        metrics
            .render()
            .contains(r#"talon_heartbeat_pings_total{outcome="ok"}"#)
    );

    // Dropping the board ends the heartbeat.
    drop(board);
    tokio::time::timeout(Duration::from_secs(5), hb)
        .await
        .expect("heartbeat did not stop when the board went away")
        .unwrap();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_counted_not_fatal() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let board = StatusBoard::new(StatusSnapshot::new(0));
    let metrics = Arc::new(Metrics::new());
    let hb = talon::heartbeat::spawn(
        HeartbeatConfig {
            url: format!("http://127.0.0.1:{port}/gone"),
            interval: Duration::from_millis(100),
        },
        board.subscribe(),
        Some(metrics.clone()),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics
        .render()
        .contains(r#"talon_heartbeat_pings_total{outcome="failed"} 2"#)
    {
        assert!(Instant::now() < deadline, "{}", metrics.render());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!hb.is_finished());
    hb.abort();
}
