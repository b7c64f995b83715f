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
        let api: Option<ApiResponse> = serde_json::from_str(&raw).ok();
        if (200..300).contains(&status) && api.as_ref().is_some_and(|a| a.ok) {
            return Ok(());
        }
        let description = api
            .as_ref()
            .and_then(|a| a.description.clone())
            .unwrap_or_else(|| raw.chars().take(200).collect());
        let description = ctx.redactor.clean(&description);
        if status == 429 {
            let wait = api
                .as_ref()
                .and_then(|a| a.parameters.as_ref())
                .and_then(|p| p.retry_after)
                .unwrap_or(1);
            let until = tokio::time::Instant::now() + Duration::from_secs(wait);
            if until >= deadline {
                return Err(DeliveryError::RateLimited { retry_after: wait });
            }
            tracing::info!(retry_after = wait, "telegram asked to wait (429); retrying");
            tokio::time::sleep_until(until).await;
            continue;
        }
        return Err(DeliveryError::Http {
            status,
            detail: description,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
