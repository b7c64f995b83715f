//! Single instance: an exclusive `flock` on `<state_dir>/talon.lock`, holding the owner's pid.
//! The kernel drops the lock when the process dies (even by SIGKILL), so there is never a stale
//! lock to clean up. The file is opened close-on-exec: heals and agents do not inherit it.

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::layout::{FILE_MODE, LOCK_FILE};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another talon is already running with state dir {dir} (pid {pid}, lock {path})", dir = dir.display(), path = path.display(), pid = pid.map_or_else(|| "unknown".to_string(), |p| p.to_string()))]
    Held {
        dir: PathBuf,
        path: PathBuf,
        pid: Option<u32>,
    },
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct InstanceLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl InstanceLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Take the single-instance lock for `state_dir` (created if missing), writing our pid into it.
pub fn acquire(state_dir: &Path) -> Result<InstanceLock, LockError> {
    let path = state_dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(|source| LockError::Io {
        path: state_dir.to_path_buf(),
        source,
    })?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(io)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut f) => {
            f.set_len(0).map_err(io)?;
            f.seek(SeekFrom::Start(0)).map_err(io)?;
            writeln!(f, "{}", std::process::id()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(InstanceLock { _file: f, path })
        }
        Err((mut f, Errno::EWOULDBLOCK)) => {
            let mut s = String::new();
            let _ = f.read_to_string(&mut s);
            Err(LockError::Held {
                dir: state_dir.to_path_buf(),
                path,
                pid: s.trim().parse().ok(),
            })
        }
        Err((_, e)) => Err(io(std::io::Error::from(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_in_another_open_file_description_is_refused_with_pid() {
        let d = tempfile::tempdir().unwrap();
        let first = acquire(d.path()).unwrap();
        match acquire(d.path()) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        let again = acquire(d.path()).unwrap();
        let pid = std::fs::read_to_string(d.path().join(LOCK_FILE)).unwrap();
        assert_eq!(
            pid.trim().parse(),
            Ok(std::process::id()),
            "the new holder wrote its pid"
        );
        drop(again);
    }
}
