//! What the benches that run probes share: the run guard and the local servers probes hit, in a
//! child process (this bench binary again, with `TALON_BENCH_SERVE=1`) so their CPU and fds are
//! not counted as Talon's. Included with `mod common;` (a directory, so cargo does not take it
//! for a bench of its own).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Test runners run bench binaries too: true only when `cargo bench` asked for the run.
pub fn asked_to_run(name: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return false;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("{name}: a benchmark; run it with `cargo bench --bench {name}`");
        return false;
    }
    true
}

/// In the server child: serve until the parent closes our stdin, and return true.
pub fn serve_if_asked() -> bool {
    if std::env::var_os("TALON_BENCH_SERVE").is_none() {
        return false;
    }
    serve();
    true
}

/// Loopback servers in a child process: `http` answers `/health` 200 and `/fail` 503, `tcp`
/// accepts and closes, `silent` accepts and never answers (each connection is held 60 s).
pub struct Servers {
    child: Child,
    pub http: u16,
    pub tcp: u16,
    pub silent: u16,
}

impl Servers {
    pub fn start() -> Servers {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("TALON_BENCH_SERVE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Vec<u16> = line
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        Servers {
            child,
            http: ports[0],
            tcp: ports[1],
            silent: ports[2],
        }
    }
}

impl Drop for Servers {
    /// Closing its stdin ends the child.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn serve() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let app = axum::Router::new()
            .route("/health", axum::routing::get(|| async { "ok" }))
            .route(
                "/fail",
                axum::routing::get(|| async {
                    (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "down for the bench",
                    )
                }),
            );
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ports = [&http, &tcp, &silent].map(|l| l.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(http, app).await });
        tokio::spawn(async move {
            while let Ok((s, _)) = tcp.accept().await {
                drop(s);
            }
        });
        tokio::spawn(async move {
            while let Ok((s, _)) = silent.accept().await {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    drop(s);
                });
            }
        });
        let mut out = std::io::stdout();
        writeln!(out, "{} {} {}", ports[0], ports[1], ports[2]).unwrap();
        out.flush().unwrap();
        // Until the parent closes our stdin.
        std::thread::spawn(|| {
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
            std::process::exit(0);
        });
        std::future::pending::<()>().await;
    });
}
