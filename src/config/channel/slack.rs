//! `slack` channel spec: an incoming-webhook URL. Sending lives in `crate::notify::slack`.

use super::url_problem;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSpec {
    pub webhook_url: String,
}

impl SlackSpec {
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        url_problem(&self.webhook_url)
            .map(|p| vec![("webhook_url", p)])
            .unwrap_or_default()
    }
}
