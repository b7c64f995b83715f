//! `ntfy`: `POST {server}/{topic}` with the message as the body and `Title`, `Priority` and
//! `Tags` headers. `priority` (1–5 or min/low/default/high/urgent) applies to SOS and reminders;
//! resolved and test messages go at the default priority.

use super::{DeliveryError, Notice, NotifyCtx, blank, http_error, transport, url_problem};
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
    /// Default https://ntfy.sh.
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

/// Header values must be visible ASCII.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

pub async fn send(spec: &NtfySpec, notice: &Notice, ctx: &NotifyCtx) -> Result<(), DeliveryError> {
    let priority = if notice.kind.is_alarm() {
        spec.priority
            .as_ref()
            .and_then(Priority::level)
            .unwrap_or(5)
    } else {
        3
    };
    let tags = match notice.kind {
        super::NoticeKind::Sos | super::NoticeKind::Reminder => "rotating_light",
        super::NoticeKind::Resolved => "white_check_mark",
        super::NoticeKind::Test => "test_tube",
    };
    let resp = ctx
        .http
        .post(spec.endpoint())
        .header("Title", header_safe(&notice.title()))
        .header("Priority", priority.to_string())
        .header("Tags", tags)
        .body(notice.text())
        .send()
        .await
        .map_err(transport)?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(http_error(resp, &ctx.redactor).await)
    }
}
