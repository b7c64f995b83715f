//! `script` probe spec: a shell command (`sh -c`) and extra env. The check lives in
//! `crate::probe::script`.

use super::{Check, Kind, KindSpec, ProbeKind};
use crate::config::path::program_of_shell;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[script.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "script",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Script),
};

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
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                c.error("env", format!("`{k}` is not an environment variable name"));
            } else if k == "PATH" {
                c.error(
                    "env",
                    "PATH is Talon's compiled PATH; add directories with the top-level `path = [...]`",
                );
            }
        }
    }
    fn programs(&self) -> Vec<(String, &'static str)> {
        program_of_shell(&self.command)
            .map(|p| vec![(p, "command")])
            .unwrap_or_default()
    }
}
