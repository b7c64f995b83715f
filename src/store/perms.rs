//! Private state: the state dir is `0700`, and the files in it that hold history, state or the
//! API token are `0600` (names and modes: [`super::layout`]).
//!
//! Talon creates them with those modes. At `talon run` start, [`secure_state_dir`] checks what
//! already exists: a state dir or file that group or others can reach is **tightened** (it is
//! Talon's own, so fixing it is friendlier than refusing to run) and each change is returned so
//! the caller can log a warning naming the path and the old mode. Talon refuses only what it
//! must not touch: a state dir with the sticky bit (a shared dir such as `/tmp`), and a
//! symbolic link where a state file should be.

use super::layout::{DIR_MODE, FILE_MODE, PRIVATE_FILES};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One mode Talon changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    pub path: PathBuf,
    pub old_mode: u32,
    pub new_mode: u32,
}

/// Why the state dir cannot be made private.
#[derive(Debug, thiserror::Error)]
pub enum PermError {
    #[error(
        "{path}: mode {mode:04o} is a shared directory (sticky bit); give Talon a state_dir of its own"
    )]
    SharedDir { path: PathBuf, mode: u32 },
    #[error("{path}: is a symbolic link; a state file must be a regular file")]
    Symlink { path: PathBuf },
    #[error("{path}: cannot make it private (mode {mode:04o}): {source}")]
    Chmod {
        path: PathBuf,
        mode: u32,
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Make the state dir `0700` and the private files in it `0600`, plus `extra` files (the log
/// and its rotated siblings when they live there). Returns every change made.
pub fn secure_state_dir(dir: &Path, extra: &[PathBuf]) -> Result<Vec<Tightened>, PermError> {
    let mut changed = Vec::new();
    let meta = std::fs::metadata(dir).map_err(|source| PermError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        if mode & 0o1000 != 0 {
            return Err(PermError::SharedDir {
                path: dir.to_path_buf(),
                mode,
            });
        }
        chmod(dir, mode, DIR_MODE, &mut changed)?;
    }
    let files = PRIVATE_FILES
        .iter()
        .map(|f| dir.join(f))
        .chain(extra.iter().cloned());
    for path in files {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(PermError::Io { path, source }),
        };
        if meta.file_type().is_symlink() {
            return Err(PermError::Symlink { path });
        }
        let mode = meta.mode() & 0o7777;
        if meta.is_file() && mode & 0o077 != 0 {
            chmod(&path, mode, FILE_MODE, &mut changed)?;
        }
    }
    Ok(changed)
}

fn chmod(path: &Path, old: u32, new: u32, changed: &mut Vec<Tightened>) -> Result<(), PermError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(new)).map_err(|source| {
        PermError::Chmod {
            path: path.to_path_buf(),
            mode: old,
            source,
        }
    })?;
    changed.push(Tightened {
        path: path.to_path_buf(),
        old_mode: old,
        new_mode: new,
    });
    Ok(())
}

/// Create `path` empty with mode `0600` if it does not exist (so SQLite, which creates files
/// with `0644` minus the umask and gives its WAL files the database's mode, starts private).
pub fn create_private_file(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn open_modes_are_tightened_and_reported() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["talon.db", "api.token", "unrelated.txt"] {
            std::fs::write(dir.join(f), "x").unwrap();
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let log = dir.join("talon.log");
        std::fs::write(&log, "x").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o640)).unwrap();
        let changed = secure_state_dir(&dir, std::slice::from_ref(&log)).unwrap();
        let got: Vec<(String, u32)> = changed
            .iter()
            .map(|c| {
                let name = c.path.file_name().unwrap().to_string_lossy().into_owned();
                (name, c.old_mode)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("state".to_string(), 0o755),
                ("talon.db".to_string(), 0o644),
                ("api.token".to_string(), 0o644),
                ("talon.log".to_string(), 0o640),
            ]
        );
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("talon.db")), 0o600);
        assert_eq!(mode(&dir.join("api.token")), 0o600);
        assert_eq!(mode(&log), 0o600);
        assert_eq!(mode(&dir.join("unrelated.txt")), 0o644, "not Talon's file");
        // Already private: nothing to do.
        assert!(secure_state_dir(&dir, &[log]).unwrap().is_empty());
    }

    #[test]
    fn a_shared_dir_and_a_symlinked_token_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let shared = t.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = secure_state_dir(&shared, &[]).unwrap_err();
        assert!(matches!(e, PermError::SharedDir { .. }), "{e}");
        assert_eq!(mode(&shared), 0o1777, "left alone");

        let dir = t.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(t.path().join("elsewhere"), "tok").unwrap();
        std::os::unix::fs::symlink(t.path().join("elsewhere"), dir.join("api.token")).unwrap();
        let e = secure_state_dir(&dir, &[]).unwrap_err();
        assert!(matches!(e, PermError::Symlink { .. }), "{e}");
    }

    #[test]
    fn private_files_are_created_0600_and_existing_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("talon.db");
        create_private_file(&p).unwrap();
        assert_eq!(mode(&p), 0o600);
        std::fs::write(&p, "data").unwrap();
        create_private_file(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "data");
    }
}
