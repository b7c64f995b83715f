//! `webhook`: `POST url` with a JSON body carrying the notice's fields and its rendered text.
//! With `hmac_secret_env`, the body is signed: header `X-Talon-Signature: sha256=<hex of
//! HMAC-SHA256(secret, raw body)>` (the body includes `sent_at`, so a receiver can reject
//! replays).

use super::{DeliveryError, Notice, NotifyCtx, http_error, transport};
use crate::config::channel::webhook::WebhookSpec;
use crate::format::rfc3339;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Talon-Signature";

/// The JSON body: every notice field, plus `title`, `text`, `source` and `sent_at`.
pub fn body(notice: &Notice) -> serde_json::Value {
    let mut v = serde_json::to_value(notice).unwrap_or_else(|_| serde_json::json!({}));
    if let serde_json::Value::Object(o) = &mut v {
        o.insert("source".into(), "talon".into());
        o.insert("title".into(), notice.title().into());
        o.insert("text".into(), notice.text().into());
        o.insert("sent_at".into(), rfc3339(notice.at_ms).into());
        if let Some(s) = notice.since_ms {
            o.insert("since".into(), rfc3339(s).into());
        }
    }
    v
}

/// `sha256=<lowercase hex>` of HMAC-SHA256(secret, body).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let mut s = String::from("sha256=");
    for b in tag.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub async fn send(
    spec: &WebhookSpec,
    notice: &Notice,
    ctx: &NotifyCtx,
) -> Result<(), DeliveryError> {
    let mut v = body(notice);
    ctx.redactor.redact_json(&mut v);
    let bytes = serde_json::to_vec(&v).map_err(|e| DeliveryError::Transport(e.to_string()))?;
    let mut req = ctx
        .http
        .post(&spec.url)
        .header("Content-Type", "application/json");
    if let Some(env) = &spec.hmac_secret_env {
        let secret = std::env::var(env).map_err(|_| {
            DeliveryError::Config(format!(
                "hmac_secret_env: environment variable {env} is not set"
            ))
        })?;
        ctx.redactor.learn(secret.as_str());
        req = req.header(SIGNATURE_HEADER, signature(secret.as_bytes(), &bytes));
    }
    let resp = req.body(bytes).send().await.map_err(transport)?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(http_error(resp, &ctx.redactor).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
