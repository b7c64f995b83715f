//! `command`: runs a shell command with the message text on stdin and the notice's fields in
//! its environment: `TALON_NOTICE_KIND`, `TALON_NOTICE_TITLE`, `TALON_HOST`, `TALON_STATE`,
//! `TALON_INCIDENT_ID`, `TALON_FAILING_PROBES` (comma list) and `TALON_NOTICE_JSON` (the whole
//! notice). Exit 0 = delivered.

use super::{DeliveryError, Notice, NotifyCtx};
use crate::config::channel::command::CommandSpec;
use crate::proc::Cmd;

pub async fn send(
    spec: &CommandSpec,
    notice: &Notice,
    ctx: &NotifyCtx,
) -> Result<(), DeliveryError> {
    let probes: Vec<&str> = notice.failing.iter().map(|f| f.probe.as_str()).collect();
    let json = serde_json::to_string(notice).unwrap_or_default();
    let f = Cmd::shell(&spec.command)
        .search_path(&ctx.search_path)
        .env("TALON_NOTICE_KIND", notice.kind.as_str())
        .env("TALON_NOTICE_TITLE", notice.title())
        .env("TALON_HOST", &notice.host)
        .env("TALON_STATE", &notice.state)
        .env(
            "TALON_INCIDENT_ID",
            notice.incident_id.as_deref().unwrap_or(""),
        )
        .env("TALON_FAILING_PROBES", probes.join(","))
        .env("TALON_NOTICE_JSON", json)
        .stdin_bytes(notice.text().into_bytes())
        .timeout(ctx.timeout)
        .run()
        .await
        .map_err(|e| DeliveryError::Command(e.to_string()))?;
    if f.end.success() {
        Ok(())
    } else {
        Err(DeliveryError::Command(ctx.redactor.clean(&format!(
            "`{}` {}: {}",
            spec.command,
            f.end,
            f.last_line()
        ))))
    }
}
