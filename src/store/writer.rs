//! The store's writer thread. The event loop hands it [`Batch`]es through an unbounded channel
//! ([`StoreWriter::send`] never blocks); the thread drains whatever queued up, writes it in one
//! transaction, then rewrites the JSON snapshots. A failed write is logged and counted, and the
//! thread keeps going. When the disk is the problem (full, I/O error, read-only) the batches are
//! kept and written with the next ones, so an incident that opened while the disk was full is in
//! the history once there is space again; only raw probe results are shed beyond
//! [`MAX_HELD_RESULTS`]. Any other failure drops the batches (the next one carries the full core
//! state again).

use super::batch::{Batch, Pruned};
use super::layout::DB_FILE;
use super::{Store, StoreError};
use crate::core::Millis;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Raw probe results kept in memory while the disk refuses writes; older ones are shed beyond
/// this (records — transitions, incidents, actions, notifications — are always kept).
pub const MAX_HELD_RESULTS: usize = 50_000;

/// While writes keep failing with the same error, it is logged at most this often (with how
/// many failures were not logged in between): a full disk must not fill the log too.
pub const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// Rate limit for the "store write failed" log line.
#[derive(Default)]
struct ErrorLog {
    /// When the newest line was logged (`None` while writes work), and its error.
    last: Option<(crate::clock::Instant, String)>,
    /// Failures since then that were not logged.
    suppressed: u64,
}

impl ErrorLog {
    /// A write failed with `e`: log it when it is the first failure since writes last worked,
    /// or when [`ERROR_LOG_EVERY`] has passed since the last line (a full disk alternates
    /// between SQLite's and the snapshot files' errors: both are one condition).
    fn failed(&mut self, e: &str) {
        let now = crate::clock::now();
        let due = match &self.last {
            None => true,
            Some((at, _)) => now.duration_since(*at) >= ERROR_LOG_EVERY,
        };
        if due {
            tracing::error!(
                error = %e,
                not_logged_since_last = self.suppressed,
                "store write failed (repeats are logged at most once a minute; history is held in memory until writes succeed)"
            );
            self.last = Some((now, e.to_string()));
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }

    /// A write succeeded: the next failure is news again.
    fn recovered(&mut self) -> u64 {
        self.last = None;
        std::mem::take(&mut self.suppressed)
    }
}

enum Msg {
    Batch(Box<Batch>),
    Prune { now: Millis, retention: Duration },
    Flush(mpsc::SyncSender<Result<(), String>>),
}

#[derive(Default)]
struct Health {
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The error of the newest write, while writes keep failing (cleared by the next success).
    current_error: Mutex<Option<String>>,
    pruned: Mutex<Pruned>,
}

/// Handle to the writer thread. Dropping it (or [`StoreWriter::close`]) writes what is queued
/// and stops the thread.
pub struct StoreWriter {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    health: Arc<Health>,
}

impl StoreWriter {
    /// Move `store` onto a new thread named `talon-store`.
    pub fn spawn(store: Store) -> std::io::Result<StoreWriter> {
        let (tx, rx) = mpsc::channel();
        let health = Arc::new(Health::default());
        let h = health.clone();
        let thread = std::thread::Builder::new()
            .name("talon-store".into())
            .spawn(move || run(store, rx, h))?;
        Ok(StoreWriter {
            tx: Some(tx),
            thread: Some(thread),
            health,
        })
    }

    /// Queue a batch. Never blocks.
    pub fn send(&self, batch: Batch) {
        if let Some(tx) = &self.tx
            && tx.send(Msg::Batch(Box::new(batch))).is_err()
        {
            self.health.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queue a retention prune. Never blocks.
    pub fn prune(&self, now: Millis, retention: Duration) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Prune { now, retention });
        }
    }

    /// Wait until everything queued before this call is written. Blocks: call it from
    /// `spawn_blocking` or at shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        flush_through(self.tx.as_ref())
    }

    /// A handle that waits (from another thread) until what is queued now is written: a reader
    /// that opens the store afterwards sees it.
    pub fn barrier(&self) -> Barrier {
        Barrier(self.tx.clone())
    }

    /// Writes that failed so far.
    pub fn failures(&self) -> u64 {
        self.health.failures.load(Ordering::Relaxed)
    }

    /// The newest write error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.health.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Why writes are failing now: the newest write's error, `None` once a write succeeds again
    /// (a full disk that got space back).
    pub fn current_error(&self) -> Option<String> {
        self.health
            .current_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
    }

    /// Rows removed by prunes so far.
    pub fn pruned(&self) -> Pruned {
        self.health.pruned.lock().map(|p| *p).unwrap_or_default()
    }

    /// Write what is queued and stop the thread.
    pub fn close(mut self) -> Result<(), StoreError> {
        let r = self.flush();
        self.stop();
        r
    }

    fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Keep failed batches for the next attempt, small: only the newest core state and snapshot
/// matter (each replaces the previous), and raw results beyond [`MAX_HELD_RESULTS`] are shed.
/// Returns how many results were shed.
fn hold(held: &mut Vec<Batch>) -> usize {
    if let Some(newest) = held.iter().rposition(|b| b.core.is_some()) {
        for b in &mut held[..newest] {
            b.core = None;
        }
    }
    if let Some(newest) = held.iter().rposition(|b| b.snapshot.is_some()) {
        // The newest snapshot takes the newest last-probe results along.
        let last_probe = held
            .iter()
            .rev()
            .find_map(|b| b.snapshot.as_ref()?.last_probe.clone());
        for b in &mut held[..newest] {
            b.snapshot = None;
        }
        if let Some(s) = &mut held[newest].snapshot
            && s.last_probe.is_none()
        {
            s.last_probe = last_probe;
        }
    }
    let mut excess = held
        .iter()
        .map(|b| b.results.len() + b.reprobe_results.len())
        .sum::<usize>()
        .saturating_sub(MAX_HELD_RESULTS);
    let mut shed = 0;
    for b in held.iter_mut() {
        if excess == 0 {
            break;
        }
        for v in [&mut b.results, &mut b.reprobe_results] {
            let n = v.len().min(excess);
            v.drain(..n);
            excess -= n;
            shed += n;
        }
    }
    held.retain(|b| !b.is_empty() || b.snapshot.is_some());
    shed
}

fn run(mut store: Store, rx: mpsc::Receiver<Msg>, health: Arc<Health>) {
    // Batches a transient failure (full disk) kept for the next attempt, oldest first.
    let mut held: Vec<Batch> = Vec::new();
    let mut error_log = ErrorLog::default();
    while let Ok(first) = rx.recv() {
        let mut msgs = vec![first];
        // Coalesce what queued up into one transaction.
        while msgs.len() < 1024 {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        let mut batches = std::mem::take(&mut held);
        let mut flushes = Vec::new();
        let mut prunes = Vec::new();
        for m in msgs {
            match m {
                Msg::Batch(b) => batches.push(*b),
                Msg::Prune { now, retention } => prunes.push((now, retention)),
                Msg::Flush(done) => flushes.push(done),
            }
        }
        let mut result: Result<(), String> = Ok(());
        let had_batches = !batches.is_empty();
        if had_batches {
            match store.apply_all(&batches) {
                Ok(()) => {
                    if let Some(snap) = batches.iter().rev().find_map(|b| b.snapshot.as_ref()) {
                        let mut snap = snap.clone();
                        if snap.last_probe.is_none() {
                            snap.last_probe = batches
                                .iter()
                                .rev()
                                .find_map(|b| b.snapshot.as_ref()?.last_probe.clone());
                        }
                        if let Err(e) = snap.write(store.dir()) {
                            result = Err(format!(
                                "writing snapshots in {}: {e}",
                                store.dir().display()
                            ));
                        }
                    }
                }
                Err(e) => {
                    result = Err(e.to_string());
                    if e.is_transient() {
                        held = batches;
                        let shed = hold(&mut held);
                        if shed > 0 {
                            tracing::warn!(
                                shed,
                                "store: disk still refusing writes; oldest held probe results dropped"
                            );
                        }
                    }
                }
            }
        }
        let prunes_empty = prunes.is_empty();
        for (now, retention) in prunes {
            match store.prune(now, retention) {
                Ok(p) => {
                    if let Ok(mut total) = health.pruned.lock() {
                        total.probe_results += p.probe_results;
                        total.transitions += p.transitions;
                        total.notifications += p.notifications;
                    }
                    tracing::debug!(
                        probe_results = p.probe_results,
                        transitions = p.transitions,
                        notifications = p.notifications,
                        "store pruned"
                    );
                }
                Err(e) => result = Err(e.to_string()),
            }
        }
        let wrote = had_batches || !prunes_empty;
        match &result {
            Err(e) => {
                health.failures.fetch_add(1, Ordering::Relaxed);
                error_log.failed(e);
                if let Ok(mut last) = health.last_error.lock() {
                    *last = Some(e.clone());
                }
                if let Ok(mut cur) = health.current_error.lock() {
                    *cur = Some(e.clone());
                }
            }
            Ok(()) if wrote => {
                let not_logged = error_log.recovered();
                if let Ok(mut cur) = health.current_error.lock()
                    && let Some(e) = cur.take()
                {
                    tracing::info!(previous_error = %e, failures_not_logged = not_logged, "store writes succeed again");
                }
            }
            Ok(()) => {}
        }
        for done in flushes {
            let _ = done.send(result.clone());
        }
    }
}

/// See [`StoreWriter::barrier`].
pub struct Barrier(Option<mpsc::Sender<Msg>>);

impl Barrier {
    /// Block until everything queued before the barrier was made is written (or failed).
    pub fn wait(&self) -> Result<(), StoreError> {
        flush_through(self.0.as_ref())
    }
}

fn flush_through(tx: Option<&mpsc::Sender<Msg>>) -> Result<(), StoreError> {
    let (done, wait) = mpsc::sync_channel(1);
    tx.ok_or(StoreError::WriterGone)?
        .send(Msg::Flush(done))
        .map_err(|_| StoreError::WriterGone)?;
    match wait.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StoreError::Io {
            path: DB_FILE.into(),
            source: std::io::Error::other(e),
        }),
        Err(_) => Err(StoreError::WriterGone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::PersistedState;
    use crate::core::{ProbeResult, Status};
    use crate::store::snapshot::Snapshot;

    fn batch(at: Millis, results: usize, core: bool) -> Batch {
        let r = |i: usize| ProbeResult {
            name: format!("p{i}"),
            kind: "script".into(),
            passed: true,
            status: Status::Pass,
            output: String::new(),
            detail: String::new(),
            duration_ms: 1,
            started_at: at,
        };
        let results: Vec<ProbeResult> = (0..results).map(r).collect();
        let state = PersistedState::default();
        Batch {
            snapshot: core.then(|| Snapshot::new(&state, 0, Some(&results), at)),
            core: core.then_some(state),
            results,
            at,
            ..Batch::default()
        }
    }

    #[test]
    fn a_repeated_error_is_logged_once_a_minute_until_writes_work() {
        let mut log = ErrorLog::default();
        log.failed("disk full");
        let first = log.last.clone().unwrap().0;
        log.failed("disk full");
        log.failed("disk full");
        assert_eq!(
            log.suppressed, 2,
            "repeats within a minute are counted, not logged"
        );
        assert_eq!(log.last.as_ref().unwrap().0, first);
        log.failed("read-only file system");
        assert_eq!(
            log.suppressed, 3,
            "another error of the same outage is counted too"
        );
        assert_eq!(log.recovered(), 3);
        log.failed("read-only file system");
        assert_eq!(
            log.suppressed, 0,
            "after a success the next failure is logged"
        );
    }

    #[test]
    fn held_batches_keep_only_the_newest_state_and_shed_the_oldest_results() {
        let mut held = vec![batch(1, 3, true), batch(2, 0, false), batch(3, 2, true)];
        assert_eq!(hold(&mut held), 0);
        // The empty middle batch is gone; only the newest carries the core state and snapshot.
        assert_eq!(held.iter().map(|b| b.at).collect::<Vec<_>>(), [1, 3]);
        assert!(held[0].core.is_none() && held[0].snapshot.is_none());
        assert!(held[1].core.is_some() && held[1].snapshot.is_some());

        let mut big = vec![batch(1, MAX_HELD_RESULTS, false), batch(2, 10, true)];
        assert_eq!(hold(&mut big), 10);
        assert_eq!(big[0].results.len(), MAX_HELD_RESULTS - 10);
        assert_eq!(
            big[0].results[0].name, "p10",
            "the oldest results went first"
        );
        assert_eq!(big[1].results.len(), 10);
    }
}
