//! `ping` probe: ICMP echo to `host`, `count` requests 200 ms apart, judged on loss and the
//! slowest round trip.
//!
//! It uses an unprivileged ICMP socket (`SOCK_DGRAM`, `IPPROTO_ICMP`: Linux allows it to the
//! groups in `net.ipv4.ping_group_range`; macOS always) and falls back to a raw socket (root or
//! `CAP_NET_RAW`). When neither is permitted the probe is an `error` saying so and how to allow
//! one. Replies are matched by sequence number and a random token in the payload, so the echoes
//! of another ping on the host (a raw socket sees them all) are never counted.

use super::ProbeCtx;
use crate::clock::Instant;
use crate::config::probe::ping::{ECHO_INTERVAL_MS, PingSpec, icmp_refusal};
use crate::core::outcome::Outcome;
use crate::format::rtt;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// Bytes after the 8-byte ICMP header: the run's token.
const TOKEN_LEN: usize = 16;

/// How the socket was opened: the kernel adds/strips different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `SOCK_DGRAM`: the kernel sets the identifier and filters replies for us.
    Dgram,
    /// `SOCK_RAW`: IPv4 replies arrive with their IP header; every ICMP packet is seen.
    Raw,
}

struct Socket {
    fd: AsyncFd<OwnedFd>,
    mode: Mode,
    v6: bool,
}

fn open(v6: bool) -> Result<Socket, String> {
    let (domain, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    let mut errors = Vec::new();
    for (kind, mode) in [(libc::SOCK_DGRAM, Mode::Dgram), (libc::SOCK_RAW, Mode::Raw)] {
        let fd = unsafe { libc::socket(domain, kind | crate::config::probe::ping::CLOEXEC, proto) };
        if fd < 0 {
            errors.push(std::io::Error::last_os_error());
            continue;
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let flags = unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_GETFL) };
        if flags < 0
            || unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) }
                < 0
        {
            return Err(format!(
                "cannot make the ICMP socket non-blocking: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: an OwnedFd keeps its descriptor open and the same until it is dropped.
        let fd = unsafe { AsyncFd::register(owned) }
            .map_err(|e| format!("cannot watch the ICMP socket: {e}"))?;
        return Ok(Socket { fd, mode, v6 });
    }
    Err(icmp_refusal(&errors))
}

/// The Internet checksum (RFC 1071).
fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum = sum.wrapping_add(w as u32);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request: type, code, checksum, identifier, sequence, token.
fn echo_request(v6: bool, ident: u16, seq: u16, token: &[u8; TOKEN_LEN]) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(token);
    if !v6 {
        // ICMPv6's checksum covers a pseudo-header the kernel fills in itself.
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// The sequence number of an echo reply carrying our token, if `packet` is one.
fn reply_seq(
    packet: &[u8],
    mode: Mode,
    v6: bool,
    ident: u16,
    token: &[u8; TOKEN_LEN],
) -> Option<u16> {
    // IPv4 raw sockets deliver the IP header; so do macOS's unprivileged ones.
    let with_ip_header = !v6 && (mode == Mode::Raw || cfg!(target_os = "macos"));
    let icmp = if with_ip_header {
        let ihl = ((*packet.first()? & 0x0f) as usize) * 4;
        packet.get(ihl..)?
    } else {
        packet
    };
    let reply_type = if v6 { 129 } else { 0 };
    if icmp.len() < 8 + TOKEN_LEN || icmp[0] != reply_type || icmp[1] != 0 {
        return None;
    }
    if mode == Mode::Raw && u16::from_be_bytes([icmp[4], icmp[5]]) != ident {
        return None;
    }
    if icmp[8..8 + TOKEN_LEN] != token[..] {
        return None;
    }
    Some(u16::from_be_bytes([icmp[6], icmp[7]]))
}

fn sockaddr(addr: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.octets()),
                },
                sin_zero: [0; 8],
                #[cfg(target_os = "macos")]
                sin_len: std::mem::size_of::<libc::sockaddr_in>() as u8,
            };
            // SAFETY: sockaddr_storage is large enough for any sockaddr.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(a) => {
            // SAFETY: an all-zero sockaddr_in6 is a valid value.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.octets(),
            };
            // SAFETY: as above.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

impl Socket {
    async fn send(&self, to: IpAddr, packet: &[u8]) -> std::io::Result<()> {
        let (ss, len) = sockaddr(to);
        loop {
            let mut guard = self.fd.writable().await?;
            let r = guard.try_io(|fd| {
                // SAFETY: `packet` and `ss` are valid for the lengths given.
                let n = unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        packet.as_ptr().cast(),
                        packet.len(),
                        0,
                        &ss as *const _ as *const libc::sockaddr,
                        len,
                    )
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match r {
                Ok(res) => return res,
                Err(_would_block) => continue,
            }
        }
    }

    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard.try_io(|fd| {
                // SAFETY: `buf` is valid for writes of its length.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(res) => return res,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Resolve, send the echoes, collect the replies, judge.
pub async fn check(spec: &PingSpec, ctx: &ProbeCtx) -> Outcome {
    let count = spec.count.clamp(1, 100) as u16;
    let interval = Duration::from_millis(ECHO_INTERVAL_MS);
    // Leave the engine's timeout a margin: the verdict (with the loss) must come first.
    let budget = ctx.timeout.mul_f64(0.9);
    if interval * u32::from(count - 1) >= budget {
        return Outcome::error(format!(
            "{count} echoes 200 ms apart do not fit in timeout_secs = {}; raise it or lower count",
            ctx.timeout.as_secs_f64()
        ));
    }
    let addr = match spec.host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match tokio::net::lookup_host((spec.host.as_str(), 0)).await {
            Ok(mut it) => match it.next() {
                Some(a) => a.ip(),
                None => return Outcome::fail(format!("{}: no address", spec.host)),
            },
            Err(e) => return Outcome::fail(format!("{}: cannot resolve: {e}", spec.host)),
        },
    };
    let sock = match open(addr.is_ipv6()) {
        Ok(s) => s,
        Err(e) => return Outcome::error(e),
    };
    let mut token = [0u8; TOKEN_LEN];
    {
        use ring::rand::SecureRandom;
        let _ = ring::rand::SystemRandom::new().fill(&mut token);
    }
    let ident = u16::from_be_bytes([token[0], token[1]]);
    let target = if spec.host == addr.to_string() {
        spec.host.clone()
    } else {
        format!("{} ({addr})", spec.host)
    };
    let t0 = Instant::now();
    let deadline = t0 + budget;
    let mut sent_at: Vec<Option<Instant>> = vec![None; count as usize];
    let mut rtts: Vec<Option<Duration>> = vec![None; count as usize];
    let mut next_seq: u16 = 0;
    let mut next_send = t0;
    let mut buf = vec![0u8; 2048];
    let mut send_error: Option<String> = None;
    loop {
        let got = rtts.iter().filter(|r| r.is_some()).count();
        if got == count as usize {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if next_seq < count && now >= next_send {
            let packet = echo_request(sock.v6, ident, next_seq, &token);
            match sock.send(addr, &packet).await {
                Ok(()) => sent_at[next_seq as usize] = Some(Instant::now()),
                Err(e) => {
                    send_error.get_or_insert_with(|| super::tcp::io_reason(&e));
                }
            }
            next_seq += 1;
            next_send += interval;
            continue;
        }
        if next_seq >= count && send_error.is_some() && sent_at.iter().all(Option::is_none) {
            break;
        }
        let wake = if next_seq < count {
            next_send.min(deadline)
        } else {
            deadline
        };
        match tokio::time::timeout_at(wake, sock.recv(&mut buf)).await {
            Err(_) => {}
            Ok(Err(_)) => {} // an ICMP error queued on the socket: that echo is lost
            Ok(Ok(n)) => {
                if let Some(seq) = reply_seq(&buf[..n], sock.mode, sock.v6, ident, &token)
                    && let Some(Some(at)) = sent_at.get(seq as usize)
                    && rtts[seq as usize].is_none()
                {
                    rtts[seq as usize] = Some(at.elapsed());
                }
            }
        }
    }
    judge(spec, &target, count, &rtts, send_error)
}

fn judge(
    spec: &PingSpec,
    target: &str,
    count: u16,
    rtts: &[Option<Duration>],
    send_error: Option<String>,
) -> Outcome {
    let got: Vec<Duration> = rtts.iter().flatten().copied().collect();
    let lost = count as usize - got.len();
    let loss = lost as f64 * 100.0 / count as f64;
    let mut line = format!(
        "{target}: {}/{count} replies, {}% loss",
        got.len(),
        (loss * 10.0).round() / 10.0
    );
    let max = got.iter().max().copied();
    if let Some(max) = max {
        let avg = got.iter().sum::<Duration>() / got.len() as u32;
        line.push_str(&format!(", rtt avg {} max {}", rtt(avg), rtt(max)));
    }
    if let Some(e) = &send_error {
        line.push_str(&format!(" (sending failed: {e})"));
    }
    if loss > spec.max_loss_percent {
        return Outcome::fail(format!(
            "{line} (max_loss_percent = {})",
            spec.max_loss_percent
        ));
    }
    if let (Some(limit), Some(max)) = (spec.max_rtt_ms, max)
        && max.as_secs_f64() * 1000.0 > limit
    {
        return Outcome::fail(format!("{line} (max_rtt_ms = {limit})"));
    }
    Outcome::pass(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_echo() {
        // An echo request with id 0 seq 0 and no payload: 08 00 f7 ff 00 00 00 00.
        assert_eq!(checksum(&[8, 0, 0, 0, 0, 0, 0, 0]), 0xf7ff);
        let p = echo_request(false, 0x1234, 7, &[9; TOKEN_LEN]);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
    }

    #[test]
    fn replies_are_matched_by_token_and_sequence() {
        let token = [5u8; TOKEN_LEN];
        let mut reply = echo_request(false, 77, 3, &token);
        reply[0] = 0;
        assert_eq!(reply_seq(&reply, Mode::Dgram, false, 0, &token), Some(3));
        assert_eq!(
            reply_seq(&reply, Mode::Dgram, false, 0, &[6; TOKEN_LEN]),
            None
        );
        let mut raw = vec![0x45u8; 20];
        raw.extend_from_slice(&reply);
        assert_eq!(reply_seq(&raw, Mode::Raw, false, 77, &token), Some(3));
        assert_eq!(reply_seq(&raw, Mode::Raw, false, 78, &token), None);
        // Our own request looped back on a raw socket is not a reply.
        let req = echo_request(false, 77, 3, &token);
        assert_eq!(reply_seq(&req, Mode::Dgram, false, 0, &token), None);
    }

    #[test]
    fn loss_and_rtt_limits() {
        let spec = PingSpec {
            host: "h".into(),
            count: 4,
            max_loss_percent: 25.0,
            max_rtt_ms: Some(50.0),
        };
        let ms = |n| Some(Duration::from_millis(n));
        assert!(
            judge(&spec, "h", 4, &[ms(1), ms(2), None, ms(3)], None)
                .status
                .passed()
        );
        let r = judge(&spec, "h", 4, &[ms(1), None, None, ms(3)], None);
        assert!(r.output.contains("2/4 replies, 50% loss"), "{}", r.output);
        assert!(!r.status.passed());
        let r = judge(&spec, "h", 4, &[ms(1), ms(90), ms(1), ms(1)], None);
        assert!(r.output.contains("max_rtt_ms = 50"), "{}", r.output);
    }
}
