//! Security properties through the real binary: private state (dir 0700, files 0600, tightened
//! at start with a warning), a shared state dir refused, and `talon config` without secrets.

use crate::daemon::Daemon;
use crate::support::{free_port, run, stderr, stdout, talon, write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn set_mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// The probe passed (`talon status --json`, live or from the store).
fn probed(v: &serde_json::Value) -> bool {
    let p = &v["probes"][0];
    p["status"] == "pass"
}

fn config(dir: &Path) -> std::path::PathBuf {
    write(
        dir,
        "config.toml",
        &format!(
            "state_dir = \"state\"\ncheck_interval_secs = 0.5\n[health]\nbind = \"127.0.0.1:{}\"\n[script.ok]\ncommand = \"true\"\n",
            free_port()
        ),
    )
}

#[test]
fn open_state_permissions_are_tightened_at_start_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap();
    set_mode(&state, 0o755);
    // An empty file is a valid (new) SQLite database.
    std::fs::write(state.join("talon.db"), "").unwrap();
    set_mode(&state.join("talon.db"), 0o644);
    std::fs::write(state.join("api.token"), "pre-existing-token\n").unwrap();
    set_mode(&state.join("api.token"), 0o644);
    let cfg = config(dir);

    let mut d = Daemon::start(dir, &cfg);
    d.wait_status("probing", Duration::from_secs(30), probed);
    assert_eq!(mode(&state), 0o700, "state dir");
    for f in ["talon.db", "api.token", "talon.log"] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(state.join("api.token")).unwrap(),
        "pre-existing-token\n",
        "the token is kept, only its mode changes"
    );
    let log = d.log();
    for (path, old) in [
        (state.clone(), "0755"),
        (state.join("talon.db"), "0644"),
        (state.join("api.token"), "0644"),
    ] {
        let line = log
            .lines()
            .find(|l| {
                l.contains("permissions tightened")
                    && l.contains(&format!("\"{}\"", path.display()))
            })
            .unwrap_or_else(|| panic!("no warning for {}:\n{log}", path.display()));
        assert!(line.contains(old), "old mode {old} named: {line}");
        assert!(line.contains("WARN") || line.contains("warn"), "{line}");
    }
    assert!(
        !log.contains("no API token"),
        "the tightened token is used:\n{log}"
    );
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn fresh_state_is_created_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    let cfg = config(dir);
    let mut d = Daemon::start(dir, &cfg);
    d.wait_status("probing", Duration::from_secs(30), probed);
    assert_eq!(mode(&state), 0o700);
    for f in [
        "talon.db",
        "talon.db-wal",
        "talon.db-shm",
        "api.token",
        "talon.log",
    ] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    assert!(
        !d.log().contains("permissions tightened"),
        "nothing to tighten:\n{}",
        d.log()
    );
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn a_shared_sticky_state_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap();
    set_mode(&state, 0o1777);
    let cfg = write(
        dir,
        "config.toml",
        "state_dir = \"state\"\n[health]\nenabled = false\n[script.ok]\ncommand = \"true\"\n",
    );
    let mut c = talon(dir);
    c.arg("run").arg("--config").arg(&cfg).current_dir(dir);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("sticky") && err.contains(&state.display().to_string()),
        "{err}"
    );
    assert_eq!(mode(&state), 0o1777, "a shared dir is left alone");
}

#[test]
fn talon_config_never_prints_a_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bot = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    write(dir, "tg.token", &format!("{bot}\n"));
    let secrets = [
        "T0001/B0001/slackSECRETslack",
        "redisPASSWORD99",
        "Bearer-abc-SECRET-123",
        "envSECRETvalue",
        "hb-SECRET-uuid",
        "qsSECRETtoken",
        bot,
        "987654321:BBHdqTcvCH1vGWJxfSeofSAs0K5PALDxyz",
    ];
    let cfg = write(
        dir,
        "config.toml",
        &format!(
            r#"
state_dir = "state"
[worker]
command = ["sleep", "1"]
[worker.env]
PORT = "8080"
API_SECRET = "envSECRETvalue"

[heartbeat]
url = "https://hc.example/ping/hb-SECRET-uuid"

[notify.slack]
kind = "slack"
webhook_url = "https://hooks.slack.com/services/T0001/B0001/slackSECRETslack"

[notify.tg]
kind = "telegram"
chat_id = 42
token_file = "{tok}"

[notify.tg2]
kind = "telegram"
chat_id = 43
token_command = "echo 987654321:BBHdqTcvCH1vGWJxfSeofSAs0K5PALDxyz"

[notify.hook]
kind = "webhook"
url = "https://hooks.example/in?channel=ops&token=qsSECRETtoken"

[redis.cache]
url = "redis://app:redisPASSWORD99@127.0.0.1:6379/0"

[http.api]
url = "http://127.0.0.1:8080/health"
headers = {{ Authorization = "Bearer-abc-SECRET-123", Accept = "application/json" }}
"#,
            tok = dir.join("tg.token").display()
        ),
    );
    for json in [false, true] {
        let mut c = talon(dir);
        c.arg("config").arg("--config").arg(&cfg);
        if json {
            c.arg("--json");
        }
        let out = run(c);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        for s in secrets {
            assert!(!text.contains(s), "`{s}` printed by talon config:\n{text}");
        }
        // What is not secret is still shown, so the output stays useful.
        for shown in [
            "https://hooks.slack.com/[REDACTED]",
            "redis://app:[REDACTED]@127.0.0.1:6379/0",
            "channel=ops&token=[REDACTED]",
            "application/json",
            "8080",
            "https://hc.example/[REDACTED]",
        ] {
            assert!(text.contains(shown), "`{shown}` missing:\n{text}");
        }
    }
}

/// A value resolved by a `[worker.secrets]` command is redacted from what Talon hands over:
/// the worker prints it on stderr, and the agent's prompt (which carries the worker's stderr
/// tail) shows `[REDACTED]` instead.
#[test]
fn a_worker_secret_printed_by_the_worker_never_reaches_the_agent() {
    const SECRET: &str = "wsec-7f3e9b21c4";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let prompt = dir.join("prompt.txt");
    let worker_err = dir.join("worker.err");
    let cfg = write(
        dir,
        "config.toml",
        &format!(
            r#"
state_dir = "state"
check_interval_secs = 0.3
heal_script = "exit 1"
[worker]
command = ["sh", "-c", "echo \"worker key $API_SECRET\" >&2; exec sleep 60"]
log_stderr = "{err}"
[worker.secrets.API_SECRET]
command = "echo {SECRET}"
[escalation]
heal_settle_secs = 0.2
heal_cooldown_secs = 600
max_heals_per_incident = 1
agent_cooldown_secs = 600
[agent]
local_command = "cat > {prompt}"
timeout_secs = 10
[script.api]
command = "exit 1"
critical = true
critical_after_consecutive_failures = 1
"#,
            err = worker_err.display(),
            prompt = prompt.display(),
        ),
    );
    let mut d = Daemon::start(dir, &cfg);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(prompt.exists()
        && std::fs::read_to_string(&prompt).is_ok_and(|t| t.contains("Worker stderr log")))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no agent prompt; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
    assert!(
        std::fs::read_to_string(&worker_err)
            .unwrap()
            .contains(SECRET),
        "the worker did get and print its secret"
    );
    let text = std::fs::read_to_string(&prompt).unwrap();
    assert!(!text.contains(SECRET), "the worker secret leaked:\n{text}");
    assert!(text.contains("worker key [REDACTED]"), "{text}");
}
