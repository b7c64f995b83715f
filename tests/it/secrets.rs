//! What the agent and the human see, end to end through the real binary: a failing probe's whole
//! output (its `detail`), and every kind of secret a probe, a heal or an agent prints masked by
//! the built-in patterns before it reaches the prompt, the log, the store, a notification or
//! `/status` — secrets Talon was never told about.

use crate::agent::all_files_text;
use crate::daemon::Daemon;
use crate::support::{free_port, http_get, run, stdout, talon, write};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Poll `done` every 100 ms until it holds, or fail after `limit` with the daemon's log.
fn wait_for(d: &Daemon, what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A webhook receiver on 127.0.0.1: each request body is recorded, every answer is 200.
fn body_recorder() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_ok() {
                s.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, seen)
}

/// The escalation settings that walk the ladder quickly: one failed heal, the cloud agent
/// failing, the local agent running, then the SOS.
const FAST_LADDER: &str = r#"
[escalation]
heal_settle_secs = 0.2
heal_cooldown_secs = 600
max_heals_per_incident = 1
agent_cooldown_secs = 600
critical_threshold_secs = 0.5
"#;

/// The text between the fence that opens with `label` and its end line.
fn fenced<'a>(prompt: &'a str, label: &str) -> Option<&'a str> {
    let open = prompt.find(&format!("({label}; data, not instructions) -----\n"))?;
    let rest = &prompt[open..];
    let body = &rest[rest.find('\n')? + 1..];
    Some(&body[..body.find("----- END UNTRUSTED DATA")?])
}

#[test]
fn a_failing_scripts_explaining_line_reaches_the_prompt_the_incident_and_check_verbose() {
    const WHY: &str = "ERROR: db.internal:5432: too many connections for role app";
    // Text that merely looks like a secret (a git sha, an RFC 3339 time, a UUID) stays as it is.
    const LOOKS_LIKE: &str = "deployed 3f786850e387550fdab836ed7e6dc881de23001b at 2026-11-28T02:16:00Z, request 123e4567-e89b-12d3-a456-426614174000";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let prompt = dir.join("prompt.txt");
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"
state_dir = "state"
check_interval_secs = 0.3
services_file = "services.toml"
heal_script = "exit 1"
{FAST_LADDER}
[agent]
cloud_command = "exit 1"
local_command = "cat > {prompt}.tmp; mv {prompt}.tmp {prompt}; echo looked"
timeout_secs = 10
"#,
            prompt = prompt.display(),
        ),
    );
    // The line that explains the failure is the second of four: `output` keeps only the last.
    let script = write(
        dir,
        "api-check.sh",
        &format!(
            "echo '{LOOKS_LIKE}'\necho 'connecting to db.internal:5432'\necho '{WHY}'\necho 'retrying in 5s'\necho 'giving up'\nexit 1\n"
        ),
    );
    write(
        dir,
        "services.toml",
        &format!(
            "[script.api]\ncommand = \"sh {}\"\ncritical = true\ncritical_after_consecutive_failures = 1\n",
            script.display()
        ),
    );

    // `talon check`: one line per probe, the detail under it with --verbose.
    let check = |verbose: bool| {
        let mut c = talon(dir);
        c.arg("check").arg("--config").arg(&config).current_dir(dir);
        if verbose {
            c.arg("--verbose");
        }
        let out = run(c);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        stdout(&out)
    };
    let plain = check(false);
    assert!(plain.contains("exit 1: giving up"), "{plain}");
    assert!(!plain.contains(WHY), "{plain}");
    let verbose = check(true);
    let row = verbose.find("exit 1: giving up").expect("the row");
    assert!(
        verbose[row..].contains(&format!("\n    | {WHY}\n")),
        "the detail is printed under its row:\n{verbose}"
    );

    let mut d = Daemon::start(dir, &config);
    wait_for(&d, "the agent's prompt", Duration::from_secs(90), || {
        prompt.exists()
    });
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());

    let text = std::fs::read_to_string(&prompt).unwrap();
    let output = fenced(&text, "output of probe api").expect("the output block");
    assert_eq!(output.trim(), "exit 1: giving up", "{text}");
    let detail = fenced(&text, "detail of probe api").expect("a fenced detail block");
    assert!(
        detail.contains(WHY) && detail.contains("connecting to db.internal"),
        "{text}"
    );
    assert!(
        detail.contains(LOOKS_LIKE),
        "left alone by redaction: {detail}"
    );
    assert_eq!(
        text.matches(WHY).count(),
        1,
        "the line appears only inside the fence:\n{text}"
    );

    // `talon incident 1`: the failure with its detail on the timeline, and in the JSON.
    let mut c = talon(dir);
    c.args(["incident", "1", "--config"])
        .arg(&config)
        .current_dir(dir);
    let out = run(c);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.contains("probe api fail: exit 1: giving up")
            && shown.contains(&format!("| {WHY}"))
            && shown.contains(&format!("| {LOOKS_LIKE}")),
        "{shown}"
    );
    let json = d.json(&["incident", "1"]);
    let failures = json["failures"].as_array().expect("failures");
    assert!(
        failures
            .iter()
            .any(|f| f["name"] == "api" && f["detail"].as_str().unwrap_or("").contains(WHY)),
        "{json:#}"
    );
}

/// One sample of every built-in kind, as the programs print them, and the part of each that is
/// the secret (which must never appear anywhere Talon writes).
const SECRETS: &[(&str, &str)] = &[
    (
        "bot token 110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
        "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
    ),
    ("aws key AKIAQWERTYUIOPASDFGH", "AKIAQWERTYUIOPASDFGH"),
    (
        "aws_secret_access_key = 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",
        "Zx8Kq2Lm9Np4Rs7Tv1Wy3Ab6Cd0Ef5Gh8Ij2Kl4M",
    ),
    (
        "github ghp_Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz2Xc4Vb6N",
        "ghp_Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz2Xc4Vb6N",
    ),
    (
        "gitlab glpat-Hq7Wn2Ek9Rt4Yu6Io1Pa3S",
        "glpat-Hq7Wn2Ek9Rt4Yu6Io1Pa3S",
    ),
    (
        "slack xoxb-2048135790-5829461730-Zq9Xw8Ev7Rc6Tb5Yn4Um3Ik",
        "xoxb-2048135790-5829461730-Zq9Xw8Ev7Rc6Tb5Yn4Um3Ik",
    ),
    (
        "> Authorization: Bearer 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
    ),
    (
        "> Authorization: Basic YXBwOmxldG1laW4tOTk=",
        "YXBwOmxldG1laW4tOTk=",
    ),
    ("db password=Tr0ub4dor-and-3", "Tr0ub4dor-and-3"),
    ("ldap passwd: 0pen-Sesame-42", "0pen-Sesame-42"),
    ("webhook secret=whsec-7Hj3Kl9Zx2", "whsec-7Hj3Kl9Zx2"),
    (
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oKCLZS9hzWnEoAoGCCqGSM49\nAwEHoUQDQgAEz5fgpR6kR6lLbbMGf8Mfq0cBjYaxSUhIL1pd3d2fPSjZ0nPmB3ZB\n-----END EC PRIVATE KEY-----",
        "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oKCLZS9hzWnEoAoGCCqGSM49",
    ),
    (
        "session eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ0YWxvbi10ZXN0In0.c2lnbmF0dXJlLW9mLXRoZS10ZXN0",
        "eyJzdWIiOiJ0YWxvbi10ZXN0In0",
    ),
    (
        "dial postgres://app:S3cretDbPass@db.internal:5432/app refused",
        "S3cretDbPass",
    ),
];

/// The kinds the samples must show up as.
const KINDS: &[&str] = &[
    "telegram-bot-token",
    "aws-access-key-id",
    "aws-secret-key",
    "github-token",
    "gitlab-token",
    "slack-token",
    "authorization",
    "password",
    "secret",
    "private-key",
    "jwt",
    "url-password",
];

#[test]
fn no_secret_a_probe_a_heal_or_an_agent_prints_reaches_prompt_log_store_notifications_or_status() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The programs read their secrets from this file: no secret is written in Talon's config, so
    // only the built-in patterns can catch them.
    let lines: Vec<&str> = SECRETS.iter().map(|(line, _)| *line).collect();
    let secrets_file = write(dir, "printed.txt", &(lines.join("\n") + "\n"));
    let cat = format!("cat {}", secrets_file.display());
    let prompt = dir.join("prompt.txt");
    let heal_ctx = dir.join("heal-context.json");
    let agent_ctx = dir.join("agent-context.json");
    let payload = dir.join("payload.txt");
    let (hook, bodies) = body_recorder();
    let port = free_port();
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"
state_dir = "state"
check_interval_secs = 0.3
services_file = "services.toml"
heal_script = "cp \"$TALON_CONTEXT_FILE\" {heal_ctx}; {cat}; exit 1"
{FAST_LADDER}
[agent]
cloud_command = "exit 1"
local_command = "cat > {prompt}.tmp; mv {prompt}.tmp {prompt}; cp \"$TALON_CONTEXT_FILE\" {agent_ctx}; {cat}"
timeout_secs = 10
[health]
enabled = true
bind = "127.0.0.1:{port}"
[notify.cmd]
kind = "command"
command = "cat > {payload}.tmp; mv {payload}.tmp {payload}"
[notify.hook]
kind = "webhook"
url = "{hook}"
"#,
            heal_ctx = heal_ctx.display(),
            agent_ctx = agent_ctx.display(),
            prompt = prompt.display(),
            payload = payload.display(),
        ),
    );
    // The probe prints every secret; its one-line output is the last line (a URL password).
    write(
        dir,
        "services.toml",
        &format!(
            "[script.api]\ncommand = \"{cat}; exit 1\"\ncritical = true\ncritical_after_consecutive_failures = 1\n"
        ),
    );

    let mut d = Daemon::start(dir, &config);
    wait_for(
        &d,
        "the heal, the agent and the SOS on both channels",
        Duration::from_secs(90),
        || {
            heal_ctx.exists()
                && prompt.exists()
                && agent_ctx.exists()
                && payload.exists()
                && !bodies.lock().unwrap().is_empty()
        },
    );
    // The agent's transcript reaches the store when the run is recorded; wait for it there.
    wait_for(
        &d,
        "the agent's run in the incident",
        Duration::from_secs(30),
        || {
            d.json(&["incident", "1"])["actions"]
                .as_array()
                .is_some_and(|a| {
                    a.iter()
                        .any(|x| x["kind"] == "agent" && !x["ended_at"].is_null())
                })
        },
    );
    let (code, status) = http_get(
        &format!("127.0.0.1:{port}"),
        "/status",
        Duration::from_secs(10),
    )
    .expect("GET /status");
    assert_eq!(code, 200, "{status}");
    assert!(
        status.contains("[REDACTED:url-password]"),
        "/status shows the probe's output: {status}"
    );
    let incident = d.json(&["incident", "1"]);
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());

    // Redaction, not absence: each kind is in the prompt as its marker, and the heal's and the
    // agent's output are in the incident redacted.
    let prompt_text = std::fs::read_to_string(&prompt).unwrap();
    for kind in KINDS {
        assert!(
            prompt_text.contains(&format!("[REDACTED:{kind}]")),
            "the prompt shows [REDACTED:{kind}]:\n{prompt_text}"
        );
    }
    let incident_text = incident.to_string();
    assert!(
        incident_text.matches("[REDACTED:private-key]").count() >= 3,
        "probe detail, heal output and agent transcript are all in the incident, redacted: {incident:#}"
    );
    let heal_ctx_text = std::fs::read_to_string(&heal_ctx).unwrap();
    assert!(heal_ctx_text.contains("[REDACTED:jwt]"), "{heal_ctx_text}");
    // Both context files carry the probe's detail (its output is only the last line).
    let agent_ctx_text = std::fs::read_to_string(&agent_ctx).unwrap();
    assert!(
        agent_ctx_text.contains("[REDACTED:jwt]"),
        "{agent_ctx_text}"
    );

    // Every place Talon wrote: the state dir (store, WAL, snapshots, log), the daemon's stderr,
    // the prompt, both context files, every notification body, /status, `talon incident`.
    let mut bodies_seen: Vec<(String, String)> = vec![
        ("GET /status".into(), status),
        ("talon incident 1 --json".into(), incident_text),
        ("the log".into(), d.log()),
    ];
    for b in bodies.lock().unwrap().iter() {
        bodies_seen.push(("a webhook body".into(), b.clone()));
    }
    for (path, text) in all_files_text(dir) {
        if path == secrets_file || path == config || path.ends_with("services.toml") {
            continue; // the test's own inputs
        }
        bodies_seen.push((path.display().to_string(), text));
    }
    assert!(
        bodies_seen
            .iter()
            .any(|(w, _)| w.ends_with("talon.db") || w.ends_with("talon.db-wal")),
        "the store was searched: {:?}",
        bodies_seen.iter().map(|b| &b.0).collect::<Vec<_>>()
    );
    for (what, text) in &bodies_seen {
        for (line, secret) in SECRETS {
            assert!(
                !text.contains(secret),
                "{what} leaks `{secret}` (printed as `{}`):\n{}",
                line.lines().next().unwrap_or(line),
                text.lines()
                    .filter(|l| l.contains(secret))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}
