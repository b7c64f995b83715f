//! `talon check` end to end: the real binary, a temp config, real probes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const TALON: &str = env!("CARGO_BIN_EXE_talon");

/// A temp home with a main config and a probes file.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new(probes: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "services_file = \"services.toml\"\nstate_dir = \"state\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("services.toml"), probes).unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(TALON);
        c.arg("--config")
            .arg(self.config())
            .args(args)
            .env("HOME", self.path())
            .env("XDG_STATE_HOME", self.path().join("xdg-state"))
            .env("XDG_CONFIG_HOME", self.path().join("xdg-config"))
            .env_remove("TALON_CONFIG")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const MIXED: &str = r#"
[script.ok]
command = "echo fine"

[script.db]
command = "echo 'connection refused' >&2; exit 2"
critical = true

[script.api]
command = "echo should-not-run"
depends_on = ["db"]

[disk.root]
path = "/"
min_free_bytes = 1
"#;

#[test]
fn all_passing_exits_0_with_a_table_and_summary() {
    let h = Home::new(
        "[script.ok]\ncommand = \"echo fine\"\n[disk.root]\npath = \"/\"\nmin_free_bytes = 1\n",
    );
    let o = h.run(&["check"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATUS") && lines[0].contains("OUTPUT"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("ok ")
            && l.contains("script")
            && l.contains("pass")
            && l.ends_with("exit 0: fine")),
        "{out}"
    );
    assert!(
        lines.last().unwrap().starts_with("2 probes: 2 pass in "),
        "{out}"
    );
}

#[test]
fn a_failure_exits_1_and_json_has_the_documented_shape() {
    let h = Home::new(MIXED);
    let o = h.run(&["check", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for r in results {
        for key in [
            "name",
            "kind",
            "passed",
            "status",
            "output",
            "duration_ms",
            "started_at",
        ] {
            assert!(r.get(key).is_some(), "result lacks `{key}`: {r}");
        }
    }
    let get = |n: &str| results.iter().find(|r| r["name"] == n).unwrap().clone();
    assert_eq!(get("ok")["status"], "pass");
    assert_eq!(get("ok")["passed"], true);
    assert_eq!(get("db")["status"], "fail");
    assert_eq!(get("db")["output"], "exit 2: connection refused");
    assert_eq!(get("api")["status"], "blocked");
    assert_eq!(get("api")["passed"], false);
    assert!(
        get("api")["output"]
            .as_str()
            .unwrap()
            .contains("dependency `db` fail")
    );
    assert_eq!(get("root")["kind"], "disk");
}

#[test]
fn probe_and_kind_select_and_blocked_alone_is_not_a_failure() {
    let h = Home::new(MIXED);
    // Only the passing ones: exit 0.
    let o = h.run(&["check", "--json", "--probe", "ok", "--probe", "root"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"ok") && names.contains(&"root"));
    let o = h.run(&["check", "--json", "--kind", "disk"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(v["results"][0]["name"], "root");
}

#[test]
fn unknown_probe_or_kind_exits_2_with_a_suggestion() {
    let h = Home::new(MIXED);
    let o = h.run(&["check", "--probe", "rooot"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("no probe named `rooot` (did you mean `root`?)"),
        "{}",
        text(&o.stderr)
    );
    assert!(o.stdout.is_empty());
    let o = h.run(&["check", "--kind", "dsik"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("unknown kind `dsik` (did you mean `disk`?)"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn invalid_config_exits_2_with_positioned_diagnostics_and_probes_nothing() {
    let marker = tempfile::tempdir().unwrap();
    let ran = marker.path().join("ran");
    let h = Home::new(&format!(
        "[script.touch]\ncommand = \"touch {}\"\n\n[tcp.db]\nadress = \"127.0.0.1:1\"\n",
        ran.display()
    ));
    let o = h.run(&["check"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("services.toml:5:1"), "{err}");
    assert!(
        err.contains("unknown key `adress` (did you mean `address`?)"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    assert!(!ran.exists(), "nothing may run when the config is invalid");
}

#[test]
fn check_flag_is_an_alias() {
    let h = Home::new("[script.ok]\ncommand = \"true\"\n");
    let o = h.run(&["--check", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["results"][0]["name"], "ok");
}

#[test]
fn a_closed_stdout_is_a_quiet_exit_0() {
    // `talon check --json | head -c1`: the reader goes away before talon writes.
    let h = Home::new(MIXED);
    let mut child = h
        .cmd(&["check", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
    // And through a real shell pipeline (all passing, so talon's own status is 0 too).
    let h = Home::new(
        "[script.ok]\ncommand = \"true\"\n[disk.root]\npath = \"/\"\nmin_free_bytes = 1\n",
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{TALON}' --config '{}' check --json | head -c1 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
            h.config().display()
        ))
        .env("HOME", h.path())
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout).trim(), "0", "{}", text(&o.stderr));
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
}

#[test]
fn check_writes_no_state() {
    let h = Home::new(MIXED);
    let before = listing(h.path());
    let o = h.run(&["check"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        listing(h.path()),
        before,
        "talon check must not write anything"
    );
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            v.push(p);
        }
    }
    v.sort();
    v
}

#[test]
fn check_masks_secrets_a_probe_prints_in_the_table_verbose_detail_and_json() {
    let token = "123456789:ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let h = Home::new(&format!(
        "[script.leaky]\ncommand = \"echo 'why: quota exceeded'; echo token={token}; exit 1\"\n"
    ));
    for args in [
        &["check"][..],
        &["check", "--verbose"],
        &["check", "--json"],
    ] {
        let o = h.run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o.stderr));
        let out = text(&o.stdout);
        assert!(!out.contains(token), "{args:?} printed the token:\n{out}");
        assert!(
            out.contains("[REDACTED:telegram-bot-token]"),
            "{args:?}:\n{out}"
        );
    }
    // The line that explains the failure is still there, unmasked.
    let o = h.run(&["check", "--verbose"]);
    assert!(text(&o.stdout).contains("why: quota exceeded"));
}
