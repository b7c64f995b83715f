//! `talon install`: the real binary prints or writes service files that the real tools accept.

use std::path::Path;
use std::process::{Command, Output};

fn talon(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_talon"))
        .args(args)
        .env("HOME", home)
        .env_remove("TALON_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parse a plist with Python's plistlib (a real plist parser), as JSON.
fn parse_plist(path: &Path) -> Result<serde_json::Value, String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import plistlib,sys,json; print(json.dumps(plistlib.load(open(sys.argv[1],'rb'))))",
        ])
        .arg(path)
        .output()
        .expect("python3 must be installed: scripts/test installs it");
    if !out.status.success() {
        return Err(stderr(&out));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// `systemd-analyze verify`: exit status and everything it said.
fn verify_unit(path: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(path)
        .output()
        .expect("systemd-analyze must be installed");
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

#[test]
fn systemd_unit_is_complete_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("my config.toml");
    std::fs::write(&cfg, "").unwrap();
    let bin = env!("CARGO_BIN_EXE_talon");
    let o = talon(
        &[
            "install",
            "--systemd",
            "--binary",
            bin,
            "--config",
            cfg.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let unit = stdout(&o);
    for want in [
        "Type=notify",
        "Restart=always",
        "WatchdogSec=30",
        "ExecReload=/bin/kill -HUP $MAINPID",
        &format!("ExecStart={bin} run --config \"{}\"", cfg.display()),
        "[Install]",
    ] {
        assert!(unit.contains(want), "missing {want:?} in\n{unit}");
    }
    let file = dir.path().join("talon.service");
    std::fs::write(&file, &unit).unwrap();
    let (ok, said) = verify_unit(&file);
    assert!(ok && said.trim().is_empty(), "systemd-analyze: {said}");

    // The check can fail: a broken unit is reported.
    std::fs::write(&file, unit.replace("Type=notify", "Type=notifyy")).unwrap();
    let (_, said) = verify_unit(&file);
    assert!(
        said.contains("notifyy"),
        "systemd-analyze accepted a bad unit: {said}"
    );
}

#[test]
fn launchd_plist_parses_with_the_right_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("a & <b>.toml");
    std::fs::write(&cfg, "").unwrap();
    let o = talon(
        &[
            "install",
            "--launchd",
            "--binary",
            "/opt/talon/bin/talon",
            "--config",
            cfg.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/opt/talon/bin/talon does not exist"),
        "{}",
        stderr(&o)
    );
    let file = dir.path().join("talon.plist");
    std::fs::write(&file, stdout(&o)).unwrap();
    let v = parse_plist(&file).unwrap();
    assert_eq!(v["Label"], "com.talon.watchdog");
    assert_eq!(
        v["ProgramArguments"],
        serde_json::json!([
            "/opt/talon/bin/talon",
            "run",
            "--config",
            cfg.to_str().unwrap()
        ])
    );
    assert_eq!(v["KeepAlive"], true);
    assert_eq!(v["RunAtLoad"], true);
    assert!(
        v["EnvironmentVariables"]["PATH"]
            .as_str()
            .unwrap()
            .contains("/usr/bin")
    );
    assert!(v["StandardOutPath"].as_str().unwrap().ends_with(".log"));
    assert!(v["StandardErrorPath"].as_str().unwrap().ends_with(".log"));

    // The parser does reject bad XML.
    std::fs::write(&file, stdout(&o).replace("</dict>\n</plist>", "</plist>")).unwrap();
    assert!(parse_plist(&file).is_err());
}

#[test]
fn committed_examples_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let v = parse_plist(&root.join("deploy/launchd/com.talon.watchdog.plist")).unwrap();
    assert_eq!(v["Label"], "com.talon.watchdog");
    assert_eq!(v["KeepAlive"], true);
    let unit = std::fs::read_to_string(root.join("deploy/systemd/talon.service")).unwrap();
    for want in [
        "Type=notify",
        "Restart=always",
        "WatchdogSec=",
        "ExecStart=/usr/local/bin/talon run --config",
    ] {
        assert!(
            unit.contains(want),
            "deploy/systemd/talon.service lacks {want}"
        );
    }
}

#[test]
fn write_puts_the_file_in_place_and_never_overwrites_silently() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("units/talon.service");
    let args = [
        "install",
        "--systemd",
        "--write",
        "--path",
        dest.to_str().unwrap(),
        "--config",
        "/etc/talon/config.toml",
    ];
    let o = talon(&args, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "--write prints nothing on stdout");
    assert!(stderr(&o).contains("systemctl"), "{}", stderr(&o));
    let first = std::fs::read_to_string(&dest).unwrap();
    assert!(first.contains("--config /etc/talon/config.toml"));

    std::fs::write(&dest, "# edited by hand\n").unwrap();
    let o = talon(&args, dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&dest).unwrap(),
        "# edited by hand\n"
    );

    let mut forced = args.to_vec();
    forced.push("--force");
    let o = talon(&forced, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), first);
    let leftovers: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temp file left behind");
}

#[test]
fn usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = talon(&["install"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--systemd"), "{}", stderr(&o));
    let o = talon(&["install", "--systemd", "--launchd"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    let o = talon(&["install", "--systemd", "--path", "/tmp/x"], dir.path());
    assert_eq!(o.status.code(), Some(2), "--path needs --write");
    // Closed stdout: quiet success, no panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_talon"))
        .args(["install", "--launchd", "--config", "/x.toml"])
        .env("HOME", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}
