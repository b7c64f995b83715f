//! Small text helpers shared by every `k8s` check: one-line clipping, "Reason (message)", short
//! lists, object names and ages. Pure; imports nothing else from the folder.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `45s`, `3m 12s`, `2h 5m`, `3d 4h`; sub-second durations as `850ms` ([`crate::format::duration`]).
pub fn human(d: Duration) -> String {
    crate::format::duration(d)
}

/// How long ago `t` was, judged at `now` (zero for a time in the future).
pub(super) fn age(t: &Time, now: SystemTime) -> Duration {
    let secs = t.0.as_second();
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Duration::from_secs(now_secs.saturating_sub(secs).max(0) as u64)
}

/// An object's name for messages, `?` when it has none.
pub(super) fn name_of(m: &ObjectMeta) -> &str {
    m.name.as_deref().unwrap_or("?")
}

/// ": Reason (message)" with whichever parts exist.
pub(super) fn reason_message(reason: Option<&str>, message: Option<&str>) -> String {
    let reason = reason.map(str::trim).filter(|s| !s.is_empty());
    let message = message
        .map(|m| clip(m.trim(), 200))
        .filter(|s| !s.is_empty());
    match (reason, message) {
        (Some(r), Some(m)) => format!(": {r} ({m})"),
        (Some(r), None) => format!(": {r}"),
        (None, Some(m)) => format!(" ({m})"),
        (None, None) => String::new(),
    }
}

/// At most three items joined by "; ", then "and N more".
pub(super) fn list_clipped(items: &[String]) -> String {
    let mut s = items.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
    if items.len() > 3 {
        s.push_str(&format!("; and {} more", items.len() - 3));
    }
    s
}

/// One line, at most `max` characters.
pub(super) fn clip(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        one
    } else {
        let mut t: String = one.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(192)), "3m 12s");
        assert_eq!(human(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(human(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d 4h");
        assert_eq!(human(Duration::from_millis(850)), "850ms");
    }
}
