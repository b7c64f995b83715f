//! `telegram`: the Bot API's `sendMessage` to `chat_id`.
//!
//! The bot token comes from exactly one of `token_env`, `token_file` or `token_command` (run
//! through [`crate::proc`] with a timeout; the FIRST line of its output must look like a bot
//! token, `digits:characters`, or delivery fails with a clear error — a CLI that starts printing
//! a warning line must not silently break every SOS). The token goes only into the request URL
//! inside this process: never into a child's argv or environment, never into a log line or an
//! error message (reqwest errors are stripped of their URL). A 429 is honoured by waiting
//! `parameters.retry_after` within the channel's time limit.

use super::{DeliveryError, Notice, NotifyCtx, transport};
use crate::config::channel::telegram::{TelegramSpec, expand_home, looks_like_token};
use crate::proc::Cmd;
use serde::Deserialize;
use std::time::Duration;

/// Default Bot API base URL.
pub const DEFAULT_API_BASE: &str = "https://api.telegram.org";
/// Default time limit for `token_command`.
pub const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Telegram's message length limit (characters).
const MAX_TEXT: usize = 4096;

impl TelegramSpec {
    /// Find the token. Errors never contain it.
    pub async fn token(&self, ctx: &NotifyCtx) -> Result<String, DeliveryError> {
        let (token, from) = if let Some(e) = &self.token_env {
            let t = std::env::var(e).map_err(|_| {
                DeliveryError::Token(format!("environment variable {e} is not set"))
            })?;
            (t.trim().to_string(), format!("environment variable {e}"))
        } else if let Some(f) = &self.token_file {
            let t = std::fs::read_to_string(expand_home(f))
                .map_err(|e| DeliveryError::Token(format!("cannot read token_file {f}: {e}")))?;
            let first = t.lines().next().unwrap_or("").trim().to_string();
            (first, format!("the first line of {f}"))
        } else if let Some(c) = &self.token_command {
            let timeout = self
                .token_command_timeout_secs
                .map(Duration::from_secs_f64)
                .unwrap_or(DEFAULT_TOKEN_TIMEOUT);
            let f = Cmd::shell(c)
                .search_path(&ctx.search_path)
                .timeout(timeout)
                .capture_limit(16 * 1024)
                .run()
                .await
                .map_err(|e| DeliveryError::Token(format!("token_command: {e}")))?;
            let out = f.stdout.text();
            let first = out.lines().next().unwrap_or("").trim().to_string();
            // Learn it before any message could quote it (stderr may repeat it).
            if looks_like_token(&first) {
                ctx.redactor.learn(first.as_str());
            }
            if !f.end.success() {
                let why = ctx.redactor.clean(&f.stderr.text());
                let why = why
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                return Err(DeliveryError::Token(format!(
                    "token_command `{}` failed ({}){}",
                    ctx.redactor.clean(c),
                    f.end,
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(": {why}")
                    }
                )));
            }
            (
                first,
                "the first line of token_command's output".to_string(),
            )
        } else {
            return Err(DeliveryError::Config(
                "no token source (token_env, token_file or token_command)".into(),
            ));
        };
        if !looks_like_token(&token) {
            return Err(DeliveryError::Token(format!(
                "{from} does not look like a Telegram bot token (digits:characters); \
                 if a command prints a warning or banner first, make it print only the token"
            )));
        }
        ctx.redactor.learn(token.as_str());
        Ok(token)
    }
}

#[derive(Debug, Deserialize)]
struct ApiResponse {
    ok: bool,
    description: Option<String>,
    parameters: Option<ApiParameters>,
}

#[derive(Debug, Deserialize)]
struct ApiParameters {
    retry_after: Option<u64>,
}

/// What one Bot API answer means. The body is untrusted text from the network: anything that
/// is not a well-formed `{"ok": true}` with a 2xx status is a failure, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAnswer {
    /// Accepted (`2xx` and `"ok": true`).
    Delivered,
    /// 429: wait this many seconds (`parameters.retry_after`, else 1) and try again.
    RetryAfter(u64),
    /// Refused: the status and the API's `description` (else the first 200 characters of the
    /// body), not yet redacted.
    Rejected { status: u16, description: String },
}

/// Judge a Bot API answer from its status and raw body.
pub fn interpret(status: u16, raw: &str) -> ApiAnswer {
    let api: Option<ApiResponse> = serde_json::from_str(raw).ok();
    if (200..300).contains(&status) && api.as_ref().is_some_and(|a| a.ok) {
        return ApiAnswer::Delivered;
    }
    if status == 429 {
        return ApiAnswer::RetryAfter(
            api.as_ref()
                .and_then(|a| a.parameters.as_ref())
                .and_then(|p| p.retry_after)
                .unwrap_or(1),
        );
    }
    let description = api
        .and_then(|a| a.description)
        .unwrap_or_else(|| raw.chars().take(200).collect());
    ApiAnswer::Rejected {
        status,
        description,
    }
}

/// When to retry after a 429 asking for `wait` seconds, or `None` when that is not before
/// `deadline` (a `retry_after` too large to add to a clock reading counts as past it).
pub fn retry_at(
    now: crate::clock::Instant,
    wait: u64,
    deadline: crate::clock::Instant,
) -> Option<crate::clock::Instant> {
    now.checked_add(Duration::from_secs(wait))
        .filter(|until| *until < deadline)
}

/// Send a notice (already redacted) as a plain-text message.
pub async fn send(
    spec: &TelegramSpec,
    notice: &Notice,
    ctx: &NotifyCtx,
    deadline: crate::clock::Instant,
) -> Result<(), DeliveryError> {
    let token = spec.token(ctx).await?;
    let base = spec.api_base.as_deref().unwrap_or(DEFAULT_API_BASE);
    let url = format!("{}/bot{token}/sendMessage", base.trim_end_matches('/'));
    let mut text = notice.text();
    if text.chars().count() > MAX_TEXT {
        text = text.chars().take(MAX_TEXT - 1).collect::<String>() + "…";
    }
    let body = serde_json::json!({
        "chat_id": spec.chat_id.as_json(),
        "text": text,
        "disable_web_page_preview": true,
    });
    loop {
        let resp = ctx
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let raw = resp.text().await.map_err(transport)?;
        match interpret(status, &raw) {
            ApiAnswer::Delivered => return Ok(()),
            ApiAnswer::RetryAfter(wait) => {
                let Some(until) = retry_at(crate::clock::Instant::now(), wait, deadline) else {
                    return Err(DeliveryError::RateLimited { retry_after: wait });
                };
                tracing::info!(retry_after = wait, "telegram asked to wait (429); retrying");
                tokio::time::sleep_until(until).await;
            }
            ApiAnswer::Rejected {
                status,
                description,
            } => {
                return Err(DeliveryError::Http {
                    status,
                    detail: ctx.redactor.clean(&description),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_interpreted() {
        assert_eq!(
            interpret(200, r#"{"ok":true,"result":{}}"#),
            ApiAnswer::Delivered
        );
        assert_eq!(
            interpret(200, r#"{"ok":false,"description":"chat not found"}"#),
            ApiAnswer::Rejected {
                status: 200,
                description: "chat not found".into()
            }
        );
        assert_eq!(
            interpret(429, r#"{"ok":false,"parameters":{"retry_after":7}}"#),
            ApiAnswer::RetryAfter(7)
        );
        assert_eq!(interpret(429, "<html>"), ApiAnswer::RetryAfter(1));
        assert_eq!(
            interpret(502, "<html>bad gateway</html>"),
            ApiAnswer::Rejected {
                status: 502,
                description: "<html>bad gateway</html>".into()
            }
        );
    }

    /// Regression: `Instant::now() + Duration::from_secs(retry_after)` panicked ("overflow when
    /// adding duration to instant") on a server's absurd `retry_after`.
    #[test]
    fn a_huge_retry_after_is_past_the_deadline_not_a_panic() {
        let now = crate::clock::Instant::now();
        let deadline = now + Duration::from_secs(20);
        assert_eq!(retry_at(now, u64::MAX, deadline), None);
        assert_eq!(retry_at(now, 20, deadline), None);
        assert_eq!(
            retry_at(now, 1, deadline),
            Some(now + Duration::from_secs(1))
        );
    }

    #[test]
    fn token_shape() {
        assert!(looks_like_token(
            "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
        ));
        assert!(!looks_like_token("Warning: something changed"));
        assert!(!looks_like_token("123:short"));
        assert!(!looks_like_token("abc:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"));
        assert!(!looks_like_token(
            "123456789:AAHdqTcvCH1vGWJx fSeofSAs0K5PALDsaw"
        ));
    }
}
