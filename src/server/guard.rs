//! Hostile local clients: the checks every request passes before a handler sees it.
//!
//! - **DNS rebinding.** A web page on `evil.example` whose name is made to resolve to 127.0.0.1
//!   can make the browser talk to Talon, but the browser still sends `Host: evil.example`. Only
//!   the names this server can honestly be reached by are accepted ([`HostAllowList`]); anything
//!   else is answered `421 Misdirected Request` before routing.
//! - **Browser "simple" requests.** A page can POST a form (or `text/plain`) cross-origin without
//!   a CORS preflight. The write endpoints need a bearer token (which no page can attach without a
//!   preflight Talon never answers), and on top of that [`refuse_browser_request`] turns away a
//!   request that carries a form content type, a foreign `Origin`, or `Sec-Fetch-Site:
//!   cross-site`/`same-site`. `curl -X POST -H 'Authorization: Bearer …'` from a cron job on the
//!   same host passes: no body or a JSON body, no `Origin`.

use axum::http::{HeaderMap, StatusCode, header};
use std::net::{IpAddr, SocketAddr};

/// Which `Host` header values this server accepts.
#[derive(Debug, Clone)]
pub struct HostAllowList {
    /// The bound address (its IP is accepted as a host).
    bind: SocketAddr,
    /// This machine's host name (lowercase), accepted when the server listens beyond loopback.
    hostname: Option<String>,
}

impl HostAllowList {
    /// The allow-list for a server bound to `bind`: loopback names and addresses (`localhost`,
    /// `*.localhost`, `127.0.0.0/8`, `::1`), the bound IP, and — when bound to all interfaces
    /// (`0.0.0.0`/`::`) — any IP literal and this machine's host name.
    pub fn for_bind(bind: SocketAddr) -> Self {
        let hostname = (!bind.ip().is_loopback())
            .then(|| nix::unistd::gethostname().ok())
            .flatten()
            .and_then(|h| h.into_string().ok())
            .map(|h| h.to_ascii_lowercase());
        Self { bind, hostname }
    }

    /// Is `host` (a `Host` header value: name or IP, with or without a port) allowed?
    pub fn allows(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        if let Ok(ip) = name.parse::<IpAddr>() {
            return ip.is_loopback() || ip == self.bind.ip() || self.bind.ip().is_unspecified();
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name == "localhost"
            || name.ends_with(".localhost")
            || self.hostname.as_deref() == Some(name.as_str())
    }

    /// Check a request's headers: `Err` carries the 421 answer's text. A request without a
    /// `Host` (HTTP/1.0 tools) is let through: browsers always send one.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(v) = headers.get(header::HOST) else {
            return Ok(());
        };
        match v.to_str() {
            Ok(h) if self.allows(h) => Ok(()),
            Ok(h) => Err(format!(
                "Host {h:?} is not a name of this server (a loopback name or address, or {})",
                self.bind.ip()
            )),
            Err(_) => Err("the Host header is not text".into()),
        }
    }
}

/// The host part of a `Host` value: `name`, `name:port`, `[v6]`, `[v6]:port`. `None` when it is
/// not a plausible host.
fn host_name(host: &str) -> Option<&str> {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return (after.is_empty() || after.starts_with(':')).then_some(ip);
    }
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        Some(_) => return None,
        None => host,
    };
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'))
    .then_some(name)
}

/// Content types a browser may send cross-origin without a preflight (the CORS "simple" ones).
const SIMPLE_CONTENT_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
];

/// Refuse what only a browser page would send to a write endpoint: a form or `text/plain` body
/// (415), a foreign `Origin` or a cross-site fetch (403). `hosts` says which origins are this
/// server's own.
pub fn refuse_browser_request(
    headers: &HeaderMap,
    hosts: &HostAllowList,
) -> Result<(), (StatusCode, String)> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && matches!(site.trim(), "cross-site" | "same-site")
    {
        return Err((
            StatusCode::FORBIDDEN,
            format!("cross-site request refused (Sec-Fetch-Site: {site})"),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .is_some_and(|(scheme, host)| scheme == "http" && hosts.allows(host));
        if !own {
            return Err((
                StatusCode::FORBIDDEN,
                format!("request from another origin refused (Origin: {origin:?})"),
            ));
        }
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let essence = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if SIMPLE_CONTENT_TYPES.contains(&essence.as_str()) {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type {essence} is refused on write endpoints (a browser form could send it); send JSON with `Content-Type: application/json`, or no body"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn loopback() -> HostAllowList {
        HostAllowList::for_bind("127.0.0.1:9999".parse().unwrap())
    }

    #[test]
    fn loopback_names_pass_and_foreign_names_do_not() {
        let h = loopback();
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9999",
            "127.1.2.3:80",
            "localhost",
            "LOCALHOST:9999",
            "app.localhost",
            "[::1]",
            "[::1]:9999",
            "localhost.",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9999",
            "localhost.evil.example",
            "10.0.0.5:9999",
            "[2001:db8::1]:9999",
            "",
            "127.0.0.1:x",
            "a b",
            "[::1",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
    }

    #[test]
    fn the_bound_ip_and_any_ip_on_a_wildcard_bind() {
        let h = HostAllowList::for_bind("10.0.0.5:9999".parse().unwrap());
        assert!(h.allows("10.0.0.5:9999"));
        assert!(!h.allows("10.0.0.6:9999"));
        assert!(!h.allows("evil.example"));
        let any = HostAllowList::for_bind("0.0.0.0:9999".parse().unwrap());
        assert!(any.allows("10.0.0.6:9999"));
        assert!(!any.allows("evil.example"));
    }

    #[test]
    fn browser_requests_are_refused_and_curl_passes() {
        let h = loopback();
        let hdrs = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(
            refuse_browser_request(&hdrs(&[]), &h).is_ok(),
            "curl -X POST"
        );
        assert!(refuse_browser_request(&hdrs(&[("content-type", "application/json")]), &h).is_ok());
        assert!(
            refuse_browser_request(&hdrs(&[("origin", "http://127.0.0.1:9999")]), &h).is_ok(),
            "our own page"
        );
        let code = |p: &[(&'static str, &'static str)]| {
            refuse_browser_request(&hdrs(p), &h).unwrap_err().0
        };
        assert_eq!(
            code(&[("content-type", "text/plain;charset=UTF-8")]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            code(&[("content-type", "application/x-www-form-urlencoded")]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            code(&[("origin", "http://evil.example")]),
            StatusCode::FORBIDDEN
        );
        assert_eq!(code(&[("origin", "null")]), StatusCode::FORBIDDEN);
        assert_eq!(
            code(&[("sec-fetch-site", "cross-site")]),
            StatusCode::FORBIDDEN
        );
    }
}
