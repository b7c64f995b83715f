//! Logs: JSON lines to `[log].file` with size-based rotation, human-readable lines on stderr when
//! it is a terminal, level from `RUST_LOG` (when set) or `[log].level`. Every formatted line —
//! file and terminal — passes through the redactor first, so a secret Talon knows never reaches
//! a log.
//!
//! Rotation ([`crate::rotate`]): when a line would take `talon.log` past `max_bytes`, it is
//! renamed `talon.log.1` (`.1` → `.2`, …) and a new file is started; `max_files` counts every
//! file kept, the live one included, so the oldest is deleted. The file is created 0600.

use crate::config::LogConfig;
use crate::rotate::RotatingFile;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt, reload};

/// Turns a formatted log line into one safe to write (replaces secrets).
pub type Redactor = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log level {level:?}: {message}")]
    BadLevel { level: String, message: String },
    #[error("log file {path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

type SharedRedactor = Arc<RwLock<Option<Redactor>>>;

fn redact(r: &SharedRedactor, line: &[u8]) -> Vec<u8> {
    let guard = r.read().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        Some(f) => f(&String::from_utf8_lossy(line)).into_bytes(),
        None => line.to_vec(),
    }
}

/// Where a formatted event goes.
#[derive(Clone)]
enum Sink {
    File(Arc<Mutex<RotatingFile>>),
    Stderr,
}

/// `MakeWriter` that buffers one event and writes it, redacted, when the writer is dropped.
#[derive(Clone)]
struct RedactingSink {
    sink: Sink,
    redactor: SharedRedactor,
}

struct EventWriter<'a> {
    owner: &'a RedactingSink,
    buf: Vec<u8>,
}

impl Write for EventWriter<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = redact(&self.owner.redactor, &self.buf);
        // A log that cannot be written has nowhere to report to; dropping the line is the only
        // option that does not take the daemon down.
        let _ = match &self.owner.sink {
            Sink::File(f) => f.lock().unwrap_or_else(|e| e.into_inner()).append(&line),
            Sink::Stderr => io::stderr().lock().write_all(&line),
        };
    }
}

impl<'a> fmt::MakeWriter<'a> for RedactingSink {
    type Writer = EventWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            owner: self,
            buf: Vec::with_capacity(256),
        }
    }
}

/// Keeps logging configured; lets the runtime change the level and the redactor on reload.
pub struct LogGuard {
    filter: reload::Handle<EnvFilter, Registry>,
    redactor: SharedRedactor,
    file: Arc<Mutex<RotatingFile>>,
}

impl LogGuard {
    /// Replace the redactor (e.g. after a reload brought new secrets).
    pub fn set_redactor(&self, r: Option<Redactor>) {
        *self.redactor.write().unwrap_or_else(|e| e.into_inner()) = r;
    }

    /// Change the level (`[log].level` changed). Ignored while `RUST_LOG` is set.
    pub fn set_level(&self, level: &str) -> Result<(), LogError> {
        if rust_log().is_some() {
            return Ok(());
        }
        let f = parse_filter(level)?;
        self.filter.reload(f).map_err(|e| LogError::BadLevel {
            level: level.into(),
            message: e.to_string(),
        })
    }

    /// The live log file's path.
    pub fn path(&self) -> PathBuf {
        self.file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .path()
            .to_path_buf()
    }
}

fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
}

fn parse_filter(level: &str) -> Result<EnvFilter, LogError> {
    EnvFilter::try_new(level).map_err(|e| LogError::BadLevel {
        level: level.into(),
        message: e.to_string(),
    })
}

/// Build the subscriber without installing it (tests use `tracing::subscriber::with_default`).
/// `stderr`: also write human-readable lines to stderr.
pub fn build(
    cfg: &LogConfig,
    redactor: Option<Redactor>,
    stderr: bool,
) -> Result<(impl tracing::Subscriber + Send + Sync + 'static, LogGuard), LogError> {
    let level = rust_log().unwrap_or_else(|| cfg.level.clone());
    let (filter, filter_handle) = reload::Layer::new(parse_filter(&level)?);
    let file =
        RotatingFile::open(&cfg.file, cfg.max_bytes, cfg.max_files, 0o600).map_err(|source| {
            LogError::File {
                path: cfg.file.clone(),
                source,
            }
        })?;
    let file = Arc::new(Mutex::new(file));
    let redactor: SharedRedactor = Arc::new(RwLock::new(redactor));
    let json = fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(RedactingSink {
            sink: Sink::File(file.clone()),
            redactor: redactor.clone(),
        });
    let human = stderr.then(|| {
        fmt::layer()
            .with_target(false)
            .with_writer(RedactingSink {
                sink: Sink::Stderr,
                redactor: redactor.clone(),
            })
            .boxed()
    });
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(human);
    let guard = LogGuard {
        filter: filter_handle,
        redactor,
        file,
    };
    Ok((subscriber, guard))
}

/// Install logging for the process: JSON to `cfg.file` (rotating), human-readable to stderr
/// when stderr is a terminal. Keep the guard for `set_level` / `set_redactor`.
pub fn init_logging(cfg: &LogConfig, redactor: Option<Redactor>) -> Result<LogGuard, LogError> {
    let (subscriber, guard) = build(cfg, redactor, io::stderr().is_terminal())?;
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LogError::AlreadyInstalled)?;
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(dir: &Path, max_bytes: u64, max_files: u32) -> LogConfig {
        LogConfig {
            level: "info".into(),
            file: dir.join("logs/talon.log"),
            max_bytes,
            max_files,
        }
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn json_lines_are_redacted_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), 400, 3);
        let redactor: Redactor = Arc::new(|s: &str| s.replace("hunter2", "[REDACTED]"));
        let (sub, guard) = build(&c, Some(redactor), false).unwrap();
        tracing::subscriber::with_default(sub, || {
            for i in 0..20 {
                tracing::info!(probe = "api", attempt = i, "token is hunter2");
            }
            tracing::debug!("below the level");
        });
        assert_eq!(guard.path(), c.file);
        let mut all = String::new();
        for p in [
            c.file.clone(),
            PathBuf::from(format!("{}.1", c.file.display())),
            PathBuf::from(format!("{}.2", c.file.display())),
        ] {
            let t = read(&p);
            assert!(!t.is_empty(), "{} should exist", p.display());
            assert!(t.len() <= 400, "{} is {} bytes", p.display(), t.len());
            all.push_str(&t);
        }
        assert!(!all.contains("hunter2"));
        assert!(!all.contains("below the level"));
        let last: serde_json::Value =
            serde_json::from_str(read(&c.file).lines().last().unwrap()).unwrap();
        assert_eq!(last["message"], "token is [REDACTED]");
        assert_eq!(last["probe"], "api");
        assert_eq!(last["attempt"], 19);
        assert_eq!(last["level"], "INFO");
        assert!(!PathBuf::from(format!("{}.3", c.file.display())).exists());
    }

    #[test]
    fn redactor_and_level_can_change_at_run_time() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), 1 << 20, 2);
        let (sub, guard) = build(&c, None, false).unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::info!("first s3cret");
            guard.set_redactor(Some(Arc::new(|s: &str| s.replace("s3cret", "***"))));
            tracing::info!("second s3cret");
            if rust_log().is_none() {
                guard.set_level("warn").unwrap();
                tracing::info!("hidden after level change");
            }
        });
        let t = read(&c.file);
        assert!(t.contains("first s3cret"));
        assert!(t.contains("second ***"));
        assert!(!t.contains("hidden after level change"));
    }

    #[test]
    fn bad_level_and_unwritable_file_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        if rust_log().is_none() {
            let mut c = cfg(dir.path(), 100, 2);
            c.level = "loud=[".into();
            let e = build(&c, None, false).err().unwrap();
            assert!(e.to_string().starts_with("log level \"loud=[\""), "{e}");
        }
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let mut c = cfg(dir.path(), 100, 2);
        c.file = blocker.join("talon.log");
        let e = build(&c, None, false).err().unwrap();
        assert!(e.to_string().contains("file/talon.log"), "{e}");
    }
}
