//! `tcp` probe: a TCP connection to `address` ("host:port") must open; optionally `send` bytes
//! and `expect` a substring in what comes back.

use super::engine::{ProbeCtx, fmt_duration};
use super::outcome::Outcome;
use super::spec::{Check, KindSpec};
use crate::clock::Instant;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most bytes read while waiting for `expect`.
const MAX_READ: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSpec {
    /// `host:port` (`[::1]:port` for IPv6 literals).
    pub address: String,
    /// Written once the connection is open (TOML escapes such as `\r\n` work).
    pub send: Option<String>,
    /// The answer must contain this text (read until it appears, the peer closes, or timeout).
    pub expect: Option<String>,
}

/// Split `host:port`, accepting `[v6]:port`.
pub fn split_address(a: &str) -> Result<(&str, u16), String> {
    let (host, port) = a
        .rsplit_once(':')
        .ok_or_else(|| format!("`{a}` is not host:port"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(format!("`{a}` has no host"));
    }
    if host.contains(':') && !a.starts_with('[') {
        return Err(format!("`{a}`: write IPv6 addresses as [addr]:port"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{a}`: `{port}` is not a port number"))?;
    if port == 0 {
        return Err(format!("`{a}`: port 0 is not a port you can connect to"));
    }
    Ok((host, port))
}

impl KindSpec for TcpSpec {
    fn validate(&self, c: &mut Check<'_>) {
        if let Err(e) = split_address(&self.address) {
            c.error("address", e);
        }
        if self.send.as_deref() == Some("") {
            c.error("send", "must not be empty (leave it out to send nothing)");
        }
        if self.expect.as_deref() == Some("") {
            c.error(
                "expect",
                "must not be empty (leave it out to expect nothing)",
            );
        }
    }
}

/// Connect, optionally converse, and judge.
pub async fn check(spec: &TcpSpec, _ctx: &ProbeCtx) -> Outcome {
    let (host, port) = match split_address(&spec.address) {
        Ok(hp) => hp,
        Err(e) => return Outcome::error(e),
    };
    let t0 = Instant::now();
    let mut stream = match tokio::net::TcpStream::connect((host, port)).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(format!("{}: {}", spec.address, io_reason(&e))),
    };
    let connected = format!(
        "connected to {} in {}",
        spec.address,
        fmt_duration(t0.elapsed())
    );
    if let Some(send) = &spec.send
        && let Err(e) = stream.write_all(send.as_bytes()).await
    {
        return Outcome::fail(format!(
            "{connected}, but sending failed: {}",
            io_reason(&e)
        ));
    }
    let Some(expect) = &spec.expect else {
        return Outcome::pass(connected);
    };
    let mut got: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if String::from_utf8_lossy(&got).contains(expect.as_str()) {
            return Outcome::pass(format!("{connected}; got `{}`", short(expect)));
        }
        if got.len() >= MAX_READ {
            break;
        }
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                return Outcome::fail(format!(
                    "{connected}, but reading failed: {}",
                    io_reason(&e)
                ));
            }
        }
    }
    let text = String::from_utf8_lossy(&got);
    Outcome::fail(format!(
        "{connected}; expected `{}`, got `{}`",
        short(expect),
        short(text.trim())
    ))
}

fn short(s: &str) -> String {
    let one: String = s.escape_debug().collect();
    if one.chars().count() > 80 {
        format!("{}…", one.chars().take(80).collect::<String>())
    } else {
        one
    }
}

/// "connection refused" rather than "Connection refused (os error 111)".
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        TimedOut => "connect timed out".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(split_address("127.0.0.1:80"), Ok(("127.0.0.1", 80)));
        assert_eq!(split_address("[::1]:6379"), Ok(("::1", 6379)));
        assert_eq!(split_address("db.local:5432"), Ok(("db.local", 5432)));
        assert!(split_address("localhost").is_err());
        assert!(split_address(":80").is_err());
        assert!(split_address("::1:80").is_err());
        assert!(split_address("host:http").is_err());
        assert!(split_address("host:0").is_err());
    }

    #[test]
    fn long_answers_are_shortened_and_escaped() {
        assert_eq!(short("a\r\nb"), "a\\r\\nb");
        assert!(short(&"x".repeat(200)).ends_with('…'));
    }
}
