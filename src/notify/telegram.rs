//! `telegram`: the Bot API's `sendMessage` to `chat_id`.
//!
//! The bot token comes from exactly one of `token_env`, `token_file` or `token_command` (run
//! through [`crate::proc`] with a timeout; the FIRST line of its output must look like a bot
//! token, `digits:characters`, or delivery fails with a clear error — a CLI that starts printing
//! a warning line must not silently break every SOS). The token goes only into the request URL
//! inside this process: never into a child's argv or environment, never into a log line or an
//! error message (reqwest errors are stripped of their URL). A 429 is honoured by waiting
//! `parameters.retry_after` within the channel's time limit.

use super::{DeliveryError, Notice, NotifyCtx, blank, transport, url_problem};
use crate::proc::Cmd;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Default Bot API base URL.
pub const DEFAULT_API_BASE: &str = "https://api.telegram.org";
/// Default time limit for `token_command`.
pub const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Telegram's message length limit (characters).
const MAX_TEXT: usize = 4096;

/// A chat id: a number, or a string (`"-100123"`, `"@channel"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ChatId {
    Number(i64),
    Text(String),
}

impl ChatId {
    fn as_json(&self) -> serde_json::Value {
        match self {
            ChatId::Number(n) => serde_json::json!(n),
            ChatId::Text(s) => serde_json::json!(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSpec {
    pub chat_id: ChatId,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// File whose first line is the token.
    pub token_file: Option<String>,
    /// Shell command whose first output line is the token.
    pub token_command: Option<String>,
    pub token_command_timeout_secs: Option<f64>,
    /// Bot API base URL (default https://api.telegram.org).
    pub api_base: Option<String>,
}

/// `~/x` → `$HOME/x`.
fn expand_home(p: &str) -> std::path::PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => std::path::PathBuf::from(p),
    }
}

/// Whether a line looks like a bot token: `digits:characters`.
pub fn looks_like_token(s: &str) -> bool {
    let Some((id, secret)) = s.split_once(':') else {
        return false;
    };
    id.len() >= 3
        && id.bytes().all(|b| b.is_ascii_digit())
        && secret.len() >= 20
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl TelegramSpec {
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        match &self.chat_id {
            ChatId::Text(s) if s.trim().is_empty() => {
                v.push(("chat_id", "must not be empty".into()))
            }
            _ => {}
        }
        let sources = [
            self.token_env.is_some(),
            self.token_file.is_some(),
            self.token_command.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if sources != 1 {
            v.push((
                "chat_id",
                "give the bot token's source as exactly one of token_env, token_file or token_command"
                    .into(),
            ));
        }
        for (k, x) in [
            ("token_env", &self.token_env),
            ("token_file", &self.token_file),
            ("token_command", &self.token_command),
        ] {
            if let Some(p) = x.as_deref().and_then(blank) {
                v.push((k, p));
            }
        }
        if let Some(t) = self.token_command_timeout_secs
            && !(t.is_finite() && t > 0.0 && t < 1e6)
        {
            v.push((
                "token_command_timeout_secs",
                format!("must be a positive number of seconds, got {t}"),
            ));
        }
        if let Some(p) = self.api_base.as_deref().and_then(url_problem) {
            v.push(("api_base", p));
        }
        v
    }

    /// The token when it can be read without running anything (env var or file).
    pub fn static_token(&self) -> Option<String> {
        if let Some(e) = &self.token_env {
            return std::env::var(e).ok().map(|t| t.trim().to_string());
        }
        if let Some(f) = &self.token_file {
            return std::fs::read_to_string(expand_home(f))
                .ok()
                .and_then(|t| t.lines().next().map(|l| l.trim().to_string()));
        }
        None
    }

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
    now: tokio::time::Instant,
    wait: u64,
    deadline: tokio::time::Instant,
) -> Option<tokio::time::Instant> {
    now.checked_add(Duration::from_secs(wait))
        .filter(|until| *until < deadline)
}

/// Send a notice (already redacted) as a plain-text message.
pub async fn send(
    spec: &TelegramSpec,
    notice: &Notice,
    ctx: &NotifyCtx,
    deadline: tokio::time::Instant,
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
                let Some(until) = retry_at(tokio::time::Instant::now(), wait, deadline) else {
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
        let now = tokio::time::Instant::now();
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
