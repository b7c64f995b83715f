//! `logfile` probe spec (not `log`: `[log]` is Talon's own log section): a file to follow, a `pattern`, and how many matching lines are still fine
//! (`max_matches`) within the last `window_secs` or the last `within_lines` lines. The check
//! (following the file across rotation) lives in `crate::probe::logfile`.

use super::{Check, Kind, KindSpec, ProbeKind};
use serde::{Deserialize, Serialize};

/// `[logfile.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "logfile",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Logfile),
};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogfileSpec {
    /// The file to follow (absolute, or starting with `~/`). Rotation by rename or truncation is
    /// followed.
    pub path: String,
    /// A regular expression matched against each line.
    pub pattern: String,
    /// The most matching lines that still pass (default 0: any match fails).
    #[serde(default)]
    pub max_matches: i64,
    /// Count the matches among the lines written in the last this many seconds.
    pub window_secs: Option<i64>,
    /// Count the matches among the last this many lines of the file.
    pub within_lines: Option<i64>,
}

impl KindSpec for LogfileSpec {
    fn validate(&self, c: &mut Check<'_>) {
        if !(self.path.starts_with('/') || self.path.starts_with("~/")) {
            c.error(
                "path",
                format!("`{}` must be absolute (or start with ~/)", self.path),
            );
        }
        if let Err(e) = regex::Regex::new(&self.pattern) {
            c.error("pattern", format!("invalid regular expression: {e}"));
        } else if self.pattern.is_empty() {
            c.error("pattern", "must not be empty (it would match every line)");
        }
        if self.max_matches < 0 {
            c.error("max_matches", format!("{} is negative", self.max_matches));
        }
        match (self.window_secs, self.within_lines) {
            (Some(_), Some(_)) => c.error(
                "within_lines",
                "give window_secs or within_lines, not both",
            ),
            (None, None) => c.error(
                "pattern",
                "give window_secs (matches in the last N seconds) or within_lines (in the last N lines)",
            ),
            (Some(w), None) if !(1..=30 * 86_400).contains(&w) => {
                c.error("window_secs", format!("{w} is not between 1 and 2592000 (30 days)"))
            }
            (None, Some(n)) if !(1..=100_000).contains(&n) => {
                c.error("within_lines", format!("{n} is not between 1 and 100000"))
            }
            _ => {}
        }
    }
}
