//! Notification channels: one file per kind, each a `[notify.NAME]` table in the main config
//! with `kind = "..."` and that kind's fields (unknown fields are errors).
//!
//! - [`Notice`]: the message model (SOS, reminder, resolved, test), serializable so the store
//!   can persist undelivered notices; rendered per channel.
//! - [`deliver`]: fan-out to every channel concurrently, each under its own timeout; a notice
//!   is delivered when at least one channel succeeded ([`delivered`]).
//! - Retrying a notice no channel took is the core's job (`core::Pending`, its schedule in
//!   `docs/state-machine.md`); this module delivers once per call.
//!
//! Everything a channel sends is redacted first, and secrets (bot tokens, HMAC keys) are never
//! put in a child's argv or in a log line.

pub mod alertmanager;
pub mod command;
pub mod email;
pub mod imessage;
pub mod ntfy;
pub mod slack;
pub mod telegram;
pub mod webhook;

use crate::clock::Instant;
pub use crate::config::channel::{ChannelConfig, ChannelKind};
use crate::config::path::SearchPath;
use crate::format;
use crate::redact::Redactor;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Default time limit for one channel's delivery (token lookup and 429 waits included).
pub const DEFAULT_CHANNEL_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The message model.

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    /// Automation did not fix it: a human is needed.
    Sos,
    /// The incident is still open and not acknowledged.
    Reminder,
    /// Every critical probe passes again.
    Resolved,
    /// `talon notify --test`.
    Test,
    /// The daily digest (`[digest]`): its lines are in `tried`.
    Digest,
    /// Something about Talon itself (its state was set aside at start): the lines are in `tried`.
    System,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Sos => "sos",
            NoticeKind::Reminder => "reminder",
            NoticeKind::Resolved => "resolved",
            NoticeKind::Test => "test",
            NoticeKind::Digest => "digest",
            NoticeKind::System => "system",
        }
    }
    /// Firing (something is wrong) rather than an all-clear or a test.
    pub fn is_alarm(self) -> bool {
        matches!(self, NoticeKind::Sos | NoticeKind::Reminder)
    }
}

/// A failing probe with a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingLine {
    pub probe: String,
    pub reason: String,
}

/// A message to a human. Serializable: undelivered notices are persisted and retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: NoticeKind,
    pub host: String,
    /// System state (`sos`, `critical`, `healthy`).
    pub state: String,
    pub incident_id: Option<String>,
    /// For `resolved`: the probes that had failed (Alertmanager resolves their alerts).
    pub failing: Vec<FailingLine>,
    /// What was tried and how it ended, one line each ("heal global `x`: exit 1, not fixed").
    pub tried: Vec<String>,
    /// When the incident opened (unix ms).
    pub since_ms: Option<i64>,
    /// When this notice was made (unix ms).
    pub at_ms: i64,
    /// For `resolved`: how long the incident lasted.
    pub duration_secs: Option<u64>,
    /// How to acknowledge (e.g. `talon ack inc-42`); shown on SOS and reminders.
    pub ack_hint: Option<String>,
}

/// Most characters of one reason line in a rendered message.
const REASON_CHARS: usize = 200;

fn one_line(s: &str, max: usize) -> String {
    let first = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut out: String = first.chars().take(max).collect();
    if first.chars().count() > max || s.trim().lines().count() > 1 {
        out.push('…');
    }
    out
}

impl Notice {
    /// The notice `talon notify --test` sends.
    pub fn test(host: impl Into<String>, at_ms: i64) -> Self {
        Self {
            kind: NoticeKind::Test,
            host: host.into(),
            state: "test".into(),
            incident_id: None,
            failing: Vec::new(),
            tried: Vec::new(),
            since_ms: None,
            at_ms,
            duration_secs: None,
            ack_hint: None,
        }
    }

    /// One line: "SOS: box is sos (inc-42)".
    pub fn title(&self) -> String {
        let inc = self
            .incident_id
            .as_deref()
            .map(|i| format!(" ({i})"))
            .unwrap_or_default();
        match self.kind {
            NoticeKind::Sos => format!("SOS: {} is {}{inc}", self.host, self.state),
            NoticeKind::Reminder => format!("Reminder: {} is still {}{inc}", self.host, self.state),
            NoticeKind::Resolved => format!("Resolved: {} is healthy again{inc}", self.host),
            NoticeKind::Test => format!("Test: Talon notification from {}", self.host),
            NoticeKind::Digest => format!("Digest: {}, the last 24 hours", self.host),
            NoticeKind::System => format!("Notice: Talon on {}: {}", self.host, self.state),
        }
    }

    /// The plain-text message body every text channel sends.
    pub fn text(&self) -> String {
        let mut t = self.title();
        t.push('\n');
        if self.kind == NoticeKind::Test {
            t.push_str(&format!(
                "This is a test sent by `talon notify --test` at {}. If you can read it, this channel works.\n",
                format::rfc3339(self.at_ms)
            ));
            return t;
        }
        if matches!(self.kind, NoticeKind::Digest | NoticeKind::System) {
            for l in &self.tried {
                t.push_str(l);
                t.push('\n');
            }
            return t;
        }
        if let Some(id) = &self.incident_id {
            t.push_str(&format!("Incident: {id}\n"));
        }
        t.push_str(&format!("State: {}\n", self.state));
        if let Some(s) = self.since_ms {
            let age = Duration::from_millis(self.at_ms.saturating_sub(s).max(0) as u64);
            t.push_str(&format!(
                "Since: {} ({} ago)\n",
                format::rfc3339(s),
                format::duration(age)
            ));
        }
        if let Some(d) = self.duration_secs {
            t.push_str(&format!(
                "Duration: {}\n",
                format::duration(Duration::from_secs(d))
            ));
        }
        if !self.failing.is_empty() {
            t.push_str(if self.kind == NoticeKind::Resolved {
                "Had failed:\n"
            } else {
                "Failing:\n"
            });
            for f in &self.failing {
                t.push_str(&format!(
                    "- {}: {}\n",
                    f.probe,
                    one_line(&f.reason, REASON_CHARS)
                ));
            }
        }
        if !self.tried.is_empty() {
            t.push_str("Tried:\n");
            for x in &self.tried {
                t.push_str(&format!("- {}\n", one_line(x, REASON_CHARS)));
            }
        }
        if self.kind.is_alarm()
            && let Some(a) = &self.ack_hint
        {
            t.push_str(&format!("Ack: {a}\n"));
        }
        t
    }

    /// The same notice with every string redacted.
    pub fn redacted(&self, r: &Redactor) -> Self {
        let mut n = self.clone();
        n.host = r.clean(&n.host);
        n.state = r.clean(&n.state);
        n.incident_id = n.incident_id.map(|i| r.clean(&i));
        for f in &mut n.failing {
            f.probe = r.clean(&f.probe);
            f.reason = r.clean(&f.reason);
        }
        for x in &mut n.tried {
            *x = r.clean(x);
        }
        n.ack_hint = n.ack_hint.map(|a| r.clean(&a));
        n
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery.

/// Why one channel did not take a notice. Messages never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status}: {detail}")]
    Http { status: u16, detail: String },
    #[error("rate limited: asked to retry after {retry_after}s, beyond the channel's time limit")]
    RateLimited { retry_after: u64 },
    #[error("bot token: {0}")]
    Token(String),
    #[error("{0}")]
    Transport(String),
    #[error("command: {0}")]
    Command(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("config: {0}")]
    Config(String),
}

/// What channels need at run time.
#[derive(Debug, Clone)]
pub struct NotifyCtx {
    pub http: reqwest::Client,
    pub search_path: SearchPath,
    pub redactor: Arc<Redactor>,
    /// Per channel.
    pub timeout: Duration,
    /// The daemon's one-message-per-incident book (Telegram edits); `None`: every notice is a
    /// new message (`talon notify --test`, library callers).
    pub threads: Option<telegram::ThreadBook>,
}

impl NotifyCtx {
    pub fn new(search_path: SearchPath, redactor: Arc<Redactor>) -> Result<Self, DeliveryError> {
        Ok(Self {
            http: http_client()?,
            search_path,
            redactor,
            timeout: DEFAULT_CHANNEL_TIMEOUT,
            threads: None,
        })
    }
}

/// An HTTP client for channels (rustls with ring; no redirects, so a token-bearing URL is never
/// re-sent elsewhere).
pub fn http_client() -> Result<reqwest::Client, DeliveryError> {
    crate::net::client()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| DeliveryError::Transport(format!("cannot build the HTTP client: {e}")))
}

/// A reqwest error as a message that never includes the URL (it may hold a token).
pub(crate) fn transport(e: reqwest::Error) -> DeliveryError {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    DeliveryError::Transport(msg)
}

/// A non-2xx response as an error with a short body excerpt.
pub(crate) async fn http_error(resp: reqwest::Response, r: &Redactor) -> DeliveryError {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    DeliveryError::Http {
        status,
        detail: r.clean(&one_line(&body, 300)),
    }
}

/// One channel's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: String,
    pub kind: &'static str,
    pub result: Result<(), DeliveryError>,
    pub duration_ms: u64,
}

/// Send a notice to one channel, under the channel timeout.
pub async fn send(
    notice: &Notice,
    channel: &ChannelConfig,
    ctx: &NotifyCtx,
) -> Result<(), DeliveryError> {
    let notice = notice.redacted(&ctx.redactor);
    let deadline = Instant::now() + ctx.timeout;
    let fut = async {
        match &channel.kind {
            ChannelKind::Telegram(s) => {
                telegram::send(&channel.name, s, &notice, ctx, deadline).await
            }
            ChannelKind::Imessage(s) => imessage::send(s, &notice, ctx).await,
            ChannelKind::Slack(s) => slack::send(s, &notice, ctx).await,
            ChannelKind::Ntfy(s) => ntfy::send(s, &notice, ctx).await,
            ChannelKind::Webhook(s) => webhook::send(s, &notice, ctx).await,
            ChannelKind::Alertmanager(s) => alertmanager::send(s, &notice, ctx).await,
            ChannelKind::Command(s) => command::send(s, &notice, ctx).await,
            ChannelKind::Email(s) => email::send(s, &notice, ctx).await,
        }
    };
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(r) => r,
        Err(_) => Err(DeliveryError::Timeout(ctx.timeout)),
    }
}

/// Fan a notice out to every channel concurrently. Results come back in channel order.
pub async fn deliver(
    notice: &Notice,
    channels: &[ChannelConfig],
    ctx: &NotifyCtx,
) -> Vec<Delivery> {
    let mut set = tokio::task::JoinSet::new();
    for (i, ch) in channels.iter().enumerate() {
        let (n, ch, ctx) = (notice.clone(), ch.clone(), ctx.clone());
        set.spawn(async move {
            let started = Instant::now();
            let result = send(&n, &ch, &ctx).await;
            (i, result, started.elapsed())
        });
    }
    let mut out: Vec<Option<Delivery>> = vec![None; channels.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, result, took)) = joined {
            out[i] = Some(Delivery {
                channel: channels[i].name.clone(),
                kind: channels[i].kind.name(),
                result,
                duration_ms: took.as_millis() as u64,
            });
        }
    }
    let results: Vec<Delivery> = out
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            d.unwrap_or_else(|| Delivery {
                channel: channels[i].name.clone(),
                kind: channels[i].kind.name(),
                result: Err(DeliveryError::Transport("delivery task failed".into())),
                duration_ms: 0,
            })
        })
        .collect();
    for d in &results {
        match &d.result {
            Ok(()) => {
                tracing::info!(channel = %d.channel, kind = d.kind, notice = notice.kind.as_str(), duration_ms = d.duration_ms, "notice delivered")
            }
            Err(e) => {
                tracing::warn!(channel = %d.channel, kind = d.kind, notice = notice.kind.as_str(), error = %e, "notice not delivered")
            }
        }
    }
    results
}

impl Delivery {
    /// A serializable record of this result, for the store and `--json` output.
    pub fn record(&self) -> DeliveryRecord {
        DeliveryRecord {
            channel: self.channel.clone(),
            kind: self.kind.to_string(),
            ok: self.result.is_ok(),
            error: self.result.as_ref().err().map(ToString::to_string),
            duration_ms: self.duration_ms,
        }
    }
}

/// One channel's result as stored with the incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub channel: String,
    pub kind: String,
    pub ok: bool,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// What the runtime hands notices to: the real [`Channels`], or a recording notifier injected by
/// a test of the runtime.
pub trait Notifier: Send + Sync {
    /// Fan a notice out; one result per channel.
    fn deliver<'a>(
        &'a self,
        notice: &'a Notice,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Delivery>> + Send + 'a>>;
}

/// The configured channels and what they need at run time.
#[derive(Debug, Clone)]
pub struct Channels {
    pub channels: Vec<ChannelConfig>,
    pub ctx: NotifyCtx,
}

impl Channels {
    /// Every `[notify.NAME]` channel of the config (the original SOS keys included).
    pub fn from_config(
        cfg: &crate::config::Config,
        redactor: Arc<Redactor>,
    ) -> Result<Self, DeliveryError> {
        Ok(Self {
            channels: cfg.notify.clone(),
            ctx: NotifyCtx::new(cfg.search_path.clone(), redactor)?,
        })
    }
}

impl Notifier for Channels {
    fn deliver<'a>(
        &'a self,
        notice: &'a Notice,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Delivery>> + Send + 'a>> {
        Box::pin(deliver(notice, &self.channels, &self.ctx))
    }
}

/// Delivered = at least one channel took it.
pub fn delivered(results: &[Delivery]) -> bool {
    results.iter().any(|d| d.result.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sos() -> Notice {
        Notice {
            kind: NoticeKind::Sos,
            host: "box".into(),
            state: "sos".into(),
            incident_id: Some("inc-7".into()),
            failing: vec![FailingLine {
                probe: "api".into(),
                reason: "HTTP 503\nsecond line".into(),
            }],
            tried: vec!["heal global `heal.sh`: exit 1, not fixed".into()],
            since_ms: Some(0),
            at_ms: 125_000,
            duration_secs: None,
            ack_hint: Some("talon ack inc-7".into()),
        }
    }

    #[test]
    fn message_says_host_state_incident_failing_tried_since_and_ack() {
        let t = sos().text();
        for needle in [
            "SOS: box is sos (inc-7)",
            "Incident: inc-7",
            "- api: HTTP 503…",
            "- heal global `heal.sh`: exit 1, not fixed",
            "Since: 1970-01-01T00:00:00.000Z (2m 5s ago)",
            "Ack: talon ack inc-7",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in\n{t}");
        }
        let mut r = sos();
        r.kind = NoticeKind::Resolved;
        r.duration_secs = Some(3725);
        let t = r.text();
        assert!(
            t.contains("Duration: 1h 2m") && t.contains("Had failed:"),
            "{t}"
        );
        assert!(!t.contains("Ack:"));
        let json = serde_json::to_string(&sos()).unwrap();
        assert_eq!(serde_json::from_str::<Notice>(&json).unwrap(), sos());
    }
}
