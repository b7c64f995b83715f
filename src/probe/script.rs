//! `script` probe: a shell command (`sh -c`, not a login shell); exit 0 passes.

use super::spec::{Check, KindSpec};
use crate::config::path::program_of_shell;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSpec {
    pub command: String,
    /// Extra environment for this probe only.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl KindSpec for ScriptSpec {
    fn validate(&self, c: &mut Check<'_>) {
        if self.command.trim().is_empty() {
            c.error("command", "must not be empty");
        }
    }
    fn programs(&self) -> Vec<(String, &'static str)> {
        program_of_shell(&self.command)
            .map(|p| vec![(p, "command")])
            .unwrap_or_default()
    }
}
