//! The status page at `/`: server-rendered HTML, no scripts, no build step; it refreshes itself
//! every few seconds. Every piece of text from the snapshot is HTML-escaped (probe output can
//! hold anything a remote service sent back).

use super::snapshot::{StatusSnapshot, SystemState};
use std::fmt::Write;

/// Seconds between automatic refreshes of the page.
pub const REFRESH_SECS: u32 = 5;

/// Escape text for HTML element content and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `2026-11-28 01:02:03Z` for a unix second (the snapshot's times are in seconds).
fn utc(unix: i64) -> String {
    crate::format::utc(unix.saturating_mul(1000))
}

fn state_color(s: SystemState) -> &'static str {
    match s {
        SystemState::Healthy => "#1a7f37",
        SystemState::Degraded => "#9a6700",
        SystemState::Failed => "#cf222e",
        SystemState::Investigating => "#8250df",
        SystemState::Critical => "#a40e26",
        SystemState::Sos => "#6e0b1c",
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}\
main{max-width:72rem;margin:0 auto;padding:1rem}\
#state{color:#fff;padding:1rem 1.5rem;border-radius:6px}\
#state h1{margin:0;font-size:1.6rem;text-transform:uppercase;letter-spacing:.05em}\
table{border-collapse:collapse;width:100%;background:#fff;margin:.5rem 0 1.5rem}\
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top;font-size:.9rem}\
td.out{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}\
.pass{color:#1a7f37;font-weight:600}.fail,.timeout,.error{color:#cf222e;font-weight:600}\
.blocked,.pending{color:#57606a}.warn{background:#fff8c5;border:1px solid #d4a72c;padding:.6rem 1rem;border-radius:6px}\
footer{color:#57606a;font-size:.8rem}";

/// Render the whole page for a snapshot.
pub fn render(s: &StatusSnapshot) -> String {
    let mut h = String::with_capacity(8192);
    let state = s.state.as_str();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Talon: {state}</title><style>{STYLE}</style></head><body><main>"
    );
    let failing = s.failed_probes().count();
    let _ = write!(
        h,
        "<section id=\"state\" data-state=\"{state}\" style=\"background:{}\"><h1>{state}</h1>\
         <div>since {} · {} probes, {failing} failing · {} consecutive failed cycles</div></section>",
        state_color(s.state),
        utc(s.since_unix),
        s.probes.len(),
        s.consecutive_failures
    );
    if let Some(e) = &s.config_error {
        let _ = write!(
            h,
            "<p class=\"warn\" id=\"config-error\"><b>Config not applied</b> (the last good config is running): {}</p>",
            escape(&e.to_string())
        );
    }
    if let Some(e) = &s.store_error {
        let _ = write!(
            h,
            "<p class=\"warn\" id=\"store-error\"><b>History not recorded</b> (store writes failing): {}</p>",
            escape(e)
        );
    }
    if !s.escalation_steps.is_empty() {
        let _ = write!(
            h,
            "<p id=\"steps-reached\">Escalation reached: {}</p>",
            escape(&s.escalation_steps.join(", "))
        );
    }
    if let Some(n) = &s.next_escalation {
        let _ = write!(
            h,
            "<p id=\"next-step\">Next: {} at {}</p>",
            escape(&n.text),
            utc(n.due_unix)
        );
    }
    for w in &s.maintenance {
        if let Some(until) = w.active_until {
            let _ = write!(
                h,
                "<p class=\"maintenance\">Maintenance <b>{}</b> ({}) until {}: probed, not paged</p>",
                escape(&w.name),
                escape(&w.probes.join(", ")),
                utc(until / 1000)
            );
        }
    }

    h.push_str("<h2>Probes</h2><table id=\"probes\"><thead><tr><th>Probe</th><th>Kind</th><th>Status</th><th>Streak</th><th>Duration</th><th>Last run</th><th>Output</th></tr></thead><tbody>");
    if s.probes.is_empty() {
        h.push_str("<tr><td colspan=\"7\">No probes configured.</td></tr>");
    }
    for p in &s.probes {
        let st = p.status_str();
        let mut notes = String::new();
        if p.critical {
            notes.push_str(" <small>critical</small>");
        }
        if p.flapping {
            notes.push_str(" <small>flapping</small>");
        }
        if let Some(sil) = &p.silenced {
            let _ = write!(
                notes,
                " <small>silenced until {}</small>",
                utc(sil.until_unix)
            );
        }
        let _ = write!(
            h,
            "<tr data-probe=\"{name}\"><td>{name}{notes}</td><td>{kind}</td><td class=\"{st}\">{st}</td><td>{streak}</td><td>{dur}</td><td>{at}</td><td class=\"out\">{out}</td></tr>",
            name = escape(&p.name),
            kind = escape(&p.kind),
            streak = p.streak,
            dur = p.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
            at = p.started_at.map(crate::format::utc).unwrap_or_default(),
            out = escape(&p.output),
        );
    }
    h.push_str("</tbody></table>");

    if let Some(w) = &s.worker {
        let _ = write!(
            h,
            "<h2>Worker</h2><table id=\"worker\"><tr><th>State</th><th>PID</th><th>Restarts</th><th>Last exit</th></tr>\
             <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
            escape(&w.state),
            w.pid.map(|p| p.to_string()).unwrap_or_default(),
            w.restarts,
            escape(w.last_exit.as_deref().unwrap_or(""))
        );
    }

    if let Some(i) = &s.incident {
        let _ = write!(
            h,
            "<h2>Incident {id}{ack}</h2><p>Open since {} · failing: {}</p>\
             <table id=\"incident\" data-incident=\"{id}\"><thead><tr><th>Time</th><th>What</th><th>Detail</th></tr></thead><tbody>",
            utc(i.started_unix),
            escape(&i.failing_probes.join(", ")),
            id = escape(&i.id),
            ack = if i.acknowledged {
                " (acknowledged)"
            } else {
                ""
            },
        );
        for e in &i.timeline {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"out\">{}</td></tr>",
                utc(e.at_unix),
                escape(&e.kind),
                escape(&e.text)
            );
        }
        h.push_str("</tbody></table>");
    }

    if !s.transitions.is_empty() {
        h.push_str("<h2>Recent transitions</h2><table id=\"transitions\"><thead><tr><th>Time</th><th>From</th><th>To</th><th>Why</th></tr></thead><tbody>");
        for t in s.transitions.iter().rev() {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                utc(t.at_unix),
                t.from,
                t.to,
                escape(&t.reason)
            );
        }
        h.push_str("</tbody></table>");
    }
    let _ = writeln!(
        h,
        "<footer>Talon {} · updated {} · <a href=\"/status\">/status</a> · <a href=\"/health\">/health</a> · <a href=\"/metrics\">/metrics</a></footer></main></body></html>",
        escape(&s.version),
        utc(s.updated_at_unix)
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::snapshot::ProbeStatus;

    #[test]
    fn escapes_everything() {
        assert_eq!(
            escape(r#"<script>alert("x&'y")</script>"#),
            "&lt;script&gt;alert(&quot;x&amp;&#39;y&quot;)&lt;/script&gt;"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06:40Z");
        assert_eq!(utc(-1), "1969-12-31 23:59:59Z");
    }

    #[test]
    fn hostile_probe_output_is_inert() {
        let mut s = StatusSnapshot::new(0);
        let mut p = ProbeStatus::pending("<b>x</b>", "http", true);
        p.output = "</td><script>alert(1)</script>".into();
        s.probes.push(p);
        let html = render(&s);
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>x</b>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("http-equiv=\"refresh\""));
    }
}
