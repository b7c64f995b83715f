//! `http` probe spec: URL, method, accepted statuses, body match, headers, TLS and redirect
//! settings. The check lives in `crate::probe::http`.

use super::{Check, Kind, KindSpec, ProbeKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[http.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "http",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Http),
};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// Accepted statuses: codes (`200`) or ranges (`"200-299"`); empty = any 2xx.
    #[serde(default)]
    pub expect_status: Vec<StatusSpec>,
    /// The body must contain this substring.
    pub body_contains: Option<String>,
    /// The body must match this regular expression.
    pub body_regex: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS certificate verification (on unless turned off).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    #[serde(default)]
    pub follow_redirects: bool,
}

fn default_method() -> String {
    "GET".to_string()
}
fn yes() -> bool {
    true
}

/// One accepted status: a code or an inclusive range written `"200-299"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StatusSpec {
    Code(i64),
    Range(String),
}

impl StatusSpec {
    /// The inclusive range this spec accepts, or an error message.
    pub fn bounds(&self) -> Result<(u16, u16), String> {
        let in_range = |v: i64| (100..=599).contains(&v);
        match self {
            StatusSpec::Code(c) if in_range(*c) => Ok((*c as u16, *c as u16)),
            StatusSpec::Code(c) => Err(format!("status {c} is not between 100 and 599")),
            StatusSpec::Range(r) => {
                let (a, b) = r
                    .split_once('-')
                    .ok_or_else(|| format!("`{r}` is not a status range like \"200-299\""))?;
                let a: i64 = a
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{r}` is not a status range like \"200-299\""))?;
                let b: i64 = b
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{r}` is not a status range like \"200-299\""))?;
                if !in_range(a) || !in_range(b) || a > b {
                    return Err(format!(
                        "`{r}` is not a valid range of statuses between 100 and 599"
                    ));
                }
                Ok((a as u16, b as u16))
            }
        }
    }
}

impl KindSpec for HttpSpec {
    /// Values of secret-named headers (`Authorization`, `X-Api-Key`, …).
    fn secrets(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| crate::redact::is_secret_name(k))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn validate(&self, c: &mut Check<'_>) {
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => c.error(
                "url",
                format!(
                    "`{}` must be an http:// or https:// URL with a host (scheme `{}`)",
                    self.url,
                    u.scheme()
                ),
            ),
            Err(e) => c.error("url", format!("`{}` is not a valid URL: {e}", self.url)),
        }
        if reqwest::Method::from_bytes(self.method.as_bytes()).is_err() {
            c.error("method", format!("`{}` is not an HTTP method", self.method));
        }
        for s in &self.expect_status {
            if let Err(e) = s.bounds() {
                c.error("expect_status", e);
            }
        }
        if let Some(r) = &self.body_regex
            && let Err(e) = regex::Regex::new(r)
        {
            c.error("body_regex", format!("invalid regular expression: {e}"));
        }
        for (k, v) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                c.error("headers", format!("`{k}: {v}` is not a valid HTTP header"));
            }
        }
    }
}

pub fn status_ok(expect: &[StatusSpec], status: u16) -> bool {
    if expect.is_empty() {
        return (200..300).contains(&status);
    }
    expect
        .iter()
        .filter_map(|s| s.bounds().ok())
        .any(|(a, b)| (a..=b).contains(&status))
}

pub fn expected_text(expect: &[StatusSpec]) -> String {
    if expect.is_empty() {
        return "2xx".to_string();
    }
    expect
        .iter()
        .map(|s| match s {
            StatusSpec::Code(c) => c.to_string(),
            StatusSpec::Range(r) => r.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_accepts_any_2xx_only() {
        assert!(status_ok(&[], 200));
        assert!(status_ok(&[], 204));
        assert!(!status_ok(&[], 301));
        assert!(!status_ok(&[], 503));
    }

    #[test]
    fn codes_and_ranges_combine() {
        let e = vec![StatusSpec::Code(401), StatusSpec::Range("200-204".into())];
        assert!(status_ok(&e, 401));
        assert!(status_ok(&e, 203));
        assert!(!status_ok(&e, 205));
        assert_eq!(expected_text(&e), "401, 200-204");
    }

    #[test]
    fn secret_headers_are_secrets() {
        let mut spec: HttpSpec = toml::from_str("url = \"http://h/\"").unwrap();
        spec.headers
            .insert("Authorization".into(), "Bearer s3cr3t".into());
        spec.headers.insert("Accept".into(), "text/plain".into());
        assert_eq!(spec.secrets(), vec!["Bearer s3cr3t".to_string()]);
    }

    #[test]
    fn bad_ranges_are_rejected() {
        assert!(StatusSpec::Range("300-200".into()).bounds().is_err());
        assert!(StatusSpec::Range("2xx".into()).bounds().is_err());
        assert!(StatusSpec::Code(700).bounds().is_err());
    }
}
