//! One place for defaults (`src/config/defaults.rs`): the text `talon init` writes, the defaults
//! documented in `docs/config.md` and the effective config of an empty file (`talon config`)
//! agree, and the core's own defaults are the config's.

use crate::support::{run, stderr, stdout, talon};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const HOME: &str = "/nonexistent-talon-home";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `talon config --json` of a main config with `text`, HOME and PATH fixed.
fn effective(text: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, text).unwrap();
    let mut c = talon(Path::new(HOME));
    c.env("PATH", "/usr/bin:/bin").current_dir(dir.path());
    c.arg("config").arg("--config").arg(&cfg).arg("--json");
    let out = run(c);
    assert!(out.status.success(), "talon config: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("talon config --json prints JSON")
}

/// The effective config of an empty file, plus what only appears once a section exists: the
/// `[worker]` and `[heartbeat]` sections with their required keys only, and one probe
/// (`probe.KEY`) with only its kind's required key.
fn defaults() -> BTreeMap<String, Value> {
    let mut leaves = BTreeMap::new();
    flatten("", &effective(""), &mut leaves);
    let with_sections = effective(
        "[worker]\ncommand = [\"true\"]\n\n[heartbeat]\nurl = \"http://127.0.0.1:9/ping\"\n\n[script.s]\ncommand = \"true\"\n",
    );
    for section in ["worker", "heartbeat"] {
        assert_eq!(
            leaves.remove(section),
            Some(Value::Null),
            "no [{section}] by default"
        );
        flatten(section, &with_sections[section], &mut leaves);
    }
    assert_eq!(leaves.remove("probe"), Some(Value::Array(Vec::new())));
    flatten("probe", &with_sections["probe"][0], &mut leaves);
    leaves
}

/// `section.key` → value for every leaf; empty tables and lists are leaves too.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Keys of the effective config that the docs describe under another name or not at all.
fn effective_key(doc_key: &str) -> Option<&str> {
    match doc_key {
        "services_file" => Some("sources.services"),
        // Days in the file; the effective config shows the retention in seconds.
        "store.retention_days" => Some("store.retention"),
        // Compiled into `search_path` (platform defaults and the inherited PATH after it).
        "path" => None,
        // Shown under `probe_routes` (by probe name) when a probe sets them.
        "probe.policy" | "probe.severity" => None,
        k => Some(k),
    }
}

/// A documented default as the effective config would show it; `None` when the docs say there
/// is none to check (`required`, `—`).
fn documented(key: &str, text: &str, leaves: &BTreeMap<String, Value>) -> Option<Value> {
    let text = text.trim();
    let home = |s: &str| s.replace('~', HOME);
    Some(match text {
        "required" | "—" => return None,
        "none" | "Talon's cwd" => Value::Null,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "`[]`" => Value::Array(Vec::new()),
        "`{}`" => Value::Object(Default::default()),
        _ if key == "store.retention_days" => {
            Value::from(text.parse::<f64>().expect("days") * 86_400.0)
        }
        _ if key == "probe.critical_after_consecutive_failures" => {
            // "`[probes]` default (2 for critical, 3 otherwise)": the probe checked is not
            // critical, and both numbers are the `[probes]` defaults.
            let n: Vec<f64> = text
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|s| s.parse().ok())
                .collect();
            assert_eq!(n.len(), 2, "{key}: {text}");
            assert!(same(
                &Value::from(n[0]),
                &leaves["probes.critical_after_consecutive_failures"]
            ));
            assert!(same(
                &Value::from(n[1]),
                &leaves["probes.consecutive_failures_before_escalate"]
            ));
            Value::from(n[1])
        }
        _ => {
            if let Some(n) = text.strip_suffix(" MiB") {
                return Some(Value::from(n.parse::<f64>().expect("MiB") * 1048576.0));
            }
            if let Ok(n) = text.parse::<f64>() {
                return Some(Value::from(n));
            }
            let inner = text
                .strip_prefix('`')
                .and_then(|t| t.strip_suffix('`'))
                .unwrap_or_else(|| panic!("{key}: cannot read the documented default {text:?}"));
            // "`$XDG_STATE_HOME/talon` or `~/.local/state/talon`": the test runs without XDG.
            let inner = inner.rsplit(" or `").next().unwrap_or(inner);
            // A reference to another key ("`[probes].service_timeout_secs`").
            let referenced = inner.replace("[probes].", "probes.");
            if let Some(v) = leaves.get(&referenced) {
                return Some(v.clone());
            }
            let state_dir = leaves["state_dir"].as_str().unwrap().to_string();
            Value::from(home(&inner.replace("<state_dir>", &state_dir)))
        }
    })
}

/// Every `| key | default | meaning |` row of docs/config.md as (`section.key`, default text).
fn documented_rows(doc: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut prefix: Option<String> = None;
    let mut in_table = false;
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            prefix = if h.starts_with("Main config: top level") || h.starts_with("`[log]`") {
                Some(String::new())
            } else if h.starts_with("Probes: ") {
                Some("probe.".into())
            } else {
                h.strip_prefix("`[")
                    .and_then(|h| h.split_once("]`"))
                    .filter(|(s, _)| !s.contains('.'))
                    .map(|(s, _)| format!("{s}."))
            };
            in_table = false;
            continue;
        }
        if line.starts_with("| key | default |") {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let (Some(prefix), true) = (&prefix, in_table) else {
            continue;
        };
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || cells[1].starts_with("---") {
            continue;
        }
        let keys: Vec<String> = cells[1]
            .split(", ")
            .map(|k| {
                let k = k.trim_matches('`');
                match k.strip_prefix('[').and_then(|k| k.strip_suffix(']')) {
                    Some(qualified) => qualified.to_string(),
                    None => format!("{prefix}{k}"),
                }
            })
            .collect();
        let values: Vec<&str> = if keys.len() > 1 && cells[2].contains(", ") {
            cells[2].split(", ").collect()
        } else {
            vec![cells[2]; keys.len()]
        };
        assert_eq!(keys.len(), values.len(), "docs/config.md row: {line}");
        for (k, v) in keys.into_iter().zip(values) {
            rows.push((k, v.to_string()));
        }
    }
    rows
}

#[test]
fn init_text_docs_and_the_empty_config_agree() {
    let leaves = defaults();

    // docs/config.md: every documented default is the effective one …
    let doc = std::fs::read_to_string(root().join("docs/config.md")).unwrap();
    let rows = documented_rows(&doc);
    assert!(
        rows.len() > 60,
        "read only {} rows of docs/config.md",
        rows.len()
    );
    let mut documented_keys = Vec::new();
    for (key, text) in &rows {
        let Some(ekey) = effective_key(key) else {
            continue;
        };
        documented_keys.push(ekey.to_string());
        let Some(want) = documented(key, text, &leaves) else {
            continue;
        };
        let got = leaves
            .get(ekey)
            .unwrap_or_else(|| panic!("docs/config.md documents `{key}`, not in `talon config`"));
        assert!(
            same(got, &want),
            "`{key}`: docs/config.md says {text:?} ({want}), `talon config` of an empty file says {got}"
        );
    }
    // … and every key of the effective config is documented.
    for key in leaves.keys() {
        // Where the config came from, lists of what it defines, and the script probe's own
        // keys (documented per kind in docs/probes.md).
        let internal = key.starts_with("sources.")
            || [
                "search_path",
                "notify",
                "probe.name",
                "probe.kind",
                "probe.defined_at",
                "probe.command",
                "probe.env",
            ]
            .contains(&key.as_str());
        assert!(
            internal || documented_keys.contains(key),
            "`{key}` is in `talon config` but has no row in docs/config.md"
        );
    }

    // The secrets row documents a secret's own defaults inline:
    // `NAME = { command = "...", optional = false, timeout_secs = 10 }`.
    let secret =
        effective("[worker]\ncommand = [\"true\"]\n[worker.secrets.S]\ncommand = \"true\"\n");
    let secret = &secret["worker"]["secrets"]["S"];
    let row = doc
        .lines()
        .find(|l| l.starts_with("| `[worker.secrets]`"))
        .expect("a [worker.secrets] row");
    for k in ["optional", "timeout_secs"] {
        let at = row.find(&format!("{k} = ")).expect(k) + k.len() + 3;
        let text: String = row[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let want: Value = serde_json::from_str(&text).unwrap();
        assert!(
            same(&secret[k], &want),
            "secret {k}: docs {text}, config {}",
            secret[k]
        );
    }

    // `talon init`: every value its config.toml sets (the probes in it aside) is the default.
    let dir = tempfile::tempdir().unwrap();
    let mut c = talon(Path::new(HOME));
    c.arg("init").arg("--dir").arg(dir.path());
    let out = run(c);
    assert!(out.status.success(), "talon init: {}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(text.contains("the values shown are the defaults"), "{text}");
    let init: toml::Table = toml::from_str(&text).unwrap();
    let mut shown = 0;
    for (k, v) in &init {
        if talon::config::probe::KINDS.contains(&k.as_str()) || k == "services_file" {
            continue;
        }
        let mut set = BTreeMap::new();
        flatten(k, &serde_json::to_value(v).unwrap(), &mut set);
        for (key, want) in set {
            let got = leaves
                .get(&key)
                .unwrap_or_else(|| panic!("init sets unknown `{key}`"));
            assert!(
                same(got, &want),
                "`talon init` writes `{key} = {want}`, the default is {got}"
            );
            shown += 1;
        }
    }
    assert!(shown >= 10, "init shows {shown} defaults");
}

#[test]
fn the_cores_defaults_are_the_configs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "").unwrap();
    let loaded = talon::config::load(&talon::config::LoadOptions {
        config: Some(cfg),
        resolve: false,
        inherited_path: Some("/usr/bin:/bin".into()),
        home: Some(dir.path().to_path_buf()),
    });
    let c = loaded.config.expect("an empty config is valid");
    assert_eq!(
        talon::core::CoreConfig::from_config(&c),
        talon::core::CoreConfig::default()
    );
}
