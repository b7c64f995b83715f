//! `ntfy` channel spec: server, topic and priority. Sending lives in `crate::notify::ntfy`.

use super::{blank, url_problem};
use serde::{Deserialize, Serialize};

/// Default server.
pub const DEFAULT_SERVER: &str = "https://ntfy.sh";

/// A priority as written: a number or a name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Priority {
    Number(i64),
    Name(String),
}

impl Priority {
    /// The header value (1–5), or `None` when invalid.
    pub fn level(&self) -> Option<u8> {
        match self {
            Priority::Number(n) if (1..=5).contains(n) => Some(*n as u8),
            Priority::Number(_) => None,
            Priority::Name(s) => match s.to_ascii_lowercase().as_str() {
                "min" => Some(1),
                "low" => Some(2),
                "default" => Some(3),
                "high" => Some(4),
                "urgent" | "max" => Some(5),
                other => other.parse::<u8>().ok().filter(|n| (1..=5).contains(n)),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NtfySpec {
    /// Default <https://ntfy.sh>.
    pub server: Option<String>,
    pub topic: String,
    /// For SOS and reminders (default 5, urgent).
    pub priority: Option<Priority>,
}

impl NtfySpec {
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(p) = self.server.as_deref().and_then(url_problem) {
            v.push(("server", p));
        }
        if let Some(p) = blank(&self.topic) {
            v.push(("topic", p));
        } else if self.topic.contains('/') || self.topic.contains(char::is_whitespace) {
            v.push(("topic", "must be one word (no `/` or spaces)".into()));
        }
        if let Some(p) = &self.priority
            && p.level().is_none()
        {
            v.push((
                "priority",
                "must be 1-5 or one of min, low, default, high, urgent".into(),
            ));
        }
        v
    }

    /// Where to POST.
    pub fn endpoint(&self) -> String {
        format!(
            "{}/{}",
            self.server
                .as_deref()
                .unwrap_or(DEFAULT_SERVER)
                .trim_end_matches('/'),
            self.topic
        )
    }
}
