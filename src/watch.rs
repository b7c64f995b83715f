//! Config change detection by polling: every interval (about 1 s), the (device, inode, size,
//! mtime, ctime) of each watched file is compared with the previous poll. This sees every way an
//! editor saves — writing in place, writing a temp file and renaming it over (new inode), deleting
//! and recreating — and files that appear or disappear, with no platform-specific watcher.
//!
//! The runtime reads [`ConfigChange`]s and reloads; a reload that changes the probes file's path
//! calls [`WatchHandle::set_paths`].

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// What identifies one version of a file. `None` (in [`stamp`]) = the file does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

/// The file's current stamp (following symlinks), or `None` when it cannot be read.
pub fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    })
}

/// One watched file changed (was written, replaced, created or deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub path: PathBuf,
    /// The file exists after the change.
    pub exists: bool,
}

/// The synchronous core: remembers stamps and reports what changed since the last poll.
#[derive(Debug, Default)]
pub struct Poller {
    files: Vec<(PathBuf, Option<Stamp>)>,
}

impl Poller {
    /// Start watching `paths`; their current state is the baseline (no change reported for it).
    pub fn new(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut p = Self::default();
        p.set_paths(paths);
        p
    }

    /// Replace the watched set. Files already watched keep their baseline.
    pub fn set_paths(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        let mut next = Vec::new();
        for path in paths {
            if next.iter().any(|(p, _)| *p == path) {
                continue;
            }
            let old = self.files.iter().find(|(p, _)| *p == path).map(|(_, s)| *s);
            let s = old.unwrap_or_else(|| stamp(&path));
            next.push((path, s));
        }
        self.files = next;
    }

    /// Check every file once; return those that changed.
    pub fn poll(&mut self) -> Vec<ConfigChange> {
        let mut changed = Vec::new();
        for (path, prev) in &mut self.files {
            let now = stamp(path);
            if now != *prev {
                *prev = now;
                changed.push(ConfigChange {
                    path: path.clone(),
                    exists: now.is_some(),
                });
            }
        }
        changed
    }
}

/// Controls a running watcher; dropping it stops the watcher.
#[derive(Debug)]
pub struct WatchHandle {
    paths: watch::Sender<Vec<PathBuf>>,
    task: JoinHandle<()>,
}

impl WatchHandle {
    /// Watch a different set of files from the next poll on.
    pub fn set_paths(&self, paths: Vec<PathBuf>) {
        let _ = self.paths.send(paths);
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Poll `paths` every `interval`, sending one [`ConfigChange`] per changed file to `tx`.
/// Stops when the handle is dropped or the receiver is gone.
pub fn spawn(
    paths: Vec<PathBuf>,
    interval: Duration,
    tx: mpsc::Sender<ConfigChange>,
) -> WatchHandle {
    let (paths_tx, mut paths_rx) = watch::channel(paths.clone());
    let task = tokio::spawn(async move {
        // Stat-ing a couple of files is microseconds of blocking work: fine on the runtime.
        let mut poller = Poller::new(paths);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = paths_rx.changed() => {
                    if r.is_err() { return; }
                    let p = paths_rx.borrow_and_update().clone();
                    poller.set_paths(p);
                    continue;
                }
            }
            for change in poller.poll() {
                if tx.send(change).await.is_err() {
                    return;
                }
            }
        }
    });
    WatchHandle {
        paths: paths_tx,
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_rewrite_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "a = 1\n").unwrap();
        let mut w = Poller::new([p.clone()]);
        assert!(w.poll().is_empty());
        // Same size, same second: mtime/ctime nanoseconds (or ctime) still differ.
        std::thread::sleep(Duration::from_millis(5));
        std::fs::write(&p, "a = 2\n").unwrap();
        assert_eq!(w.poll().len(), 1);
        assert!(w.poll().is_empty(), "reported once");
    }

    #[test]
    fn set_paths_keeps_baselines_and_dedups() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "1").unwrap();
        let mut w = Poller::new([a.clone()]);
        std::fs::write(&a, "22").unwrap();
        w.set_paths([a.clone(), b.clone(), b.clone()]);
        let changes = w.poll();
        assert_eq!(
            changes,
            [ConfigChange {
                path: a,
                exists: true
            }]
        );
        std::fs::write(&b, "x").unwrap();
        assert_eq!(w.poll()[0].path, b);
    }
}
