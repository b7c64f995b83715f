//! `alertmanager` channel spec: the Alertmanager URL, severity label and firing TTL. Posting
//! alerts lives in `crate::notify::alertmanager`.

use super::url_problem;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSpec {
    /// Alertmanager's base URL (`http://127.0.0.1:9093`).
    pub url: String,
    /// `severity` label of probe alerts (default `critical`).
    pub severity: Option<String>,
    pub firing_ttl_secs: Option<u64>,
}

impl AlertmanagerSpec {
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(p) = url_problem(&self.url) {
            v.push(("url", p));
        }
        if self.firing_ttl_secs == Some(0) {
            v.push(("firing_ttl_secs", "must be at least 1".into()));
        }
        v
    }

    /// The alerts endpoint.
    pub fn endpoint(&self) -> String {
        let base = self.url.trim_end_matches('/');
        if base.ends_with("/api/v2/alerts") {
            base.to_string()
        } else {
            format!("{base}/api/v2/alerts")
        }
    }
}
