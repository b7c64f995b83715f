//! `disk` probe: the filesystem holding `path` has enough free space (`min_free_bytes` and/or
//! `min_free_percent`), optionally enough free inodes, and is not mounted read-only.

use super::engine::ProbeCtx;
use super::outcome::Outcome;
use super::spec::{Check, KindSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// A path on the filesystem to check (`~` expands to the home dir). When it does not exist
    /// yet, its nearest existing parent is measured (and the output says so).
    pub path: String,
    /// Bytes free (as available to unprivileged users): a number or `"10 GiB"`, `"500M"`.
    pub min_free_bytes: Option<ByteSize>,
    /// Percent free, as `df` counts it (available / (used + available)).
    pub min_free_percent: Option<f64>,
    pub min_free_inodes: Option<u64>,
    /// A read-only mount fails the probe unless this is set.
    #[serde(default)]
    pub allow_read_only: bool,
}

/// A byte count written as a number or with a unit (`"1.5G"`, `"10 GiB"`, `"500 MB"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(i64),
    Text(String),
}

impl ByteSize {
    /// The number of bytes (units are binary: K = KiB = 1024).
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            ByteSize::Bytes(n) if *n >= 0 => Ok(*n as u64),
            ByteSize::Bytes(n) => Err(format!("{n} is negative")),
            ByteSize::Text(t) => {
                let s = t.trim();
                let split = s
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(s.len());
                let (num, unit) = s.split_at(split);
                let n: f64 = num
                    .parse()
                    .map_err(|_| format!("`{t}` is not a size like \"10 GiB\""))?;
                let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
                    "" | "b" => 1.0,
                    "k" | "kb" | "kib" => 1024.0,
                    "m" | "mb" | "mib" => 1024.0 * 1024.0,
                    "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
                    "t" | "tb" | "tib" => 1024.0f64.powi(4),
                    _ => return Err(format!("`{t}`: unknown unit (use K, M, G or T)")),
                };
                Ok((n * mult) as u64)
            }
        }
    }
}

impl KindSpec for DiskSpec {
    fn validate(&self, c: &mut Check<'_>) {
        if self.path.trim().is_empty() {
            c.error("path", "must not be empty");
        } else if !(self.path.starts_with('/') || self.path == "~" || self.path.starts_with("~/")) {
            c.error(
                "path",
                format!("`{}` must be absolute (or start with ~/)", self.path),
            );
        }
        if self.min_free_bytes.is_none() && self.min_free_percent.is_none() {
            c.error(
                "path",
                "give min_free_bytes and/or min_free_percent (what counts as enough free space)",
            );
        }
        if let Some(b) = &self.min_free_bytes
            && let Err(e) = b.bytes()
        {
            c.error("min_free_bytes", e);
        }
        if let Some(p) = self.min_free_percent
            && !(0.0..=100.0).contains(&p)
        {
            c.error("min_free_percent", format!("{p} is not between 0 and 100"));
        }
    }
}

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
    use crate::probe::Status;

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
    fn sizes_parse() {
        assert_eq!(ByteSize::Bytes(10).bytes(), Ok(10));
        assert_eq!(ByteSize::Text("1G".into()).bytes(), Ok(1 << 30));
        assert_eq!(ByteSize::Text("1.5 GiB".into()).bytes(), Ok(3 << 29));
        assert_eq!(ByteSize::Text("500 mb".into()).bytes(), Ok(500 << 20));
        assert!(ByteSize::Text("10 parsecs".into()).bytes().is_err());
        assert!(ByteSize::Bytes(-1).bytes().is_err());
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
        s.min_free_bytes = Some(ByteSize::Text("1G".into()));
        assert_eq!(judge(&s, "/", &u), Outcome::pass("/: 2.0 GiB free (20.0%)"));
        s.min_free_bytes = Some(ByteSize::Text("3G".into()));
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
