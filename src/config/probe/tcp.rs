//! `tcp` probe spec: `address` ("host:port"), optional `send` and `expect`. The check lives in
//! `crate::probe::tcp`.

use super::{Check, Kind, KindSpec, ProbeKind};
use serde::{Deserialize, Serialize};

/// `[tcp.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "tcp",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Tcp),
};

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
}
