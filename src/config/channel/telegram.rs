//! `telegram` channel spec: the chat and where the bot token comes from (exactly one of
//! `token_env`, `token_file`, `token_command`), and whether the bot takes commands from chat
//! (`commands`, `command_chat_ids`). Sending lives in `crate::notify::telegram`, the commands'
//! grammar in `crate::notify::chat`, the long-poll in the runtime.

use super::{blank, url_problem};
use serde::{Deserialize, Serialize};

/// A chat id: a number, or a string (`"-100123"`, `"@channel"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ChatId {
    Number(i64),
    Text(String),
}

impl ChatId {
    /// The numeric id (a number, or a string of one such as `"-100123"`); `None` for `@name`.
    pub fn numeric(&self) -> Option<i64> {
        match self {
            ChatId::Number(n) => Some(*n),
            ChatId::Text(s) => s.trim().parse().ok(),
        }
    }

    /// The chat id as the Bot API takes it.
    pub fn as_json(&self) -> serde_json::Value {
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
    /// Bot API base URL (default <https://api.telegram.org>).
    pub api_base: Option<String>,
    /// Long-poll `getUpdates` and answer `/ack`, `/silence`, `/status`, … from `chat_id` (and
    /// the chats in `command_chat_ids`).
    #[serde(default)]
    pub commands: bool,
    /// More chats whose commands are accepted (numeric ids).
    #[serde(default)]
    pub command_chat_ids: Vec<ChatId>,
}

/// `~/x` → `$HOME/x`.
pub fn expand_home(p: &str) -> std::path::PathBuf {
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
        if self.commands && self.chat_id.numeric().is_none() {
            v.push((
                "commands",
                "commands are accepted only from numeric chat ids: give `chat_id` as a number \
                 (see docs/notify.md, finding the chat id)"
                    .into(),
            ));
        }
        if self.command_chat_ids.iter().any(|c| c.numeric().is_none()) {
            v.push((
                "command_chat_ids",
                "every entry must be a numeric chat id (e.g. 123456789 or -1001234567890)".into(),
            ));
        }
        if !self.commands && !self.command_chat_ids.is_empty() {
            v.push((
                "command_chat_ids",
                "has no effect without `commands = true`".into(),
            ));
        }
        v
    }

    /// The chats whose commands are accepted: `chat_id` and `command_chat_ids` (numeric ones).
    pub fn command_chats(&self) -> Vec<i64> {
        std::iter::once(&self.chat_id)
            .chain(&self.command_chat_ids)
            .filter_map(ChatId::numeric)
            .collect()
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
}
