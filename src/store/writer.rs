//! The store's writer thread. The event loop hands it [`Batch`]es through an unbounded channel
//! ([`StoreWriter::send`] never blocks); the thread drains whatever queued up, writes it in one
//! transaction, then rewrites the JSON snapshots. A failed write is logged and counted, and the
//! thread keeps going (the next batch carries the full core state again).

use super::{Batch, Pruned, Store, StoreError};
use crate::core::Millis;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
        let (done, wait) = mpsc::sync_channel(1);
        self.tx
            .as_ref()
            .ok_or(StoreError::WriterGone)?
            .send(Msg::Flush(done))
            .map_err(|_| StoreError::WriterGone)?;
        match wait.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Io {
                path: "talon.db".into(),
                source: std::io::Error::other(e),
            }),
            Err(_) => Err(StoreError::WriterGone),
        }
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
        self.health.current_error.lock().ok().and_then(|e| e.clone())
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

fn run(mut store: Store, rx: mpsc::Receiver<Msg>, health: Arc<Health>) {
    while let Ok(first) = rx.recv() {
        let mut msgs = vec![first];
        // Coalesce what queued up into one transaction.
        while msgs.len() < 1024 {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        let mut batches = Vec::new();
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
        if !batches.is_empty() {
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
                Err(e) => result = Err(e.to_string()),
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
        let wrote = !batches.is_empty() || !prunes_empty;
        match &result {
            Err(e) => {
                health.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "store write failed");
                if let Ok(mut last) = health.last_error.lock() {
                    *last = Some(e.clone());
                }
                if let Ok(mut cur) = health.current_error.lock() {
                    *cur = Some(e.clone());
                }
            }
            Ok(()) if wrote => {
                if let Ok(mut cur) = health.current_error.lock()
                    && let Some(e) = cur.take()
                {
                    tracing::info!(previous_error = %e, "store writes succeed again");
                }
            }
            Ok(()) => {}
        }
        for done in flushes {
            let _ = done.send(result.clone());
        }
    }
}
