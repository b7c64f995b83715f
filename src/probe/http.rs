//! `http` probe: a request whose status (and optionally body) is checked.
//!
//! Clients are built once per engine and shared (one per TLS-verify / redirect combination,
//! each on first use). Connections are not pooled between probes: every run opens a fresh
//! connection, so a server that stopped accepting cannot hide behind an old keep-alive socket.

use super::engine::{ProbeCtx, fmt_duration};
use super::outcome::Outcome;
use super::spec::{Check, KindSpec};
use crate::clock::Instant;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Most body bytes read for `body_contains` / `body_regex`.
pub const MAX_BODY: usize = 1024 * 1024;

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
            .filter(|(k, _)| crate::escalate::redact::is_secret_name(k))
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

/// Talon's TLS is ring-only: make ring the process-wide rustls provider (idempotent).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Already installed (by main or a test) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The shared HTTP clients, one per (TLS verification, redirect following) combination.
#[derive(Debug, Default)]
pub struct HttpClients {
    slots: [OnceLock<Result<reqwest::Client, String>>; 4],
}

impl HttpClients {
    /// The client for these settings, built on first use.
    pub fn get(&self, tls_verify: bool, follow_redirects: bool) -> Result<reqwest::Client, String> {
        let i = usize::from(tls_verify) * 2 + usize::from(follow_redirects);
        self.slots[i]
            .get_or_init(|| {
                install_crypto_provider();
                let redirects = if follow_redirects {
                    reqwest::redirect::Policy::limited(10)
                } else {
                    reqwest::redirect::Policy::none()
                };
                reqwest::Client::builder()
                    .user_agent(concat!("talon/", env!("CARGO_PKG_VERSION")))
                    .redirect(redirects)
                    .tls_danger_accept_invalid_certs(!tls_verify)
                    .pool_max_idle_per_host(0)
                    .no_proxy()
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
            })
            .clone()
    }
}

/// Run the request and judge the answer.
pub async fn check(spec: &HttpSpec, ctx: &ProbeCtx) -> Outcome {
    let client = match ctx.http().get(spec.tls_verify, spec.follow_redirects) {
        Ok(c) => c,
        Err(e) => return Outcome::error(e),
    };
    let method = match reqwest::Method::from_bytes(spec.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => return Outcome::error(format!("`{}` is not an HTTP method", spec.method)),
    };
    let mut req = client.request(method, &spec.url);
    for (k, v) in &spec.headers {
        req = req.header(k, v);
    }
    let t0 = Instant::now();
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(format!("{} ({})", describe_error(&e), spec.url)),
    };
    let status = resp.status().as_u16();
    let elapsed = fmt_duration(t0.elapsed());
    let head = format!("HTTP {status} from {} in {elapsed}", spec.url);
    if !status_ok(&spec.expect_status, status) {
        let mut msg = format!("{head} (expected {})", expected_text(&spec.expect_status));
        if resp.status().is_redirection()
            && let Some(loc) = resp.headers().get(reqwest::header::LOCATION)
        {
            msg.push_str(&format!(
                "; redirect to {} not followed (set follow_redirects = true to follow)",
                String::from_utf8_lossy(loc.as_bytes())
            ));
        }
        return Outcome::fail(msg);
    }
    if spec.body_contains.is_none() && spec.body_regex.is_none() {
        return Outcome::pass(head);
    }
    let mut body: Vec<u8> = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                let room = MAX_BODY - body.len();
                body.extend_from_slice(&c[..c.len().min(room)]);
                if body.len() >= MAX_BODY {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Outcome::fail(format!(
                    "{head}, but reading the body failed: {}",
                    describe_error(&e)
                ));
            }
        }
    }
    let text = String::from_utf8_lossy(&body);
    if let Some(needle) = &spec.body_contains
        && !text.contains(needle.as_str())
    {
        return Outcome::fail(format!("{head}, but the body does not contain `{needle}`"));
    }
    if let Some(pattern) = &spec.body_regex {
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(&text) => {}
            Ok(_) => {
                return Outcome::fail(format!("{head}, but the body does not match /{pattern}/"));
            }
            Err(e) => return Outcome::error(format!("invalid body_regex: {e}")),
        }
    }
    Outcome::pass(head)
}

/// Whether `status` is accepted (no expectation = any 2xx).
pub fn status_ok(expect: &[StatusSpec], status: u16) -> bool {
    if expect.is_empty() {
        return (200..300).contains(&status);
    }
    expect
        .iter()
        .filter_map(|s| s.bounds().ok())
        .any(|(a, b)| (a..=b).contains(&status))
}

fn expected_text(expect: &[StatusSpec]) -> String {
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

/// A short, specific reason for a request that got no response.
fn describe_error(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut src: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => return "connection reset".into(),
                std::io::ErrorKind::TimedOut => return "connect timed out".into(),
                _ => {}
            }
        }
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return format!("TLS error: {tls}");
        }
        src = s.source();
    }
    let chain = error_chain(e);
    if e.is_connect() {
        format!("connect failed: {chain}")
    } else {
        chain
    }
}

/// An error and its sources on one line, without repeats.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
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
