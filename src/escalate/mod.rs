//! The escalation executors: HOW each tier runs. The core state machine decides WHEN; the
//! runtime calls these and feeds their reports back as events.
//!
//! - [`heal`]: Tier 1. [`heal::plan`] turns the core's heal step into a command;
//!   [`heal::run_heal`] runs one with the env contract and returns a [`heal::HealReport`].
//! - [`agent`]: Tiers 2/3. [`agent::run_agent`] runs the cloud command, then the local one.
//! - [`prompt`]: the agent's prompt (documented in `docs/agent.md`), bounded and fenced.
//! - redaction of everything handed over: [`crate::redact::Redactor`], built by [`crate::config::Config::redactor`].
//!
//! Every executor is bounded by a timeout that stops the whole process group (through
//! [`crate::proc`]) and never returns `Err`: a failure to run is data in the report.

pub mod agent;
pub mod catalogue;
pub mod eval;
pub mod heal;
pub mod prompt;
pub mod proposal;

use crate::store::layout::{DIR_MODE, FILE_MODE, TMP_DIR};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A private JSON file handed to a child as `TALON_CONTEXT_FILE`: written 0600 inside a fresh
/// 0700 directory under `<state_dir>/tmp`, removed (with its directory) when dropped.
#[derive(Debug)]
pub struct ContextFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ContextFile {
    /// Write `bytes` to a new context file under `state_dir`.
    pub fn write(state_dir: &Path, bytes: &[u8]) -> std::io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let base = state_dir.join(TMP_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&base)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!(
            "ctx-{}-{}-{nanos:x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new().mode(DIR_MODE).create(&dir)?;
        let path = dir.join("context.json");
        let this = Self { dir, path };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&this.path)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(this)
    }

    /// The file's path (the value of `TALON_CONTEXT_FILE`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ContextFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub use crate::format::newest_excerpt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_file_is_private_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        let f = ContextFile::write(state.path(), b"{\"a\":1}").unwrap();
        let p = f.path().to_path_buf();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(p.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        drop(f);
        assert!(!p.exists());
        assert!(!p.parent().unwrap().exists());
    }

    #[test]
    fn excerpt_keeps_the_newest_bytes() {
        assert_eq!(newest_excerpt("short", 10), "short");
        let text = (0..100).map(|i| format!("line {i}\n")).collect::<String>();
        let e = newest_excerpt(&text, 30);
        assert!(e.ends_with("line 99\n"), "{e}");
        assert!(!e.contains("line 1\n"));
        assert!(e.starts_with("[… "));
        // multi-byte text never panics on a boundary
        let e = newest_excerpt(&"é".repeat(100), 7);
        assert!(e.ends_with('é'));
    }
}
