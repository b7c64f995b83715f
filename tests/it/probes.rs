//! Probe kinds and the engine against real servers, processes and files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use talon::config::{self, Config, LoadOptions};
use talon::core::{ProbeResult, Status};
use talon::probe::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------- helpers

/// A temp dir holding a main config and a probes file.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Load `probes` (a probes file) with `main_extra` added to the main config.
    fn load_with(&self, main_extra: &str, probes: &str) -> config::Loaded {
        let main = self.path().join("config.toml");
        std::fs::write(
            &main,
            format!("services_file = \"services.toml\"\nstate_dir = \"state\"\n{main_extra}\n"),
        )
        .unwrap();
        std::fs::write(self.path().join("services.toml"), probes).unwrap();
        config::load(&LoadOptions {
            config: Some(main),
            resolve: false,
            home: Some(self.path().to_path_buf()),
            ..Default::default()
        })
    }

    fn config(&self, probes: &str) -> Config {
        self.config_with("", probes)
    }

    fn config_with(&self, main_extra: &str, probes: &str) -> Config {
        let l = self.load_with(main_extra, probes);
        let msgs: Vec<String> = l.diags.items.iter().map(|d| d.to_string()).collect();
        l.config
            .unwrap_or_else(|| panic!("config invalid: {msgs:#?}"))
    }

    /// Diagnostics (as text) for a config expected to be invalid.
    fn errors(&self, probes: &str) -> String {
        self.errors_with("", probes)
    }

    /// The same with `main_extra` added to the main config.
    fn errors_with(&self, main_extra: &str, probes: &str) -> String {
        let l = self.load_with(main_extra, probes);
        assert!(l.config.is_none(), "expected an invalid config:\n{probes}");
        l.diags
            .items
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn run_all(c: &Config) -> Vec<ProbeResult> {
    Engine::new(c).run(&c.probes).await
}

async fn run_one(c: &Config) -> ProbeResult {
    assert_eq!(c.probes.len(), 1);
    Engine::new(c).run_one(&c.probes[0]).await
}

fn by_name<'a>(rs: &'a [ProbeResult], n: &str) -> &'a ProbeResult {
    rs.iter().find(|r| r.name == n).unwrap()
}

/// A TCP port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Whether a pid is a live (non-zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s.rsplit(')').next().unwrap_or("").split_whitespace().next();
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// An HTTP server (axum) with fixed answers; lives as long as the test's runtime.
async fn http_server() -> SocketAddr {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/ok", get(|| async { "all good" }))
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/moved",
            get(|| async {
                (StatusCode::MOVED_PERMANENTLY, [("location", "/ok")]).into_response()
            }),
        )
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "maintenance") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route(
            "/broken",
            get(|| async {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [
                        ("set-cookie", "session=s3cr3t-cookie"),
                        ("retry-after", "30"),
                        ("x-internal-debug", "noise"),
                    ],
                    "upstream db: connection refused\ntrace id 42\n",
                )
                    .into_response()
            }),
        )
        .route(
            "/header",
            get(|headers: axum::http::HeaderMap| async move {
                match headers.get("x-token").map(|v| v.as_bytes()) {
                    Some(b"sesame") => StatusCode::OK,
                    _ => StatusCode::UNAUTHORIZED,
                }
            }),
        );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

/// Accepts connections and never answers.
async fn silent_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}

/// HTTPS with a self-signed certificate for 127.0.0.1, answering 200 to anything.
async fn tls_server() -> SocketAddr {
    use tokio_rustls::rustls;
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecure",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- http

#[tokio::test]
async fn http_statuses_redirects_and_bodies() {
    let a = http_server().await;
    let s = Setup::new();
    let c = s.config(&format!(
        r#"
[http.ok]
url = "http://{a}/ok"
body_contains = "good"
[http.empty]
url = "http://{a}/empty"
[http.moved]
url = "http://{a}/moved"
[http.moved_followed]
url = "http://{a}/moved"
follow_redirects = true
[http.moved_expected]
url = "http://{a}/moved"
expect_status = [301]
[http.down]
url = "http://{a}/down"
[http.down_accepted]
url = "http://{a}/down"
expect_status = ["500-599"]
[http.body_mismatch]
url = "http://{a}/ok"
body_regex = "^bad"
[http.header]
url = "http://{a}/header"
headers = {{ x-token = "sesame" }}
[http.refused]
url = "http://127.0.0.1:{closed}/"
"#,
        closed = closed_port()
    ));
    let rs = run_all(&c).await;
    let st = |n: &str| by_name(&rs, n).status;
    let out = |n: &str| by_name(&rs, n).output.clone();
    assert_eq!(st("ok"), Status::Pass, "{}", out("ok"));
    assert!(out("ok").starts_with(&format!("HTTP 200 from http://{a}/ok in ")));
    assert_eq!(st("empty"), Status::Pass);
    assert!(out("empty").starts_with("HTTP 204"));
    assert_eq!(st("moved"), Status::Fail);
    assert!(
        out("moved").contains("HTTP 301") && out("moved").contains("not followed"),
        "{}",
        out("moved")
    );
    assert_eq!(
        st("moved_followed"),
        Status::Pass,
        "{}",
        out("moved_followed")
    );
    assert!(out("moved_followed").starts_with("HTTP 200"));
    assert_eq!(st("moved_expected"), Status::Pass);
    assert_eq!(st("down"), Status::Fail);
    assert!(
        out("down").starts_with(&format!("HTTP 503 from http://{a}/down in ")),
        "{}",
        out("down")
    );
    assert!(out("down").ends_with("(expected 2xx)"));
    assert_eq!(st("down_accepted"), Status::Pass);
    assert_eq!(st("body_mismatch"), Status::Fail);
    assert!(out("body_mismatch").contains("does not match /^bad/"));
    assert_eq!(st("header"), Status::Pass, "{}", out("header"));
    assert_eq!(st("refused"), Status::Fail);
    assert!(
        out("refused").starts_with("connection refused"),
        "{}",
        out("refused")
    );
}

#[tokio::test]
async fn http_slow_and_silent_servers_time_out_at_the_probe_timeout() {
    let a = http_server().await;
    let silent = silent_server().await;
    let s = Setup::new();
    let c = s.config(&format!(
        r#"
[http.slow]
url = "http://{a}/slow"
timeout_secs = 0.5
[http.silent]
url = "http://{silent}/"
timeout_secs = 0.5
"#
    ));
    let rs = run_all(&c).await;
    for r in &rs {
        assert_eq!(r.status, Status::Timeout, "{r:?}");
        assert!(
            r.output.starts_with("timed out after 500 ms"),
            "{}",
            r.output
        );
        assert!(!r.passed);
        // Bounded by the timeout (generous margin: this is a correctness bound, not a benchmark).
        assert!(r.duration_ms < 5_000, "{r:?}");
    }
}

#[tokio::test]
async fn https_self_signed_fails_verification_unless_opted_out() {
    let a = tls_server().await;
    let s = Setup::new();
    let c = s.config(&format!(
        r#"
[http.verified]
url = "https://{a}/"
[http.unverified]
url = "https://{a}/"
tls_verify = false
body_contains = "secure"
"#
    ));
    let rs = run_all(&c).await;
    let v = by_name(&rs, "verified");
    assert_eq!(v.status, Status::Fail, "{v:?}");
    assert!(
        v.output.contains("TLS error") || v.output.contains("certificate"),
        "{}",
        v.output
    );
    let u = by_name(&rs, "unverified");
    assert_eq!(u.status, Status::Pass, "{u:?}");
    assert!(u.output.starts_with("HTTP 200"));
}

// ---------------------------------------------------------------- tcp

#[tokio::test]
async fn tcp_open_closed_and_conversation() {
    let open = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open_addr = open.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = open.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf).await
                    && &buf[..n] == b"PING\r\n"
                {
                    let _ = s.write_all(b"+PONG\r\n").await;
                } else {
                    let _ = s.write_all(b"-ERR what\r\n").await;
                }
            });
        }
    });
    let s = Setup::new();
    let c = s.config(&format!(
        r#"
[tcp.open]
address = "{open_addr}"
[tcp.closed]
address = "127.0.0.1:{closed}"
[tcp.talk]
address = "{open_addr}"
send = "PING\r\n"
expect = "+PONG"
[tcp.talk_wrong]
address = "{open_addr}"
send = "HELLO\r\n"
expect = "+PONG"
"#,
        closed = closed_port()
    ));
    let rs = run_all(&c).await;
    assert_eq!(by_name(&rs, "open").status, Status::Pass);
    assert!(
        by_name(&rs, "open")
            .output
            .starts_with(&format!("connected to {open_addr} in "))
    );
    let closed = by_name(&rs, "closed");
    assert_eq!(closed.status, Status::Fail);
    assert!(
        closed.output.ends_with(": connection refused"),
        "{}",
        closed.output
    );
    assert_eq!(
        by_name(&rs, "talk").status,
        Status::Pass,
        "{:?}",
        by_name(&rs, "talk")
    );
    let wrong = by_name(&rs, "talk_wrong");
    assert_eq!(wrong.status, Status::Fail);
    assert!(
        wrong.output.contains("expected `+PONG`, got `-ERR what`"),
        "{}",
        wrong.output
    );
}

// ---------------------------------------------------------------- script

#[tokio::test]
async fn script_pass_fail_env_and_path() {
    let s = Setup::new();
    let c = s.config(
        r#"
[script.ok]
command = "echo fine"
[script.broken]
command = "echo starting; echo 'disk on fire' >&2; exit 3"
[script.env]
command = "test \"$GREETING\" = hello && echo \"$GREETING\""
env = { GREETING = "hello" }
[script.missing]
command = "definitely-not-a-program-talon"
"#,
    );
    let rs = run_all(&c).await;
    assert_eq!(by_name(&rs, "ok").status, Status::Pass);
    assert_eq!(by_name(&rs, "ok").output, "exit 0: fine");
    assert_eq!(by_name(&rs, "broken").status, Status::Fail);
    assert_eq!(by_name(&rs, "broken").output, "exit 3: disk on fire");
    assert_eq!(by_name(&rs, "env").output, "exit 0: hello");
    let m = by_name(&rs, "missing");
    assert_eq!(m.status, Status::Fail);
    assert!(m.output.starts_with("exit 127"), "{}", m.output);
}

#[tokio::test]
async fn script_with_a_grandchild_holding_the_pipe_times_out_and_leaves_nothing() {
    let s = Setup::new();
    let pids = s.path().join("pids");
    let c = s.config(&format!(
        r#"
[script.hang]
command = "sleep 300 & echo $! > {p}; echo $$ >> {p}; sleep 300"
timeout_secs = 1
"#,
        p = pids.display()
    ));
    let r = run_one(&c).await;
    assert_eq!(r.status, Status::Timeout, "{r:?}");
    assert!(r.output.starts_with("timed out after 1 s"), "{}", r.output);
    assert!(r.duration_ms < 10_000, "{r:?}");
    let text = std::fs::read_to_string(&pids).unwrap();
    let pids: Vec<i32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(pids.len(), 2, "{text}");
    for pid in pids {
        assert!(
            wait_until(Duration::from_secs(5), || !alive(pid)),
            "process {pid} survived the probe's timeout"
        );
    }
}

#[tokio::test]
async fn script_printing_50_mb_does_not_stall_and_is_capped() {
    let s = Setup::new();
    let c = s.config(
        r#"
[script.flood]
command = "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo done"
timeout_secs = 60
"#,
    );
    let r = run_one(&c).await;
    assert_eq!(
        r.status,
        Status::Pass,
        "{}",
        &r.output[..r.output.len().min(200)]
    );
    assert_eq!(r.output, "exit 0: done");
}

// ---------------------------------------------------------------- redis

struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Redis {
    fn start(extra: &[&str]) -> Self {
        let port = closed_port();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        let r = Redis { child, port };
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "redis-server did not start listening on {port}"
        );
        r
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn redis_ping_info_and_stopped_server() {
    let mut r = Redis::start(&[]);
    let p = r.port;
    let s = Setup::new();
    let c = s.config(&format!(
        r#"
[redis.plain]
url = "redis://127.0.0.1:{p}"
[redis.db]
url = "redis://127.0.0.1:{p}/3"
[redis.master]
url = "127.0.0.1:{p}"
info = {{ role = "master", aof_enabled = "0" }}
[redis.replica]
url = "redis://127.0.0.1:{p}"
info = {{ role = "slave" }}
[redis.nofield]
url = "redis://127.0.0.1:{p}"
info = {{ no_such_field = "x" }}
[redis.baddb]
url = "redis://127.0.0.1:{p}/99"
"#
    ));
    let rs = run_all(&c).await;
    let plain = by_name(&rs, "plain");
    assert_eq!(plain.status, Status::Pass, "{plain:?}");
    assert!(
        plain
            .output
            .starts_with(&format!("PONG from 127.0.0.1:{p} in "))
    );
    assert_eq!(
        by_name(&rs, "db").status,
        Status::Pass,
        "{:?}",
        by_name(&rs, "db")
    );
    let m = by_name(&rs, "master");
    assert_eq!(m.status, Status::Pass, "{m:?}");
    assert!(
        m.output.ends_with("aof_enabled=0, role=master"),
        "{}",
        m.output
    );
    let rep = by_name(&rs, "replica");
    assert_eq!(rep.status, Status::Fail);
    assert!(
        rep.output
            .ends_with("but INFO role is `master`, expected `slave`"),
        "{}",
        rep.output
    );
    assert!(
        by_name(&rs, "nofield")
            .output
            .contains("INFO has no field `no_such_field`")
    );
    // The detail is the exchange the verdict came from.
    assert_eq!(
        rep.detail,
        format!(
            "connect 127.0.0.1:{p}\n> PING\n< PONG\n> INFO\n< ({} bytes)\nINFO fields checked:\n  role: master (expected slave)",
            rep.detail
                .split("< (")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .unwrap_or("?")
        )
    );
    assert!(
        by_name(&rs, "nofield")
            .detail
            .ends_with("  no_such_field: (absent) (expected x)")
    );

    r.stop();
    let rs = run_all(&c).await;
    let plain = by_name(&rs, "plain");
    assert_eq!(plain.status, Status::Fail);
    assert_eq!(plain.output, format!("127.0.0.1:{p}: connection refused"));
}

#[tokio::test]
async fn redis_auth_right_wrong_and_missing_password_never_shown() {
    let secret = "hunter2-correct-horse";
    let r = Redis::start(&["--requirepass", secret]);
    let p = r.port;
    let s = Setup::new();
    let pwfile = s.path().join("redis.pw");
    std::fs::write(&pwfile, format!("{secret}\n")).unwrap();
    let c = s.config(&format!(
        r#"
[redis.url_password]
url = "redis://:{secret}@127.0.0.1:{p}"
[redis.file_password]
url = "redis://127.0.0.1:{p}"
password_file = "{f}"
[redis.wrong]
url = "redis://:wrong-{secret}@127.0.0.1:{p}"
[redis.none]
url = "redis://127.0.0.1:{p}"
"#,
        f = pwfile.display()
    ));
    let rs = run_all(&c).await;
    assert_eq!(by_name(&rs, "url_password").status, Status::Pass, "{rs:?}");
    assert_eq!(by_name(&rs, "file_password").status, Status::Pass, "{rs:?}");
    let wrong = by_name(&rs, "wrong");
    assert_eq!(wrong.status, Status::Fail);
    assert!(
        wrong.output.contains("AUTH failed: WRONGPASS"),
        "{}",
        wrong.output
    );
    let none = by_name(&rs, "none");
    assert_eq!(none.status, Status::Fail);
    assert!(
        none.output.contains("PONG expected, got NOAUTH"),
        "{}",
        none.output
    );
    assert!(
        wrong.detail.contains("> AUTH ***\n< -WRONGPASS"),
        "{}",
        wrong.detail
    );
    assert!(none.detail.contains("> PING\n< -NOAUTH"), "{}", none.detail);
    for r in &rs {
        assert!(!r.output.contains(secret), "password leaked: {}", r.output);
        assert!(!r.detail.contains(secret), "password leaked: {}", r.detail);
    }
    // Redaction learns every way the password is configured.
    let secrets: Vec<String> = c.probes.iter().flat_map(|p| p.kind.secrets()).collect();
    assert!(
        secrets.iter().filter(|s| *s == secret).count() >= 2,
        "{secrets:?}"
    );
}

// ---------------------------------------------------------------- detail

#[tokio::test]
async fn a_failing_script_keeps_its_output_as_detail_a_passing_one_none() {
    let s = Setup::new();
    let c = s.config(
        r#"
[script.explains_early]
command = "echo 'loading /etc/app.toml'; echo 'ERROR: /etc/app.toml: missing key port'; echo 'shutting down'; exit 1"
[script.both_streams]
command = "echo 'on stdout'; echo 'on stderr' >&2; exit 2"
[script.slow]
command = "echo 'waiting for the lock'; sleep 30"
timeout_secs = 1
[script.ok]
command = "echo 'several'; echo 'lines'"
"#,
    );
    let rs = run_all(&c).await;
    let e = by_name(&rs, "explains_early");
    assert_eq!(
        e.output, "exit 1: shutting down",
        "the output line stays one line"
    );
    assert_eq!(
        e.detail,
        "loading /etc/app.toml\nERROR: /etc/app.toml: missing key port\nshutting down"
    );
    assert_eq!(by_name(&rs, "both_streams").detail, "on stdout\non stderr");
    let slow = by_name(&rs, "slow");
    assert_eq!(slow.status, Status::Timeout);
    assert_eq!(slow.detail, "waiting for the lock");
    let ok = by_name(&rs, "ok");
    assert_eq!(ok.status, Status::Pass);
    assert_eq!(ok.detail, "", "a pass keeps no detail");
    let json = serde_json::to_value(ok).unwrap();
    assert!(json.get("detail").is_none(), "{json}");
    assert_eq!(
        serde_json::to_value(e).unwrap()["detail"],
        e.detail.as_str()
    );
}

#[tokio::test]
async fn detail_keeps_the_newest_bytes_up_to_detail_bytes_and_zero_keeps_none() {
    let s = Setup::new();
    let probes = r#"
[script.chatty]
command = 'for i in $(seq 1 500); do echo "line $i of the log"; done; exit 1'
"#;
    let c = s.config_with("[probes]\ndetail_bytes = 100", probes);
    let r = run_one(&c).await;
    assert!(r.detail.ends_with("line 500 of the log"), "{}", r.detail);
    assert!(r.detail.starts_with("[… "), "marked as cut: {}", r.detail);
    let kept = r.detail.split_once('\n').unwrap().1;
    assert!(kept.len() <= 100, "{} bytes: {kept}", kept.len());
    assert!(kept.starts_with("line "), "cut at a line start: {kept}");
    let c = s.config_with("[probes]\ndetail_bytes = 0", probes);
    assert_eq!(run_one(&c).await.detail, "");
    let e = s.errors_with("[probes]\ndetail_bytes = -1", probes);
    assert!(e.contains("probes.detail_bytes"), "{e}");
}

#[tokio::test]
async fn a_failing_http_answer_keeps_status_line_headers_and_body_start() {
    let addr = http_server().await;
    let s = Setup::new();
    let closed = closed_port();
    let c = s.config(&format!(
        r#"
[http.down]
url = "http://{addr}/down"
[http.broken]
url = "http://{addr}/broken"
[http.wrong_body]
url = "http://{addr}/ok"
body_contains = "ready"
[http.refused]
url = "http://127.0.0.1:{closed}/"
[http.ok]
url = "http://{addr}/ok"
"#
    ));
    let rs = run_all(&c).await;
    assert_eq!(
        by_name(&rs, "down").detail,
        "HTTP/1.1 503 Service Unavailable\ncontent-type: text/plain; charset=utf-8\ncontent-length: 11\n\nmaintenance"
    );
    let b = &by_name(&rs, "broken").detail;
    assert!(b.starts_with("HTTP/1.1 500 Internal Server Error\n"), "{b}");
    assert!(b.contains("\nretry-after: 30\n"), "{b}");
    assert!(
        b.ends_with("\n\nupstream db: connection refused\ntrace id 42"),
        "{b}"
    );
    assert!(
        !b.contains("cookie") && !b.contains("x-internal-debug"),
        "{b}"
    );
    let w = &by_name(&rs, "wrong_body").detail;
    assert!(
        w.starts_with("HTTP/1.1 200 OK\n") && w.ends_with("\n\nall good"),
        "{w}"
    );
    let refused = by_name(&rs, "refused");
    assert_eq!(refused.status, Status::Fail);
    assert!(
        refused.detail.contains("127.0.0.1"),
        "the whole chain: {}",
        refused.detail
    );
    assert_eq!(by_name(&rs, "ok").detail, "");
}

// ---------------------------------------------------------------- systemd, launchd

/// A stand-in `systemctl` speaking real `systemctl show` output (systemd is not PID 1 here).
fn fake_systemctl(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = r#"#!/bin/sh
for a in "$@"; do unit="$a"; done
scope=system
[ "$1" = "--user" ] && scope=user
case "$scope:$unit" in
  system:nginx.service) printf 'Id=nginx.service\nLoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nMainPID=812\nExecMainStatus=0\n' ;;
  user:syncthing.service) printf 'Id=syncthing.service\nLoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nMainPID=900\nExecMainStatus=0\n' ;;
  system:worker.service) printf 'Id=worker.service\nLoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nMainPID=0\nExecMainStatus=1\n' ;;
  system:hang.service) exec sleep 300 ;;
  system:nobus.service) echo 'System has not been booted with systemd as init system (PID 1). Can'"'"'t operate.' >&2; echo 'Failed to connect to bus: Host is down' >&2; exit 1 ;;
  *) printf 'Id=%s\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nResult=success\nMainPID=0\nExecMainStatus=0\n' "$unit" ;;
esac
"#;
    let p = bin.join("systemctl");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[tokio::test]
async fn systemd_units_through_a_stand_in_systemctl() {
    let s = Setup::new();
    let bin = fake_systemctl(s.path());
    let c = s.config_with(
        &format!("path = [\"{}\"]", bin.display()),
        r#"
[systemd.nginx]
unit = "nginx.service"
[systemd.sync]
unit = "syncthing.service"
user = true
[systemd.sync_system]
unit = "syncthing.service"
[systemd.worker]
unit = "worker.service"
[systemd.hang]
unit = "hang.service"
timeout_secs = 1
[systemd.nobus]
unit = "nobus.service"
"#,
    );
    let rs = run_all(&c).await;
    let out = |n: &str| (by_name(&rs, n).status, by_name(&rs, n).output.clone());
    assert_eq!(
        out("nginx"),
        (
            Status::Pass,
            "nginx.service active (running), pid 812".into()
        )
    );
    assert_eq!(
        out("sync").0,
        Status::Pass,
        "--user reaches the user manager"
    );
    assert_eq!(
        out("sync_system"),
        (
            Status::Fail,
            "unit syncthing.service not found (LoadState=not-found)".into()
        )
    );
    assert_eq!(
        out("worker"),
        (
            Status::Fail,
            "worker.service failed (failed), result exit-code, last exit status 1".into()
        )
    );
    assert_eq!(out("hang").0, Status::Timeout, "{:?}", out("hang"));
    // A failure's detail is the answer the verdict was computed from.
    let worker = &by_name(&rs, "worker").detail;
    assert!(
        worker.contains("ActiveState=failed\nSubState=failed\nResult=exit-code")
            && worker.contains("ExecMainStatus=1"),
        "{worker}"
    );
    assert_eq!(by_name(&rs, "nginx").detail, "");
    assert!(
        by_name(&rs, "nobus")
            .detail
            .contains("Can't operate.\nFailed to connect to bus"),
        "{}",
        by_name(&rs, "nobus").detail
    );
    let (st, o) = out("nobus");
    assert_eq!(st, Status::Error);
    assert!(o.ends_with("Failed to connect to bus: Host is down"), "{o}");
}

#[cfg(not(target_os = "macos"))]
#[tokio::test]
async fn launchd_probe_is_an_error_off_macos_and_validate_says_unavailable() {
    let s = Setup::new();
    let c = s.config("[launchd.agent]\nlabel = \"com.example.agent\"\n");
    let r = run_one(&c).await;
    assert_eq!(r.status, Status::Error);
    assert_eq!(r.output, "launchd probes run only on macOS");
    // With host checks on, validate reports it as unavailable on this platform.
    let main = s.path().join("config.toml");
    let l = config::load(&LoadOptions {
        config: Some(main),
        resolve: true,
        home: Some(s.path().to_path_buf()),
        ..Default::default()
    });
    let text: Vec<String> = l.diags.items.iter().map(|d| d.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("launchd.agent") && t.contains("unavailable on this platform")),
        "{text:#?}"
    );
}

// ---------------------------------------------------------------- disk, process

#[tokio::test]
async fn disk_thresholds_on_the_real_root_filesystem() {
    let s = Setup::new();
    let c = s.config(&format!(
        r#"
[disk.root_any]
path = "/"
min_free_bytes = 1
[disk.root_impossible]
path = "/"
min_free_bytes = "1000000 TiB"
[disk.tmp_not_yet]
path = "{p}/not/created"
min_free_percent = 0
"#,
        p = s.path().display()
    ));
    let rs = run_all(&c).await;
    let any = by_name(&rs, "root_any");
    // A read-only root would (correctly) fail; CI roots are writable.
    assert_eq!(any.status, Status::Pass, "{any:?}");
    assert!(
        any.output.starts_with("/: ") && any.output.contains("free ("),
        "{}",
        any.output
    );
    let imp = by_name(&rs, "root_impossible");
    assert_eq!(imp.status, Status::Fail);
    assert!(
        imp.output.contains("below min_free_bytes"),
        "{}",
        imp.output
    );
    let t = by_name(&rs, "tmp_not_yet");
    assert_eq!(t.status, Status::Pass, "{t:?}");
    assert!(
        t.output.contains("not created yet; measured at"),
        "{}",
        t.output
    );
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn process_counts_real_processes() {
    // A marker no other process has: a unique sleep duration.
    let marker = format!("299.{}", std::process::id());
    let spawn = || {
        Kill(
            std::process::Command::new("sleep")
                .arg(&marker)
                .spawn()
                .unwrap(),
        )
    };
    let first = spawn();
    let second = spawn();
    let pattern = format!("^sleep {}$", marker.replace('.', "\\."));
    let s = Setup::new();
    let c = s.config(&format!(
        r#"
[process.present]
pattern = '{pattern}'
[process.two_needed]
pattern = '{pattern}'
min_count = 2
[process.leak_guard]
pattern = '{pattern}'
min_count = 0
max_count = 1
"#
    ));
    let rs = run_all(&c).await;
    let present = by_name(&rs, "present");
    assert_eq!(present.status, Status::Pass, "{present:?}");
    assert!(
        present.output.starts_with("2 processes match"),
        "{}",
        present.output
    );
    assert!(present.output.contains(&first.0.id().to_string()));
    assert_eq!(by_name(&rs, "two_needed").status, Status::Pass);
    let leak = by_name(&rs, "leak_guard");
    assert_eq!(leak.status, Status::Fail);
    assert!(
        leak.output.ends_with("at most 1 allowed"),
        "{}",
        leak.output
    );
    drop(first);
    drop(second);
    let rs = run_all(&c).await;
    let present = by_name(&rs, "present");
    assert_eq!(present.status, Status::Fail);
    assert!(
        present.output.starts_with("0 processes match"),
        "{}",
        present.output
    );
    assert_eq!(by_name(&rs, "leak_guard").status, Status::Pass);
}

// ---------------------------------------------------------------- engine: dependencies

#[tokio::test]
async fn failed_dependency_blocks_its_dependents_not_the_rest() {
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    let s = Setup::new();
    let ran = s.path().join("dependent-ran");
    let c = s.config(&format!(
        r#"
[tcp.db]
address = "127.0.0.1:{closed}"
critical = true
[script.api]
command = "touch {ran}"
depends_on = ["db"]
[script.frontend]
command = "true"
depends_on = ["api"]
[tcp.cache]
address = "{up_addr}"
[script.worker]
command = "echo working"
depends_on = ["cache"]
"#,
        closed = closed_port(),
        ran = ran.display()
    ));
    let rs = run_all(&c).await;
    // Results come back in config order.
    let names: Vec<&str> = rs.iter().map(|r| r.name.as_str()).collect();
    let config_order: Vec<&str> = c.probes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, config_order);

    let db = by_name(&rs, "db");
    assert_eq!(db.status, Status::Fail);
    assert!(db.status.is_failure());
    let api = by_name(&rs, "api");
    assert_eq!(api.status, Status::Blocked, "{api:?}");
    assert!(!api.status.is_failure() && !api.passed);
    assert!(
        api.output.starts_with("blocked: dependency `db` fail: ")
            && api.output.contains("connection refused"),
        "{}",
        api.output
    );
    assert!(!ran.exists(), "a blocked probe must not run");
    let fe = by_name(&rs, "frontend");
    assert_eq!(fe.status, Status::Blocked);
    assert!(
        fe.output
            .starts_with("blocked: dependency `api` is blocked"),
        "{}",
        fe.output
    );
    assert_eq!(by_name(&rs, "cache").status, Status::Pass);
    let w = by_name(&rs, "worker");
    assert_eq!(
        w.status,
        Status::Pass,
        "a passing dependency lets dependents run"
    );
    assert_eq!(w.output, "exit 0: working");
}

#[tokio::test]
async fn a_dependency_cycle_is_rejected_by_validation() {
    let s = Setup::new();
    let e = s.errors(
        r#"
[script.a]
command = "true"
depends_on = ["b"]
[script.b]
command = "true"
depends_on = ["a"]
"#,
    );
    assert!(e.contains("dependency cycle"), "{e}");
}

#[tokio::test]
async fn concurrency_bound_of_one_still_runs_everything() {
    let s = Setup::new();
    let c = s.config_with(
        "[probes]\nconcurrency = 1",
        r#"
[script.a]
command = "echo a"
[script.b]
command = "echo b"
depends_on = ["a"]
[script.c]
command = "echo c"
"#,
    );
    let rs = run_all(&c).await;
    assert!(rs.iter().all(|r| r.status == Status::Pass), "{rs:?}");
}

// ---------------------------------------------------------------- validation of each kind

#[test]
fn every_kind_rejects_a_misspelt_key_with_a_suggestion() {
    let cases = [
        (
            "http",
            "url = \"http://127.0.0.1:1/\"\nbody_contain = \"x\"",
            "body_contain",
            "body_contains",
        ),
        ("tcp", "adress = \"127.0.0.1:1\"", "adress", "address"),
        ("script", "comand = \"true\"", "comand", "command"),
        (
            "redis",
            "url = \"redis://127.0.0.1:1\"\npassword_evn = \"X\"",
            "password_evn",
            "password_env",
        ),
        ("launchd", "lable = \"com.x\"", "lable", "label"),
        (
            "systemd",
            "unit = \"x.service\"\nuser_ = true",
            "user_",
            "user",
        ),
        (
            "disk",
            "path = \"/\"\nmin_free_percnt = 5",
            "min_free_percnt",
            "min_free_percent",
        ),
        ("process", "patern = \"x\"", "patern", "pattern"),
    ];
    for (kind, body, typo, fix) in cases {
        let s = Setup::new();
        let e = s.errors(&format!("[{kind}.t]\n{body}\n"));
        assert!(
            e.contains(&format!("unknown key `{typo}` (did you mean `{fix}`?)")),
            "{kind}: {e}"
        );
        assert!(
            e.contains("services.toml:"),
            "{kind}: diagnostics name the file: {e}"
        );
    }
}

#[test]
fn every_kind_rejects_bad_values_with_the_key() {
    let cases = [
        (
            "http",
            "url = \"ftp://x/\"",
            "http.t.url",
            "http:// or https://",
        ),
        (
            "http",
            "url = \"http://x/\"\nexpect_status = [\"300-200\"]",
            "http.t.expect_status",
            "range",
        ),
        (
            "tcp",
            "address = \"localhost\"",
            "tcp.t.address",
            "host:port",
        ),
        (
            "tcp",
            "address = \"h:99999\"",
            "tcp.t.address",
            "not a port",
        ),
        (
            "script",
            "command = \"  \"",
            "script.t.command",
            "must not be empty",
        ),
        (
            "script",
            "command = \"true\"\nenv = { PATH = \"/x\" }",
            "script.t.env",
            "compiled PATH",
        ),
        ("redis", "url = \"rediss://h:1\"", "redis.t.url", "TLS"),
        (
            "redis",
            "url = \"redis://:pw@h:1\"\npassword_env = \"P\"",
            "redis.t.password_env",
            "one way",
        ),
        (
            "redis",
            "url = \"h:1\"\npassword_file = \"pw.txt\"",
            "redis.t.password_file",
            "absolute",
        ),
        (
            "launchd",
            "label = \"gui/501/x\"",
            "launchd.t.label",
            "not a launchd label",
        ),
        (
            "systemd",
            "unit = \"my unit\"",
            "systemd.t.unit",
            "not a unit name",
        ),
        (
            "disk",
            "path = \"/\"",
            "disk.t.path",
            "min_free_bytes and/or min_free_percent",
        ),
        (
            "disk",
            "path = \"rel\"\nmin_free_percent = 5",
            "disk.t.path",
            "absolute",
        ),
        (
            "disk",
            "path = \"/\"\nmin_free_percent = 150",
            "disk.t.min_free_percent",
            "between 0 and 100",
        ),
        (
            "disk",
            "path = \"/\"\nmin_free_bytes = \"3 parsecs\"",
            "disk.t.min_free_bytes",
            "unknown unit",
        ),
        (
            "process",
            "pattern = \"(\"",
            "process.t.pattern",
            "invalid regular expression",
        ),
        (
            "process",
            "pattern = \"x\"\nmax_count = 0",
            "process.t.max_count",
            "below min_count",
        ),
    ];
    for (kind, body, key, msg) in cases {
        let s = Setup::new();
        let e = s.errors(&format!("[{kind}.t]\n{body}\n"));
        let line = e
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("{kind}: no diagnostic for {key}:\n{e}"));
        assert!(line.contains(msg), "{kind}: `{line}` lacks `{msg}`");
    }
}
