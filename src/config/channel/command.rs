//! `command` channel spec: a shell command that gets the message on stdin. Running it lives in
//! `crate::notify::command`.

use super::blank;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    pub command: String,
}

impl CommandSpec {
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        blank(&self.command)
            .map(|p| vec![("command", p)])
            .unwrap_or_default()
    }
}
