//! `telegram`: the Bot API — `sendMessage` to `chat_id`, `editMessageText` for the one message
//! an incident has ([`ThreadBook`]), `getUpdates` and `getMe` for commands from chat.
//!
//! The bot token comes from exactly one of `token_env`, `token_file` or `token_command` (run
//! through [`crate::proc`] with a timeout; the FIRST line of its output must look like a bot
//! token, `digits:characters`, or delivery fails with a clear error — a CLI that starts printing
//! a warning line must not silently break every SOS). The token goes only into the request URL
//! inside this process: never into a child's argv or environment, never into a log line or an
//! error message (reqwest errors are stripped of their URL). A 429 is honoured by waiting
//! `parameters.retry_after` within the channel's time limit.

use super::{DeliveryError, Notice, NoticeKind, NotifyCtx, transport};
use crate::config::channel::telegram::{TelegramSpec, expand_home, looks_like_token};
use crate::proc::Cmd;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
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

/// One Bot API method call (`POST <api_base>/bot<token>/<method>` with a JSON body): its
/// `result` on success. A 429 is waited out (`retry_after`) while that ends before `deadline`.
/// Errors never contain the token (the URL is stripped; descriptions are redacted).
pub async fn call(
    spec: &TelegramSpec,
    ctx: &NotifyCtx,
    token: &str,
    method: &str,
    body: &serde_json::Value,
    deadline: crate::clock::Instant,
) -> Result<serde_json::Value, DeliveryError> {
    let base = spec.api_base.as_deref().unwrap_or(DEFAULT_API_BASE);
    let url = format!("{}/bot{token}/{method}", base.trim_end_matches('/'));
    loop {
        let left = deadline.saturating_duration_since(crate::clock::Instant::now());
        let resp = ctx
            .http
            .post(&url)
            .timeout(left.max(Duration::from_millis(1)))
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let raw = resp.text().await.map_err(transport)?;
        match interpret(status, &raw) {
            ApiAnswer::Delivered => {
                return Ok(serde_json::from_str::<serde_json::Value>(&raw)
                    .ok()
                    .and_then(|mut v| v.get_mut("result").map(serde_json::Value::take))
                    .unwrap_or(serde_json::Value::Null));
            }
            ApiAnswer::RetryAfter(wait) => {
                let Some(until) = retry_at(crate::clock::Instant::now(), wait, deadline) else {
                    return Err(DeliveryError::RateLimited { retry_after: wait });
                };
                tracing::info!(
                    method,
                    retry_after = wait,
                    "telegram asked to wait (429); retrying"
                );
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

fn clip(text: &str) -> String {
    if text.chars().count() > MAX_TEXT {
        text.chars().take(MAX_TEXT - 1).collect::<String>() + "…"
    } else {
        text.to_string()
    }
}

/// `sendMessage` of plain text to `chat` (as a reply to `reply_to` when given): the new
/// message's id (0 when the answer did not say).
pub async fn send_text(
    spec: &TelegramSpec,
    ctx: &NotifyCtx,
    token: &str,
    chat: serde_json::Value,
    text: &str,
    reply_to: Option<i64>,
    deadline: crate::clock::Instant,
) -> Result<i64, DeliveryError> {
    let mut body = serde_json::json!({
        "chat_id": chat,
        "text": clip(text),
        "disable_web_page_preview": true,
    });
    if let Some(id) = reply_to {
        body["reply_parameters"] =
            serde_json::json!({ "message_id": id, "allow_sending_without_reply": true });
    }
    let r = call(spec, ctx, token, "sendMessage", &body, deadline).await?;
    Ok(r.get("message_id").and_then(|m| m.as_i64()).unwrap_or(0))
}

/// `editMessageText` of a message in the channel's chat. "message is not modified" (the same
/// text again) counts as done.
pub async fn edit_text(
    spec: &TelegramSpec,
    ctx: &NotifyCtx,
    token: &str,
    message_id: i64,
    text: &str,
    deadline: crate::clock::Instant,
) -> Result<(), DeliveryError> {
    let body = serde_json::json!({
        "chat_id": spec.chat_id.as_json(),
        "message_id": message_id,
        "text": clip(text),
        "disable_web_page_preview": true,
    });
    match call(spec, ctx, token, "editMessageText", &body, deadline).await {
        Err(DeliveryError::Http { detail, .. }) if detail.contains("message is not modified") => {
            Ok(())
        }
        r => r.map(|_| ()),
    }
}

/// Send a notice (already redacted). Without a thread book, or for a notice of no incident:
/// one new message. With one (the daemon's), the incident is one message: the first notice
/// creates it, later ones (reminder, resolved) edit it in place and send a short reply to it so
/// the phone notifies; an edit that fails falls back to a new message, which becomes the
/// incident's message from then on.
pub async fn send(
    channel: &str,
    spec: &TelegramSpec,
    notice: &Notice,
    ctx: &NotifyCtx,
    deadline: crate::clock::Instant,
) -> Result<(), DeliveryError> {
    let token = spec.token(ctx).await?;
    let text = notice.text();
    let chat = spec.chat_id.as_json();
    let key = match (&ctx.threads, &notice.incident_id) {
        (Some(book), Some(inc)) => Some((book, ThreadKey::new(channel, inc))),
        _ => None,
    };
    let Some((book, key)) = key else {
        send_text(spec, ctx, &token, chat, &text, None, deadline).await?;
        return Ok(());
    };
    let resolved = notice.kind == NoticeKind::Resolved;
    if let Some(t) = book.get(&key) {
        match edit_text(spec, ctx, &token, t.message_id, &text, deadline).await {
            Ok(()) => {
                book.set(&key, t.message_id, &text);
                if matches!(notice.kind, NoticeKind::Reminder | NoticeKind::Resolved) {
                    let short = short_reply(notice);
                    send_text(
                        spec,
                        ctx,
                        &token,
                        chat,
                        &short,
                        Some(t.message_id),
                        deadline,
                    )
                    .await?;
                }
                if resolved {
                    book.remove(&key);
                }
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(channel, error = %e, "telegram: editing the incident's message failed; sending a new one");
            }
        }
    }
    let id = send_text(spec, ctx, &token, chat, &text, None, deadline).await?;
    if resolved {
        book.remove(&key);
    } else if id != 0 {
        book.set(&key, id, &text);
    }
    Ok(())
}

/// The short reply that makes the phone notify when the incident's message was edited.
fn short_reply(n: &Notice) -> String {
    match (n.kind, n.duration_secs) {
        (NoticeKind::Resolved, Some(d)) => format!(
            "{} after {}",
            n.title(),
            crate::format::duration(Duration::from_secs(d))
        ),
        _ => n.title(),
    }
}

/// Append a line (e.g. "Acknowledged by … at …") to the incident's message in this channel,
/// when it has one. `Ok(false)`: no message to edit.
pub async fn annotate(
    channel: &str,
    spec: &TelegramSpec,
    ctx: &NotifyCtx,
    incident: &str,
    line: &str,
    deadline: crate::clock::Instant,
) -> Result<bool, DeliveryError> {
    let Some(book) = &ctx.threads else {
        return Ok(false);
    };
    let key = ThreadKey::new(channel, incident);
    let Some(t) = book.get(&key) else {
        return Ok(false);
    };
    let token = spec.token(ctx).await?;
    let text = format!("{}\n{}", t.text.trim_end(), ctx.redactor.clean(line));
    edit_text(spec, ctx, &token, t.message_id, &text, deadline).await?;
    book.set(&key, t.message_id, &text);
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// One message per incident: which message each (channel, incident) has.

/// A channel's message for one incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    pub message_id: i64,
    /// Its current text (an acknowledgement is appended to it).
    pub text: String,
}

/// `(channel, incident)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ThreadKey {
    pub channel: String,
    pub incident: String,
}

impl ThreadKey {
    pub fn new(channel: &str, incident: &str) -> Self {
        Self {
            channel: channel.to_string(),
            incident: incident.to_string(),
        }
    }
}

#[derive(Debug, Default)]
struct Book {
    threads: BTreeMap<ThreadKey, Thread>,
    changed: BTreeSet<ThreadKey>,
}

/// The daemon's incident messages, shared by its deliveries. Changes are collected so the
/// runtime can persist them ([`ThreadBook::take_changes`]).
#[derive(Debug, Clone, Default)]
pub struct ThreadBook(Arc<Mutex<Book>>);

impl ThreadBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn get(&self, k: &ThreadKey) -> Option<Thread> {
        self.lock().threads.get(k).cloned()
    }
    pub fn set(&self, k: &ThreadKey, message_id: i64, text: &str) {
        let mut b = self.lock();
        b.threads.insert(
            k.clone(),
            Thread {
                message_id,
                text: text.to_string(),
            },
        );
        b.changed.insert(k.clone());
    }
    pub fn remove(&self, k: &ThreadKey) {
        let mut b = self.lock();
        b.threads.remove(k);
        b.changed.insert(k.clone());
    }
    /// Load a persisted entry (not counted as a change).
    pub fn restore(&self, k: ThreadKey, t: Thread) {
        self.lock().threads.insert(k, t);
    }
    /// What changed since the last call: each key with its thread now (`None`: removed).
    pub fn take_changes(&self) -> Vec<(ThreadKey, Option<Thread>)> {
        let mut b = self.lock();
        let keys = std::mem::take(&mut b.changed);
        keys.into_iter()
            .map(|k| {
                let t = b.threads.get(&k).cloned();
                (k, t)
            })
            .collect()
    }
    /// The incidents with a message in this channel.
    pub fn incidents(&self, channel: &str) -> Vec<String> {
        self.lock()
            .threads
            .keys()
            .filter(|k| k.channel == channel)
            .map(|k| k.incident.clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// getUpdates: commands from chat.

/// A text message from an update, with who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub message_id: i64,
    /// Unix seconds.
    pub date: i64,
    pub chat_id: i64,
    pub username: Option<String>,
    pub text: String,
}

/// One update: its id (always advances the offset) and its text message, if it is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub update_id: i64,
    pub message: Option<ChatMessage>,
}

#[derive(Debug, Deserialize)]
struct RawMessage {
    message_id: i64,
    #[serde(default)]
    date: i64,
    chat: RawChat,
    from: Option<RawUser>,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawChat {
    id: i64,
}

#[derive(Debug, Deserialize)]
struct RawUser {
    username: Option<String>,
}

/// Read `getUpdates`' `result` (untrusted): every element with an `update_id`, its `message`
/// when that is a text message. Anything malformed is skipped, never a panic.
pub fn parse_updates(result: &serde_json::Value) -> Vec<Update> {
    let Some(items) = result.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|u| {
            let update_id = u.get("update_id")?.as_i64()?;
            let message = u
                .get("message")
                .and_then(|m| RawMessage::deserialize(m).ok())
                .and_then(|m| {
                    Some(ChatMessage {
                        message_id: m.message_id,
                        date: m.date,
                        chat_id: m.chat.id,
                        username: m.from.and_then(|f| f.username),
                        text: m.text?,
                    })
                });
            Some(Update { update_id, message })
        })
        .collect()
}

/// One long poll: updates from `offset` on, waiting up to `wait` for the first.
pub async fn get_updates(
    spec: &TelegramSpec,
    ctx: &NotifyCtx,
    token: &str,
    offset: Option<i64>,
    wait: Duration,
) -> Result<Vec<Update>, DeliveryError> {
    let mut body = serde_json::json!({
        "timeout": wait.as_secs(),
        "allowed_updates": ["message"],
    });
    if let Some(o) = offset {
        body["offset"] = serde_json::json!(o);
    }
    let deadline = crate::clock::Instant::now() + wait + Duration::from_secs(15);
    let r = call(spec, ctx, token, "getUpdates", &body, deadline).await?;
    Ok(parse_updates(&r))
}

/// The bot's own username (`getMe`), to tell `/ack@this_bot` from `/ack@another_bot`.
pub async fn bot_username(
    spec: &TelegramSpec,
    ctx: &NotifyCtx,
    token: &str,
) -> Result<Option<String>, DeliveryError> {
    let deadline = crate::clock::Instant::now() + Duration::from_secs(20);
    let r = call(spec, ctx, token, "getMe", &serde_json::json!({}), deadline).await?;
    Ok(r.get("username")
        .and_then(|u| u.as_str())
        .map(str::to_string))
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
