//! `talon status --remote URL…`: the fleet view without a new server. Reads `GET /status` of
//! every Talon listed (concurrently, each under [`TIMEOUT`]) and prints one line per host — for
//! the operator who has no Grafana. Read-only; an optional bearer token (`--token-file`, never
//! on the command line) for Talons behind a proxy that asks for one.
//! Exit 0 when every host answered and is healthy or degraded, 1 otherwise.

use super::{Exit, Out};
use crate::server::snapshot::StatusSnapshot;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Longest wait for one host's answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// One host's line.
#[derive(Debug, Serialize)]
pub struct Row {
    /// The URL as given.
    pub url: String,
    /// The host's name as it calls itself (`host` in its config), when it answered.
    pub host: Option<String>,
    /// Answered, and healthy or degraded.
    pub ok: bool,
    pub state: Option<String>,
    pub since_unix: Option<i64>,
    pub incident: Option<String>,
    pub failing: Vec<String>,
    pub version: Option<String>,
    /// Why there is no answer.
    pub error: Option<String>,
}

/// `http://h:9999`, `h:9999` or `…/status` → the `/status` URL.
pub fn status_url(given: &str) -> String {
    let u = given.trim().trim_end_matches('/');
    let u = if u.contains("://") {
        u.to_string()
    } else {
        format!("http://{u}")
    };
    if u.ends_with("/status") {
        u
    } else {
        format!("{u}/status")
    }
}

fn row(url: &str, r: Result<StatusSnapshot, String>) -> Row {
    match r {
        Ok(s) => Row {
            url: url.to_string(),
            host: Some(s.host.clone()).filter(|h| !h.is_empty()),
            ok: s.state.is_ok(),
            state: Some(s.state.as_str().to_string()),
            since_unix: Some(s.since_unix),
            incident: s.incident.as_ref().map(|i| i.id.clone()),
            failing: s.failed_probes().map(|p| p.name.clone()).collect(),
            version: Some(s.version.clone()),
            error: None,
        },
        Err(e) => Row {
            url: url.to_string(),
            host: None,
            ok: false,
            state: None,
            since_unix: None,
            incident: None,
            failing: Vec::new(),
            version: None,
            error: Some(e),
        },
    }
}

async fn fetch(
    client: reqwest::Client,
    url: String,
    token: Option<String>,
) -> Result<StatusSnapshot, String> {
    let mut req = client.get(status_url(&url));
    if let Some(t) = &token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| crate::net::error_chain(&e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    resp.json::<StatusSnapshot>()
        .await
        .map_err(|e| format!("not a Talon /status answer: {}", e.without_url()))
}

/// Every host's row, in the order given.
pub fn rows(urls: &[String], token: Option<String>) -> anyhow::Result<Vec<Row>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = crate::net::client()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut set = tokio::task::JoinSet::new();
        for (i, u) in urls.iter().enumerate() {
            let (c, u, t) = (client.clone(), u.clone(), token.clone());
            set.spawn(async move { (i, fetch(c, u, t).await) });
        }
        let mut got: Vec<Option<Result<StatusSnapshot, String>>> =
            (0..urls.len()).map(|_| None).collect();
        while let Some(j) = set.join_next().await {
            if let Ok((i, r)) = j {
                got[i] = Some(r);
            }
        }
        Ok(urls
            .iter()
            .zip(got)
            .map(|(u, r)| row(u, r.unwrap_or_else(|| Err("request failed".into()))))
            .collect())
    })
}

/// Print the fleet view.
pub fn run(
    urls: &[String],
    token_file: Option<&Path>,
    json: bool,
    out: &mut Out,
) -> anyhow::Result<Exit> {
    let token = match token_file {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t.trim().to_string()).filter(|t| !t.is_empty()),
            Err(e) => {
                eprintln!(
                    "talon status: cannot read the token file {}: {e}",
                    p.display()
                );
                return Ok(Exit::Error);
            }
        },
        None => None,
    };
    let rows = rows(urls, token)?;
    let exit = if rows.iter().all(|r| r.ok) {
        Exit::Ok
    } else {
        Exit::Unhealthy
    };
    if json {
        out.json(&rows)?;
        return Ok(exit);
    }
    let now = crate::clock::wall_ms();
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.host.clone().unwrap_or_else(|| "?".into()),
                r.state.clone().unwrap_or_else(|| "unreachable".into()),
                r.since_unix
                    .map(|s| {
                        format!(
                            "{} ago",
                            crate::format::duration_ms((now - s * 1000).max(0))
                        )
                    })
                    .unwrap_or_else(|| "-".into()),
                r.incident
                    .as_ref()
                    .map(|i| format!("#{i}"))
                    .unwrap_or_else(|| "-".into()),
                match (&r.error, r.failing.is_empty()) {
                    (Some(e), _) => e.clone(),
                    (None, true) => "-".into(),
                    (None, false) => r.failing.join(", "),
                },
            ]
        })
        .collect();
    // The last column (failing probes, or why there is no answer) is the only long one.
    let head = ["HOST", "STATE", "SINCE", "INCIDENT", "URL", "FAILING"];
    let cells: Vec<[String; 6]> = cells
        .into_iter()
        .zip(&rows)
        .map(|(c, r)| {
            let [host, state, since, incident, failing] = c;
            [host, state, since, incident, r.url.clone(), failing]
        })
        .collect();
    let mut w = head.map(str::len);
    for c in &cells {
        for (i, x) in c.iter().enumerate() {
            w[i] = w[i].max(x.chars().count());
        }
    }
    let line = |c: [&str; 6]| {
        let mut l = String::new();
        for (i, x) in c.iter().enumerate().take(5) {
            l.push_str(&format!("{x:w$}  ", w = w[i]));
        }
        l.push_str(c[5]);
        l.trim_end().to_string()
    };
    writeln!(out, "{}", line(head))?;
    for c in &cells {
        writeln!(
            out,
            "{}",
            line([&c[0], &c[1], &c[2], &c[3], &c[4], &c[5]].map(String::as_str))
        )?;
    }
    out.flush()?;
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_status_urls() {
        assert_eq!(status_url("10.0.0.1:9999"), "http://10.0.0.1:9999/status");
        assert_eq!(status_url("https://h/talon/"), "https://h/talon/status");
        assert_eq!(status_url("http://h:1/status"), "http://h:1/status");
    }

    #[test]
    fn an_unreachable_host_is_not_ok() {
        let r = row("h:1", Err("connection refused".into()));
        assert!(!r.ok);
        assert_eq!(r.error.as_deref(), Some("connection refused"));
        let mut s = StatusSnapshot::new(5);
        s.host = "web-1".into();
        let r = row("h:1", Ok(s));
        assert!(r.ok);
        assert_eq!(r.host.as_deref(), Some("web-1"));
        assert_eq!(r.state.as_deref(), Some("healthy"));
    }
}
