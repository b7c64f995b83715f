//! `talon push-token NAME` (the URL a job pings) and `talon ping NAME [--start|--fail]` (ping
//! from a script on this host). Both derive the probe's token from the API token in
//! `<state_dir>/api.token` ([`crate::probe::push::token`]); the token is printed only by
//! `push-token`, on stdout, and never logged.

use super::{Exit, Out, load_options, print_diagnostics};
use crate::config::probe::ProbeKind;
use crate::config::{self, Config};
use crate::probe::push::{MAX_PING_BODY, token as push_token};
use anyhow::Context;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The `push` probe.
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct PingArgs {
    /// The `push` probe.
    pub name: String,
    /// The job is starting (its duration is measured to the next ping).
    #[arg(long, conflicts_with = "fail")]
    pub start: bool,
    /// The job failed; the body (`--message` or `--stdin`) is kept as its output.
    #[arg(long)]
    pub fail: bool,
    /// Send this text as the body.
    #[arg(long, value_name = "TEXT", conflicts_with = "stdin")]
    pub message: Option<String>,
    /// Send standard input as the body (its last MiB), e.g. `job 2>&1 | talon ping NAME --fail --stdin`.
    #[arg(long)]
    pub stdin: bool,
}

/// The validated config and the push probe's base URL (`http://ADDR/ping/NAME`) and token.
fn target(cfg: &Option<PathBuf>, name: &str) -> anyhow::Result<Result<(String, String), Exit>> {
    let loaded = config::load(&load_options(cfg, false));
    let Some(c) = loaded.config else {
        print_diagnostics(&loaded.diags);
        return Ok(Err(Exit::Error));
    };
    if !is_push_probe(&c, name) {
        let names: Vec<&str> = c
            .probes
            .iter()
            .filter(|p| matches!(p.kind, ProbeKind::Push(_)))
            .map(|p| p.name.as_str())
            .collect();
        let have = if names.is_empty() {
            "there are none; add a [push.NAME] section".to_string()
        } else {
            format!("configured: {}", names.join(", "))
        };
        let _ = writeln!(
            std::io::stderr(),
            "talon: no push probe named `{name}` ({have})"
        );
        return Ok(Err(Exit::Error));
    }
    crate::runtime::create_private_dir(&c.state_dir)
        .with_context(|| format!("creating {}", c.state_dir.display()))?;
    let api = crate::server::control::ensure_token(&c.state_dir)?;
    let mut addr: SocketAddr = c.health.bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(Ok((
        format!("http://{addr}/ping/{name}"),
        push_token(&api, name),
    )))
}

fn is_push_probe(c: &Config, name: &str) -> bool {
    c.probes
        .iter()
        .any(|p| p.name == name && matches!(p.kind, ProbeKind::Push(_)))
}

pub fn token(cfg: &Option<PathBuf>, a: TokenArgs, out: &mut Out) -> anyhow::Result<Exit> {
    let (url, token) = match target(cfg, &a.name)? {
        Ok(t) => t,
        Err(e) => return Ok(e),
    };
    writeln!(out, "{url}?token={token}")?;
    out.flush()?;
    Ok(Exit::Ok)
}

pub fn ping(cfg: &Option<PathBuf>, a: PingArgs, out: &mut Out) -> anyhow::Result<Exit> {
    let (mut url, token) = match target(cfg, &a.name)? {
        Ok(t) => t,
        Err(e) => return Ok(e),
    };
    if a.start {
        url.push_str("/start");
    } else if a.fail {
        url.push_str("/fail");
    }
    let body = if a.stdin {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        let keep_from = buf.len().saturating_sub(MAX_PING_BODY);
        buf.split_off(keep_from)
    } else {
        a.message.unwrap_or_default().into_bytes()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, text) = rt
        .block_on(async {
            let client = crate::net::client()
                .timeout(std::time::Duration::from_secs(10))
                .build()?;
            let resp = client
                .post(&url)
                .bearer_auth(&token)
                .body(body)
                .send()
                .await?;
            let status = resp.status();
            Ok::<_, reqwest::Error>((status, resp.text().await.unwrap_or_default()))
        })
        .map_err(|e| anyhow::anyhow!("{}", e.without_url()))
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
        writeln!(out, "{}", msg.trim())?;
        out.flush()?;
        Ok(Exit::Ok)
    } else {
        let _ = writeln!(std::io::stderr(), "talon: {} ({status})", msg.trim());
        Ok(Exit::Error)
    }
}
