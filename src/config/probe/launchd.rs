//! `launchd` probe spec (macOS): a job label. The `launchctl print` parser and the check live in
//! `crate::probe::launchd`.

use super::{Check, Kind, KindSpec, ProbeKind};
use serde::{Deserialize, Serialize};

/// `[launchd.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "launchd",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Launchd),
};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchdSpec {
    pub label: String,
}

impl KindSpec for LaunchdSpec {
    fn validate(&self, c: &mut Check<'_>) {
        if self.label.trim().is_empty() {
            c.error("label", "must not be empty");
        } else if self.label.contains('/') || self.label.chars().any(char::is_whitespace) {
            c.error(
                "label",
                format!(
                    "`{}` is not a launchd label (no domain, no spaces: e.g. com.example.agent)",
                    self.label
                ),
            );
        }
    }
    fn programs(&self) -> Vec<(String, &'static str)> {
        vec![("launchctl".to_string(), "label")]
    }
    fn available(&self) -> Result<(), String> {
        if cfg!(target_os = "macos") {
            Ok(())
        } else {
            Err(UNAVAILABLE.to_string())
        }
    }
}

/// What a launchd probe reports off macOS.
pub const UNAVAILABLE: &str = "launchd probes run only on macOS";
