//! `disk` probe spec: a path and the free space (bytes, percent, inodes) that counts as enough.
//! Measuring lives in `crate::probe::disk`.

use super::{Check, Kind, KindSpec, ProbeKind};
use serde::{Deserialize, Serialize};

/// `[disk.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "disk",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Disk),
};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(ByteSize::Bytes(10).bytes(), Ok(10));
        assert_eq!(ByteSize::Text("1G".into()).bytes(), Ok(1 << 30));
        assert_eq!(ByteSize::Text("1.5 GiB".into()).bytes(), Ok(3 << 29));
        assert_eq!(ByteSize::Text("500 mb".into()).bytes(), Ok(500 << 20));
        assert!(ByteSize::Text("10 parsecs".into()).bytes().is_err());
        assert!(ByteSize::Bytes(-1).bytes().is_err());
    }
}
