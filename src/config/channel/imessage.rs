//! `imessage` channel spec (macOS): the recipient. Sending (osascript) lives in
//! `crate::notify::imessage`.

use super::blank;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImessageSpec {
    /// Phone number or Apple ID email.
    pub recipient: String,
}

impl ImessageSpec {
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(p) = blank(&self.recipient) {
            v.push(("recipient", p));
        } else if self.recipient.trim().starts_with('-') {
            v.push(("recipient", "must not start with `-`".into()));
        }
        v
    }
}
