//! `alertmanager`: `POST {url}/api/v2/alerts` to one Alertmanager, or to every member of a
//! cluster (`urls`: each alert goes to all of them, as Prometheus does; the cluster's gossip
//! deduplicates the notifications, so one member down loses nothing).
//!
//! An SOS or reminder fires one alert per failing probe with the stable labels `alertname`,
//! `host`, `probe`, `severity` and `incident`; `startsAt` is when the incident opened (whole
//! seconds, so every post of it is the same alert). While the incident is in `sos` the runtime
//! re-posts them every `repost_secs` (`crate::runtime` `alerts.rs`), and each post sets `endsAt`
//! = now + `firing_ttl_secs` (default 4 × `repost_secs`): the alert stays firing while Talon keeps
//! posting and ends by itself if Talon dies. A resolved notice posts the same labels with
//! `endsAt` = the recovery time, which resolves them.

use super::{DeliveryError, Notice, NoticeKind, NotifyCtx, http_error, transport};
use crate::config::channel::alertmanager::AlertmanagerSpec;
use crate::format::rfc3339;

/// `alertname` of a probe alert.
pub const ALERTNAME: &str = "TalonProbeFailing";
/// `alertname` of `talon notify --test`.
pub const TEST_ALERTNAME: &str = "TalonTest";

/// The alerts to post for a notice.
pub fn alerts(spec: &AlertmanagerSpec, notice: &Notice) -> serde_json::Value {
    let severity = spec.severity.as_deref().unwrap_or("critical");
    let ttl_ms = spec.firing_ttl().as_millis() as i64;
    // Whole seconds: the SOS (ms precision) and every re-post carry the same `startsAt`.
    let starts = notice.since_ms.unwrap_or(notice.at_ms).div_euclid(1000) * 1000;
    let mut out = Vec::new();
    if notice.kind == NoticeKind::Test {
        out.push(serde_json::json!({
            "labels": { "alertname": TEST_ALERTNAME, "host": notice.host, "severity": "info" },
            "annotations": { "summary": notice.title(), "description": notice.text() },
            "startsAt": rfc3339(notice.at_ms),
            "endsAt": rfc3339(notice.at_ms + 5 * 60 * 1000),
        }));
    }
    for f in &notice.failing {
        let ends = match notice.kind {
            NoticeKind::Resolved => notice.at_ms,
            _ => notice.at_ms + ttl_ms,
        };
        out.push(serde_json::json!({
            "labels": {
                "alertname": ALERTNAME,
                "host": notice.host,
                "probe": f.probe,
                "severity": severity,
                "incident": notice.incident_id.clone().unwrap_or_default(),
            },
            "annotations": {
                "summary": format!("{} on {}: {}", f.probe, notice.host, f.reason.lines().next().unwrap_or("")),
                "description": notice.text(),
                "incident_id": notice.incident_id.clone().unwrap_or_default(),
                "state": notice.state,
            },
            "startsAt": rfc3339(starts),
            "endsAt": rfc3339(ends),
        }));
    }
    serde_json::Value::Array(out)
}

/// `host:port` of an endpoint, for messages (never the userinfo or path of the URL).
fn where_(endpoint: &str) -> String {
    reqwest::Url::parse(endpoint)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(match u.port_or_known_default() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        })
        .unwrap_or_else(|| "alertmanager".into())
}

async fn post_one(
    http: reqwest::Client,
    redactor: std::sync::Arc<crate::redact::Redactor>,
    endpoint: String,
    body: serde_json::Value,
) -> Result<(), (String, DeliveryError)> {
    let at = where_(&endpoint);
    let resp = http
        .post(&endpoint)
        .json(&body)
        .send()
        .await
        .map_err(|e| (at.clone(), transport(e)))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err((at, http_error(resp, &redactor).await))
    }
}

/// Post the notice's alerts to every configured Alertmanager at once. Delivered when at least
/// one of them took it (each member of a cluster gossips what it has); the members that did not
/// are logged.
pub async fn send(
    spec: &AlertmanagerSpec,
    notice: &Notice,
    ctx: &NotifyCtx,
) -> Result<(), DeliveryError> {
    let mut body = alerts(spec, notice);
    if body.as_array().is_some_and(Vec::is_empty) {
        return Err(DeliveryError::Unsupported(
            "no failing probes in the notice: nothing to post as an alert".into(),
        ));
    }
    ctx.redactor.redact_json(&mut body);
    let endpoints = spec.endpoints();
    let mut set = tokio::task::JoinSet::new();
    for e in &endpoints {
        set.spawn(post_one(
            ctx.http.clone(),
            ctx.redactor.clone(),
            e.clone(),
            body.clone(),
        ));
    }
    let (mut ok, mut failed) = (0usize, Vec::new());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(())) => ok += 1,
            Ok(Err(f)) => failed.push(f),
            Err(e) => failed.push((
                "alertmanager".into(),
                DeliveryError::Transport(format!("post task failed: {e}")),
            )),
        }
    }
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    if ok > 0 {
        for (at, e) in &failed {
            tracing::warn!(notice = notice.kind.as_str(), alertmanager = %at, error = %e, "a member of the Alertmanager cluster did not take the alerts");
        }
        return Ok(());
    }
    if endpoints.len() == 1
        && let Some((_, e)) = failed.pop()
    {
        // One Alertmanager: its own error, as it was.
        return Err(e);
    }
    let each: Vec<String> = failed.iter().map(|(at, e)| format!("{at}: {e}")).collect();
    Err(DeliveryError::Transport(format!(
        "no Alertmanager took the alerts: {}",
        each.join("; ")
    )))
}
