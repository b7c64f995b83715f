//! `alertmanager`: `POST {url}/api/v2/alerts`. An SOS or reminder fires one alert per failing
//! probe with labels `alertname`, `host`, `probe`, `severity`; a resolved notice re-posts the
//! same labels with `endsAt` set to the recovery time, which resolves them. Firing alerts carry
//! `endsAt` = now + `firing_ttl_secs` (default 24 h) so they stay firing between reminders but
//! cannot fire forever if Talon itself dies. Alertmanager's cluster does fleet-wide dedup,
//! grouping, silences and routing.

use super::{DeliveryError, Notice, NoticeKind, NotifyCtx, http_error, transport};
use crate::config::channel::alertmanager::AlertmanagerSpec;
use crate::format::rfc3339;

/// `alertname` of a probe alert.
pub const ALERTNAME: &str = "TalonProbeFailing";
/// `alertname` of `talon notify --test`.
pub const TEST_ALERTNAME: &str = "TalonTest";
/// Default lifetime of a firing alert without a new post.
pub const DEFAULT_FIRING_TTL_SECS: u64 = 24 * 3600;

/// The alerts to post for a notice.
pub fn alerts(spec: &AlertmanagerSpec, notice: &Notice) -> serde_json::Value {
    let severity = spec.severity.as_deref().unwrap_or("critical");
    let ttl_ms = spec.firing_ttl_secs.unwrap_or(DEFAULT_FIRING_TTL_SECS) as i64 * 1000;
    let starts = notice.since_ms.unwrap_or(notice.at_ms);
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
    let resp = ctx
        .http
        .post(spec.endpoint())
        .json(&body)
        .send()
        .await
        .map_err(transport)?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(http_error(resp, &ctx.redactor).await)
    }
}
