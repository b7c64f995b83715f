//! `dns` probe spec: a `name` to resolve, its record `type`, the `server` to ask (the system's
//! resolver by default) and what the answer must hold (`expect` values, `expect_regex`). The
//! check (and the DNS wire format) lives in `crate::probe::dns`.

use super::{Check, Kind, KindSpec, ProbeKind};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// `[dns.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "dns",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Dns),
};

/// The record types a `dns` probe asks for, with their wire numbers.
pub const TYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("AAAA", 28),
    ("CNAME", 5),
    ("MX", 15),
    ("TXT", 16),
    ("SRV", 33),
];

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// The name to resolve (`example.com`, `_imap._tcp.example.com` for SRV). Also written
    /// `query`, which is how `talon config` shows it: there `name` is the probe's own.
    #[serde(rename(serialize = "query"), alias = "query")]
    pub name: String,
    /// A, AAAA, CNAME, MX, TXT or SRV.
    #[serde(rename = "type", default = "default_type")]
    pub record_type: String,
    /// `ip` or `ip:port` (`[v6]:port`); the first `nameserver` of /etc/resolv.conf by default.
    pub server: Option<String>,
    /// Values the answer must contain, each (A `10.0.0.1`, MX `10 mail.example.com`, SRV
    /// `0 5 993 imap.example.com`, TXT the text, CNAME the target; names without the final dot,
    /// compared case-insensitively).
    #[serde(default)]
    pub expect: Vec<String>,
    /// At least one value of the answer must match this regular expression.
    pub expect_regex: Option<String>,
}

fn default_type() -> String {
    "A".into()
}

impl DnsSpec {
    /// The wire number of `type` (validated).
    pub fn qtype(&self) -> u16 {
        TYPES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&self.record_type))
            .map(|(_, t)| *t)
            .unwrap_or(1)
    }
}

/// `ip`, `ip:port` or `[v6]:port` as a socket address (port 53 by default).
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!("`{s}` is not an IP address or ip:port (a DNS server is given by address)")
    })
}

impl KindSpec for DnsSpec {
    fn validate(&self, c: &mut Check<'_>) {
        let n = self.name.trim_end_matches('.');
        if n.is_empty()
            || n.len() > 253
            || n.split('.').any(|l| l.is_empty() || l.len() > 63)
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            c.error("name", format!("`{}` is not a DNS name", self.name));
        }
        if !TYPES
            .iter()
            .any(|(t, _)| t.eq_ignore_ascii_case(&self.record_type))
        {
            c.error(
                "type",
                format!(
                    "`{}` is not one of {}",
                    self.record_type,
                    TYPES.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
                ),
            );
        }
        if let Some(s) = &self.server
            && let Err(e) = parse_server(s)
        {
            c.error("server", e);
        }
        if self.expect.iter().any(|e| e.trim().is_empty()) {
            c.error("expect", "values must not be empty");
        }
        if let Some(r) = &self.expect_regex
            && let Err(e) = regex::Regex::new(r)
        {
            c.error("expect_regex", format!("invalid regular expression: {e}"));
        }
    }
}
