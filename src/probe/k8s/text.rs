//! Small text helpers shared by every `k8s` check: one-line clipping, "Reason (message)", short
//! lists, object names and ages. Pure; imports only `api.rs` (the objects' types).

use super::api::{ObjectMeta, Time};
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

/// Most objects a failure's detail shows.
const DETAIL_OBJECTS: usize = 10;

/// A failure's detail: what the verdict was computed from, one `name:` line and indented JSON
/// per object, the objects with a problem first, at most [`DETAIL_OBJECTS`] of them.
pub(super) fn objects_detail(mut items: Vec<(bool, String, serde_json::Value)>) -> String {
    // Stable: problem objects first, each group in the API's order.
    items.sort_by_key(|(problem, _, _)| !problem);
    let n = items.len();
    let mut out = String::new();
    for (_, name, v) in items.into_iter().take(DETAIL_OBJECTS) {
        let json = serde_json::to_string_pretty(&v).unwrap_or_default();
        out.push_str(&format!("{name}:\n"));
        for l in json.lines() {
            out.push_str("  ");
            out.push_str(l);
            out.push('\n');
        }
    }
    if n > DETAIL_OBJECTS {
        out.push_str(&format!("(and {} more)\n", n - DETAIL_OBJECTS));
    }
    out.trim_end().to_string()
}

/// The members of `v` named in `keys`, the others dropped (noise for a diagnosis).
pub(super) fn pick(v: serde_json::Value, keys: &[&str]) -> serde_json::Value {
    match v {
        serde_json::Value::Object(mut m) => serde_json::Value::Object(
            keys.iter()
                .filter_map(|k| m.remove(*k).map(|x| (k.to_string(), x)))
                .collect(),
        ),
        other => other,
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

    #[test]
    fn details_show_problem_objects_first_and_at_most_ten() {
        let items: Vec<_> = (0..12)
            .map(|i| (i == 11, format!("node n{i}"), serde_json::json!({"i": i})))
            .collect();
        let d = objects_detail(items);
        assert!(
            d.starts_with("node n11:\n  {\n    \"i\": 11\n  }\nnode n0:"),
            "{d}"
        );
        assert!(!d.contains("node n9:"), "{d}");
        assert!(d.ends_with("(and 2 more)"), "{d}");
        assert_eq!(
            pick(
                serde_json::json!({"a": 1, "b": 2, "c": 3}),
                &["c", "a", "z"]
            ),
            serde_json::json!({"a": 1, "c": 3})
        );
    }
}
