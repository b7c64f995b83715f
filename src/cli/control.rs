//! `talon ack [INCIDENT]` and `talon silence PROBE --for 1h`: reach the running daemon through its
//! loopback HTTP control endpoints, authenticated with the token in `<state_dir>/api.token`
//! (0600). Recorded in the incident by the daemon.

use super::{Exit, load_options, print_diagnostics};
use crate::config;
use crate::store::layout::TOKEN_FILE;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct AckArgs {
    /// Incident id (default: the open incident).
    pub incident: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct SilenceArgs {
    /// The probe to silence (it is still probed and recorded, but neither escalates nor pages).
    pub probe: String,
    /// How long: seconds, or 90s, 30m, 2h, 1d (at most 30 days).
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Why (recorded).
    #[arg(long)]
    pub reason: Option<String>,
}

pub fn ack(cfg: &Option<PathBuf>, a: AckArgs) -> anyhow::Result<Exit> {
    post(
        cfg,
        "/ack",
        serde_json::json!({ "incident": a.incident, "by": "cli" }),
    )
}

pub fn silence(cfg: &Option<PathBuf>, a: SilenceArgs) -> anyhow::Result<Exit> {
    let body = match a.duration.parse::<u64>() {
        Ok(secs) => {
            serde_json::json!({ "probe": a.probe, "for": secs, "reason": a.reason, "by": "cli" })
        }
        Err(_) => {
            serde_json::json!({ "probe": a.probe, "for": a.duration, "reason": a.reason, "by": "cli" })
        }
    };
    post(cfg, "/silence", body)
}

/// POST `body` to the running daemon's control endpoint `path` with the API token; print its
/// message. Exit 0 done, 1 not found / rejected, 2 error.
pub(super) fn post(
    cfg: &Option<PathBuf>,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<Exit> {
    post_within(cfg, path, body, std::time::Duration::from_secs(10))
}

/// [`post`] with a reply timeout (`talon worker` waits for a graceful stop).
pub(super) fn post_within(
    cfg: &Option<PathBuf>,
    path: &str,
    body: serde_json::Value,
    timeout: std::time::Duration,
) -> anyhow::Result<Exit> {
    let loaded = config::load(&load_options(cfg, false));
    let Some(c) = loaded.config else {
        print_diagnostics(&loaded.diags);
        return Ok(Exit::Error);
    };
    let token_path = c.state_dir.join(TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path).with_context(|| {
        format!(
            "reading {} (is the daemon running with this config?)",
            token_path.display()
        )
    })?;
    let url = format!("http://{}{path}", c.health.bind);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, text) = rt
        .block_on(async {
            let client = crate::net::client().timeout(timeout).build()?;
            let resp = client
                .post(&url)
                .bearer_auth(token.trim())
                .json(&body)
                .send()
                .await?;
            let status = resp.status();
            Ok::<_, reqwest::Error>((status, resp.text().await.unwrap_or_default()))
        })
        .with_context(|| format!("reaching the daemon at {url}"))?;
    let msg = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error"))
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or(text);
    if status.is_success() {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{msg}")?;
        Ok(Exit::Ok)
    } else {
        let _ = writeln!(std::io::stderr(), "talon: {} ({status})", msg.trim());
        Ok(if status.as_u16() == 409 || status.as_u16() == 404 {
            Exit::Unhealthy
        } else {
            Exit::Error
        })
    }
}
