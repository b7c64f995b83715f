//! `disk` probe: the filesystem holding `path` has enough free space (`min_free_bytes` and/or
//! `min_free_percent`), optionally enough free inodes, and is not mounted read-only.

use super::ProbeCtx;
use crate::config::probe::disk::DiskSpec;
use crate::core::outcome::Outcome;
use std::path::{Path, PathBuf};

/// Filesystem numbers for one path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub free_bytes: u64,
    pub free_percent: f64,
    pub free_inodes: Option<u64>,
    pub read_only: bool,
}

/// statvfs the filesystem holding `path`.
pub fn usage(path: &Path) -> Result<Usage, String> {
    use nix::sys::statvfs::{FsFlags, statvfs};
    let s = statvfs(path).map_err(|e| format!("statvfs {}: {}", path.display(), e.desc()))?;
    let frsize = s.fragment_size() as u64;
    let avail = s.blocks_available() as u64;
    let used = (s.blocks() as u64).saturating_sub(s.blocks_free() as u64);
    let free_percent = if used + avail == 0 {
        100.0
    } else {
        avail as f64 * 100.0 / (used + avail) as f64
    };
    Ok(Usage {
        free_bytes: avail.saturating_mul(frsize),
        free_percent,
        // Filesystems without inode accounting (btrfs, some FUSE) report 0 total.
        free_inodes: (s.files() > 0).then_some(s.files_available() as u64),
        read_only: s.flags().contains(FsFlags::ST_RDONLY),
    })
}

/// Human-readable binary size.
pub fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Judge measured usage against the spec.
pub fn judge(spec: &DiskSpec, shown: &str, u: &Usage) -> Outcome {
    let mut summary = format!(
        "{shown}: {} free ({:.1}%)",
        human(u.free_bytes),
        u.free_percent
    );
    if let Some(i) = u.free_inodes
        && spec.min_free_inodes.is_some()
    {
        summary.push_str(&format!(", {i} inodes free"));
    }
    if u.read_only && !spec.allow_read_only {
        return Outcome::fail(format!("{summary}; the filesystem is mounted read-only"));
    }
    if let Some(min) = spec.min_free_bytes.as_ref().and_then(|b| b.bytes().ok())
        && u.free_bytes < min
    {
        return Outcome::fail(format!("{summary}, below min_free_bytes {}", human(min)));
    }
    if let Some(min) = spec.min_free_percent
        && u.free_percent < min
    {
        return Outcome::fail(format!("{summary}, below min_free_percent {min}%"));
    }
    if let Some(min) = spec.min_free_inodes
        && let Some(i) = u.free_inodes
        && i < min
    {
        return Outcome::fail(format!("{summary}, below min_free_inodes {min}"));
    }
    Outcome::pass(summary)
}

/// `~` expanded; a missing path measured at its nearest existing parent.
fn resolve(path: &str) -> (PathBuf, Option<PathBuf>) {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let full = crate::config::expand_path(path, home.as_deref(), None);
    let mut at = full.clone();
    while !at.exists() {
        match at.parent() {
            Some(p) => at = p.to_path_buf(),
            None => break,
        }
    }
    if at == full {
        (full, None)
    } else {
        (at, Some(full))
    }
}

pub async fn check(spec: &DiskSpec, _ctx: &ProbeCtx) -> Outcome {
    let spec = spec.clone();
    // statvfs can block (a hung network mount): keep it off the async workers.
    let r = tokio::task::spawn_blocking(move || {
        let (at, missing) = resolve(&spec.path);
        let shown = match &missing {
            Some(m) => format!(
                "{} (not created yet; measured at {})",
                m.display(),
                at.display()
            ),
            None => at.display().to_string(),
        };
        match usage(&at) {
            Ok(u) => judge(&spec, &shown, &u),
            Err(e) => Outcome::error(e),
        }
    })
    .await;
    r.unwrap_or_else(|e| Outcome::error(format!("internal error: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Status;

    fn spec() -> DiskSpec {
        DiskSpec {
            path: "/".into(),
            min_free_bytes: None,
            min_free_percent: None,
            min_free_inodes: None,
            allow_read_only: false,
        }
    }

    #[test]
    fn thresholds_judge() {
        let u = Usage {
            free_bytes: 2 << 30,
            free_percent: 20.0,
            free_inodes: Some(1000),
            read_only: false,
        };
        let mut s = spec();
        s.min_free_bytes = Some(crate::config::probe::disk::ByteSize::Text("1G".into()));
        assert_eq!(judge(&s, "/", &u), Outcome::pass("/: 2.0 GiB free (20.0%)"));
        s.min_free_bytes = Some(crate::config::probe::disk::ByteSize::Text("3G".into()));
        assert_eq!(
            judge(&s, "/", &u).output,
            "/: 2.0 GiB free (20.0%), below min_free_bytes 3.0 GiB"
        );
        s.min_free_bytes = None;
        s.min_free_percent = Some(25.0);
        assert_eq!(judge(&s, "/", &u).status, Status::Fail);
        s.min_free_percent = Some(10.0);
        s.min_free_inodes = Some(5000);
        assert!(
            judge(&s, "/", &u)
                .output
                .ends_with("below min_free_inodes 5000")
        );
        s.min_free_inodes = None;
        let ro = Usage {
            read_only: true,
            ..u
        };
        assert!(judge(&s, "/", &ro).output.contains("read-only"));
        s.allow_read_only = true;
        assert_eq!(judge(&s, "/", &ro).status, Status::Pass);
    }

    #[test]
    fn real_root_filesystem_measures() {
        let u = usage(Path::new("/")).unwrap();
        assert!(u.free_percent >= 0.0 && u.free_percent <= 100.0);
        assert!(usage(Path::new("/definitely/not/here")).is_err());
    }

    #[test]
    fn missing_path_is_measured_at_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c");
        let (at, missing) = resolve(p.to_str().unwrap());
        assert_eq!(at, dir.path());
        assert_eq!(missing, Some(p));
    }
}
