//! The fault-injection scenario suite (issue 8): the real `talon` binary against real processes
//! and servers on loopback. Each scenario asserts the outcome and records how long it took —
//! fault injected → detected → acted on → recovered — as one JSON line in the scenario report
//! (`target/scenarios/report.jsonl`, or `$TALON_SCENARIO_REPORT`). `scripts/bench` turns the
//! report into the table in BENCHMARKS.md.

#![allow(dead_code)]

mod clockstep;
mod config;
mod corrupt;
mod flapping;
mod flood;
mod fullfs;
mod hostile;
mod ladder;
mod leaks;
mod limits;
mod missing;
mod redis;
mod signals;
mod worker;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where scenario timings go: one JSON object per line, appended (nextest runs each test in its
/// own process; a line is written with one `write` on an `O_APPEND` file, so lines never mix).
pub fn report_path() -> PathBuf {
    std::env::var_os("TALON_SCENARIO_REPORT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/scenarios/report.jsonl")
        })
}

/// The clock of one scenario. `start` when the fault is injected; `mark` each phase as it is
/// observed (`detected`, `acted`, `recovered`, or any name that fits the scenario); `finish`
/// once every assertion has passed, which appends the line to the report. A scenario that fails
/// its assertions writes nothing.
pub struct Timeline {
    id: u32,
    name: &'static str,
    t0: Instant,
    phases: Vec<(String, Duration)>,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl Timeline {
    /// `id` is the scenario's number in issue 8's list (1–13).
    pub fn start(id: u32, name: &'static str) -> Timeline {
        Timeline {
            id,
            name,
            t0: Instant::now(),
            phases: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// Restart the clock (e.g. after setup, right at the fault injection).
    pub fn reset(&mut self) {
        self.t0 = Instant::now();
        self.phases.clear();
    }

    /// Record that `phase` was observed now.
    pub fn mark(&mut self, phase: &str) {
        self.phases.push((phase.to_string(), self.t0.elapsed()));
    }

    /// Record a phase whose time was measured another way (e.g. from talon's own timestamps).
    pub fn mark_at(&mut self, phase: &str, since_start: Duration) {
        self.phases.push((phase.to_string(), since_start));
    }

    /// Attach a number or string to the report line (counts of messages, pids …).
    pub fn note(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.extra.insert(key.to_string(), value.into());
    }

    pub fn elapsed(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Append the report line. Call after the scenario's assertions passed.
    pub fn finish(self) {
        let mut phases = serde_json::Map::new();
        for (k, d) in &self.phases {
            phases.insert(format!("{k}_ms"), serde_json::json!(d.as_millis() as u64));
        }
        let line = serde_json::json!({
            "id": self.id,
            "scenario": self.name,
            "phases": phases,
            "total_ms": self.t0.elapsed().as_millis() as u64,
            "extra": self.extra,
            "at_unix": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        });
        let path = report_path();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut text = line.to_string();
        text.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open scenario report");
        f.write_all(text.as_bytes()).expect("write scenario report");
    }
}

/// Poll `f` every 20 ms until it returns `Some`, or panic with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
