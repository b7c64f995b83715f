//! Notification channels: one file per kind. `[notify.NAME]` tables in the main config.

use crate::config::diag::{Diagnostics, Source};
use crate::config::tomlx::{self, Value};
use serde::{Deserialize, Serialize};

/// One configured channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelConfig {
    pub name: String,
    #[serde(flatten)]
    pub kind: ChannelKind,
}

/// Channel kinds, tagged by `kind = "..."`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChannelKind {
    /// Runs a command with the message on stdin.
    Command { command: String },
}

impl ChannelConfig {
    /// Programs this channel runs, with the key naming them.
    pub fn programs(&self) -> Vec<(String, &'static str)> {
        match &self.kind {
            ChannelKind::Command { command } => crate::config::path::program_of_shell(command)
                .map(|p| vec![(p, "command")])
                .unwrap_or_default(),
        }
    }
}

/// Parse one `[notify.NAME]` table.
pub fn parse_channel(
    src: &Source,
    path: &str,
    name: &str,
    value: &Value<'_>,
    diags: &mut Diagnostics,
) -> Option<ChannelConfig> {
    let kind: ChannelKind = tomlx::section(src, path, value, &["kind"], diags)?;
    Some(ChannelConfig {
        name: name.to_string(),
        kind,
    })
}
