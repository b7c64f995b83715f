//! `http` probe: a request whose status (and optionally body) is checked.

use super::spec::{Check, KindSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
