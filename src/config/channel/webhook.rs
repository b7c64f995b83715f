//! `webhook` channel spec: the URL and the optional HMAC key's env var. Sending lives in
//! `crate::notify::webhook`.

use super::{blank, url_problem};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    pub url: String,
    /// Environment variable holding the HMAC key.
    pub hmac_secret_env: Option<String>,
}

impl WebhookSpec {
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(p) = url_problem(&self.url) {
            v.push(("url", p));
        }
        if let Some(p) = self.hmac_secret_env.as_deref().and_then(blank) {
            v.push(("hmac_secret_env", p));
        }
        v
    }

    /// The HMAC key, when configured and set.
    pub fn secret(&self) -> Option<String> {
        self.hmac_secret_env
            .as_deref()
            .and_then(|e| std::env::var(e).ok())
    }
}
