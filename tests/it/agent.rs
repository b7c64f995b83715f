//! Tiers 2/3 as real processes: cloud fails → local runs; a hung agent is killed with its
//! children; the transcript comes back (redacted); redaction end to end from probe output and the
//! worker log to the prompt, the agent's stdin and context file, and notifier payloads.

use super::heal::{result, sp, wait_dead};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use talon::escalate::agent::{AgentRequest, AgentTier, run_agent};
use talon::escalate::prompt::{FailingProbe, HostFacts, PromptInput, TimelineEntry, build_prompt};
use talon::notify::{self, ChannelConfig, ChannelKind, FailingLine, Notice, NoticeKind, NotifyCtx};
use talon::proc::End;
use talon::redact::Redactor;

fn request(
    state: &Path,
    cloud: Option<&str>,
    local: Option<&str>,
    timeout: Duration,
) -> AgentRequest {
    AgentRequest {
        incident_id: "inc-9".into(),
        prompt: "PROMPT: diagnose api\n".into(),
        failing: vec![result("api", "HTTP 503")],
        cloud_command: cloud.map(String::from),
        local_command: local.map(String::from),
        timeout,
        grace: Duration::from_millis(300),
        search_path: sp(&[]),
        state_dir: state.to_path_buf(),
        limits: Default::default(),
    }
}

#[tokio::test]
async fn cloud_failure_falls_back_to_local_with_prompt_on_stdin_and_in_the_context_file() {
    let dir = tempfile::tempdir().unwrap();
    let ctx_copy = dir.path().join("ctx.json");
    let local = format!(
        "cat; echo \"tier=$TALON_TIER probes=$TALON_FAILING_PROBES\"; cp \"$TALON_CONTEXT_FILE\" {}",
        ctx_copy.display()
    );
    let req = request(
        dir.path(),
        Some("echo 'model unavailable' >&2; exit 3"),
        Some(&local),
        Duration::from_secs(20),
    );
    let r = run_agent(req, &Redactor::default()).await;
    assert_eq!(r.attempts.len(), 2, "{r:?}");
    assert_eq!(r.attempts[0].tier, AgentTier::Cloud);
    assert_eq!(r.attempts[0].end, Some(End::Exited(3)));
    assert_eq!(r.attempts[0].stderr, "model unavailable\n");
    assert_eq!(r.attempts[1].tier, AgentTier::Local);
    assert_eq!(r.attempts[1].end, Some(End::Exited(0)));
    assert_eq!(
        r.attempts[1].transcript,
        "PROMPT: diagnose api\ntier=3 probes=api\n"
    );
    assert!(r.exited_ok().is_some());
    let ctx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ctx_copy).unwrap()).unwrap();
    assert_eq!(ctx["extra"]["prompt"], "PROMPT: diagnose api\n");
    assert_eq!(ctx["tier"], 3);
    assert_eq!(ctx["failing_probes"][0]["name"], "api");
}

#[tokio::test]
async fn cloud_success_stops_the_ladder_and_missing_cloud_goes_local() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("local-ran");
    let local = format!("touch {}", marker.display());
    let r = run_agent(
        request(
            dir.path(),
            Some("echo found it"),
            Some(&local),
            Duration::from_secs(20),
        ),
        &Redactor::default(),
    )
    .await;
    assert_eq!(r.attempts.len(), 1);
    assert_eq!(r.attempts[0].transcript, "found it\n");
    assert!(!marker.exists(), "local must not run after a cloud success");

    let r = run_agent(
        request(dir.path(), None, Some(&local), Duration::from_secs(20)),
        &Redactor::default(),
    )
    .await;
    assert_eq!(r.attempts.len(), 1);
    assert_eq!(r.attempts[0].tier, AgentTier::Local);
    assert!(marker.exists());

    let r = run_agent(
        request(dir.path(), None, None, Duration::from_secs(1)),
        &Redactor::default(),
    )
    .await;
    assert!(r.nothing_configured());

    // A cloud command whose program is missing is an error, and local still runs.
    let r = run_agent(
        request(
            dir.path(),
            Some("talon-no-such-agent -p"),
            Some("echo local"),
            Duration::from_secs(20),
        ),
        &Redactor::default(),
    )
    .await;
    assert_eq!(r.attempts.len(), 2);
    assert!(
        r.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("talon-no-such-agent")
    );
    assert_eq!(r.attempts[1].transcript, "local\n");
}

#[tokio::test]
async fn hung_agent_is_killed_with_its_children_and_local_runs() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let cloud = format!(
        "echo thinking; sleep 300 & echo $! > {}; sleep 300",
        pidfile.display()
    );
    let r = run_agent(
        request(
            dir.path(),
            Some(&cloud),
            Some("echo local answer"),
            Duration::from_millis(800),
        ),
        &Redactor::default(),
    )
    .await;
    assert_eq!(r.attempts[0].end, Some(End::TimedOut), "{r:?}");
    assert_eq!(
        r.attempts[0].transcript, "thinking\n",
        "partial transcript kept"
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_dead(pid).await, "agent's child {pid} survived");
    assert_eq!(r.attempts[1].transcript, "local answer\n");
}

/// A local HTTP receiver that records every request body.
async fn body_recorder() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let s = s.clone();
        async move {
            s.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            "ok"
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn a_token_in_probe_output_and_worker_log_reaches_no_prompt_agent_or_notifier() {
    const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    let dir = tempfile::tempdir().unwrap();
    let worker_log = dir.path().join("worker.err");
    std::fs::write(
        &worker_log,
        format!("boot\nusing bot {TOKEN} to connect\npanic: lost\n"),
    )
    .unwrap();
    let talon_log = dir.path().join("talon.log");
    std::fs::write(&talon_log, "{\"msg\":\"probe failed\"}\n").unwrap();
    let red = Arc::new(Redactor::new([TOKEN], &[]).unwrap());
    let failing = [FailingProbe {
        name: "bot".into(),
        kind: "http".into(),
        status: "fail".into(),
        output: format!("HTTP 401 for https://api.telegram.org/bot{TOKEN}/getMe"),
        detail: format!("HTTP/1.1 401 Unauthorized\n\n{{\"ok\":false,\"token\":\"{TOKEN}\"}}"),
        runbook: None,
        witness: None,
    }];
    let timeline = [TimelineEntry {
        at_ms: 1,
        what: "state healthy → failed".into(),
    }];
    let prompt = build_prompt(
        &PromptInput {
            incident_id: "inc-1",
            state: "investigating",
            host: HostFacts::gather(),
            timeline: &timeline,
            failing: &failing,
            heals: &[],
            talon_log: Some(&talon_log),
            worker_log: Some(&worker_log),
            log_tail_lines: 50,
            guardrails: None,
            max_bytes: 64 * 1024,
            mode: talon::config::AgentMode::Autonomous,
            offered: &[],
            logs: &[],
        },
        &red,
    );
    assert!(
        prompt.contains("using bot [REDACTED] to connect"),
        "{prompt}"
    );
    assert!(prompt.contains("panic: lost"));
    // The probe's detail is fenced and redacted like its output.
    assert!(
        prompt.contains("(detail of probe bot;") && prompt.contains("\"token\":\"[REDACTED]\""),
        "{prompt}"
    );
    assert!(!prompt.contains(TOKEN));

    // The agent sees the prompt on stdin and in its context file; capture both.
    let stdin_copy = dir.path().join("stdin");
    let ctx_copy = dir.path().join("ctx");
    let agent = format!(
        "cat > {}; cp \"$TALON_CONTEXT_FILE\" {}; echo \"I saw {TOKEN}\"",
        stdin_copy.display(),
        ctx_copy.display()
    );
    let mut req = request(dir.path(), Some(&agent), None, Duration::from_secs(20));
    req.prompt = prompt;
    req.failing = vec![result("bot", &failing[0].output)];
    let r = run_agent(req, &red).await;
    assert_eq!(r.attempts[0].end, Some(End::Exited(0)), "{r:?}");
    assert_eq!(r.attempts[0].transcript, "I saw [REDACTED]\n");

    // Notifier payloads: a webhook receiver and a command channel.
    let (url, seen) = body_recorder().await;
    let cmd_out = dir.path().join("cmd-channel");
    let channels = vec![
        ChannelConfig {
            name: "hook".into(),
            kind: ChannelKind::Webhook(talon::config::channel::webhook::WebhookSpec {
                url: format!("{url}/hook"),
                hmac_secret_env: None,
            }),
        },
        ChannelConfig {
            name: "cmd".into(),
            kind: ChannelKind::Command(talon::config::channel::command::CommandSpec {
                command: format!(
                    "cat > {o}; env | grep ^TALON_ >> {o}",
                    o = cmd_out.display()
                ),
            }),
        },
    ];
    let notice = Notice {
        kind: NoticeKind::Sos,
        host: "box".into(),
        state: "sos".into(),
        incident_id: Some("inc-1".into()),
        failing: vec![FailingLine {
            probe: "bot".into(),
            reason: failing[0].output.clone(),
        }],
        tried: vec![r.summary()],
        since_ms: Some(0),
        at_ms: 1000,
        duration_secs: None,
        ack_hint: Some("talon ack inc-1".into()),
    };
    let ctx = NotifyCtx::new(sp(&[]), red.clone()).unwrap();
    let results = notify::deliver(&notice, &channels, &ctx).await;
    assert!(results.iter().all(|d| d.result.is_ok()), "{results:?}");

    let mut everything = vec![
        std::fs::read_to_string(&stdin_copy).unwrap(),
        std::fs::read_to_string(&ctx_copy).unwrap(),
        std::fs::read_to_string(&cmd_out).unwrap(),
        serde_json::to_string(&r).unwrap(),
    ];
    everything.extend(seen.lock().unwrap().iter().cloned());
    assert_eq!(everything.len(), 5, "the webhook was called once");
    for (i, text) in everything.iter().enumerate() {
        assert!(!text.contains(TOKEN), "payload {i} leaks the token: {text}");
        assert!(
            text.contains("[REDACTED]"),
            "payload {i} should show the redaction: {text}"
        );
    }
}

/// Every file under `dir`, recursively, as lossy text (SQLite files included).
pub(crate) fn all_files_text(dir: &Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, String::from_utf8_lossy(&b).into_owned()));
            }
        }
    }
    out
}

#[test]
fn the_whole_ladder_through_the_daemon_leaks_no_secret() {
    use crate::support::write;
    const SECRET: &str = "tok-ABCDEFGHIJ";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let prompt = dir.join("prompt.txt");
    let payload = dir.join("payload.txt");
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"
state_dir = "state"
check_interval_secs = 0.3
services_file = "services.toml"
heal_script = "echo heal saw {SECRET}; exit 1"
redact = ["tok-[A-Z]{{10}}"]
[escalation]
heal_settle_secs = 0.2
heal_cooldown_secs = 600
max_heals_per_incident = 1
agent_cooldown_secs = 600
critical_threshold_secs = 0.5
[agent]
cloud_command = "exit 1"
local_command = "cat > {prompt}; echo agent saw {SECRET}"
timeout_secs = 10
[notify.cmd]
kind = "command"
command = "cat > {payload}.tmp; env | grep ^TALON_ >> {payload}.tmp; mv {payload}.tmp {payload}"
"#,
            prompt = prompt.display(),
            payload = payload.display(),
        ),
    );
    write(
        dir,
        "services.toml",
        &format!(
            "[script.api]\ncommand = \"echo 'auth failed for {SECRET}'; exit 1\"\ncritical = true\ncritical_after_consecutive_failures = 1\nrunbook = \"Check the api token.\"\n"
        ),
    );
    let mut d = crate::daemon::Daemon::start(dir, &config);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !(payload.exists() && prompt.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the ladder did not reach the agent and the SOS; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());

    let prompt_text = std::fs::read_to_string(&prompt).unwrap();
    assert!(
        prompt_text.contains("auth failed for [REDACTED]"),
        "{prompt_text}"
    );
    assert!(
        prompt_text.contains("Check the api token."),
        "runbook in the prompt"
    );
    let payload_text = std::fs::read_to_string(&payload).unwrap();
    assert!(payload_text.contains("SOS:"), "{payload_text}");
    assert!(payload_text.contains("[REDACTED]"), "{payload_text}");
    let files = all_files_text(dir);
    // The store and the log did record the failure, redacted.
    let state_dir = dir.join("state");
    assert!(
        files
            .iter()
            .any(|(p, t)| p.starts_with(&state_dir) && t.contains("auth failed for [REDACTED]")),
        "the store holds the redacted probe output: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(
        d.log().contains("auth failed for [REDACTED]"),
        "{}",
        d.log()
    );
    for (path, text) in &files {
        if path == &config || path.ends_with("services.toml") {
            continue; // the secret is written there by the test itself
        }
        assert!(
            !text.contains(SECRET),
            "{} contains the secret:\n{}",
            path.display(),
            text.lines()
                .filter(|l| l.contains(SECRET))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
