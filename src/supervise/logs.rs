//! The worker's stdout/stderr log files: appended, rotated by size (`file` → `file.1` → … →
//! `file.N`, the oldest dropped), so a chatty worker cannot fill the disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An append-only log file with size-based rotation.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    file: Option<File>,
    size: u64,
}

impl RotatingLog {
    /// Open (creating parent directories and the file) for appending. `max_files` rotated files
    /// are kept besides the live one; `max_bytes = 0` never rotates.
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> io::Result<Self> {
        let mut log = Self {
            path: path.to_path_buf(),
            max_bytes,
            max_files,
            file: None,
            size: 0,
        };
        log.reopen()?;
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.max_files == 0 {
            // No history kept: start the live file over.
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(self.rotated(self.max_files));
            for n in (1..self.max_files).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.reopen()
    }

    /// Append bytes, rotating first when they would push the file past `max_bytes`.
    pub fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.max_bytes > 0 && self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let f = self.file.as_mut().expect("reopened above");
        f.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_rotates_keeping_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/w.log");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"old\n").unwrap();
        let mut log = RotatingLog::open(&p, 10, 2).unwrap();
        log.append(b"12345").unwrap(); // 4 + 5 = 9 ≤ 10: appended
        assert_eq!(std::fs::read(&p).unwrap(), b"old\n12345");
        log.append(b"abc").unwrap(); // would be 12: rotate first
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        assert_eq!(
            std::fs::read(dir.path().join("sub/w.log.1")).unwrap(),
            b"old\n12345"
        );
        log.append(b"defghijk").unwrap(); // 3 + 8 = 11: rotate
        log.append(b"Z").unwrap();
        log.append(b"0123456789").unwrap(); // rotate again: the oldest (.3) is dropped
        assert_eq!(std::fs::read(&p).unwrap(), b"0123456789");
        assert_eq!(
            std::fs::read(dir.path().join("sub/w.log.1")).unwrap(),
            b"defghijkZ"
        );
        assert_eq!(
            std::fs::read(dir.path().join("sub/w.log.2")).unwrap(),
            b"abc"
        );
        assert!(!dir.path().join("sub/w.log.3").exists());
    }

    #[test]
    fn creates_missing_parent_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c.log");
        let mut log = RotatingLog::open(&p, 0, 3).unwrap();
        log.append(b"x").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
    }
}
