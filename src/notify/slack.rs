//! `slack`: an incoming webhook (`webhook_url`), JSON `{"text": ...}`. The URL is itself a
//! secret and is redacted like one.

use super::{DeliveryError, Notice, NotifyCtx, http_error, transport};
use crate::config::channel::slack::SlackSpec;

/// The JSON body.
pub fn body(notice: &Notice) -> serde_json::Value {
    serde_json::json!({ "text": notice.text() })
}

pub async fn send(spec: &SlackSpec, notice: &Notice, ctx: &NotifyCtx) -> Result<(), DeliveryError> {
    let resp = ctx
        .http
        .post(&spec.webhook_url)
        .json(&body(notice))
        .send()
        .await
        .map_err(transport)?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(http_error(resp, &ctx.redactor).await)
    }
}
