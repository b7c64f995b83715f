//! `alertmanager` channel spec: the Alertmanager URL (`url`) or the URLs of every member of an
//! Alertmanager cluster (`urls`), the severity label, how often a firing alert is re-posted and
//! how long it stays firing without one. Posting alerts lives in `crate::notify::alertmanager`.

use super::url_problem;
use serde::{Deserialize, Serialize};

/// `repost_secs` when unset: well below Alertmanager's default `resolve_timeout` (5 m), as
/// Prometheus re-sends firing alerts every minute.
pub const DEFAULT_REPOST_SECS: u64 = 60;
/// `firing_ttl_secs` when unset, in re-post intervals: an alert survives three missed re-posts
/// (Prometheus uses four evaluation intervals) and ends by itself when Talon stops posting.
pub const DEFAULT_TTL_REPOSTS: u64 = 4;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSpec {
    /// One Alertmanager's base URL (`http://127.0.0.1:9093`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Every member of an Alertmanager cluster: each alert is posted to all of them (as
    /// Prometheus does); the cluster deduplicates the notifications.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// `severity` label of probe alerts (default `critical`).
    pub severity: Option<String>,
    /// How long a posted firing alert stays firing without a newer post (its `endsAt`);
    /// default 4 × `repost_secs`.
    pub firing_ttl_secs: Option<u64>,
    /// While an incident is in `sos`, its alerts are posted again this often (default 60); keep
    /// it below the receiver's `resolve_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repost_secs: Option<u64>,
}

impl AlertmanagerSpec {
    /// A spec for one Alertmanager with every other key at its default.
    pub fn single(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            urls: Vec::new(),
            severity: None,
            firing_ttl_secs: None,
            repost_secs: None,
        }
    }

    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        match (&self.url, self.urls.is_empty()) {
            (Some(_), false) => v.push((
                "urls",
                "set either `url` (one Alertmanager) or `urls` (a cluster), not both".into(),
            )),
            (None, true) => v.push((
                "url",
                "required: `url = \"http://HOST:9093\"`, or `urls = [...]` for a cluster".into(),
            )),
            _ => {}
        }
        if let Some(p) = self.url.as_deref().and_then(url_problem) {
            v.push(("url", p));
        }
        for (i, u) in self.urls.iter().enumerate() {
            if let Some(p) = url_problem(u) {
                v.push(("urls", format!("[{i}]: {p}")));
            }
            if self.urls[..i].contains(u) {
                v.push(("urls", format!("[{i}]: `{u}` is listed twice")));
            }
        }
        if self.repost_secs == Some(0) {
            v.push(("repost_secs", "must be at least 1".into()));
        }
        match self.firing_ttl_secs {
            Some(0) => v.push(("firing_ttl_secs", "must be at least 1".into())),
            Some(ttl) if ttl <= self.repost().as_secs() => v.push((
                "firing_ttl_secs",
                format!(
                    "{ttl} must be longer than repost_secs ({}): the alert would end between two posts",
                    self.repost().as_secs()
                ),
            )),
            _ => {}
        }
        v
    }

    /// The alerts endpoint of every configured Alertmanager, in config order.
    pub fn endpoints(&self) -> Vec<String> {
        self.url
            .iter()
            .chain(self.urls.iter())
            .map(|u| endpoint(u))
            .collect()
    }

    /// How often firing alerts are re-posted.
    pub fn repost(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.repost_secs
                .filter(|s| *s > 0)
                .unwrap_or(DEFAULT_REPOST_SECS),
        )
    }

    /// How long a firing alert lasts without a newer post.
    pub fn firing_ttl(&self) -> std::time::Duration {
        match self.firing_ttl_secs.filter(|s| *s > 0) {
            Some(s) => std::time::Duration::from_secs(s),
            None => self.repost() * DEFAULT_TTL_REPOSTS as u32,
        }
    }
}

/// `{base}/api/v2/alerts` (a base that already ends so is kept).
fn endpoint(url: &str) -> String {
    let base = url.trim_end_matches('/');
    if base.ends_with("/api/v2/alerts") {
        base.to_string()
    } else {
        format!("{base}/api/v2/alerts")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: Option<&str>, urls: &[&str]) -> AlertmanagerSpec {
        AlertmanagerSpec {
            url: url.map(str::to_string),
            urls: urls.iter().map(|u| u.to_string()).collect(),
            ..AlertmanagerSpec::single("")
        }
    }

    #[test]
    fn url_or_urls_exactly_one() {
        assert!(spec(Some("http://a:9093"), &[]).validate().is_empty());
        assert!(
            spec(None, &["http://a:9093", "http://b:9093/"])
                .validate()
                .is_empty()
        );
        let both = spec(Some("http://a:9093"), &["http://b:9093"]).validate();
        assert_eq!(both[0].0, "urls", "{both:?}");
        let none = spec(None, &[]).validate();
        assert_eq!(none[0].0, "url", "{none:?}");
        let bad = spec(None, &["http://a:9093", "ftp://b", "http://a:9093"]).validate();
        assert!(bad.iter().any(|(_, m)| m.starts_with("[1]:")), "{bad:?}");
        assert!(bad.iter().any(|(_, m)| m.contains("twice")), "{bad:?}");
    }

    #[test]
    fn endpoints_in_order() {
        assert_eq!(
            spec(None, &["http://a:9093/", "http://b:9093/api/v2/alerts"]).endpoints(),
            ["http://a:9093/api/v2/alerts", "http://b:9093/api/v2/alerts"]
        );
    }

    #[test]
    fn ttl_follows_the_repost_interval_and_must_exceed_it() {
        let mut s = spec(Some("http://a:9093"), &[]);
        assert_eq!(s.repost().as_secs(), 60);
        assert_eq!(s.firing_ttl().as_secs(), 240);
        s.repost_secs = Some(5);
        assert_eq!(s.firing_ttl().as_secs(), 20);
        s.firing_ttl_secs = Some(5);
        assert_eq!(s.validate()[0].0, "firing_ttl_secs");
        s.firing_ttl_secs = Some(86_400);
        assert!(s.validate().is_empty());
        assert_eq!(s.firing_ttl().as_secs(), 86_400);
    }
}
