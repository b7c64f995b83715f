//! `talon config`: the effective config with every default filled in, secrets redacted.
//!
//! The output is meant to be pasted into a ticket, so nothing in it may be a credential: URL
//! passwords and secret-named query parameters, whole Slack webhook and heartbeat URLs (the URL
//! is the credential), secret-named HTTP headers and worker environment variables, anything
//! shaped like a Telegram bot token, every secret value the config leads to (token files and
//! variables, Redis passwords, HMAC keys) and the operator's `redact` patterns.

use super::{Exit, Out, load_options, print_diagnostics};
use crate::config::{self, Config};
use crate::redact::{REDACTED, is_secret_name, redact_url};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Print JSON instead of TOML.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cfg: &Option<PathBuf>, args: Args, out: &mut Out) -> anyhow::Result<Exit> {
    let loaded = config::load(&load_options(cfg, false));
    let Some(c) = loaded.config else {
        print_diagnostics(&loaded.diags);
        return Ok(Exit::Error);
    };
    if loaded.main_path.is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "talon: no config file found; showing the embedded default config"
        );
    }
    let mut value = serde_json::to_value(&c)?;
    redact_secrets(&mut value, &c);
    if args.json {
        out.json(&value)?;
    } else {
        let value = strip_nulls(value);
        let text = toml::to_string_pretty(&value)
            .map_err(|e| anyhow::anyhow!("rendering config as TOML: {e}"))?;
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(Exit::Ok)
}

/// TOML has no null: unset optional keys are left out.
fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// Replace every secret in the serialized config with [`REDACTED`].
pub fn redact_secrets(v: &mut serde_json::Value, c: &Config) {
    scrub(v, "");
    c.redactor().redact_json(v);
}

/// Keys whose whole URL (path included) is a credential.
fn url_is_credential(parent: &str, key: &str) -> bool {
    key == "webhook_url" || (parent == "heartbeat" && key == "url")
}

fn scrub(v: &mut serde_json::Value, parent: &str) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                match val {
                    Value::String(s) if url_is_credential(parent, k) => *s = redact_url(s, true),
                    Value::Object(inner) if k == "headers" || k == "env" => {
                        for (name, x) in inner.iter_mut() {
                            if is_secret_name(name) {
                                *x = Value::String(REDACTED.to_string());
                            } else {
                                scrub(x, k);
                            }
                        }
                    }
                    _ => scrub(val, k),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| scrub(x, parent)),
        Value::String(s) => {
            if s.contains("://") {
                *s = redact_url(s, false);
            }
            let re = bot_token_pattern();
            if re.is_match(s) {
                *s = re.replace_all(s, REDACTED).into_owned();
            }
        }
        _ => {}
    }
}

/// A Telegram bot token (`digits:35 characters`) anywhere in a string, e.g. pasted into a
/// `token_command = "echo 123456:AA…"`.
fn bot_token_pattern() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"\b[0-9]{3,}:[A-Za-z0-9_-]{20,}").expect("a valid pattern")
    })
}
