//! `talon validate`, `talon config`, `talon init`: config loading through the real binary.

use crate::support::{run, stderr, stdout, talon, write};
use std::process::Stdio;

/// The probes example from the write-up that started the project, verbatim.
const SEED_SERVICES: &str = r#"[launchd.gateway]
label = "com.joel.gateway"
critical = true
timeout_secs = 5

[launchd.voice_agent]
label = "com.joel.voice-agent"
critical = true
timeout_secs = 5

[http.voice_agent]
url = "http://127.0.0.1:8081/"
critical = true
timeout_secs = 5
"#;

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
    /// A main config that points at `services.toml` beside it.
    fn config(&self, main: &str, services: &str) -> std::path::PathBuf {
        let text = format!("services_file = \"services.toml\"\n{main}");
        write(self.path(), "services.toml", services);
        write(self.path(), "config.toml", &text)
    }
    fn validate(&self, cfg: &std::path::Path, extra: &[&str]) -> std::process::Output {
        let mut c = talon(self.path());
        c.arg("validate").arg("--config").arg(cfg).args(extra);
        run(c)
    }
    /// Validate expecting failure; return the JSON errors.
    fn errors(&self, main: &str, services: &str) -> Vec<serde_json::Value> {
        let cfg = self.config(main, services);
        let out = self.validate(&cfg, &["--json", "--no-resolve"]);
        assert_eq!(out.status.code(), Some(2), "stdout: {}", stdout(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(v["ok"], false);
        v["errors"].as_array().unwrap().clone()
    }
}

/// Find the one error at `key` and check its file name, position and message.
fn expect_error(
    errors: &[serde_json::Value],
    file: &str,
    line: u64,
    column: u64,
    key: &str,
    msg: &str,
) {
    let e = errors
        .iter()
        .find(|e| e["key"] == key)
        .unwrap_or_else(|| panic!("no error for key {key}: {errors:#?}"));
    assert!(e["file"].as_str().unwrap().ends_with(file), "{e}");
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(line), Some(column)),
        "{e}"
    );
    assert!(
        e["message"].as_str().unwrap().contains(msg),
        "message {e} lacks {msg:?}"
    );
}

#[test]
fn seed_probes_example_loads_as_is() {
    let c = Case::new();
    let cfg = c.config("", SEED_SERVICES);
    let out = c.validate(&cfg, &["--no-resolve"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("probes:   3 (http 1, launchd 2)"),
        "{}",
        stdout(&out)
    );

    // With host checks on Linux, the only complaints are the launchd probes.
    if cfg!(target_os = "linux") {
        let out = c.validate(&cfg, &["--json"]);
        assert_eq!(out.status.code(), Some(2));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let errors = v["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        for e in errors {
            assert!(e["key"].as_str().unwrap().starts_with("launchd."), "{e}");
            assert!(
                e["message"].as_str().unwrap().contains("only on macOS"),
                "{e}"
            );
        }
    }
}

#[test]
fn seed_main_config_keys_are_all_accepted() {
    let c = Case::new();
    let main = r#"
check_interval_secs = 60
heal_script = "true"
heal_timeout_secs = 300

[worker]
dir = "/tmp"
command = ["sh", "-c", "sleep 1"]
external_launchd_label = "com.joel.system-bus-worker"
port = 3111
health_endpoint = "http://127.0.0.1:3111/"
sync_endpoint = "http://127.0.0.1:3111/api/inngest"
log_stdout = "/tmp/worker.log"
log_stderr = "/tmp/worker.err"
env_file = "/tmp/.env"
drain_timeout_secs = 5
health_interval_secs = 30
health_failures_before_restart = 3
restart_backoff_max_secs = 30
startup_sync_delay_secs = 5
http_timeout_secs = 5

[escalation]
agent_cooldown_secs = 600
sos_cooldown_secs = 14400
critical_threshold_secs = 900
sos_recipient = "+15555550100"
sos_telegram_chat_id = "12345"
sos_telegram_secret_name = "telegram_bot_token"

[agent]
cloud_command = "pi --model cloud"
local_command = "pi --model local"
timeout_secs = 600

[probes]
colima_timeout_secs = 30
k8s_timeout_secs = 10
service_timeout_secs = 5
critical_after_consecutive_failures = 2
consecutive_failures_before_escalate = 3

[health]
enabled = true
bind = "127.0.0.1:9999"
"#;
    let cfg = c.config(main, "");
    let out = c.validate(&cfg, &["--json", "--no-resolve"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(out.status.code(), Some(0));
    // The deprecated key is accepted with a warning that says what to use.
    let warnings = v["warnings"].as_array().unwrap();
    let w = warnings
        .iter()
        .find(|w| w["key"] == "probes.colima_timeout_secs")
        .expect("a warning for the deprecated key");
    assert!(w["message"].as_str().unwrap().contains("deprecated"));
    // Agent commands without `mode` keep today's behaviour, with a warning naming the choice.
    let m = warnings
        .iter()
        .find(|w| w["key"] == "agent")
        .expect("a warning for the missing agent.mode");
    assert!(
        m["message"].as_str().unwrap().contains("autonomous"),
        "{m:#}"
    );
    assert_eq!(warnings.len(), 2, "{v:#}");
}

#[test]
fn malformed_toml_names_line_and_column() {
    let c = Case::new();
    let errors = c.errors("check_interval_secs = = 5\n", "");
    assert!(!errors.is_empty());
    let e = &errors[0];
    assert!(e["file"].as_str().unwrap().ends_with("config.toml"));
    assert_eq!(e["line"], 2);
    assert!(
        e["message"].as_str().unwrap().starts_with("TOML syntax"),
        "{e}"
    );
}

#[test]
fn unknown_key_is_an_error_with_suggestion() {
    let c = Case::new();
    let errors = c.errors(
        "",
        "[http.api]\nurl = \"http://127.0.0.1:1/\"\ncritcal = true\n",
    );
    expect_error(
        &errors,
        "services.toml",
        3,
        1,
        "http.api.critcal",
        "unknown key `critcal` (did you mean `critical`?)",
    );

    let errors = c.errors("[worker]\ncommand = [\"x\"]\nhealth_intervl_secs = 3\n", "");
    expect_error(
        &errors,
        "config.toml",
        4,
        1,
        "worker.health_intervl_secs",
        "did you mean `health_interval_secs`?",
    );
}

#[test]
fn wrong_type_names_the_key() {
    let c = Case::new();
    let errors = c.errors("[escalation]\nsos_cooldown_secs = \"four hours\"\n", "");
    expect_error(
        &errors,
        "config.toml",
        3,
        21,
        "escalation.sos_cooldown_secs",
        "wrong type",
    );
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let c = Case::new();
    let main = "check_interval_secs = 0\n[worker]\ncommand = []\nport = 70000\n[health]\nbind = \"nonsense\"\n";
    let services = r#"
[http.a]
url = "not a url"
timeout_secs = 0

[script.b]
command = "true"
critical_after_consecutive_failures = 0
depends_on = ["nope"]

[script.c]
command = "true"
timeout_secs = 30
interval_secs = 10
"#;
    let errors = c.errors(main, services);
    expect_error(
        &errors,
        "config.toml",
        2,
        23,
        "check_interval_secs",
        "must be a positive number of seconds, got 0",
    );
    expect_error(
        &errors,
        "config.toml",
        4,
        11,
        "worker.command",
        "must name a program",
    );
    expect_error(
        &errors,
        "config.toml",
        5,
        8,
        "worker.port",
        "70000 is not a TCP port",
    );
    expect_error(
        &errors,
        "config.toml",
        7,
        8,
        "health.bind",
        "`nonsense` is not an address",
    );
    expect_error(
        &errors,
        "services.toml",
        3,
        7,
        "http.a.url",
        "is not a valid URL",
    );
    expect_error(
        &errors,
        "services.toml",
        4,
        16,
        "http.a.timeout_secs",
        "must be a positive number of seconds",
    );
    expect_error(
        &errors,
        "services.toml",
        8,
        39,
        "script.b.critical_after_consecutive_failures",
        "must be at least 1, got 0",
    );
    expect_error(
        &errors,
        "services.toml",
        9,
        14,
        "script.b.depends_on",
        "no probe named `nope`",
    );
    expect_error(
        &errors,
        "services.toml",
        13,
        16,
        "script.c.timeout_secs",
        "longer than the probe's interval",
    );
    assert_eq!(errors.len(), 9, "{errors:#?}");
}

#[test]
fn duplicate_names_cycles_and_remote_bind_are_rejected() {
    let c = Case::new();
    let main = "[health]\nbind = \"0.0.0.0:9999\"\n\n[script.api]\ncommand = \"true\"\n";
    let services = r#"
[script.api]
command = "true"

[http.x2]
url = "http://127.0.0.1:1/"
depends_on = ["api"]

[script.x]
command = "true"
depends_on = ["y"]

[script.y]
command = "true"
depends_on = ["x"]
"#;
    let errors = c.errors(main, services);
    expect_error(
        &errors,
        "config.toml",
        3,
        8,
        "health.bind",
        "set health.allow_remote = true",
    );
    expect_error(
        &errors,
        "services.toml",
        2,
        9,
        "script.api",
        "duplicate probe name `api`: already defined as [script.api]",
    );
    let cycle = errors
        .iter()
        .find(|e| e["message"].as_str().unwrap().contains("dependency cycle"))
        .expect("cycle error");
    assert!(
        cycle["message"].as_str().unwrap().contains("x → y → x")
            || cycle["message"].as_str().unwrap().contains("y → x → y")
    );

    // The same name in two kinds is fine (the seed does it); a bare reference to it is ambiguous.
    let services = "[http.api]\nurl = \"http://127.0.0.1:1/\"\n[script.api]\ncommand = \"true\"\n[script.z]\ncommand = \"true\"\ndepends_on = [\"api\"]\n";
    let errors = c.errors("", services);
    expect_error(
        &errors,
        "services.toml",
        7,
        14,
        "script.z.depends_on",
        "`api` is ambiguous: say `http.api` or `script.api`",
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let cfg = c.config("", &services.replace("[\"api\"]", "[\"http.api\"]"));
    assert_eq!(c.validate(&cfg, &["--no-resolve"]).status.code(), Some(0));

    // allow_remote makes the non-loopback bind valid.
    let cfg = c.config(
        "[health]\nbind = \"0.0.0.0:9999\"\nallow_remote = true\n",
        "",
    );
    assert_eq!(c.validate(&cfg, &["--no-resolve"]).status.code(), Some(0));
}

#[test]
fn missing_program_is_named_with_key_and_path_and_fixed_by_path_key() {
    let c = Case::new();
    let bin = c.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let services = "[script.limactl_up]\ncommand = \"limactl list --json\"\n";
    let cfg = c.config("heal_script = \"talon-test-heal --now\"\n", services);
    let out = c.validate(&cfg, &["--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = v["errors"].as_array().unwrap();
    expect_error(
        errors,
        "config.toml",
        2,
        15,
        "heal_script",
        "program `talon-test-heal` not found on Talon's PATH (",
    );
    expect_error(
        errors,
        "services.toml",
        1,
        1,
        "script.limactl_up.command",
        "program `limactl` not found",
    );

    // Put both programs in a dir and name it in `path`: valid.
    for name in ["talon-test-heal", "limactl"] {
        let p = write(&bin, name, "#!/bin/sh\nexit 0\n");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cfg = c.config(
        &format!(
            "heal_script = \"talon-test-heal --now\"\npath = [\"{}\"]\n",
            bin.display()
        ),
        services,
    );
    let out = c.validate(&cfg, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["path"][0], bin.display().to_string());
}

#[test]
fn unreadable_inputs_get_one_line_errors() {
    let c = Case::new();
    // A config path that does not exist.
    let out = c.validate(&c.path().join("nope.toml"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("config file does not exist (create one with `talon init`"),
        "{}",
        stdout(&out)
    );

    // A directory given as the config file.
    let out = c.validate(c.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("is a directory"), "{}", stdout(&out));

    // Non-UTF-8 content: position of the first bad byte.
    let p = c.path().join("bad.toml");
    std::fs::write(&p, b"check_interval_secs = 5\nx = \"\xff\xfe\"\n").unwrap();
    let out = c.validate(&p, &["--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"][0]["line"], 2);
    assert_eq!(v["errors"][0]["message"], "file is not valid UTF-8 text");
    assert!(
        stderr(&out).is_empty(),
        "no panic or debug dump: {}",
        stderr(&out)
    );
}

#[test]
fn embedded_default_is_used_without_any_config_and_says_so() {
    let home = tempfile::tempdir().unwrap();
    let mut c = talon(home.path());
    c.arg("validate");
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("<embedded default config>"));

    let mut c = talon(home.path());
    c.arg("config").arg("--json");
    let out = run(c);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("embedded default"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["check_interval_secs"], 60.0);
    assert_eq!(v["health"]["bind"], "127.0.0.1:9999");
    // Read-only verbs create nothing.
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);
}

#[test]
fn config_shows_defaults_and_dry_run_is_an_alias() {
    let c = Case::new();
    let cfg = c.config(
        "[worker]\ncommand = [\"sh\"]\n",
        "[http.api]\nurl = \"http://127.0.0.1:1/\"\ncritical = true\n",
    );
    let mut cmd = talon(c.path());
    cmd.arg("--dry-run").arg("--config").arg(&cfg);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let v: toml::Value = toml::from_str(&text).expect("config prints valid TOML");
    assert_eq!(
        v["worker"]["health_failures_before_restart"].as_integer(),
        Some(3)
    );
    assert_eq!(v["worker"]["drain_timeout_secs"].as_float(), Some(5.0));
    let probe = &v["probe"][0];
    assert_eq!(probe["name"].as_str(), Some("api"));
    assert_eq!(probe["kind"].as_str(), Some("http"));
    assert_eq!(
        probe["critical_after_consecutive_failures"].as_integer(),
        Some(2),
        "the debounce default for critical probes"
    );
    assert_eq!(probe["timeout_secs"].as_float(), Some(5.0));
}

#[test]
fn init_writes_valid_files_and_never_overwrites() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("etc");
    let mut c = talon(home.path());
    c.arg("init").arg("--dir").arg(&dir);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cfg = dir.join("config.toml");
    assert!(cfg.exists() && dir.join("services.toml").exists());

    let mut c = talon(home.path());
    c.arg("validate").arg("--config").arg(&cfg).arg("--json");
    let out = run(c);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(
        v["services_path"],
        dir.join("services.toml").display().to_string()
    );

    // Second run refuses and leaves the file untouched.
    std::fs::write(&cfg, "# mine\n").unwrap();
    let mut c = talon(home.path());
    c.arg("init").arg("--dir").arg(&dir);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), "# mine\n");
}

#[test]
fn closed_stdout_is_a_quiet_exit() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["validate", "--json"][..],
        &["validate"][..],
        &["config"][..],
        &["config", "--json"][..],
        &["completions", "bash"][..],
    ] {
        // stdout is a pipe whose reading end is already closed: the first write fails with EPIPE.
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let mut c = talon(home.path());
        c.args(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped());
        let out =
            crate::support::wait_output(c.spawn().unwrap(), std::time::Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        // `config` says on stderr that it uses the embedded default; nothing else may appear.
        let err = stderr(&out).replace(
            "talon: no config file found; showing the embedded default config\n",
            "",
        );
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[test]
fn completions_are_printed() {
    let home = tempfile::tempdir().unwrap();
    let mut c = talon(home.path());
    c.args(["completions", "bash"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("validate"));
}

#[cfg(not(target_os = "macos"))]
#[test]
fn imessage_channel_off_macos_says_why() {
    let c = Case::new();
    let cfg = c.config(
        "[notify.phone]\nkind = \"imessage\"\nrecipient = \"+15555550100\"\n",
        "",
    );
    let out = c.validate(&cfg, &["--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = v["errors"].as_array().unwrap();
    expect_error(
        errors,
        "config.toml",
        4,
        13,
        "notify.phone.recipient",
        "iMessage channels send only on macOS",
    );
    // The same config checks fine for another host.
    assert_eq!(c.validate(&cfg, &["--no-resolve"]).status.code(), Some(0));
}

#[test]
fn redact_builtin_off_is_accepted_with_a_warning() {
    let c = Case::new();
    let cfg = c.config("redact_builtin = false\n", "");
    let out = c.validate(&cfg, &["--json", "--no-resolve"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(out.status.code(), Some(0));
    let w = v["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{v:#}");
    assert_eq!(w[0]["key"], "redact_builtin");
    assert_eq!(w[0]["line"], 2);
    assert!(
        w[0]["message"]
            .as_str()
            .unwrap()
            .contains("built-in secret patterns are off"),
        "{w:?}"
    );
    // On (the default, or said out loud): no warning.
    for main in ["", "redact_builtin = true\n"] {
        let cfg = c.config(main, "");
        let out = c.validate(&cfg, &["--json", "--no-resolve"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["warnings"], serde_json::json!([]), "{main}: {v:#}");
    }
    // Not a boolean: an error at the key.
    let errors = c.errors("redact_builtin = \"no\"\n", "");
    assert!(
        errors.iter().any(|e| e["key"] == "redact_builtin"
            || e["message"]
                .as_str()
                .unwrap_or("")
                .contains("redact_builtin")),
        "{errors:?}"
    );
}

#[test]
fn telegram_commands_and_digest_are_validated() {
    let c = Case::new();
    let main = r#"[notify.phone]
kind = "telegram"
chat_id = "@ops"
token_env = "TG_TOKEN"
commands = true
command_chat_ids = [42, "@friend"]

[digest]
at = "8 am"
channels = ["phone", "pager"]

[script.api]
command = "true"
"#;
    let errors = c.errors(main, "");
    let keys: Vec<&str> = errors.iter().filter_map(|e| e["key"].as_str()).collect();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(keys.iter().any(|k| k.ends_with("commands")), "{errors:#?}");
    for (key, msg) in [
        ("commands", "numeric chat ids"),
        ("command_chat_ids", "numeric chat id"),
        ("digest.at", "`8 am` is not a local time of day"),
        ("digest.channels", "no channel `[notify.pager]`"),
    ] {
        let e = errors
            .iter()
            .find(|e| e["key"].as_str().is_some_and(|k| k.ends_with(key)))
            .unwrap_or_else(|| panic!("no error for {key}: {errors:#?}"));
        assert!(e["message"].as_str().unwrap().contains(msg), "{e}");
        assert!(e["line"].as_u64().unwrap() > 1, "{e}");
    }
    // A typo is rejected like every other key.
    let errors = c.errors(
        "[notify.phone]\nkind = \"telegram\"\nchat_id = 1\ntoken_env = \"T\"\ncomands = true\n",
        "",
    );
    assert!(
        errors
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("comands")),
        "{errors:#?}"
    );
}

/// The original Talon's own default config (tests/fixtures/original/config.toml), as its users
/// have it: worker endpoints are paths on `port`, an external launchd label, an env file and
/// logs under `~`.
const ORIGINAL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/original/config.toml"
);

#[test]
fn the_original_config_validates_as_is_and_config_shows_resolved_endpoints() {
    let home = tempfile::tempdir().unwrap();
    let mut c = talon(home.path());
    c.args(["validate", "--json", "--no-resolve", "--config", ORIGINAL]);
    let out = run(c);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(out.status.code(), Some(0));

    // On this Linux host, the only errors are what cannot exist here: its programs (bun, pi, its
    // heal script, its secrets tool) and the macOS-only iMessage channel.
    if cfg!(target_os = "linux") {
        let mut c = talon(home.path());
        c.env("PATH", "/usr/bin:/bin")
            .args(["validate", "--json", "--config", ORIGINAL]);
        let out = run(c);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        for e in v["errors"].as_array().unwrap() {
            let m = e["message"].as_str().unwrap();
            assert!(
                m.contains("not found on Talon's PATH") || m.contains("only on macOS"),
                "an error that could be fixed on this host: {e}"
            );
            assert!(!e["key"].as_str().unwrap().contains("endpoint"), "{e}");
        }
    }

    let mut c = talon(home.path());
    c.args(["config", "--json", "--config", ORIGINAL]);
    let out = run(c);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let w = &v["worker"];
    assert_eq!(w["health_endpoint"], "http://127.0.0.1:3111/api/inngest");
    assert_eq!(w["sync_endpoint"], "http://127.0.0.1:3111/api/inngest");
    assert_eq!(w["external_launchd_label"], "com.joel.system-bus-worker");
    let h = home.path().display().to_string();
    assert_eq!(
        w["log_stdout"],
        format!("{h}/.local/log/system-bus-worker.log")
    );
    assert_eq!(w["env_file"], format!("{h}/.config/system-bus.env"));
    assert_eq!(w["health_start_grace_secs"], 0.0);
}

#[test]
fn a_path_endpoint_without_port_is_a_located_error_and_full_urls_still_work() {
    let c = Case::new();
    let errors = c.errors(
        "[worker]\ncommand = [\"true\"]\nhealth_endpoint = \"/health\"\nsync_endpoint = \"http://127.0.0.1:9/sync\"\n",
        "",
    );
    expect_error(
        &errors,
        "config.toml",
        4,
        19,
        "worker.health_endpoint",
        "is a path on the worker's own port, but worker.port is not set",
    );
    assert_eq!(errors.len(), 1, "a full URL is fine: {errors:#?}");

    // A path with a bad port: one error, at the port.
    let errors = c.errors(
        "[worker]\ncommand = [\"true\"]\nport = 70000\nsync_endpoint = \"/sync\"\n",
        "",
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["key"], "worker.port");

    // A negative grace is refused; zero is the default and allowed.
    let errors = c.errors(
        "[worker]\ncommand = [\"true\"]\nhealth_start_grace_secs = -1\n",
        "",
    );
    expect_error(
        &errors,
        "config.toml",
        4,
        27,
        "worker.health_start_grace_secs",
        "positive",
    );
}
