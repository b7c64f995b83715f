//! The import graph of `src/` points one way. Rooms (the top-level modules of the library) are
//! listed here bottom to top; a room may use only rooms listed before it. This is the
//! architecture of `docs/architecture.md` as a test: an arrow that runs back up fails it, and so
//! no circle between rooms can come back. Inside a room, files must not import each other in a
//! circle either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. Keep `docs/architecture.md` in step.
const ROOMS: &[&str] = &[
    // Leaves: no imports from the crate.
    "format",
    "redact",
    "rotate",
    "clock",
    "net",
    "watch",
    "sdnotify",
    "memory",
    // What the files say, validated.
    "config",
    // Pure decisions and the subprocess runner.
    "core",
    "proc",
    "logging",
    "metrics",
    // History and the state dir's layout (the token, context files and lock are named there).
    "store",
    // Effects: probes, the ladder's executors, the worker, channels, HTTP.
    "probe",
    "escalate",
    "supervise",
    "notify",
    "server",
    "heartbeat",
    // The actor that wires them, and the verbs on top.
    "runtime",
    "cli",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The room a file under `src/` belongs to (`src/probe/http.rs` → `probe`, `src/net.rs` → `net`).
fn room_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let room = first.strip_suffix(".rs").unwrap_or(first);
    (room != "lib" && room != "main").then(|| room.to_string())
}

/// The code of a file without `#[cfg(test)]` modules (tests may reach anywhere) and comments.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_test = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        if skip_depth.is_none() && t.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        let opens = line.matches('{').count() as i32;
        let closes = line.matches('}').count() as i32;
        if pending_test && (t.starts_with("mod ") || t.starts_with("pub mod ")) {
            pending_test = false;
            if opens > closes {
                skip_depth = Some(depth);
            }
            depth += opens - closes;
            continue;
        }
        pending_test = false;
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every `crate::ROOM` a piece of code names, with `use crate::{a, b::c}` groups expanded.
fn rooms_used(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find("};").unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    used.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

#[test]
fn rooms_import_only_rooms_below_them() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let pos = |r: &str| ROOMS.iter().position(|x| *x == r);
    let mut wrong = Vec::new();
    let mut unlisted = BTreeSet::new();
    for f in &files {
        let Some(room) = room_of(f) else { continue };
        let Some(me) = pos(&room) else {
            unlisted.insert(room);
            continue;
        };
        for other in rooms_used(&code(&std::fs::read_to_string(f).unwrap())) {
            if other == room {
                continue;
            }
            match pos(&other) {
                Some(p) if p < me => {}
                Some(_) => wrong.push(format!(
                    "{} (room `{room}`) uses `crate::{other}`, which is not below it",
                    f.strip_prefix(src()).unwrap().display()
                )),
                None => {
                    unlisted.insert(other);
                }
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "rooms missing from ROOMS (add them at their floor, and to docs/architecture.md): {unlisted:?}"
    );
    assert!(
        wrong.is_empty(),
        "arrows that run back up:\n{}",
        wrong.join("\n")
    );
}

/// `super::x` and `crate::room::x` inside one room, as file → file edges; no cycle allowed.
#[test]
fn files_inside_a_room_do_not_import_each_other_in_a_circle() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    // Module path of each file: src/probe/http.rs → ["probe", "http"]; mod.rs is its folder.
    let module = |f: &Path| -> Vec<String> {
        let rel = f.strip_prefix(src()).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        parts
    };
    let by_module: BTreeMap<Vec<String>, PathBuf> =
        files.iter().map(|f| (module(f), f.clone())).collect();
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for f in &files {
        let me = module(f);
        if me.is_empty() || me == ["lib"] || me == ["main"] {
            continue;
        }
        let text = code(&std::fs::read_to_string(f).unwrap());
        // A file is its own module; `super` is its parent (for mod.rs, the folder's parent).
        let parent: Vec<String> = me[..me.len() - 1].to_vec();
        let mut targets = BTreeSet::new();
        for (prefix, base) in [("super::", parent.clone()), ("crate::", Vec::new())] {
            let mut rest = text.as_str();
            while let Some(i) = rest.find(prefix) {
                rest = &rest[i + prefix.len()..];
                let path: Vec<String> = rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                // The longest prefix of base + path that is a file of the same room.
                let mut full = base.clone();
                full.extend(path);
                for n in (1..=full.len()).rev() {
                    if let Some(t) = by_module.get(&full[..n])
                        && t != f
                        && full[0] == me[0]
                        && n > 1
                    {
                        targets.insert(t.clone());
                        break;
                    }
                }
            }
        }
        edges.insert(f.clone(), targets);
    }
    // Depth-first search for a cycle.
    fn visit(
        n: &PathBuf,
        edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        state: &mut BTreeMap<PathBuf, u8>,
        stack: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let i = stack.iter().position(|x| x == m).unwrap();
                    return Some(stack[i..].to_vec());
                }
                0 => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, &edges, &mut state, &mut Vec::new())
        {
            let names: Vec<String> = c
                .iter()
                .map(|p| p.strip_prefix(src()).unwrap().display().to_string())
                .collect();
            panic!("import circle inside a room: {}", names.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_grouped_imports_and_skips_tests() {
    let text = "use crate::{config::Config, core::Status};\nuse crate::proc::Cmd;\n\
                #[cfg(test)]\nmod tests {\n    use crate::cli::run;\n}\n";
    let used = rooms_used(&code(text));
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        ["config", "core", "proc"]
    );
}
