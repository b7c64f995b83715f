//! `logfile` probe: follow a log file and count the lines matching `pattern` within the last
//! `window_secs` seconds (or the last `within_lines` lines).
//!
//! Each run reads only what was appended since the last one: the file stays open between runs
//! with its offset, device and inode. A rename (logrotate's default) is noticed by the inode
//! changing: the rest of the old file is read through the still-open descriptor, then the new
//! file from its start. A truncation (`copytruncate`, `> file`) is noticed by the size dropping
//! below the offset: reading restarts at 0. The first run reads at most the last
//! [`FIRST_READ`] bytes; in window mode those lines count as written at the file's mtime.
//!
//! The followers live for the process (keyed by path, pattern and window), so a config reload
//! that rebuilds the probe engine does not re-read anything; one unused for a day is dropped.

use super::ProbeCtx;
use crate::clock;
use crate::config::probe::logfile::LogfileSpec;
use crate::core::outcome::Outcome;
use crate::format::duration;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// Most bytes read from the end of a file the first time it is seen.
pub const FIRST_READ: u64 = 1024 * 1024;
/// Most bytes read in one run (the rest waits for the next run).
const MAX_READ_PER_RUN: u64 = 64 * 1024 * 1024;
/// A line longer than this is cut (and matched as far as it was kept).
const MAX_LINE: usize = 64 * 1024;
/// Matching lines kept for the output and the detail.
const KEPT_LINES: usize = 10;
/// Most match times remembered in window mode (a count above it is reported as at least it).
const MAX_TIMES: usize = 100_000;

type Key = (String, String, Option<i64>, Option<i64>);

/// A follower no run asked for in this long is dropped (its probe was removed or changed by a
/// reload), closing its file.
const IDLE_DROP: Duration = Duration::from_secs(24 * 3600);

/// A follower and when a run last asked for it.
type Entry = (Arc<Mutex<Follower>>, clock::Instant);

static FOLLOWERS: LazyLock<Mutex<HashMap<Key, Entry>>> = LazyLock::new(Default::default);

/// What is known about one followed file.
#[derive(Default)]
struct Follower {
    file: Option<File>,
    dev: u64,
    ino: u64,
    /// Bytes of the current file consumed (up to the end of `partial`).
    offset: u64,
    /// The unfinished last line.
    partial: Vec<u8>,
    /// Window mode: when each counted match was seen (Unix ms), oldest first.
    times: VecDeque<i64>,
    /// Lines mode: whether each of the last `within_lines` lines matched.
    flags: VecDeque<bool>,
    /// The newest matching lines.
    recent: VecDeque<String>,
    /// The next complete line is the tail of a line cut by the first read's start.
    skip_line: bool,
    /// Rotations and truncations noticed in this run, for the output.
    events: Vec<&'static str>,
}

impl Follower {
    fn line(&mut self, line: &[u8], re: &regex::Regex, spec: &LogfileSpec, at: i64) {
        if std::mem::take(&mut self.skip_line) {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        let hit = re.is_match(text);
        if let Some(n) = spec.within_lines {
            self.flags.push_back(hit);
            while self.flags.len() > n as usize {
                self.flags.pop_front();
            }
        } else if hit {
            self.times.push_back(at);
            if self.times.len() > MAX_TIMES {
                self.times.pop_front();
            }
        }
        if hit {
            self.recent.push_back(text.to_string());
            if self.recent.len() > KEPT_LINES {
                self.recent.pop_front();
            }
        }
    }

    /// Read what the open file has past `offset` (up to `budget` bytes), line by line.
    fn drain(
        &mut self,
        re: &regex::Regex,
        spec: &LogfileSpec,
        at: i64,
        budget: &mut u64,
    ) -> std::io::Result<()> {
        let Some(mut f) = self.file.take() else {
            return Ok(());
        };
        let r = (|| {
            f.seek(SeekFrom::Start(self.offset))?;
            let mut buf = vec![0u8; 64 * 1024];
            while *budget > 0 {
                let want = buf.len().min(*budget as usize);
                let n = f.read(&mut buf[..want])?;
                if n == 0 {
                    break;
                }
                *budget -= n as u64;
                self.offset += n as u64;
                let mut rest = &buf[..n];
                while let Some(i) = rest.iter().position(|&b| b == b'\n') {
                    let mut line = std::mem::take(&mut self.partial);
                    line.extend_from_slice(&rest[..i]);
                    self.line(&line, re, spec, at);
                    rest = &rest[i + 1..];
                }
                self.partial.extend_from_slice(rest);
                if self.partial.len() > MAX_LINE {
                    let line = std::mem::take(&mut self.partial);
                    self.line(&line[..MAX_LINE], re, spec, at);
                }
            }
            Ok(())
        })();
        self.file = Some(f);
        r
    }

    /// Open `path` as the file followed from now on, at `offset`.
    fn follow(&mut self, f: File, meta: &std::fs::Metadata, offset: u64) {
        self.file = Some(f);
        self.dev = meta.dev();
        self.ino = meta.ino();
        self.offset = offset;
        self.partial.clear();
        self.skip_line = false;
    }
}

fn expand(path: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    crate::config::expand_path(path, home.as_deref(), None)
}

/// Read what was appended (following rotation), then judge the count.
pub async fn check(spec: &LogfileSpec, _ctx: &ProbeCtx) -> Outcome {
    let re = match regex::Regex::new(&spec.pattern) {
        Ok(r) => r,
        Err(e) => return Outcome::error(format!("invalid pattern: {e}")),
    };
    let key = (
        spec.path.clone(),
        spec.pattern.clone(),
        spec.window_secs,
        spec.within_lines,
    );
    let follower = {
        let mut all = match FOLLOWERS.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let now = clock::now();
        all.retain(|_, (_, used)| now.duration_since(*used) < IDLE_DROP);
        let entry = all.entry(key).or_insert_with(|| (Default::default(), now));
        entry.1 = now;
        entry.0.clone()
    };
    let spec = spec.clone();
    match tokio::task::spawn_blocking(move || {
        let mut f = match follower.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        run(&mut f, &spec, &re, clock::wall_ms())
    })
    .await
    {
        Ok(o) => o,
        Err(e) => Outcome::error(format!("internal error: the log reader ended: {e}")),
    }
}

fn run(f: &mut Follower, spec: &LogfileSpec, re: &regex::Regex, now: i64) -> Outcome {
    let path = expand(&spec.path);
    let shown = path.display().to_string();
    f.events.clear();
    let mut budget = MAX_READ_PER_RUN;
    let mut missing = None;
    match std::fs::metadata(&path) {
        Err(e) => {
            // Renamed away and not re-created yet: finish the old file.
            if let Err(e) = f.drain(re, spec, now, &mut budget) {
                return Outcome::fail(format!("{shown}: reading failed: {e}"));
            }
            if f.file.is_none() {
                return Outcome::fail(format!("{shown}: {}", reason(&e)));
            }
            missing = Some(reason(&e));
        }
        Ok(meta) if f.file.is_none() => {
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) => return Outcome::fail(format!("{shown}: {}", reason(&e))),
            };
            let start = meta.len().saturating_sub(FIRST_READ);
            f.follow(file, &meta, start);
            // Starting mid-file, the first line read is a cut one: not counted.
            f.skip_line = start > 0;
            // Lines already there count as written at the file's mtime.
            let at = meta.mtime() * 1000;
            if let Err(e) = f.drain(re, spec, at, &mut budget) {
                return Outcome::fail(format!("{shown}: reading failed: {e}"));
            }
        }
        Ok(meta) => {
            if meta.dev() != f.dev || meta.ino() != f.ino {
                if let Err(e) = f.drain(re, spec, now, &mut budget) {
                    return Outcome::fail(format!("{shown}: reading the rotated file failed: {e}"));
                }
                let file = match File::open(&path) {
                    Ok(file) => file,
                    Err(e) => return Outcome::fail(format!("{shown}: {}", reason(&e))),
                };
                f.follow(file, &meta, 0);
                f.events.push("rotated");
            } else if meta.len() < f.offset {
                f.offset = 0;
                f.partial.clear();
                f.events.push("truncated");
            }
            if let Err(e) = f.drain(re, spec, now, &mut budget) {
                return Outcome::fail(format!("{shown}: reading failed: {e}"));
            }
        }
    }
    judge(f, spec, now, &shown, missing)
}

fn judge(
    f: &mut Follower,
    spec: &LogfileSpec,
    now: i64,
    shown: &str,
    missing: Option<String>,
) -> Outcome {
    let (count, scope) = match (spec.window_secs, spec.within_lines) {
        (_, Some(n)) => (
            f.flags.iter().filter(|h| **h).count(),
            format!("the last {n} lines"),
        ),
        (w, None) => {
            let w = w.unwrap_or(0);
            let since = now - w * 1000;
            while f.times.front().is_some_and(|t| *t < since) {
                f.times.pop_front();
            }
            (
                f.times.len(),
                format!("the last {}", duration(Duration::from_secs(w as u64))),
            )
        }
    };
    let mut line = format!(
        "{count} line{} matching /{}/ in {scope} of {shown}",
        if count == 1 { "" } else { "s" },
        spec.pattern
    );
    if !f.events.is_empty() {
        line.push_str(&format!(
            " ({} since the last run)",
            f.events.join(", then ")
        ));
    }
    if let Some(m) = missing {
        line.push_str(&format!(" (now {m}; the old file was read to its end)"));
    }
    if count as i64 > spec.max_matches {
        let last = f.recent.back().cloned().unwrap_or_default();
        let detail = f.recent.iter().cloned().collect::<Vec<_>>().join("\n");
        return Outcome::fail(format!(
            "{line}, more than max_matches = {}; last: {}",
            spec.max_matches,
            one_line(&last, 160)
        ))
        .with_detail(detail);
    }
    Outcome::pass(line)
}

/// At most `max` characters, with `…` when cut.
fn one_line(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s.to_string()
    }
}

fn reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}
