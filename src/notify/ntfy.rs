//! `ntfy`: `POST {server}/{topic}` with the message as the body and `Title`, `Priority` and
//! `Tags` headers. `priority` (1–5 or min/low/default/high/urgent) applies to SOS and reminders;
//! resolved and test messages go at the default priority.

use super::{DeliveryError, Notice, NotifyCtx, http_error, transport};
use crate::config::channel::ntfy::{NtfySpec, Priority};

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
        super::NoticeKind::Digest => "newspaper",
        super::NoticeKind::System => "warning",
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
