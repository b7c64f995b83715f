//! `http` probe: a request whose status (and optionally body) is checked.
//!
//! A failure's detail is what the answer was judged from: the status line, the headers that
//! explain an answer (type, length, location, retry-after, server, …; never cookies) and the
//! start of the body — or, when there was no answer, the whole error chain.
//!
//! Clients are built once per engine and shared (one per TLS-verify / redirect combination,
//! each on first use). Connections are not pooled between probes: every run opens a fresh
//! connection, so a server that stopped accepting cannot hide behind an old keep-alive socket.

use super::ProbeCtx;
use crate::clock::Instant;
use crate::config::probe::http::{HttpSpec, expected_text, status_ok};
use crate::core::outcome::Outcome;
use crate::format::{head_excerpt, latency};
use crate::net::error_chain;
use std::time::Duration;

/// Most body bytes read for `body_contains` / `body_regex`.
pub const MAX_BODY: usize = 1024 * 1024;

/// Response headers a failure's detail shows (the rest are noise or, like cookies, secrets).
const DETAIL_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "location",
    "retry-after",
    "server",
    "via",
    "www-authenticate",
    "x-request-id",
];

/// Longest a failing answer's body is read for its detail: an answer already judged must not
/// turn into a timeout because its body trickles.
const DETAIL_BODY_WAIT: Duration = Duration::from_secs(1);

/// The status line and [`DETAIL_HEADERS`] of an answer.
fn head_of(resp: &reqwest::Response) -> String {
    let mut s = format!("{:?} {}\n", resp.version(), resp.status());
    for name in DETAIL_HEADERS {
        for v in resp.headers().get_all(*name) {
            s.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(v.as_bytes())
            ));
        }
    }
    s
}

/// The detail of a judged answer: its head, a blank line, the start of `body`, in `max` bytes.
fn answer_detail(head: &str, body: &[u8], max: usize) -> String {
    let body = String::from_utf8_lossy(body);
    let room = max.saturating_sub(head.len() + 1);
    if body.is_empty() || room == 0 {
        return head_excerpt(head.trim_end(), max);
    }
    format!("{head}\n{}", head_excerpt(body.trim_end(), room))
}

/// Up to `max` bytes of the body, waiting at most `wait` (what arrived by then is kept).
async fn body_start(resp: &mut reqwest::Response, max: usize, wait: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    let read = async {
        while body.len() < max {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(max - body.len())]),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(wait, read).await;
    body
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
        Err(e) => {
            return Outcome::fail(format!("{} ({})", describe_error(&e), spec.url))
                .with_detail(head_excerpt(&error_chain(&e), ctx.detail_bytes));
        }
    };
    let status = resp.status().as_u16();
    let elapsed = latency(t0.elapsed());
    let head = format!(
        "HTTP {status} from {} in {elapsed}{}",
        spec.url,
        certificate_note(&resp)
    );
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
        let head = head_of(&resp);
        let wait = DETAIL_BODY_WAIT.min(ctx.timeout.saturating_sub(t0.elapsed()) / 2);
        let body = body_start(&mut resp, ctx.detail_bytes, wait).await;
        return Outcome::fail(msg).with_detail(answer_detail(&head, &body, ctx.detail_bytes));
    }
    if spec.body_contains.is_none() && spec.body_regex.is_none() {
        return Outcome::pass(head);
    }
    let answer = head_of(&resp);
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
                ))
                .with_detail(answer_detail(&answer, &body, ctx.detail_bytes));
            }
        }
    }
    let text = String::from_utf8_lossy(&body);
    if let Some(needle) = &spec.body_contains
        && !text.contains(needle.as_str())
    {
        return Outcome::fail(format!("{head}, but the body does not contain `{needle}`"))
            .with_detail(answer_detail(&answer, &body, ctx.detail_bytes));
    }
    if let Some(pattern) = &spec.body_regex {
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(&text) => {}
            Ok(_) => {
                return Outcome::fail(format!("{head}, but the body does not match /{pattern}/"))
                    .with_detail(answer_detail(&answer, &body, ctx.detail_bytes));
            }
            Err(e) => return Outcome::error(format!("invalid body_regex: {e}")),
        }
    }
    Outcome::pass(head)
}

/// "; certificate expires in 80 days (…)" for an answer that came over TLS.
fn certificate_note(resp: &reqwest::Response) -> String {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .and_then(|der| super::cert::parse(der).ok())
        .map(|c| format!("; certificate {}", c.expiry_text(crate::clock::wall_ms())))
        .unwrap_or_default()
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
