//! `ping` probe spec: ICMP echo to `host`, `count` echoes, the loss and round trip that still
//! count as healthy. The check lives in `crate::probe::ping`.

use super::{Check, Kind, KindSpec, ProbeKind};
use serde::{Deserialize, Serialize};

/// `[ping.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "ping",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Ping),
};

/// `count` when left out.
pub const COUNT: i64 = 3;
/// Time between two echoes of one run.
pub const ECHO_INTERVAL_MS: u64 = 200;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PingSpec {
    /// An IPv4/IPv6 address or a host name (resolved by the system each run).
    pub host: String,
    /// Echo requests per run, 200 ms apart.
    #[serde(default = "count")]
    pub count: i64,
    /// The most lost echoes, in percent of `count`, that still pass (0: every echo must return).
    #[serde(default)]
    pub max_loss_percent: f64,
    /// The slowest reply (round trip, milliseconds) that still passes.
    pub max_rtt_ms: Option<f64>,
}

fn count() -> i64 {
    COUNT
}

/// `SOCK_CLOEXEC` where socket(2) takes it.
#[cfg(target_os = "linux")]
pub const CLOEXEC: libc::c_int = libc::SOCK_CLOEXEC;
#[cfg(not(target_os = "linux"))]
pub const CLOEXEC: libc::c_int = 0;

/// Why no ICMP socket opened, from the errors of the unprivileged and the raw attempt.
pub fn icmp_refusal(errors: &[std::io::Error]) -> String {
    let denied = errors.iter().all(|e| {
        matches!(
            e.raw_os_error(),
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EPROTONOSUPPORT)
        )
    });
    if !denied {
        let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return format!("cannot open an ICMP socket: {}", all.join("; "));
    }
    // SAFETY: getegid(2) cannot fail.
    let gid = unsafe { libc::getegid() };
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "ICMP is not permitted to this process: unprivileged ICMP sockets are limited to the \
         groups in net.ipv4.ping_group_range (\"{range}\"; this process's group is {gid}) and raw \
         sockets need root or CAP_NET_RAW; allow one, e.g. \
         sysctl -w net.ipv4.ping_group_range=\"0 2147483647\""
    )
}

/// Whether an ICMP socket (unprivileged, else raw) opens for this family.
pub fn icmp_permitted(v6: bool) -> Result<(), String> {
    let (domain, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    let mut errors = Vec::new();
    for kind in [libc::SOCK_DGRAM, libc::SOCK_RAW] {
        // SAFETY: plain socket(2); the descriptor is closed at once.
        let fd = unsafe { libc::socket(domain, kind | CLOEXEC, proto) };
        if fd >= 0 {
            unsafe { libc::close(fd) };
            return Ok(());
        }
        errors.push(std::io::Error::last_os_error());
    }
    Err(icmp_refusal(&errors))
}

impl KindSpec for PingSpec {
    /// ICMP must be permitted to this process (checked by `talon validate` and each run).
    fn available(&self) -> Result<(), String> {
        icmp_permitted(self.host.parse::<std::net::Ipv6Addr>().is_ok())
    }

    fn validate(&self, c: &mut Check<'_>) {
        if self.host.trim().is_empty() || self.host.contains(char::is_whitespace) {
            c.error(
                "host",
                format!("`{}` is not a host name or address", self.host),
            );
        }
        if !(1..=100).contains(&self.count) {
            c.error("count", format!("{} is not between 1 and 100", self.count));
        }
        if !(0.0..=100.0).contains(&self.max_loss_percent) {
            c.error(
                "max_loss_percent",
                format!("{} is not between 0 and 100", self.max_loss_percent),
            );
        }
        if let Some(r) = self.max_rtt_ms
            && !(r > 0.0 && r.is_finite())
        {
            c.error("max_rtt_ms", format!("{r} must be above 0"));
        }
    }
}
