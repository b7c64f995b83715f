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
pub mod imessage;
pub mod ntfy;
pub mod slack;
pub mod telegram;
pub mod webhook;

use crate::config::diag::{Diagnostics, Source};
use crate::config::path::SearchPath;
use crate::config::tomlx::{self, Value};
use crate::escalate::redact::Redactor;
use crate::escalate::{human_duration, rfc3339_ms};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default time limit for one channel's delivery (token lookup and 429 waits included).
pub const DEFAULT_CHANNEL_TIMEOUT: Duration = Duration::from_secs(20);

/// One configured channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelConfig {
    pub name: String,
    #[serde(flatten)]
    pub kind: ChannelKind,
}

/// Channel kinds, tagged by `kind = "..."`; each kind's fields live in its own file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ChannelKind {
    Telegram(telegram::TelegramSpec),
    Imessage(imessage::ImessageSpec),
    Slack(slack::SlackSpec),
    Ntfy(ntfy::NtfySpec),
    Webhook(webhook::WebhookSpec),
    Alertmanager(alertmanager::AlertmanagerSpec),
    /// Runs a command with the message on stdin.
    Command(command::CommandSpec),
}

impl ChannelKind {
    pub fn name(&self) -> &'static str {
        match self {
            ChannelKind::Telegram(_) => "telegram",
            ChannelKind::Imessage(_) => "imessage",
            ChannelKind::Slack(_) => "slack",
            ChannelKind::Ntfy(_) => "ntfy",
            ChannelKind::Webhook(_) => "webhook",
            ChannelKind::Alertmanager(_) => "alertmanager",
            ChannelKind::Command(_) => "command",
        }
    }
}

impl ChannelConfig {
    /// Programs this channel runs, with the key naming them.
    pub fn programs(&self) -> Vec<(String, &'static str)> {
        use crate::config::path::program_of_shell;
        match &self.kind {
            ChannelKind::Command(c) => program_of_shell(&c.command)
                .map(|p| vec![(p, "command")])
                .unwrap_or_default(),
            ChannelKind::Telegram(t) => t
                .token_command
                .as_deref()
                .and_then(program_of_shell)
                .map(|p| vec![(p, "token_command")])
                .unwrap_or_default(),
            ChannelKind::Imessage(_) => vec![("osascript".to_string(), "recipient")],
            _ => Vec::new(),
        }
    }

    /// Secret values this channel's config leads to without running anything (token from an
    /// env var or file, HMAC key, the Slack webhook URL), for the [`Redactor`].
    pub fn known_secrets(&self) -> Vec<String> {
        match &self.kind {
            ChannelKind::Telegram(t) => t.static_token().into_iter().collect(),
            ChannelKind::Webhook(w) => w.secret().into_iter().collect(),
            ChannelKind::Slack(s) => vec![s.webhook_url.clone()],
            _ => Vec::new(),
        }
    }

    /// Semantic problems, as (key, message).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        match &self.kind {
            ChannelKind::Telegram(s) => s.validate(),
            ChannelKind::Imessage(s) => s.validate(),
            ChannelKind::Slack(s) => s.validate(),
            ChannelKind::Ntfy(s) => s.validate(),
            ChannelKind::Webhook(s) => s.validate(),
            ChannelKind::Alertmanager(s) => s.validate(),
            ChannelKind::Command(s) => s.validate(),
        }
    }
}

/// Parse and validate one `[notify.NAME]` table.
pub fn parse_channel(
    src: &Source,
    path: &str,
    name: &str,
    value: &Value<'_>,
    diags: &mut Diagnostics,
) -> Option<ChannelConfig> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        diags.error(
            src,
            Some(value.span()),
            path,
            "channel names use letters, digits, `_`, `-` and `.` only",
        );
        return None;
    }
    let kind: ChannelKind = tomlx::section(src, path, value, &["kind"], diags)?;
    let ch = ChannelConfig {
        name: name.to_string(),
        kind,
    };
    let problems = ch.validate();
    for (key, msg) in &problems {
        let span = tomlx::key_span(value, key);
        diags.error(src, Some(span), &tomlx::join(path, key), msg.clone());
    }
    problems.is_empty().then_some(ch)
}

/// The command assumed for the original `escalation.sos_telegram_secret_name`: the secret's name
/// is appended (shell-quoted). Override by defining `[notify.sos_telegram]` yourself.
pub const LEGACY_SECRET_COMMAND: &str = "secrets lease";
/// Channel name the original `sos_recipient` maps to.
pub const LEGACY_IMESSAGE: &str = "sos_imessage";
/// Channel name the original `sos_telegram_chat_id` + `sos_telegram_secret_name` map to.
pub const LEGACY_TELEGRAM: &str = "sos_telegram";

/// Add the channels the original `[escalation]` keys describe, unless a channel of that name
/// is configured explicitly: `sos_recipient` → an `imessage` channel `sos_imessage`;
/// `sos_telegram_chat_id` + `sos_telegram_secret_name` → a `telegram` channel `sos_telegram`
/// whose token comes from `secrets lease '<name>'`.
pub fn with_legacy(
    mut channels: Vec<ChannelConfig>,
    esc: &crate::config::EscalationConfig,
) -> Vec<ChannelConfig> {
    let has = |chs: &[ChannelConfig], n: &str| chs.iter().any(|c| c.name == n);
    if let Some(r) = esc
        .sos_recipient
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        && !has(&channels, LEGACY_IMESSAGE)
    {
        channels.push(ChannelConfig {
            name: LEGACY_IMESSAGE.into(),
            kind: ChannelKind::Imessage(imessage::ImessageSpec {
                recipient: r.trim().to_string(),
            }),
        });
    }
    if let (Some(chat), Some(secret)) = (
        esc.sos_telegram_chat_id.as_deref(),
        esc.sos_telegram_secret_name.as_deref(),
    ) && !has(&channels, LEGACY_TELEGRAM)
    {
        channels.push(ChannelConfig {
            name: LEGACY_TELEGRAM.into(),
            kind: ChannelKind::Telegram(telegram::TelegramSpec {
                chat_id: telegram::ChatId::Text(chat.trim().to_string()),
                token_env: None,
                token_file: None,
                token_command: Some(format!(
                    "{LEGACY_SECRET_COMMAND} {}",
                    shell_quote(secret.trim())
                )),
                token_command_timeout_secs: None,
                api_base: None,
            }),
        });
    }
    channels
}

/// Quote a word for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

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
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Sos => "sos",
            NoticeKind::Reminder => "reminder",
            NoticeKind::Resolved => "resolved",
            NoticeKind::Test => "test",
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
        }
    }

    /// The plain-text message body every text channel sends.
    pub fn text(&self) -> String {
        let mut t = self.title();
        t.push('\n');
        if self.kind == NoticeKind::Test {
            t.push_str(&format!(
                "This is a test sent by `talon notify --test` at {}. If you can read it, this channel works.\n",
                rfc3339_ms(self.at_ms)
            ));
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
                rfc3339_ms(s),
                human_duration(age)
            ));
        }
        if let Some(d) = self.duration_secs {
            t.push_str(&format!(
                "Duration: {}\n",
                human_duration(Duration::from_secs(d))
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
}

impl NotifyCtx {
    pub fn new(search_path: SearchPath, redactor: Arc<Redactor>) -> Result<Self, DeliveryError> {
        Ok(Self {
            http: http_client()?,
            search_path,
            redactor,
            timeout: DEFAULT_CHANNEL_TIMEOUT,
        })
    }
}

/// An HTTP client for channels (rustls with ring; no redirects, so a token-bearing URL is never
/// re-sent elsewhere).
pub fn http_client() -> Result<reqwest::Client, DeliveryError> {
    // Idempotent: another part of Talon may have installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("talon/", env!("CARGO_PKG_VERSION")))
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
    let deadline = tokio::time::Instant::now() + ctx.timeout;
    let fut = async {
        match &channel.kind {
            ChannelKind::Telegram(s) => telegram::send(s, &notice, ctx, deadline).await,
            ChannelKind::Imessage(s) => imessage::send(s, &notice, ctx).await,
            ChannelKind::Slack(s) => slack::send(s, &notice, ctx).await,
            ChannelKind::Ntfy(s) => ntfy::send(s, &notice, ctx).await,
            ChannelKind::Webhook(s) => webhook::send(s, &notice, ctx).await,
            ChannelKind::Alertmanager(s) => alertmanager::send(s, &notice, ctx).await,
            ChannelKind::Command(s) => command::send(s, &notice, ctx).await,
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

/// `Some(problem)` unless `u` is an http(s) URL with a host.
pub(crate) fn url_problem(u: &str) -> Option<String> {
    match reqwest::Url::parse(u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => None,
        Ok(_) => Some(format!(
            "`{u}` must be an http:// or https:// URL with a host"
        )),
        Err(e) => Some(format!("`{u}` is not a valid URL: {e}")),
    }
}

/// `Some(problem)` when a required text field is blank.
pub(crate) fn blank(v: &str) -> Option<String> {
    v.trim().is_empty().then(|| "must not be empty".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> (Option<ChannelConfig>, Diagnostics) {
        let src = Source::embedded("t.toml", toml_text);
        let mut diags = Diagnostics::default();
        let doc = tomlx::parse(&src, &mut diags).unwrap();
        let toml::de::DeValue::Table(t) = doc.get_ref() else {
            panic!()
        };
        let (_, v) = t.iter().next().unwrap();
        let ch = parse_channel(&src, "notify.x", "x", v, &mut diags);
        (ch, diags)
    }

    fn err_text(d: &Diagnostics) -> String {
        d.items
            .iter()
            .map(|d| format!("{} {}", d.key, d.message))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_kind_parses() {
        for t in [
            "[x]\nkind = \"telegram\"\nchat_id = 42\ntoken_env = \"TG\"",
            "[x]\nkind = \"telegram\"\nchat_id = \"-100\"\ntoken_command = \"pass tg\"\napi_base = \"http://127.0.0.1:1\"",
            "[x]\nkind = \"imessage\"\nrecipient = \"+15550001\"",
            "[x]\nkind = \"slack\"\nwebhook_url = \"https://hooks.slack.com/services/T/B/X\"",
            "[x]\nkind = \"ntfy\"\nserver = \"https://ntfy.sh\"\ntopic = \"t\"\npriority = 5",
            "[x]\nkind = \"ntfy\"\ntopic = \"t\"\npriority = \"high\"",
            "[x]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\nhmac_secret_env = \"K\"",
            "[x]\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:9093\"",
            "[x]\nkind = \"command\"\ncommand = \"logger -t talon\"",
        ] {
            let (ch, d) = parse(t);
            assert!(ch.is_some(), "{t}: {}", err_text(&d));
        }
    }

    #[test]
    fn a_typo_is_rejected_for_every_kind() {
        for (t, typo) in [
            (
                "[x]\nkind = \"telegram\"\nchat_id = 1\ntoken_env = \"T\"\nchat = 2",
                "chat",
            ),
            (
                "[x]\nkind = \"imessage\"\nrecipient = \"a@b\"\nrecipeint = \"c\"",
                "recipeint",
            ),
            (
                "[x]\nkind = \"slack\"\nwebhook_url = \"https://h/x\"\nwebhook = \"y\"",
                "webhook",
            ),
            ("[x]\nkind = \"ntfy\"\ntopic = \"t\"\nprio = 1", "prio"),
            (
                "[x]\nkind = \"webhook\"\nurl = \"http://h/x\"\nhmac_secret = \"s\"",
                "hmac_secret",
            ),
            (
                "[x]\nkind = \"alertmanager\"\nurl = \"http://h:9093\"\nurll = \"x\"",
                "urll",
            ),
            (
                "[x]\nkind = \"command\"\ncommand = \"cat\"\ncmd = \"x\"",
                "cmd",
            ),
        ] {
            let (ch, d) = parse(t);
            assert!(ch.is_none(), "{t} was accepted");
            let e = err_text(&d);
            assert!(e.contains(&format!("unknown key `{typo}`")), "{t}: {e}");
        }
    }

    #[test]
    fn unknown_kind_and_bad_values_are_named() {
        let (ch, d) = parse("[x]\nkind = \"pager\"\nurl = \"x\"");
        assert!(ch.is_none());
        assert!(
            err_text(&d).contains("unknown value `pager`"),
            "{}",
            err_text(&d)
        );

        let (ch, d) = parse("[x]\nkind = \"telegram\"\nchat_id = 1");
        assert!(ch.is_none());
        assert!(
            err_text(&d).contains("token_env, token_file or token_command"),
            "{}",
            err_text(&d)
        );

        let (ch, d) = parse("[x]\nkind = \"webhook\"\nurl = \"ftp://x\"");
        assert!(ch.is_none());
        assert!(err_text(&d).contains("notify.x.url"), "{}", err_text(&d));

        let (ch, d) = parse("[x]\nkind = \"ntfy\"\ntopic = \"t\"\npriority = 9");
        assert!(ch.is_none());
        assert!(
            err_text(&d).contains("notify.x.priority"),
            "{}",
            err_text(&d)
        );
    }

    #[test]
    fn legacy_keys_map_to_channels_and_explicit_ones_win() {
        let loaded = crate::config::load(&crate::config::LoadOptions::default());
        let mut esc = loaded.config.expect("embedded default loads").escalation;
        esc.sos_recipient = Some("+15550001".into());
        esc.sos_telegram_chat_id = Some("12345".into());
        esc.sos_telegram_secret_name = Some("tg bot's token".into());
        let chs = with_legacy(Vec::new(), &esc);
        assert_eq!(chs.len(), 2);
        assert_eq!(chs[0].name, LEGACY_IMESSAGE);
        let ChannelKind::Telegram(t) = &chs[1].kind else {
            panic!()
        };
        assert_eq!(
            t.token_command.as_deref(),
            Some(r"secrets lease 'tg bot'\''s token'")
        );
        let explicit = ChannelConfig {
            name: LEGACY_TELEGRAM.into(),
            kind: ChannelKind::Command(command::CommandSpec {
                command: "cat".into(),
            }),
        };
        let chs = with_legacy(vec![explicit.clone()], &esc);
        assert_eq!(chs.len(), 2);
        assert_eq!(chs[0], explicit);
    }

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
