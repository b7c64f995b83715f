//! `push` probe: a dead-man check. The job reports to Talon — `POST /ping/NAME` when it
//! succeeded, `/ping/NAME/start` when it starts, `/ping/NAME/fail` (with its output as the body)
//! when it failed — and this check judges the newest reports against the deadline: the period
//! (or the next time of the cron schedule) after the last success, plus the grace. Before the
//! first ping the deadline counts from when Talon started watching the probe.
//!
//! The reports live in [`Pushes`], shared by the HTTP server (which records them, see
//! `crate::runtime`) and the engine (which reads them). Each probe's record is persisted in the
//! store's `kv` table under `push.<name>`, so a restart neither resets a deadline nor forgets a
//! failure.
//!
//! Each probe has its own token, `HMAC-SHA256(api token, "talon push " + name)` ([`token`]): a
//! job's URL can ping its own check and nothing else, and does not reveal the API token.

use super::ProbeCtx;
use crate::config::probe::push::{Due, PushSpec};
use crate::core::outcome::Outcome;
use crate::format;
use crate::store::Batch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `kv` key prefix of push records.
pub const KV_PREFIX: &str = "push.";
/// Most bytes of a failure report kept (its end: the last lines of a job's output say why).
pub const FAIL_BODY_KEEP: usize = 4096;
/// Largest ping body the server accepts (bigger ones are refused with 413).
pub const MAX_PING_BODY: usize = 1024 * 1024;

/// What a ping reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushEvent {
    /// The job finished and succeeded (`/ping/NAME`).
    Success,
    /// The job started (`/ping/NAME/start`): its duration is measured to the next report.
    Start,
    /// The job finished and failed (`/ping/NAME/fail`, the body is its output).
    Fail,
}

impl PushEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            PushEvent::Success => "ping",
            PushEvent::Start => "start",
            PushEvent::Fail => "fail",
        }
    }
}

/// What Talon knows about one push probe (unix milliseconds). Persisted as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    /// When Talon started waiting for this probe (the deadline before the first ping).
    pub watching_since: i64,
    #[serde(default)]
    pub last_ping: Option<i64>,
    #[serde(default)]
    pub last_start: Option<i64>,
    #[serde(default)]
    pub last_fail: Option<i64>,
    /// The end of the newest failure report's body.
    #[serde(default)]
    pub fail_body: Option<String>,
    /// start → finish of the newest run that reported a start, in milliseconds.
    #[serde(default)]
    pub last_duration_ms: Option<i64>,
}

impl PushRecord {
    /// Apply one report received at `at`.
    pub fn apply(&mut self, event: PushEvent, body: &str, at: i64) {
        let finished = |r: &mut PushRecord| {
            let previous_end = r.last_ping.max(r.last_fail);
            r.last_duration_ms = match r.last_start {
                Some(s) if previous_end.is_none_or(|e| s >= e) && at >= s => Some(at - s),
                _ => None,
            };
        };
        match event {
            PushEvent::Start => self.last_start = Some(at),
            PushEvent::Success => {
                finished(self);
                self.last_ping = Some(at);
            }
            PushEvent::Fail => {
                finished(self);
                self.last_fail = Some(at);
                let text = String::from_utf8_lossy(body.as_bytes());
                self.fail_body = Some(format::newest_excerpt(text.trim(), FAIL_BODY_KEEP));
            }
        }
    }
}

/// Every push probe's record, shared (cloning shares the same map).
#[derive(Debug, Clone, Default)]
pub struct Pushes(Arc<Mutex<BTreeMap<String, PushRecord>>>);

impl Pushes {
    /// From the store's `kv` rows under [`KV_PREFIX`] (rows that do not parse are skipped).
    pub fn from_kv(rows: Vec<(String, String)>) -> Self {
        let map = rows
            .into_iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(KV_PREFIX)?.to_string();
                serde_json::from_str::<PushRecord>(&v)
                    .ok()
                    .map(|r| (name, r))
            })
            .collect();
        Pushes(Arc::new(Mutex::new(map)))
    }

    /// The records the store in `state_dir` holds (`talon check`, `talon status`): empty when
    /// there is no store yet.
    pub fn load(state_dir: &std::path::Path) -> Self {
        match crate::store::Store::open_existing(state_dir) {
            Ok(Some(s)) => Self::from_kv(s.kv_prefix(KV_PREFIX).unwrap_or_default()),
            _ => Self::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PushRecord>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One probe's record.
    pub fn get(&self, name: &str) -> Option<PushRecord> {
        self.lock().get(name).cloned()
    }

    /// Start watching the named probes: each one without a record gets one (its deadline counts
    /// from `now`). Returns the store writes for the new records.
    pub fn watch<'a>(&self, names: impl IntoIterator<Item = &'a str>, now: i64) -> Vec<Batch> {
        let mut map = self.lock();
        let mut out = Vec::new();
        for name in names {
            if map.contains_key(name) {
                continue;
            }
            let rec = PushRecord {
                watching_since: now,
                ..PushRecord::default()
            };
            out.push(kv_batch(name, &rec, now));
            map.insert(name.to_string(), rec);
        }
        out
    }

    /// The wall clock stepped by `delta` ms: move every record's times with it, so each
    /// deadline keeps the time it had left (a step forward fails no push probe early, a step
    /// back delays none). Returns the store writes.
    pub fn shift(&self, delta: i64, now: i64) -> Vec<Batch> {
        let mut map = self.lock();
        let mv = |t: &mut Option<i64>| {
            if let Some(t) = t {
                *t = t.saturating_add(delta);
            }
        };
        map.iter_mut()
            .map(|(name, rec)| {
                rec.watching_since = rec.watching_since.saturating_add(delta);
                mv(&mut rec.last_ping);
                mv(&mut rec.last_start);
                mv(&mut rec.last_fail);
                kv_batch(name, rec, now)
            })
            .collect()
    }

    /// Record a report; returns the store write.
    pub fn record(&self, name: &str, event: PushEvent, body: &str, now: i64) -> Batch {
        let mut map = self.lock();
        let rec = map.entry(name.to_string()).or_insert_with(|| PushRecord {
            watching_since: now,
            ..PushRecord::default()
        });
        rec.apply(event, body, now);
        kv_batch(name, rec, now)
    }
}

fn kv_batch(name: &str, rec: &PushRecord, now: i64) -> Batch {
    Batch::kv(
        now,
        format!("{KV_PREFIX}{name}"),
        serde_json::to_string(rec).ok(),
    )
}

/// The token that authenticates pings of the probe `name`: hex of the first 16 bytes of
/// `HMAC-SHA256(api_token, "talon push " + name)`.
pub fn token(api_token: &str, name: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, api_token.trim().as_bytes());
    let tag = ring::hmac::sign(&key, format!("talon push {name}").as_bytes());
    tag.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Does `given` match the probe's token? Compared in constant time.
pub fn token_matches(api_token: &str, name: &str, given: &str) -> bool {
    let want = token(api_token, name);
    let (a, b) = (given.trim().as_bytes(), want.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The check: judge the newest reports at the wall clock's now.
pub fn check(spec: &PushSpec, ctx: &ProbeCtx) -> Outcome {
    judge(
        spec,
        ctx.pushes.get(&ctx.probe).as_ref(),
        crate::clock::wall_ms(),
    )
}

fn ago(now: i64, at: i64) -> String {
    format::duration(Duration::from_millis(now.saturating_sub(at).max(0) as u64))
}

fn took(ms: Option<i64>) -> String {
    ms.map(|d| {
        format!(
            ", ran {}",
            format::duration(Duration::from_millis(d as u64))
        )
    })
    .unwrap_or_default()
}

/// The verdict for `rec` at `now` (pure; `check` reads the clock).
pub fn judge(spec: &PushSpec, rec: Option<&PushRecord>, now: i64) -> Outcome {
    let due = match spec.due() {
        Ok(d) => d,
        Err(e) => return Outcome::error(e),
    };
    let Some(rec) = rec else {
        return Outcome::fail(
            "no ping recorded: Talon has not watched this probe yet (is the daemon running?)",
        );
    };
    if let Some(f) = rec.last_fail
        && rec.last_ping.is_none_or(|p| f > p)
    {
        let body = rec.fail_body.clone().unwrap_or_default();
        let first = body
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| format!(": {}", l.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        return Outcome::fail(format!(
            "the job reported a failure at {} ({} ago{}){first}",
            format::utc(f),
            ago(now, f),
            took(rec.last_duration_ms)
        ))
        .with_detail(body);
    }
    let base = rec.last_ping.unwrap_or(rec.watching_since);
    let next = match &due {
        Due::Every(p) => Some(base + p.as_millis() as i64),
        Due::Schedule(c) => c.next_after(base),
    };
    let Some(next) = next else {
        return Outcome::error("the schedule never matches");
    };
    let grace = spec.grace().as_millis() as i64;
    let deadline = next + grace;
    let running = rec
        .last_start
        .filter(|s| rec.last_ping.max(rec.last_fail).is_none_or(|e| *s > e))
        .map(|s| format!("; started {} ago and not finished", ago(now, s)))
        .unwrap_or_default();
    let last = match rec.last_ping {
        Some(p) => format!(
            "last ping {} ({} ago{})",
            format::utc(p),
            ago(now, p),
            took(rec.last_duration_ms)
        ),
        None => format!(
            "no ping yet (watching since {})",
            format::utc(rec.watching_since)
        ),
    };
    if now > deadline {
        Outcome::fail(format!(
            "{last}; a ping was due by {} (+{} grace): {} late{running}",
            format::utc(next),
            format::duration(spec.grace()),
            ago(now, deadline)
        ))
    } else {
        Outcome::pass(format!(
            "{last}; next due by {} (+{} grace){running}",
            format::utc(next),
            format::duration(spec.grace())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::probe::push::SecsValue;

    const MIN: i64 = 60_000;

    fn every(secs: f64, grace: f64) -> PushSpec {
        PushSpec {
            period_secs: Some(SecsValue(secs)),
            schedule: None,
            grace_secs: Some(SecsValue(grace)),
        }
    }

    fn watched(at: i64) -> PushRecord {
        PushRecord {
            watching_since: at,
            ..PushRecord::default()
        }
    }

    #[test]
    fn before_the_first_ping_the_deadline_counts_from_watching() {
        let spec = every(600.0, 60.0);
        let rec = watched(0);
        let o = judge(&spec, Some(&rec), 10 * MIN);
        assert!(o.status.passed(), "{o:?}");
        assert!(o.output.contains("no ping yet"), "{}", o.output);
        let o = judge(&spec, Some(&rec), 11 * MIN + 1);
        assert!(!o.status.passed(), "{o:?}");
        assert!(o.output.contains("late"), "{}", o.output);
    }

    #[test]
    fn a_ping_moves_the_deadline_and_durations_are_measured() {
        let spec = every(600.0, 60.0);
        let mut rec = watched(0);
        rec.apply(PushEvent::Start, "", 9 * MIN);
        rec.apply(PushEvent::Success, "", 9 * MIN + 12_000);
        assert_eq!(rec.last_duration_ms, Some(12_000));
        let o = judge(&spec, Some(&rec), 20 * MIN);
        assert!(o.status.passed(), "{o:?}");
        assert!(o.output.contains("ran 12s"), "{}", o.output);
        assert!(!judge(&spec, Some(&rec), 21 * MIN).status.passed());
        // A success without a start has no duration.
        rec.apply(PushEvent::Success, "", 22 * MIN);
        assert_eq!(rec.last_duration_ms, None);
    }

    #[test]
    fn a_clock_step_keeps_the_deadline_its_remaining_time() {
        let spec = every(600.0, 60.0);
        const H: i64 = 60 * MIN;
        for step in [H, -H] {
            let pushes = Pushes::default();
            pushes.watch(["job"], 0);
            pushes.record("job", PushEvent::Success, "", 5 * MIN);
            // 8 minutes later the wall clock steps an hour.
            let batches = pushes.shift(step, 13 * MIN + step);
            assert_eq!(batches.len(), 1, "persisted");
            let rec = pushes.get("job").unwrap();
            assert_eq!(rec.last_ping, Some(5 * MIN + step));
            // Due 11 minutes after the ping in time that passed, not an hour early or late.
            assert!(judge(&spec, Some(&rec), 13 * MIN + step).status.passed());
            assert!(judge(&spec, Some(&rec), 16 * MIN + step).status.passed());
            assert!(
                !judge(&spec, Some(&rec), 16 * MIN + step + 1)
                    .status
                    .passed()
            );
        }
        // Without the shift, the same step forward fails the probe at once.
        let pushes = Pushes::default();
        pushes.record("job", PushEvent::Success, "", 5 * MIN);
        assert!(
            !judge(&spec, pushes.get("job").as_ref(), 13 * MIN + H)
                .status
                .passed()
        );
    }

    #[test]
    fn a_failure_report_fails_until_the_next_success() {
        let spec = every(3600.0, 60.0);
        let mut rec = watched(0);
        rec.apply(PushEvent::Start, "", MIN);
        rec.apply(PushEvent::Fail, "copying...\nrsync: disk full\n", 2 * MIN);
        let o = judge(&spec, Some(&rec), 3 * MIN);
        assert!(!o.status.passed());
        assert!(o.output.contains("rsync: disk full"), "{}", o.output);
        assert!(o.output.contains("ran 1m"), "{}", o.output);
        assert!(o.detail.contains("copying..."), "{}", o.detail);
        rec.apply(PushEvent::Success, "", 4 * MIN);
        assert!(judge(&spec, Some(&rec), 5 * MIN).status.passed());
    }

    #[test]
    fn fail_bodies_keep_their_end() {
        let mut rec = watched(0);
        let body = format!("{}\nTHE END", "x".repeat(20_000));
        rec.apply(PushEvent::Fail, &body, 1);
        let kept = rec.fail_body.unwrap();
        assert!(kept.len() <= FAIL_BODY_KEEP + 64, "{}", kept.len());
        assert!(kept.ends_with("THE END"));
    }

    #[test]
    fn a_started_run_is_reported() {
        let spec = every(600.0, 60.0);
        let mut rec = watched(0);
        rec.apply(PushEvent::Success, "", MIN);
        rec.apply(PushEvent::Start, "", 5 * MIN);
        let o = judge(&spec, Some(&rec), 6 * MIN);
        assert!(
            o.output.contains("started 1m ago and not finished"),
            "{}",
            o.output
        );
    }

    #[test]
    fn schedules_use_the_next_run_after_the_last_ping() {
        let spec = PushSpec {
            period_secs: None,
            schedule: Some("0 * * * *".into()),
            grace_secs: Some(SecsValue(300.0)),
        };
        let mut rec = watched(0);
        rec.apply(PushEvent::Success, "", 61 * MIN); // 01:01
        // Next run 02:00, deadline 02:05.
        assert!(judge(&spec, Some(&rec), 125 * MIN).status.passed());
        assert!(!judge(&spec, Some(&rec), 125 * MIN + 1).status.passed());
    }

    #[test]
    fn no_record_fails_and_records_round_trip_through_kv() {
        let spec = every(60.0, 0.0);
        assert!(!judge(&spec, None, 0).status.passed());
        let p = Pushes::default();
        let b = p.watch(["a", "b"], 5);
        assert_eq!(b.len(), 2);
        assert!(p.watch(["a"], 9).is_empty(), "watching twice adds nothing");
        let batch = p.record("a", PushEvent::Fail, "boom", 7);
        let (key, value) = batch.kv[0].clone();
        assert_eq!(key, "push.a");
        let q = Pushes::from_kv(vec![(key, value.unwrap()), ("push.x".into(), "{".into())]);
        let r = q.get("a").unwrap();
        assert_eq!((r.watching_since, r.last_fail), (5, Some(7)));
        assert_eq!(r.fail_body.as_deref(), Some("boom"));
        assert!(q.get("x").is_none());
    }

    #[test]
    fn tokens_are_per_probe_and_per_key() {
        let t = token("k", "backup");
        assert_eq!(t.len(), 32);
        assert_eq!(t, token("k\n", "backup"));
        assert_ne!(t, token("k", "backup2"));
        assert_ne!(t, token("k2", "backup"));
        assert!(token_matches("k", "backup", &t));
        assert!(!token_matches("k", "backup2", &t));
        assert!(!token_matches("k", "backup", &t[..31]));
    }
}
