//! `tcp` probe: a TCP connection to `address` ("host:port") must open; optionally `send` bytes
//! and `expect` a substring in what comes back.

use super::ProbeCtx;
use crate::clock::Instant;
use crate::config::probe::tcp::{TcpSpec, split_address};
use crate::core::outcome::Outcome;
use crate::format::latency;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most bytes read while waiting for `expect`.
const MAX_READ: usize = 64 * 1024;

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
    let connected = format!("connected to {} in {}", spec.address, latency(t0.elapsed()));
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
    fn long_answers_are_shortened_and_escaped() {
        assert_eq!(short("a\r\nb"), "a\\r\\nb");
        assert!(short(&"x".repeat(200)).ends_with('…'));
    }
}
