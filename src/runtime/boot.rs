//! Before the loop: load the config, open the log, make the state dir private, take the
//! single-instance lock, open the store and restore the core from it.

use super::effects::History;
use crate::config::{self, Config, LoadOptions};
use crate::core::{Core, CoreConfig};
use crate::store::{self, Store, StoreWriter};
use std::path::{Path, PathBuf};

/// How `talon run` was asked to start.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--config` / `$TALON_CONFIG`.
    pub config: Option<PathBuf>,
}

/// Why the daemon could not start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid config:\n{0}")]
    Config(String),
    #[error(transparent)]
    Lock(#[from] store::lock::LockError),
    #[error("cannot create state dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state dir {path} cannot be written: {source} ({errno}); Talon needs it for its lock, history and API token", path = path.display(), errno = errno_name(source))]
    StateDirNotWritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state dir is not private: {0}")]
    Perms(#[from] store::perms::PermError),
}

/// What the runtime starts from: the config, the core as the store left it, and where history
/// goes.
pub struct Boot {
    /// Where the config is re-read from on reload.
    pub opts: RunOptions,
    pub config: Config,
    pub core: Core,
    /// The store's writer (`None` when the store cannot be opened: Talon runs without history).
    pub history: Option<Box<dyn History>>,
    /// The JSON log (`None` when it could not be opened: lines go to stderr).
    pub log: Option<crate::logging::LogGuard>,
    /// What happened to unreadable state at start (a quarantined database), for `/status`.
    pub store_notice: Option<String>,
    /// The `push` probes' pings as the store kept them; shared with the probe engine.
    pub pushes: crate::probe::push::Pushes,
}

impl Boot {
    /// Load config, open the log, take the single-instance lock, open the store and restore the
    /// core.
    pub fn start(opts: RunOptions) -> Result<(Boot, store::lock::InstanceLock), StartError> {
        let cfg = load(&opts).map_err(|(text, _)| StartError::Config(text))?;
        create_private_dir(&cfg.state_dir)?;
        check_writable(&cfg.state_dir)?;
        let log = match crate::logging::init_logging(&cfg.log, None) {
            Ok(g) => Some(g),
            Err(e) => {
                fallback_logging(&cfg.log.level);
                tracing::error!(file = %cfg.log.file.display(), "cannot open the log file ({e}); logging to stderr");
                None
            }
        };
        if opts.config.is_none() && cfg.sources.main.is_none() {
            tracing::info!("no config file found: running with the embedded default config");
        }
        log_host_problems(&opts);
        secure_state(&cfg)?;
        let lock = store::lock::acquire(&cfg.state_dir)?;
        let (core, history, store_notice) = restore_recovering(
            &cfg.state_dir,
            CoreConfig::from_config(&cfg),
            crate::clock::wall_ms(),
        );
        let pushes = crate::probe::push::Pushes::load(&cfg.state_dir);
        Ok((
            Boot {
                opts,
                config: cfg,
                core,
                history: history.map(|w| Box::new(w) as Box<dyn History>),
                log,
                store_notice,
                pushes,
            },
            lock,
        ))
    }
}

/// Open the store in `state_dir`, restore the core it saved (a fresh one when there is none or
/// it cannot be read) and start its writer. Without a store Talon runs without history.
pub fn restore(state_dir: &Path, core_cfg: CoreConfig) -> (Core, Option<StoreWriter>) {
    let (core, writer, _) = restore_recovering(state_dir, core_cfg, crate::clock::wall_ms());
    (core, writer)
}

/// [`restore`], saying what had to be set aside: a database that could not be read is
/// quarantined (see [`store::recover`]) and the open incident is taken from `state.json` when
/// that file is readable. The third value is the human sentence for the log and `/status`.
pub fn restore_recovering(
    state_dir: &Path,
    core_cfg: CoreConfig,
    now: i64,
) -> (Core, Option<StoreWriter>, Option<String>) {
    match Store::open_recovering(state_dir, now) {
        Ok((s, quarantined)) => {
            let mut notice = None;
            let core = if let Some(q) = quarantined {
                let from_snapshot = store::recover::incident_from_snapshot(state_dir);
                let kept = match &from_snapshot {
                    Ok(Some(p)) => p.incident.as_ref().map(|i| i.id),
                    _ => None,
                };
                let text = match (&from_snapshot, kept) {
                    (_, Some(id)) => {
                        format!("{q}; the open incident {id} was kept from state.json")
                    }
                    (Err(e), _) => format!("{q}; state.json is unreadable too ({e})"),
                    _ => q.to_string(),
                };
                tracing::error!(moved_to = ?q.moved_to, "store: {text}");
                notice = Some(text);
                match from_snapshot {
                    Ok(Some(saved)) => Core::restore(core_cfg, saved),
                    _ => Core::new(core_cfg),
                }
            } else {
                match s.load_core() {
                    Ok(Some(saved)) => {
                        tracing::info!(
                            state = saved.state.state.as_str(),
                            "restored state from the store"
                        );
                        Core::restore(core_cfg, saved.state)
                    }
                    Ok(None) => Core::new(core_cfg),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read saved state; starting fresh");
                        Core::new(core_cfg)
                    }
                }
            };
            match StoreWriter::spawn(s) {
                Ok(w) => (core, Some(w), notice),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the store writer; history is not recorded");
                    (core, None, notice)
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot open the store; running without history");
            (
                Core::new(core_cfg),
                None,
                Some(format!("cannot open the store: {e}")),
            )
        }
    }
}

/// Load, keeping the first error's position for the surfaces.
pub(super) fn load(
    opts: &RunOptions,
) -> Result<Config, (String, Option<crate::server::snapshot::ConfigError>)> {
    let loaded = config::load(&LoadOptions {
        config: opts.config.clone(),
        resolve: false,
        ..Default::default()
    });
    match loaded.config {
        Some(c) => Ok(c),
        None => Err((
            loaded.diags.to_string(),
            loaded.diags.errors().next().map(Into::into),
        )),
    }
}

/// Host-dependent problems (missing programs, platform) do not stop the daemon: the probe or
/// heal that needs them fails at run time and escalates. They are logged loudly at start.
fn log_host_problems(opts: &RunOptions) {
    let loaded = config::load(&LoadOptions {
        config: opts.config.clone(),
        resolve: true,
        ..Default::default()
    });
    for d in loaded.diags.errors() {
        tracing::error!(file = %d.file, line = d.line, key = %d.key, "{}", d.message);
    }
}

/// Human lines on stderr, when the log file cannot be opened.
fn fallback_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}

/// Tighten a state dir or state file that group or others can reach (see [`store::perms`]),
/// with one warning per change naming the path and the mode it had.
pub(super) fn secure_state(cfg: &Config) -> Result<(), StartError> {
    let mut extra = Vec::new();
    if cfg.log.file.starts_with(&cfg.state_dir) {
        extra.push(cfg.log.file.clone());
        for n in 1..=cfg.log.max_files {
            let mut p = cfg.log.file.clone().into_os_string();
            p.push(format!(".{n}"));
            extra.push(PathBuf::from(p));
        }
    }
    match store::perms::secure_state_dir(&cfg.state_dir, &extra) {
        Ok(changed) => {
            for c in changed {
                tracing::warn!(
                    path = %c.path.display(),
                    old_mode = format!("{:04o}", c.old_mode),
                    new_mode = format!("{:04o}", c.new_mode),
                    "state was readable by other users: permissions tightened"
                );
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "refusing to start: the state dir cannot be made private");
            Err(e.into())
        }
    }
}

/// The symbolic errno of an I/O error (`EROFS`, `EACCES`, …), or `no errno`.
fn errno_name(e: &std::io::Error) -> String {
    e.raw_os_error().map_or_else(
        || "no errno".to_string(),
        |n| format!("{:?}", nix::errno::Errno::from_raw(n)),
    )
}

/// A state dir on a read-only or full filesystem (or not ours to write) is found at start, with
/// its path and errno, not later as a panic or a silent loss: create, write, sync and remove a
/// probe file.
pub(super) fn check_writable(dir: &Path) -> Result<(), StartError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(crate::store::layout::WRITE_CHECK_FILE);
    let attempt = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(crate::store::layout::FILE_MODE)
            .open(&path)?;
        f.write_all(b"talon\n")?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    attempt.map_err(|source| StartError::StateDirNotWritable {
        path: dir.to_path_buf(),
        source,
    })
}

/// Create the state dir (0700 when Talon creates it).
pub fn create_private_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(crate::store::layout::DIR_MODE)
        .create(dir)
        .map_err(|source| StartError::StateDir {
            path: dir.to_path_buf(),
            source,
        })
}
