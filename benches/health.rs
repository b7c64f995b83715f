//! `/health` latency under load while the runtime rewrites the snapshot concurrently.
//!
//! A real server on 127.0.0.1 with a 100-probe snapshot; a writer task records a probe result
//! into the board every 100 µs (10 000 updates/s — far more than a real daemon does), and a
//! second task holds a tokio worker busy with blocking sleeps, standing in for badly behaved work
//! elsewhere in the process. Then 1000 `GET /health` one at a time (latency), and 1000 more from
//! 16 concurrent clients (latency + throughput); also `/status` and `/` sequentially.
//!
//! `cargo bench --bench health`. Nothing is asserted: numbers go to BENCHMARKS.md ("HTTP").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use talon::core::{ProbeResult, Status};
use talon::metrics::Metrics;
use talon::server::snapshot::{StatusSnapshot, SystemState};
use talon::server::{ServerOptions, ServerState, StatusBoard, serve};

const REQUESTS: usize = 1000;

fn result(i: usize, pass: bool) -> ProbeResult {
    ProbeResult {
        name: format!("probe-{i:03}"),
        kind: "http".into(),
        passed: pass,
        status: if pass { Status::Pass } else { Status::Fail },
        output: format!(
            "HTTP {} from http://127.0.0.1:{}/health in 3 ms",
            if pass { 200 } else { 503 },
            3000 + i
        ),
        detail: String::new(),
        duration_ms: 3,
        started_at: 1_795_000_000_000,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{name:<34} n={:<5} p50={:>7.0}µs p90={:>7.0}µs p99={:>7.0}µs max={:>7.0}µs  {:>7.0} req/s",
        lat.len(),
        us(pct(&lat, 0.50)),
        us(pct(&lat, 0.90)),
        us(pct(&lat, 0.99)),
        us(*lat.last().unwrap()),
        lat.len() as f64 / wall.as_secs_f64()
    );
}

async fn sequential(client: &reqwest::Client, url: &str) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let mut lat = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let t = Instant::now();
        let r = client.get(url).send().await.expect("request");
        let _ = r.bytes().await.expect("body");
        lat.push(t.elapsed());
    }
    (lat, start.elapsed())
}

fn main() {
    talon::net::install_tls_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut snap = StatusSnapshot::new(1_795_000_000);
        for i in 0..100 {
            snap.record_probe(&result(i, true), i % 3 == 0);
        }
        let board = StatusBoard::new(snap);
        let server = serve(
            "127.0.0.1:0".parse().unwrap(),
            ServerState::new(board.clone(), Arc::new(Metrics::new())),
            ServerOptions::default(),
        )
        .await
        .unwrap();
        let base = format!("http://{}", server.addr());

        let stop = Arc::new(AtomicBool::new(false));
        let updates = Arc::new(AtomicU64::new(0));
        let writer = {
            let (board, stop, updates) = (board.clone(), stop.clone(), updates.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_micros(100));
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let failing = i.is_multiple_of(7);
                    let r = result(i % 100, !failing);
                    board.update(1_795_000_000 + i as i64, |s| {
                        s.record_probe(&r, true);
                        s.state = if failing {
                            SystemState::Failed
                        } else {
                            SystemState::Healthy
                        };
                    });
                    updates.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        };
        // A "heal in flight" that misbehaves: blocks a worker thread 20 ms at a time.
        let hog = {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                    tokio::task::yield_now().await;
                }
            })
        };

        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        // Warm up connections.
        for _ in 0..50 {
            let _ = client
                .get(format!("{base}/health"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await;
        }

        let (lat, wall) = sequential(&client, &format!("{base}/health")).await;
        report("GET /health sequential", lat, wall);

        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (client, url) = (client.clone(), format!("{base}/health"));
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for _ in 0..REQUESTS / 16 + 1 {
                    let t = Instant::now();
                    let _ = client
                        .get(&url)
                        .send()
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap();
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        lat.truncate(REQUESTS);
        report("GET /health 16 concurrent clients", lat, start.elapsed());

        let (lat, wall) = sequential(&client, &format!("{base}/status")).await;
        report("GET /status sequential (100 probes)", lat, wall);
        let (lat, wall) = sequential(&client, &format!("{base}/")).await;
        report("GET / sequential (100 probes)", lat, wall);
        let (lat, wall) = sequential(&client, &format!("{base}/metrics")).await;
        report("GET /metrics sequential", lat, wall);

        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();
        hog.await.unwrap();
        println!(
            "snapshot updates during the run: {}",
            updates.load(Ordering::Relaxed)
        );
        server.shutdown().await;
    });
}
