//! Commands from chat: the grammar (`/ack 3`, `/silence api 30m`, `/status`, …), the message a
//! poller puts in the inbox ([`ChatMsg`]), the long-poll task per `commands = true` Telegram
//! channel, and what the runtime keeps about it ([`ChatState`]). The commands are answered in
//! `commands.rs`, by the same `ack`/`silence` handlers as `talon ack` and `POST /ack`.

use crate::config::channel::telegram::TelegramSpec;
use crate::core::{IncidentId, Millis};
use crate::notify::NotifyCtx;
use crate::notify::telegram::{self, ChatMessage, ThreadBook};
use crate::server::control::DurationArg;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long one `getUpdates` long poll waits for an update.
pub const POLL_WAIT: Duration = Duration::from_secs(25);
/// Wait after a failed poll before the next (a 429's `retry_after` when longer).
const POLL_BACKOFF: Duration = Duration::from_secs(5);
/// Commands older than this when they arrive (the daemon was down) are not applied.
pub const STALE_AFTER_SECS: i64 = 15 * 60;

/// One update a poller got, for the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMsg {
    /// The `[notify.NAME]` channel it came through.
    pub channel: String,
    pub update_id: i64,
    /// Its text message (`None`: some other kind of update; only the offset moves).
    pub message: Option<ChatMessage>,
    /// The bot's username (`getMe`), when known.
    pub bot: Option<String>,
}

/// A command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatCommand {
    /// `/ack [N]`.
    Ack(Option<String>),
    /// `/silence NAME DURATION`.
    Silence {
        probe: String,
        duration: Duration,
    },
    /// `/unsilence NAME`.
    Unsilence(String),
    Status,
    Approve(u64),
    Deny(u64),
    Help,
    /// Not understood: say why, with the usage.
    Bad(String),
}

/// The usage reply.
pub const HELP: &str = "Talon commands:\n\
/ack [N] - acknowledge incident N (default: the open one)\n\
/silence NAME DURATION - silence a probe (30m, 2h, 1d)\n\
/unsilence NAME - lift a silence\n\
/status - state, open incident, failing probes\n\
/approve N, /deny N - answer a pending approval\n\
/help - this text";

/// Parse a message's text. `None`: it is addressed to another bot (`/ack@other_bot`).
/// Plain words work too (`ack 3`, `status`).
pub fn parse(text: &str, bot: Option<&str>) -> Option<ChatCommand> {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("");
    let first = first.strip_prefix('/').unwrap_or(first);
    let (name, to) = match first.split_once('@') {
        Some((n, b)) => (n, Some(b)),
        None => (first, None),
    };
    if let (Some(to), Some(me)) = (to, bot)
        && !to.eq_ignore_ascii_case(me)
    {
        return None;
    }
    let args: Vec<&str> = words.collect();
    let usage = |why: String| Some(ChatCommand::Bad(why));
    let number = |what: &str| -> Result<u64, String> {
        match args.as_slice() {
            [n] => n
                .trim_start_matches('#')
                .parse()
                .map_err(|_| format!("{what}: {n:?} is not a number")),
            _ => Err(format!("usage: /{what} N")),
        }
    };
    Some(match name.to_ascii_lowercase().as_str() {
        "ack" => match args.as_slice() {
            [] => ChatCommand::Ack(None),
            [n] if n.trim_start_matches('#').parse::<u64>().is_ok() => {
                ChatCommand::Ack(Some(n.trim_start_matches('#').to_string()))
            }
            [n] => return usage(format!("ack: {n:?} is not an incident number")),
            _ => return usage("usage: /ack [N]".into()),
        },
        "silence" => match args.as_slice() {
            [probe, d] => match DurationArg::Text((*d).to_string()).to_duration() {
                Ok(duration) => ChatCommand::Silence {
                    probe: (*probe).to_string(),
                    duration,
                },
                Err(e) => return usage(format!("silence: {}", e.replace("`for`", "duration"))),
            },
            _ => return usage("usage: /silence NAME DURATION (e.g. /silence api 30m)".into()),
        },
        "unsilence" => match args.as_slice() {
            [probe] => ChatCommand::Unsilence((*probe).to_string()),
            _ => return usage("usage: /unsilence NAME".into()),
        },
        "status" if args.is_empty() => ChatCommand::Status,
        "status" => return usage("usage: /status".into()),
        "approve" => match number("approve") {
            Ok(n) => ChatCommand::Approve(n),
            Err(e) => return usage(e),
        },
        "deny" => match number("deny") {
            Ok(n) => ChatCommand::Deny(n),
            Err(e) => return usage(e),
        },
        "help" | "start" => ChatCommand::Help,
        "" => return usage("empty message".into()),
        other => {
            let shown: String = other.chars().take(30).collect();
            return usage(format!("unknown command {shown:?}"));
        }
    })
}

/// Who sent a message, as recorded: `telegram:<chat id> (<username>)`.
pub fn sender(m: &ChatMessage) -> String {
    match &m.username {
        Some(u) => format!("telegram:{} ({u})", m.chat_id),
        None => format!("telegram:{}", m.chat_id),
    }
}

/// Who did something, and when (kept for `/status` and `talon status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    pub by: String,
    pub at: Millis,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What the runtime keeps about commands from chat and who did what.
#[derive(Debug, Default)]
pub struct ChatState {
    /// Per channel, the next update id to take (lower ones were handled).
    pub offsets: BTreeMap<String, i64>,
    /// One long-poll task per `commands = true` channel.
    pub pollers: Vec<JoinHandle<()>>,
    /// Each incident's message per Telegram channel.
    pub threads: ThreadBook,
    /// Who acknowledged which incident.
    pub acked: BTreeMap<IncidentId, Who>,
    /// Who silenced each probe.
    pub silences: BTreeMap<String, Who>,
    /// Heal and agent runs in flight: their incident and what they are (for the incident's message).
    pub actions: BTreeMap<crate::core::ActionId, (IncidentId, String)>,
    /// The scheduled time the newest digest was sent for.
    pub digest_last: Option<Millis>,
    /// The store's notes were read (once).
    pub loaded: bool,
}

/// `kv` keys.
pub mod keys {
    pub const OFFSET: &str = "telegram.offset.";
    pub const THREAD: &str = "telegram.thread.";
    pub const ACK: &str = "operator.ack.";
    pub const SILENCE: &str = "operator.silence.";
}

/// The long-poll loop of one channel: `getUpdates` from `offset`, each update into `send`
/// (in order), until the task is aborted. Errors are logged (never with the token) and retried.
pub async fn poll(
    channel: String,
    spec: TelegramSpec,
    ctx: NotifyCtx,
    mut offset: Option<i64>,
    send: impl Fn(ChatMsg) -> bool + Send + 'static,
) {
    let mut bot: Option<String> = None;
    let mut asked_bot = false;
    loop {
        let token = match spec.token(&ctx).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(channel = %channel, error = %e, "telegram commands: no bot token");
                tokio::time::sleep(POLL_BACKOFF * 6).await;
                continue;
            }
        };
        if !asked_bot {
            match telegram::bot_username(&spec, &ctx, &token).await {
                Ok(b) => {
                    bot = b;
                    asked_bot = true;
                }
                Err(e) => {
                    tracing::warn!(channel = %channel, error = %e, "telegram commands: getMe failed; retrying");
                    tokio::time::sleep(POLL_BACKOFF).await;
                    continue;
                }
            }
        }
        match telegram::get_updates(&spec, &ctx, &token, offset, POLL_WAIT).await {
            Ok(updates) => {
                for u in updates {
                    offset = Some(u.update_id.saturating_add(1));
                    let msg = ChatMsg {
                        channel: channel.clone(),
                        update_id: u.update_id,
                        message: u.message,
                        bot: bot.clone(),
                    };
                    if !send(msg) {
                        return;
                    }
                }
            }
            Err(e) => {
                let wait = match &e {
                    crate::notify::DeliveryError::RateLimited { retry_after } => {
                        Duration::from_secs((*retry_after).min(3600)).max(POLL_BACKOFF)
                    }
                    _ => POLL_BACKOFF,
                };
                tracing::warn!(channel = %channel, error = %e, "telegram commands: getUpdates failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let p = |t: &str| parse(t, Some("talon_bot"));
        assert_eq!(p("/ack"), Some(ChatCommand::Ack(None)));
        assert_eq!(p("/ack 3"), Some(ChatCommand::Ack(Some("3".into()))));
        assert_eq!(p("ack #3"), Some(ChatCommand::Ack(Some("3".into()))));
        assert_eq!(
            p("/ack@talon_bot 4"),
            Some(ChatCommand::Ack(Some("4".into())))
        );
        assert_eq!(p("/ack@Talon_Bot"), Some(ChatCommand::Ack(None)));
        assert_eq!(p("/ack@other_bot 4"), None);
        assert_eq!(
            p("/silence api 30m"),
            Some(ChatCommand::Silence {
                probe: "api".into(),
                duration: Duration::from_secs(1800)
            })
        );
        assert_eq!(
            p("/unsilence api"),
            Some(ChatCommand::Unsilence("api".into()))
        );
        assert_eq!(p("/status"), Some(ChatCommand::Status));
        assert_eq!(p("/approve 7"), Some(ChatCommand::Approve(7)));
        assert_eq!(p("/deny 7"), Some(ChatCommand::Deny(7)));
        assert_eq!(p("/help"), Some(ChatCommand::Help));
        for bad in [
            "/ack x",
            "/ack 1 2",
            "/silence api",
            "/silence api soon",
            "/silence api 0m",
            "/silence api 40d",
            "/approve",
            "/deny x",
            "/reboot",
            "hello there",
            "",
        ] {
            assert!(
                matches!(p(bad), Some(ChatCommand::Bad(_))),
                "{bad:?}: {:?}",
                p(bad)
            );
        }
        let Some(ChatCommand::Bad(why)) = p("/silence api soon") else {
            unreachable!()
        };
        assert!(why.contains("not a duration"), "{why}");
        // Without a known bot name, any @suffix is taken.
        assert_eq!(parse("/status@x", None), Some(ChatCommand::Status));
    }
}
