//! A client error → one line that names the class of failure: unreachable, TLS,
//! unauthorized/forbidden, not found, timeout, credentials — or the API's own message.

use super::api::Status;
use super::text::clip;
use crate::core::outcome::Outcome;

/// Why a request failed.
#[derive(Debug)]
pub(super) enum Error {
    /// The server answered with an error status; its `Status` body (code = the HTTP status).
    Api(Status),
    /// The request did not get an answer: connect, TLS, timeout.
    Http(reqwest::Error),
    /// Credentials could not be loaded for the request (an exec plugin failed).
    Auth(String),
    /// The answer was not the object asked for.
    Decode(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Api(s) => write!(f, "API error {} {}: {}", s.code, s.reason, s.message),
            Error::Http(e) => write!(f, "{e}"),
            Error::Auth(m) => write!(f, "auth error: {m}"),
            Error::Decode(m) => write!(f, "cannot read the answer: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Http(e) => Some(e),
            _ => None,
        }
    }
}

/// Turn a client error into an outcome whose output says which class of failure it is:
/// unreachable, TLS, unauthorized/forbidden, not found, timeout — or, for what is none of those,
/// an API error with the server's own message.
pub(super) fn classify(e: &Error, url: &str, what: &str) -> Outcome {
    if let Error::Api(s) = e {
        let msg = clip(s.message.trim(), 240);
        let with_msg = |prefix: String| {
            if msg.is_empty() {
                prefix
            } else {
                format!("{prefix}: {msg}")
            }
        };
        return match s.code {
            401 => Outcome::fail(with_msg(format!(
                "unauthorized (401) by {url}: the credentials were rejected"
            ))),
            403 => Outcome::fail(with_msg(format!("forbidden (403) reading {what}"))),
            404 => Outcome::fail(format!("not found: {what} does not exist (404)")),
            code => {
                let reason = if s.reason.is_empty() {
                    String::new()
                } else {
                    format!(" {}", s.reason)
                };
                Outcome::fail(with_msg(format!("API error {code}{reason} from {url}")))
            }
        };
    }
    let text = chain(e);
    let mut io_kinds = Vec::new();
    let mut tls: Option<String> = None;
    walk(e, &mut |err| {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            io_kinds.push(io.kind());
        }
        if tls.is_none()
            && let Some(r) = err.downcast_ref::<rustls::Error>()
        {
            tls = Some(r.to_string());
        }
    });
    if io_kinds.contains(&std::io::ErrorKind::TimedOut) {
        return Outcome::timeout(format!("timeout: {url} did not answer ({text})"));
    }
    if let Some(t) = tls {
        return Outcome::fail(format!("TLS failure talking to {url}: {t}"));
    }
    if let Error::Http(h) = e
        && h.is_timeout()
    {
        return Outcome::timeout(format!("timeout: {url} did not answer ({text})"));
    }
    if matches!(e, Error::Auth(_)) {
        return Outcome::error(format!("credentials for {url} could not be loaded: {text}"));
    }
    if io_kinds.contains(&std::io::ErrorKind::ConnectionRefused) {
        return Outcome::fail(format!("unreachable: {url} refused the connection"));
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("dns error") || lower.contains("failed to lookup address") {
        return Outcome::fail(format!(
            "unreachable: cannot resolve the host of {url} ({text})"
        ));
    }
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        return Outcome::fail(format!("TLS failure talking to {url}: {text}"));
    }
    let connectish = io_kinds.iter().any(|k| {
        use std::io::ErrorKind::*;
        matches!(
            k,
            ConnectionReset
                | ConnectionAborted
                | NotConnected
                | HostUnreachable
                | NetworkUnreachable
                | AddrNotAvailable
                | BrokenPipe
                | UnexpectedEof
        )
    });
    if connectish || lower.contains("connect") {
        return Outcome::fail(format!("unreachable: {url}: {text}"));
    }
    if matches!(e, Error::Decode(_)) {
        return Outcome::fail(format!("unexpected answer from {url} about {what}: {text}"));
    }
    Outcome::error(format!("{what}: {text}"))
}

/// Visit an error and all its sources, including errors wrapped inside `std::io::Error`
/// (whose `source()` skips the wrapped error itself).
fn walk<'a>(
    e: &'a (dyn std::error::Error + 'static),
    f: &mut dyn FnMut(&'a (dyn std::error::Error + 'static)),
) {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut depth = 0;
    while let Some(err) = cur {
        f(err);
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            f(inner);
        }
        depth += 1;
        if depth > 16 {
            break;
        }
        cur = err.source();
    }
}

/// An error and its sources on one line, without repeating a message its wrapper already shows.
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    walk(e, &mut |err| {
        let (raw, s) = (err.to_string(), describe(err));
        // A rewritten message replaces its raw form where a wrapper already quoted it.
        if s != raw {
            let mut replaced = false;
            for p in parts.iter_mut().filter(|p| p.contains(&raw)) {
                *p = p.replace(&raw, &s);
                replaced = true;
            }
            if replaced {
                return;
            }
        }
        let s = s.trim();
        if s.is_empty() || parts.iter().any(|p| p.contains(s)) {
            return;
        }
        parts.push(s.to_string());
    });
    clip(&parts.join(": "), 400)
}

/// One error's own message.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    err.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_reads_as_one_line_without_repeats() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "request failed: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(chain(&e), "request failed: connection refused");
    }
}
