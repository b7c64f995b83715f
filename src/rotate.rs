//! The one size-rotated, append-only file: Talon's JSON log (`[log]`) and the worker's
//! stdout/stderr files (`[worker] log_stdout`/`log_stderr`) are both written through it.
//!
//! Rotation: when a write would take the live file past `max_bytes`, the live file is renamed
//! `NAME.1` (an older `NAME.1` becomes `NAME.2`, and so on) and a new live file is started.
//! `max_files` counts **every file kept, the live one included**: with `max_files = 5` there are
//! at most `NAME`, `NAME.1` … `NAME.4`, so the disk used is at most about `max_bytes × max_files`.
//! `max_files = 1` (or 0) keeps no history: the live file starts over. `max_bytes = 0` never
//! rotates. A write is never split across files, so a file exceeds `max_bytes` only when it
//! holds a single write larger than that.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The name of the `n`-th older file beside `path` (`talon.log` → `talon.log.1`, …).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// An append-only file that rotates by size (see the module docs for the naming and counting).
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    mode: u32,
    /// `None` after a failed rotation: reopened by the next write.
    file: Option<File>,
    size: u64,
}

impl RotatingFile {
    /// Open `path` for appending, creating its directory and the file. A new file gets `mode`
    /// (less the umask); an existing one keeps its own.
    pub fn open(path: &Path, max_bytes: u64, max_files: u32, mode: u32) -> io::Result<Self> {
        let mut f = Self {
            path: path.to_path_buf(),
            max_bytes,
            max_files: max_files.max(1),
            mode,
            file: None,
            size: 0,
        };
        f.reopen()?;
        Ok(f)
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name of the `n`-th older file.
    pub fn rotated_path(&self, n: u32) -> PathBuf {
        rotated_path(&self.path, n)
    }

    /// (Re)open the live file and learn its size.
    fn reopen(&mut self) -> io::Result<&mut File> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(self.mode)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        Ok(self.file.insert(f))
    }

    /// Append `buf` whole, rotating first when it would take the live file past `max_bytes`.
    pub fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.reopen()?;
        }
        if self.max_bytes > 0 && self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let f = match &mut self.file {
            Some(f) => f,
            None => self.reopen()?,
        };
        f.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.max_files - 1; // older files kept beside the live one
        if keep == 0 {
            if let Some(f) = &self.file {
                f.set_len(0)?;
            }
            self.size = 0;
            return Ok(());
        }
        self.file = None;
        // The oldest kept file goes, and so does the one just past it: a file left there when
        // `max_files` was lowered by one would otherwise stay forever.
        for n in [keep + 1, keep] {
            remove_if_present(&self.rotated_path(n))?;
        }
        for n in (1..keep).rev() {
            rename_if_present(&self.rotated_path(n), &self.rotated_path(n + 1))?;
        }
        std::fs::rename(&self.path, self.rotated_path(1))?;
        self.reopen().map(drop)
    }
}

fn remove_if_present(p: &Path) -> io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    /// Every file of the set that exists, live first: (name, contents).
    fn files(f: &RotatingFile) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
        if f.path().exists() {
            out.push((name(f.path()), read(f.path())));
        }
        for n in 1..20 {
            let p = f.rotated_path(n);
            if p.exists() {
                out.push((name(&p), read(&p)));
            }
        }
        out
    }

    #[test]
    fn max_files_counts_the_live_file_and_names_shift_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let mut f = RotatingFile::open(&path, 25, 3, 0o600).unwrap();
        for i in 0..10 {
            f.append(format!("line {i:04}\n").as_bytes()).unwrap(); // 10 bytes
        }
        // 2 lines per file; 3 files in all: live = 8,9; .1 = 6,7; .2 = 4,5; older deleted.
        assert_eq!(
            files(&f),
            [
                ("t.log".into(), "line 0008\nline 0009\n".into()),
                ("t.log.1".into(), "line 0006\nline 0007\n".into()),
                ("t.log.2".into(), "line 0004\nline 0005\n".into()),
            ]
        );
        for (name, text) in files(&f) {
            assert!(text.len() <= 25, "{name} is {} bytes", text.len());
        }
    }

    #[test]
    fn rotates_before_a_write_that_would_pass_max_bytes_never_splitting_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/w.log");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"old\n").unwrap();
        let mut log = RotatingFile::open(&p, 10, 3, 0o666).unwrap();
        log.append(b"12345").unwrap(); // 4 + 5 = 9 ≤ 10: appended
        assert_eq!(std::fs::read(&p).unwrap(), b"old\n12345");
        log.append(b"abc").unwrap(); // would be 12: rotate first
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        assert_eq!(read(&log.rotated_path(1)), "old\n12345");
        log.append(b"defghijk").unwrap(); // 3 + 8 = 11: rotate
        log.append(b"Z").unwrap(); // exactly 10: no rotation
        log.append(b"0123456789").unwrap(); // rotate again: the oldest goes
        assert_eq!(
            files(&log),
            [
                ("w.log".into(), "0123456789".into()),
                ("w.log.1".into(), "defghijkZ".into()),
                ("w.log.2".into(), "abc".into()),
            ]
        );
    }

    #[test]
    fn reopening_appends_and_counts_the_existing_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        std::fs::write(&path, "0123456789012345678\n").unwrap(); // 20 bytes
        let mut f = RotatingFile::open(&path, 25, 2, 0o600).unwrap();
        f.append(b"abcdefghi\n").unwrap();
        assert_eq!(
            files(&f),
            [
                ("t.log".into(), "abcdefghi\n".into()),
                ("t.log.1".into(), "0123456789012345678\n".into()),
            ]
        );
    }

    #[test]
    fn one_file_means_no_history_and_a_long_write_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        for max_files in [0, 1] {
            let mut f = RotatingFile::open(&path, 5, max_files, 0o600).unwrap();
            f.append(b"0123456789\n").unwrap();
            f.append(b"abcdefghij\n").unwrap();
            assert_eq!(
                files(&f),
                [("t.log".into(), "abcdefghij\n".into())],
                "max_files = {max_files} starts the live file over"
            );
        }
    }

    #[test]
    fn zero_max_bytes_never_rotates_and_missing_dirs_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c.log");
        let mut log = RotatingFile::open(&p, 0, 3, 0o666).unwrap();
        for _ in 0..100 {
            log.append(b"0123456789").unwrap();
        }
        assert_eq!(std::fs::read(&p).unwrap().len(), 1000);
        assert!(!log.rotated_path(1).exists());
    }

    #[test]
    fn lowering_max_files_leaves_no_orphan_past_the_edge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        // What a set kept with one more file looked like: w.log, .1, .2, .3.
        for (n, text) in [(1, "one"), (2, "two"), (3, "three")] {
            std::fs::write(rotated_path(&path, n), text).unwrap();
        }
        std::fs::write(&path, "live").unwrap();
        let mut f = RotatingFile::open(&path, 4, 3, 0o666).unwrap();
        f.append(b"next").unwrap();
        assert_eq!(
            files(&f),
            [
                ("w.log".into(), "next".into()),
                ("w.log.1".into(), "live".into()),
                ("w.log.2".into(), "one".into()),
            ]
        );
    }

    #[test]
    fn new_files_get_the_mode_asked_for_and_rotation_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let mut f = RotatingFile::open(&path, 4, 2, 0o600).unwrap();
        f.append(b"1234").unwrap();
        f.append(b"5678").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&f.rotated_path(1)), 0o600);
    }

    #[test]
    fn a_failed_rotation_is_an_error_and_the_next_write_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let mut f = RotatingFile::open(&path, 4, 2, 0o600).unwrap();
        f.append(b"1234").unwrap();
        // A directory where the rotated file must go makes the rename fail.
        std::fs::create_dir(f.rotated_path(1)).unwrap();
        std::fs::write(f.rotated_path(1).join("x"), "").unwrap();
        assert!(f.append(b"5678").is_err());
        std::fs::remove_dir_all(f.rotated_path(1)).unwrap();
        f.append(b"abcd").unwrap();
        assert_eq!(
            files(&f),
            [
                ("t.log".into(), "abcd".into()),
                ("t.log.1".into(), "1234".into()),
            ]
        );
    }
}
