//! `launchd` probe (macOS): a job label that must be running, looked up in the system domain
//! and the user's gui domain.

use super::spec::{Check, KindSpec};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchdSpec {
    pub label: String,
}

impl KindSpec for LaunchdSpec {
    fn validate(&self, c: &mut Check<'_>) {
        if self.label.trim().is_empty() {
            c.error("label", "must not be empty");
        }
    }
    fn programs(&self) -> Vec<(String, &'static str)> {
        vec![("launchctl".to_string(), "label")]
    }
    fn available(&self) -> Result<(), String> {
        if cfg!(target_os = "macos") {
            Ok(())
        } else {
            Err("launchd probes run only on macOS".to_string())
        }
    }
}
