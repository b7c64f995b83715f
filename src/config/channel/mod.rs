//! What a notification channel is in config: `[notify.NAME]` with `kind = "..."`, one spec
//! type per kind in its own file here, plus the channels the original's `[escalation]` keys
//! imply. Delivery lives in `crate::notify`, which this room never imports.

pub mod alertmanager;
pub mod command;
pub mod email;
pub mod imessage;
pub mod ntfy;
pub mod slack;
pub mod telegram;
pub mod webhook;

use crate::config::diag::{Diagnostics, Source};
use crate::config::tomlx::{self, Value};
use serde::{Deserialize, Serialize};

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
    /// Mail through an SMTP relay.
    Email(email::EmailSpec),
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
            ChannelKind::Email(_) => "email",
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
            ChannelKind::Email(e) => e
                .password_command
                .as_deref()
                .and_then(program_of_shell)
                .map(|p| vec![(p, "password_command")])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Secret values this channel's config leads to without running anything (token from an
    /// env var or file, HMAC key, the Slack webhook URL), for the [`crate::redact::Redactor`].
    pub fn known_secrets(&self) -> Vec<String> {
        match &self.kind {
            ChannelKind::Telegram(t) => t.static_token().into_iter().collect(),
            ChannelKind::Webhook(w) => w.secret().into_iter().collect(),
            ChannelKind::Slack(s) => vec![s.webhook_url.clone()],
            ChannelKind::Email(e) => e
                .static_password()
                .filter(|p| !p.is_empty())
                .into_iter()
                .collect(),
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
            ChannelKind::Email(s) => s.validate(),
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

/// `Some(problem)` unless `u` is an http(s) URL with a host.
pub fn url_problem(u: &str) -> Option<String> {
    match reqwest::Url::parse(u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => None,
        Ok(_) => Some(format!(
            "`{u}` must be an http:// or https:// URL with a host"
        )),
        Err(e) => Some(format!("`{u}` is not a valid URL: {e}")),
    }
}

/// `Some(problem)` when a required text field is blank.
pub fn blank(v: &str) -> Option<String> {
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
}
