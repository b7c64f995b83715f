//! `talon config` prints the same effective config for the shipped example configs as it did
//! when the golden files under `tests/fixtures/effective/` were written (before the
//! architecture refactor). Regenerate deliberately with `TALON_BLESS=1` after a change that is
//! meant to alter the effective config.

use crate::support::{run, stderr, stdout, talon};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The effective config of `cfg`, with HOME and PATH fixed so the output is the same on every
/// machine, and the repository's own path replaced by `<repo>`.
fn effective(cfg: &Path, json: bool) -> String {
    let home = Path::new("/nonexistent-talon-home");
    let mut c = talon(home);
    c.env("PATH", "/usr/bin:/bin").current_dir(root());
    c.arg("config").arg("--config").arg(cfg);
    if json {
        c.arg("--json");
    }
    let out = run(c);
    assert!(
        out.status.success(),
        "talon config {}: {}",
        cfg.display(),
        stderr(&out)
    );
    stdout(&out).replace(root().to_str().unwrap(), "<repo>")
}

fn check(name: &str, cfg: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = if cfg.is_empty() {
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "").unwrap();
        p
    } else {
        root().join(cfg)
    };
    for json in [false, true] {
        let mut got = effective(&cfg_path, json);
        if cfg.is_empty() {
            got = got.replace(cfg_path.to_str().unwrap(), "<empty>");
        }
        let file = root()
            .join("tests/fixtures/effective")
            .join(format!("{name}.{}", if json { "json" } else { "toml" }));
        if std::env::var_os("TALON_BLESS").is_some() {
            std::fs::write(&file, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (TALON_BLESS=1 writes it)", file.display()));
        assert!(
            got == want,
            "effective config of {cfg} changed; diff {} against:\n{got}",
            file.display()
        );
    }
}

#[test]
fn demo_example_effective_config_is_unchanged() {
    check("demo", "examples/demo/config.toml");
}

#[test]
fn macos_k8s_example_effective_config_is_unchanged() {
    check("macos-colima-k8s", "examples/macos-colima-k8s/config.toml");
}

#[test]
fn shipped_default_config_effective_config_is_unchanged() {
    check("default", "config/default.toml");
}

#[test]
fn empty_file_effective_config_is_unchanged() {
    check("empty", "");
}
