//! `process` probe spec: a command-line pattern and how many matching processes may run.
//! Listing processes lives in `crate::probe::process`.

use super::{Check, Kind, KindSpec, ProbeKind};
use serde::{Deserialize, Serialize};

/// `[process.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "process",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Process),
};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Regular expression matched against each process's full command line.
    pub pattern: String,
    pub min_count: Option<u32>,
    pub max_count: Option<u32>,
}

impl ProcessSpec {
    /// The least number of matching processes (default 1).
    pub fn min(&self) -> u32 {
        self.min_count.unwrap_or(1)
    }
}

impl KindSpec for ProcessSpec {
    fn validate(&self, c: &mut Check<'_>) {
        if self.pattern.is_empty() {
            c.error("pattern", "must not be empty");
        } else if let Err(e) = regex::Regex::new(&self.pattern) {
            c.error("pattern", format!("invalid regular expression: {e}"));
        }
        if let Some(max) = self.max_count
            && max < self.min()
        {
            c.error(
                "max_count",
                format!(
                    "max_count {max} is below min_count {} (set min_count = 0 to require none)",
                    self.min()
                ),
            );
        }
    }
    fn programs(&self) -> Vec<(String, &'static str)> {
        if cfg!(target_os = "linux") {
            Vec::new()
        } else {
            vec![("ps".to_string(), "pattern")]
        }
    }
}
