//! `tls` probe spec: a TLS endpoint (`address`), the name its certificate must carry
//! (`server_name`, the address's host by default), how many days before expiry it starts failing
//! (`warn_days`), and whether the chain must verify (`verify`, against the system's roots or
//! `ca_file`). The check lives in `crate::probe::tls`.

use super::tcp::split_address;
use super::{Check, Kind, KindSpec, ProbeKind};
use serde::{Deserialize, Serialize};

/// `[tls.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "tls",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Tls),
};

/// `warn_days` when left out: the probe fails two weeks before the certificate expires.
pub const WARN_DAYS: i64 = 14;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// `host:port` (`[::1]:port` for IPv6 literals).
    pub address: String,
    /// The name sent as SNI and checked against the certificate; the address's host by default.
    pub server_name: Option<String>,
    /// Fail when the leaf certificate expires within this many days.
    #[serde(default = "warn_days")]
    pub warn_days: i64,
    /// The chain must verify (against `ca_file`, else the system's roots) and carry the name.
    #[serde(default = "yes")]
    pub verify: bool,
    /// PEM file of CA certificates to trust instead of the system's (an internal CA).
    pub ca_file: Option<String>,
}

fn warn_days() -> i64 {
    WARN_DAYS
}
fn yes() -> bool {
    true
}

impl TlsSpec {
    /// The name the certificate is checked against.
    pub fn name(&self) -> String {
        match &self.server_name {
            Some(n) => n.clone(),
            None => split_address(&self.address)
                .map(|(h, _)| h.to_string())
                .unwrap_or_default(),
        }
    }
}

impl KindSpec for TlsSpec {
    fn validate(&self, c: &mut Check<'_>) {
        if let Err(e) = split_address(&self.address) {
            c.error("address", e);
        }
        if let Some(n) = &self.server_name
            && rustls::pki_types::ServerName::try_from(n.as_str()).is_err()
        {
            c.error(
                "server_name",
                format!("`{n}` is not a DNS name or IP address"),
            );
        }
        if !(0..=3650).contains(&self.warn_days) {
            c.error(
                "warn_days",
                format!("{} is not between 0 and 3650", self.warn_days),
            );
        }
        if let Some(f) = &self.ca_file {
            if !f.starts_with('/') {
                c.error("ca_file", format!("`{f}` must be an absolute path"));
            }
            if !self.verify {
                c.error(
                    "ca_file",
                    "has no effect with verify = false (leave one of them out)",
                );
            }
        }
    }
}
