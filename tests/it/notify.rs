//! Channels against real protocol peers on loopback: a Bot API server for Telegram (ok, 429
//! with retry_after, 500), a real Alertmanager, webhook (HMAC verified), Slack and ntfy
//! receivers, a stand-in `osascript`, and `talon notify --test` through the real binary.

use super::heal::sp;
use axum::http::{HeaderMap, StatusCode, Uri};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use talon::notify::{
    self, ChannelConfig, ChannelKind, DeliveryError, FailingLine, Notice, NoticeKind, NotifyCtx,
};
use talon::redact::Redactor;

pub(crate) const TOKEN: &str = "987654321:AAF-test_token_ABCDEFGHIJKLMNOPQRSTU";

/// One request a receiver saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// A loopback HTTP peer: records requests, answers with scripted (status, body) replies, then
/// with `default`; optionally slow.
#[derive(Clone)]
pub(crate) struct Peer {
    seen: Arc<Mutex<Vec<Seen>>>,
    replies: Arc<Mutex<VecDeque<(u16, String)>>>,
    pub(crate) url: String,
}

impl Peer {
    pub(crate) async fn start(default: (u16, &str), delay: Duration) -> Peer {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Peer::serve(l, default, delay)
    }

    /// Serve on a listener the caller bound (e.g. a port a channel already points at).
    pub(crate) fn serve(l: tokio::net::TcpListener, default: (u16, &str), delay: Duration) -> Peer {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let replies: Arc<Mutex<VecDeque<(u16, String)>>> = Arc::default();
        let (s, r) = (seen.clone(), replies.clone());
        let default = (default.0, default.1.to_string());
        let app = axum::Router::new().fallback(
            move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let (s, r, default) = (s.clone(), r.clone(), default.clone());
                async move {
                    s.lock().unwrap().push(Seen {
                        path: uri.path().to_string(),
                        headers,
                        body: body.to_vec(),
                    });
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let (code, text) = r.lock().unwrap().pop_front().unwrap_or(default);
                    (
                        StatusCode::from_u16(code).unwrap(),
                        [("content-type", "application/json")],
                        text,
                    )
                }
            },
        );
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        Peer { seen, replies, url }
    }
    pub(crate) fn script(&self, code: u16, body: &str) {
        self.replies
            .lock()
            .unwrap()
            .push_back((code, body.to_string()));
    }
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn sos() -> Notice {
    Notice {
        kind: NoticeKind::Sos,
        host: "box-1".into(),
        state: "sos".into(),
        incident_id: Some("inc-5".into()),
        failing: vec![FailingLine {
            probe: "api".into(),
            reason: "HTTP 503 from http://127.0.0.1:3018/health".into(),
        }],
        tried: vec!["heal global `heal.sh`: exit 1, not fixed".into()],
        since_ms: Some(talon::clock::wall_ms() - 60_000),
        at_ms: talon::clock::wall_ms(),
        duration_secs: None,
        ack_hint: Some("talon ack inc-5".into()),
    }
}

fn ctx(timeout: Duration) -> NotifyCtx {
    let mut c = NotifyCtx::new(sp(&[]), Arc::new(Redactor::default())).unwrap();
    c.timeout = timeout;
    c
}

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn telegram(api: &str, token_command: String) -> ChannelConfig {
    ChannelConfig {
        name: "tg".into(),
        kind: ChannelKind::Telegram(talon::config::channel::telegram::TelegramSpec {
            chat_id: talon::config::channel::telegram::ChatId::Number(-10042),
            token_env: None,
            token_file: None,
            token_command: Some(token_command),
            token_command_timeout_secs: Some(10.0),
            api_base: Some(api.to_string()),
        }),
    }
}

pub(crate) const OK: &str = r#"{"ok":true,"result":{"message_id":1}}"#;

#[tokio::test]
async fn telegram_speaks_the_bot_api_and_honours_429() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let peer = Peer::start((200, OK), Duration::ZERO).await;
    let ch = telegram(&peer.url, format!("cat {}", token_file.display()));

    // 429 with retry_after, then ok: delivered after one wait.
    peer.script(
        429,
        r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#,
    );
    let c = ctx(Duration::from_secs(20));
    notify::send(&sos(), &ch, &c).await.unwrap();
    let seen = peer.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, format!("/bot{TOKEN}/sendMessage"));
    let body: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(body["chat_id"], -10042);
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("SOS: box-1 is sos (inc-5)"), "{text}");
    assert!(text.contains("Ack: talon ack inc-5"));
    // The token is learned for redaction.
    assert_eq!(c.redactor.clean(&format!("x {TOKEN}")), "x [REDACTED]");

    // 500 is a failure that names the status and never the token.
    peer.script(
        500,
        r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#,
    );
    let e = notify::send(&sos(), &ch, &c).await.unwrap_err();
    assert!(matches!(e, DeliveryError::Http { status: 500, .. }), "{e}");
    assert!(!e.to_string().contains(TOKEN));

    // A retry_after beyond the channel's time limit fails as rate-limited without waiting.
    peer.script(
        429,
        r#"{"ok":false,"error_code":429,"parameters":{"retry_after":3600}}"#,
    );
    let started = Instant::now();
    let e = notify::send(&sos(), &ch, &c).await.unwrap_err();
    assert_eq!(e, DeliveryError::RateLimited { retry_after: 3600 });
    assert!(started.elapsed() < Duration::from_secs(15));

    // Regression: an absurd retry_after (u64::MAX) overflowed the clock and panicked.
    peer.script(
        429,
        r#"{"ok":false,"error_code":429,"parameters":{"retry_after":18446744073709551615}}"#,
    );
    let e = notify::send(&sos(), &ch, &c).await.unwrap_err();
    assert_eq!(
        e,
        DeliveryError::RateLimited {
            retry_after: u64::MAX
        }
    );

    // ok:false with 200 is not success.
    peer.script(
        200,
        r#"{"ok":false,"description":"Bad Request: chat not found"}"#,
    );
    let e = notify::send(&sos(), &ch, &c).await.unwrap_err();
    assert!(e.to_string().contains("chat not found"), "{e}");
}

#[tokio::test]
async fn telegram_token_command_must_print_the_token_first() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::start((200, OK), Duration::ZERO).await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let c = ctx(Duration::from_secs(20));
    // A CLI that prints a warning line first: a clear error, and nothing is sent.
    let ch = telegram(
        &peer.url,
        format!(
            "echo 'Warning: config format changed'; cat {}",
            token_file.display()
        ),
    );
    let e = notify::send(&sos(), &ch, &c).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DeliveryError::Token(_)), "{msg}");
    assert!(
        msg.contains("does not look like a Telegram bot token"),
        "{msg}"
    );
    assert!(peer.seen().is_empty());
    // A failing command is an error too.
    let ch = telegram(&peer.url, "echo 'not logged in' >&2; exit 2".into());
    let e = notify::send(&sos(), &ch, &c).await.unwrap_err().to_string();
    assert!(e.contains("exit 2") && e.contains("not logged in"), "{e}");
    // A hung token command is bounded by its timeout.
    let mut ch = telegram(&peer.url, "sleep 300".into());
    if let ChannelKind::Telegram(t) = &mut ch.kind {
        t.token_command_timeout_secs = Some(0.5);
    }
    let e = notify::send(&sos(), &ch, &c).await.unwrap_err().to_string();
    assert!(e.contains("timed out"), "{e}");
}

#[tokio::test]
async fn webhook_is_signed_and_slack_and_ntfy_get_their_formats() {
    let peer = Peer::start((200, "{}"), Duration::ZERO).await;
    let env = "TALON_IT_WEBHOOK_HMAC_KEY";
    // SAFETY: the only test touching this variable; set before any reader runs.
    unsafe { std::env::set_var(env, "hmac-key-for-tests") };
    let channels = vec![
        ChannelConfig {
            name: "hook".into(),
            kind: ChannelKind::Webhook(talon::config::channel::webhook::WebhookSpec {
                url: format!("{}/hook", peer.url),
                hmac_secret_env: Some(env.into()),
            }),
        },
        ChannelConfig {
            name: "slack".into(),
            kind: ChannelKind::Slack(talon::config::channel::slack::SlackSpec {
                webhook_url: format!("{}/services/T0/B0/XYZ", peer.url),
            }),
        },
        ChannelConfig {
            name: "ntfy".into(),
            kind: ChannelKind::Ntfy(talon::config::channel::ntfy::NtfySpec {
                server: Some(peer.url.clone()),
                topic: "talon-alerts".into(),
                priority: Some(talon::config::channel::ntfy::Priority::Name("high".into())),
            }),
        },
    ];
    let results = notify::deliver(&sos(), &channels, &ctx(Duration::from_secs(20))).await;
    assert!(notify::delivered(&results));
    assert!(results.iter().all(|d| d.result.is_ok()), "{results:?}");
    let seen = peer.seen();
    assert_eq!(seen.len(), 3);

    let hook = seen.iter().find(|s| s.path == "/hook").unwrap();
    let sig = hook.headers["x-talon-signature"].to_str().unwrap();
    let hex = sig.strip_prefix("sha256=").unwrap();
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"hmac-key-for-tests");
    ring::hmac::verify(&key, &hook.body, &tag).expect("signature verifies over the raw body");
    let wrong = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"other-key");
    assert!(ring::hmac::verify(&wrong, &hook.body, &tag).is_err());
    let v: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(v["kind"], "sos");
    assert_eq!(v["host"], "box-1");
    assert_eq!(v["incident_id"], "inc-5");
    assert_eq!(v["failing"][0]["probe"], "api");
    assert_eq!(v["ack_hint"], "talon ack inc-5");
    assert!(v["since"].as_str().unwrap().ends_with('Z'));

    let slack = seen
        .iter()
        .find(|s| s.path == "/services/T0/B0/XYZ")
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&slack.body).unwrap();
    assert!(v["text"].as_str().unwrap().contains("- api: HTTP 503"));

    let ntfy = seen.iter().find(|s| s.path == "/talon-alerts").unwrap();
    assert_eq!(ntfy.headers["priority"], "4");
    assert_eq!(ntfy.headers["title"], "SOS: box-1 is sos (inc-5)");
    assert!(String::from_utf8_lossy(&ntfy.body).contains("Failing:\n- api"));

    // A resolved notice goes at the default priority.
    let mut resolved = sos();
    resolved.kind = NoticeKind::Resolved;
    resolved.duration_secs = Some(61);
    notify::send(&resolved, &channels[2], &ctx(Duration::from_secs(20)))
        .await
        .unwrap();
    let last = peer.seen().pop().unwrap();
    assert_eq!(last.headers["priority"], "3");
    assert!(String::from_utf8_lossy(&last.body).contains("Duration: 1m 1s"));
}

#[tokio::test]
async fn fan_out_is_concurrent_bounded_and_delivered_when_one_channel_succeeds() {
    let slow = Peer::start((200, "{}"), Duration::from_secs(30)).await;
    let down = Peer::start((503, "maintenance"), Duration::ZERO).await;
    let hook = |name: &str, url: &str| ChannelConfig {
        name: name.into(),
        kind: ChannelKind::Webhook(talon::config::channel::webhook::WebhookSpec {
            url: url.into(),
            hmac_secret_env: None,
        }),
    };
    let cmd = ChannelConfig {
        name: "cmd".into(),
        kind: ChannelKind::Command(talon::config::channel::command::CommandSpec {
            command: "cat >/dev/null; test \"$TALON_NOTICE_KIND\" = sos".into(),
        }),
    };
    let channels = vec![
        hook("slow", &slow.url),
        hook("down", &down.url),
        cmd,
        hook("closed", "http://127.0.0.1:9/"),
    ];
    let started = Instant::now();
    // Through the trait the runtime holds.
    let notifier: Box<dyn notify::Notifier> = Box::new(notify::Channels {
        channels,
        ctx: ctx(Duration::from_millis(1500)),
    });
    let n = sos();
    let r = notifier.deliver(&n).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded by the channel timeout"
    );
    assert_eq!(
        r.iter().map(|d| d.channel.as_str()).collect::<Vec<_>>(),
        ["slow", "down", "cmd", "closed"]
    );
    assert!(
        matches!(r[0].result, Err(DeliveryError::Timeout(_))),
        "{:?}",
        r[0]
    );
    assert!(
        matches!(&r[1].result, Err(DeliveryError::Http { status: 503, detail }) if detail == "maintenance"),
        "{:?}",
        r[1]
    );
    assert!(r[2].result.is_ok(), "{:?}", r[2]);
    assert!(r[3].result.is_err());
    assert!(notify::delivered(&r));
    assert!(!notify::delivered(&[
        r[0].clone(),
        r[1].clone(),
        r[3].clone()
    ]));
}

#[tokio::test]
async fn imessage_text_reaches_osascript_intact_as_one_argument() {
    let dir = tempfile::tempdir().unwrap();
    let args_file = dir.path().join("argv");
    write_exe(
        &dir.path().join("osascript"),
        &format!(
            "#!/bin/sh\nprintf '%s\\0' \"$@\" > {}\n",
            args_file.display()
        ),
    );
    let evil = "He said \"hi\"; \\n \\\\ back\\slash\nline two\n\"; do shell script \"touch /tmp/pwned\" --'quote'";
    notify::imessage::send_with_osascript(
        &sp(&[dir.path()]),
        "+15550001",
        evil,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let raw = std::fs::read(&args_file).unwrap();
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    let script = notify::imessage::SCRIPT;
    assert_eq!(args.len(), script.len() * 2 + 2, "{args:?}");
    assert_eq!(args[args.len() - 1], evil);
    assert_eq!(args[args.len() - 2], "+15550001");
    for (i, line) in script.iter().enumerate() {
        assert_eq!(args[2 * i], "-e");
        assert_eq!(&args[2 * i + 1], line);
    }
}

/// A real Alertmanager on loopback, stopped (group killed) on drop.
pub(crate) struct Alertmanager {
    child: std::process::Child,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn start_alertmanager() -> Alertmanager {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("am.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let bin = ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {b}"))
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Alertmanager is installed (scripts/test installs prometheus-alertmanager)");
    for _attempt in 0..5 {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let child = std::process::Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut am = Alertmanager {
            child,
            url,
            _dir: tempfile::tempdir().unwrap(),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = am.child.try_wait() {
                break; // port taken between probe and bind: try another
            }
            if let Ok(r) = http.get(format!("{}/-/ready", am.url)).send().await
                && r.status().is_success()
            {
                am._dir = dir;
                return am;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("Alertmanager did not become ready");
}

pub(crate) async fn am_alerts(url: &str) -> Vec<serde_json::Value> {
    reqwest::get(format!(
        "{url}/api/v2/alerts?filter=alertname%3D%22TalonProbeFailing%22"
    ))
    .await
    .unwrap()
    .json::<Vec<serde_json::Value>>()
    .await
    .unwrap()
}

#[tokio::test]
async fn alertmanager_fires_and_resolves_a_real_alert() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let am = start_alertmanager().await;
    let ch = ChannelConfig {
        name: "am".into(),
        kind: ChannelKind::Alertmanager(
            talon::config::channel::alertmanager::AlertmanagerSpec::single(am.url.clone()),
        ),
    };
    let c = ctx(Duration::from_secs(20));
    notify::send(&sos(), &ch, &c).await.unwrap();
    let alerts = am_alerts(&am.url).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["labels"]["alertname"], "TalonProbeFailing");
    assert_eq!(a["labels"]["host"], "box-1");
    assert_eq!(a["labels"]["probe"], "api");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["status"]["state"], "active");
    assert_eq!(a["annotations"]["incident_id"], "inc-5");

    let mut resolved = sos();
    resolved.kind = NoticeKind::Resolved;
    resolved.state = "healthy".into();
    resolved.at_ms = talon::clock::wall_ms();
    resolved.duration_secs = Some(60);
    notify::send(&resolved, &ch, &c).await.unwrap();
    // Resolved alerts leave the active list.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alerts = am_alerts(&am.url).await;
        if alerts.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still firing: {alerts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every process's command line on this host (what `ps` would show).
fn all_cmdlines() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>()
                && let Ok(c) = std::fs::read(e.path().join("cmdline"))
            {
                out.push((pid, String::from_utf8_lossy(&c).replace('\0', " ")));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talon_notify_test_end_to_end_and_the_token_never_in_a_childs_argv() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    // The Bot API answers slowly so any child still running during a send would be seen.
    let tg = Peer::start((200, OK), Duration::from_millis(700)).await;
    let hooks = Peer::start((200, "{}"), Duration::ZERO).await;
    let token_file = dir.path().join("tg-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let cmd_out = dir.path().join("cmd-out");
    let cfg = dir.path().join("talon.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"state_dir = "{state}"
[notify.tg]
kind = "telegram"
chat_id = 4242
token_command = "sleep 0.5; cat {token}"
api_base = "{tg}"
[notify.hook]
kind = "webhook"
url = "{hooks}/hook"
[notify.slack]
kind = "slack"
webhook_url = "{hooks}/slack"
[notify.ntfy]
kind = "ntfy"
server = "{hooks}"
topic = "ops"
[notify.cmd]
kind = "command"
command = "cat > {cmd_out}; sleep 0.5"
"#,
            state = dir.path().display(),
            token = token_file.display(),
            tg = tg.url,
            hooks = hooks.url,
            cmd_out = cmd_out.display(),
        ),
    )
    .unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_talon"))
        .args(["--config", cfg.to_str().unwrap(), "notify", "--test"])
        .env("HOME", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let talon_pid = child.id().unwrap();
    let mut saw_token_command = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        for (pid, cmdline) in all_cmdlines() {
            assert!(
                !cmdline.contains(TOKEN),
                "token in the argv of pid {pid}: {cmdline}"
            );
            if pid != talon_pid && cmdline.contains(token_file.to_str().unwrap()) {
                saw_token_command = true;
            }
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "talon notify --test did not finish"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        saw_token_command,
        "the scan saw talon's token_command child"
    );
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for name in ["tg", "hook", "slack", "ntfy", "cmd"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(name)),
            "{name} not ok in:\n{stdout}"
        );
    }
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
    let tg_seen = tg.seen();
    assert_eq!(tg_seen.len(), 1);
    assert_eq!(tg_seen[0].path, format!("/bot{TOKEN}/sendMessage"));
    let body: serde_json::Value = serde_json::from_slice(&tg_seen[0].body).unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("Test: Talon notification from")
    );
    assert_eq!(hooks.seen().len(), 3);
    assert!(
        std::fs::read_to_string(&cmd_out)
            .unwrap()
            .contains("talon notify --test")
    );

    // One channel only; a failing channel → exit 1 naming it; unknown channel → exit 2.
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_talon"))
            .args(["--config", cfg.to_str().unwrap(), "notify", "--test"])
            .args(args)
            .env("HOME", dir.path())
            .output()
            .unwrap()
    };
    let o = tokio::task::block_in_place(|| run(&["--channel", "hook", "--json"]));
    assert_eq!(o.status.code(), Some(0));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["channel"], "hook");
    assert_eq!(rows[0]["ok"], true);

    tg.script(
        500,
        r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#,
    );
    let o = tokio::task::block_in_place(|| run(&["--channel", "tg", "--channel", "cmd"]));
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(
        s.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("tg") && l.contains("HTTP 500")),
        "{s}"
    );
    assert!(
        s.lines().any(|l| l.starts_with("ok") && l.contains("cmd")),
        "{s}"
    );
    assert!(!s.contains(TOKEN));

    let o = tokio::task::block_in_place(|| run(&["--channel", "pager"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no channel named `pager`"));

    // A config error (a typo in a channel) → exit 2 naming the key.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[notify.x]\nkind = \"slack\"\nwebhook_ur = \"http://127.0.0.1:1/\"\n",
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_talon"))
        .args(["--config", bad.to_str().unwrap(), "notify", "--test"])
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("webhook_ur") && e.contains("bad.toml"), "{e}");
}

#[tokio::test]
async fn original_sos_keys_load_as_channels_and_a_token_file_works() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("talon.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\n[escalation]\nsos_recipient = \"+15550001\"\nsos_telegram_chat_id = \"777\"\nsos_telegram_secret_name = \"telegram-bot\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let loaded = talon::config::load(&talon::config::LoadOptions {
        config: Some(cfg),
        home: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    let c = loaded
        .config
        .unwrap_or_else(|| panic!("{:?}", loaded.diags));
    let names: Vec<&str> = c.notify.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["sos_imessage", "sos_telegram"]);
    let ChannelKind::Telegram(t) = &c.notify[1].kind else {
        panic!("{:?}", c.notify[1])
    };
    assert_eq!(
        t.token_command.as_deref(),
        Some("secrets lease 'telegram-bot'")
    );
    assert_eq!(
        t.chat_id,
        talon::config::channel::telegram::ChatId::Text("777".into())
    );

    // token_file: the first line, used against the Bot API; redacted from then on.
    let peer = Peer::start((200, OK), Duration::ZERO).await;
    let tf = dir.path().join("tok");
    std::fs::write(&tf, format!("{TOKEN}\nsecond line ignored\n")).unwrap();
    let ch = ChannelConfig {
        name: "tg".into(),
        kind: ChannelKind::Telegram(talon::config::channel::telegram::TelegramSpec {
            chat_id: talon::config::channel::telegram::ChatId::Text("@ops".into()),
            token_env: None,
            token_file: Some(tf.display().to_string()),
            token_command: None,
            token_command_timeout_secs: None,
            api_base: Some(peer.url.clone()),
        }),
    };
    assert_eq!(ch.known_secrets(), vec![TOKEN.to_string()]);
    notify::send(&sos(), &ch, &ctx(Duration::from_secs(10)))
        .await
        .unwrap();
    let seen = peer.seen();
    assert_eq!(seen[0].path, format!("/bot{TOKEN}/sendMessage"));
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["chat_id"], "@ops");
}

/// The live retry path, end to end against a real receiver: the core keeps an SOS that no
/// channel took in its persisted state and retries it on its own schedule; a restarted core (its
/// state read back from JSON, as the store saves it) sends the same notification again when it is
/// due, and once a channel has taken it, never again.
#[tokio::test]
async fn undelivered_notice_is_persisted_and_delivered_exactly_once_when_a_channel_is_back() {
    use talon::core::{
        Action, ChannelResult, Core, CoreConfig, Event, Notification, NotifyKind, PersistedState,
        ProbeResult, ProbeRule, Status,
    };

    const T: i64 = 1_700_000_000_000;
    const S: i64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("core_state.json");
    let port = free_port(); // nothing listens here yet
    let ch = vec![ChannelConfig {
        name: "hook".into(),
        kind: ChannelKind::Webhook(talon::config::channel::webhook::WebhookSpec {
            url: format!("http://127.0.0.1:{port}/hook"),
            hmac_secret_env: None,
        }),
    }];
    let c = ctx(Duration::from_secs(5));
    // A critical probe with no heal and no agent: critical at once, and with a zero threshold the
    // SOS goes out in the same step.
    let cfg = CoreConfig {
        critical_threshold: 0,
        channels: vec!["hook".into()],
        probes: [(
            "api".to_string(),
            ProbeRule {
                critical: true,
                fail_after: 1,
                recover_after: 1,
                depends_on: Vec::new(),
                witness: None,
                heal: None,
            },
        )]
        .into_iter()
        .collect(),
        ..CoreConfig::default()
    };
    let notifications = |a: &[Action]| -> Vec<Notification> {
        a.iter()
            .filter_map(|x| match x {
                Action::Notify(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    };
    // What the runtime does with an Action::Notify: deliver on every channel, answer with the
    // per-channel results.
    let send = |n: Notification| {
        let ch = ch.clone();
        let notice = Notice {
            incident_id: Some(n.incident.to_string()),
            ..sos()
        };
        let c = &c;
        async move {
            notify::deliver(&notice, &ch, c)
                .await
                .into_iter()
                .map(|d| ChannelResult {
                    channel: d.channel.clone(),
                    delivered: d.result.is_ok(),
                    detail: d.result.err().map(|e| e.to_string()).unwrap_or_default(),
                })
                .collect::<Vec<_>>()
        }
    };

    let mut core = Core::new(cfg.clone());
    let a = core.step(Event::ProbeResults {
        at: T,
        results: vec![ProbeResult {
            name: "api".into(),
            kind: "script".into(),
            passed: false,
            status: Status::Fail,
            output: "down".into(),
            detail: String::new(),
            duration_ms: 1,
            started_at: T,
        }],
    });
    let sent = notifications(&a);
    assert_eq!(sent.len(), 1, "{a:?}");
    let (sos_id, incident) = (sent[0].id, sent[0].incident);
    assert_eq!(sent[0].kind, NotifyKind::Sos);
    let channels = send(sent[0].clone()).await;
    assert!(
        !channels[0].delivered && channels[0].channel == "hook",
        "nothing listens: not delivered: {channels:?}"
    );
    core.step(Event::NotifyResult {
        at: T + S,
        id: sos_id,
        channels,
    });
    let pending = &core.persisted().pending;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].notification.attempt, 1);
    assert_eq!(
        pending[0].next_attempt_at,
        T + 31 * S,
        "first retry after 30 s"
    );

    // Persisted as JSON, read back as a restarted daemon would.
    std::fs::write(&saved, serde_json::to_vec(core.persisted()).unwrap()).unwrap();
    let reloaded: PersistedState = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(&reloaded, core.persisted());
    let mut core = Core::restore(cfg, reloaded);
    assert!(
        notifications(&core.step(Event::Tick { at: T + 30 * S })).is_empty(),
        "not before its retry is due"
    );

    // The receiver comes up on that port; the retry delivers once and the notice is done.
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let peer = Peer::serve(l, (200, "ok"), Duration::ZERO);
    let retry = notifications(&core.step(Event::Tick { at: T + 31 * S }));
    assert_eq!(retry.len(), 1);
    assert_eq!(
        (retry[0].id, retry[0].attempt),
        (sos_id, 1),
        "the same SOS, retried"
    );
    let channels = send(retry[0].clone()).await;
    assert!(channels[0].delivered, "{channels:?}");
    core.step(Event::NotifyResult {
        at: T + 32 * S,
        id: sos_id,
        channels,
    });
    assert!(core.persisted().pending.is_empty());
    assert!(core.incident().unwrap().paged_at.is_some());
    // An hour later (reminders are 4 h apart) nothing is sent again.
    assert!(notifications(&core.step(Event::Tick { at: T + 3600 * S })).is_empty());
    let seen = peer.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/hook");
    let v: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(v["incident_id"], incident.to_string());
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_bot_token_is_never_logged_even_at_trace_level() {
    let buf = LogBuf::default();
    let b = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || b.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("tok");
    std::fs::write(&tf, format!("{TOKEN}\n")).unwrap();
    let peer = Peer::start((200, OK), Duration::ZERO).await;
    peer.script(
        429,
        r#"{"ok":false,"error_code":429,"parameters":{"retry_after":1}}"#,
    );
    peer.script(500, r#"{"ok":false,"description":"boom"}"#);
    let ch = telegram(&peer.url, format!("cat {}", tf.display()));
    let r = notify::deliver(&sos(), &[ch], &ctx(Duration::from_secs(20))).await;
    assert!(r[0].result.is_err());
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retry_after=1"), "the capture works:\n{logs}");
    assert!(logs.contains("notice not delivered"), "{logs}");
    assert!(!logs.contains(TOKEN), "token in the log:\n{logs}");
    assert!(
        !logs.contains("AAF-test_token"),
        "part of the token in the log:\n{logs}"
    );
}
