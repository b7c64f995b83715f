//! `dns` probe: one question to one DNS server over UDP (TCP when the answer is truncated), the
//! answer judged against `expect` / `expect_regex`.
//!
//! The wire format (RFC 1035, AAAA RFC 3596, SRV RFC 2782) is written here rather than pulled
//! in with a resolver crate: a probe asks one server one question and must see exactly what that
//! server said (NXDOMAIN, SERVFAIL, REFUSED, an empty answer), not a resolver's retries across
//! servers and caches. [`parse_reply`] checks every length and pointer against the message and
//! returns `Err` on anything malformed, never panicking (property-tested in `tests/it/fuzz.rs`).

use super::ProbeCtx;
use crate::clock::Instant;
use crate::config::probe::dns::{DnsSpec, TYPES, parse_server};
use crate::core::outcome::Outcome;
use crate::format::latency;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Time before a UDP question is sent again (the probe's timeout bounds the whole run).
const RESEND_AFTER: Duration = Duration::from_secs(1);

/// One record of the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    pub data: RData,
}

/// A record's data, for the types a probe asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Mx(u16, String),
    Txt(Vec<Vec<u8>>),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Other(Vec<u8>),
}

impl RData {
    /// The value as `expect` writes it: `10.0.0.1`, `10 mail.example.com`, `0 5 993 imap.x`,
    /// the TXT strings joined.
    pub fn text(&self) -> String {
        match self {
            RData::A(a) => a.to_string(),
            RData::Aaaa(a) => a.to_string(),
            RData::Cname(n) => n.clone(),
            RData::Mx(p, n) => format!("{p} {n}"),
            RData::Txt(parts) => parts
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => format!("{priority} {weight} {port} {target}"),
            RData::Other(b) => format!("({} bytes)", b.len()),
        }
    }
}

/// A parsed reply: its id, response code, truncation bit and answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub id: u16,
    pub rcode: u8,
    pub truncated: bool,
    pub authoritative: bool,
    /// The question it answers (name, type), as the server echoed it.
    pub question: Option<(String, u16)>,
    pub answers: Vec<Record>,
}

/// A standard query for `name`/`qtype` with recursion desired.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut m = Vec::with_capacity(32 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00]); // RD
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT 1
    let name = name.trim_end_matches('.');
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!("`{name}` is not a DNS name"));
            }
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
    }
    m.push(0);
    if m.len() - 12 > 255 {
        return Err(format!("`{name}` is longer than 255 bytes"));
    }
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]); // IN
    Ok(m)
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("overflow")?;
        let s = self.msg.get(self.pos..end).ok_or("truncated message")?;
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A (possibly compressed) name starting here; the reader moves past its in-place part.
    fn name(&mut self) -> Result<String, String> {
        let (name, end) = read_name(self.msg, self.pos)?;
        self.pos = end;
        Ok(name)
    }
}

/// The name at `pos` and the offset just after its in-place part. Pointers must point backwards
/// (so they cannot loop) and the name must stay within 255 bytes.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), String> {
    let mut labels: Vec<String> = Vec::new();
    let mut len = 0usize;
    let mut end = None;
    let mut limit = pos;
    loop {
        let &b = msg.get(pos).ok_or("truncated name")?;
        match b & 0xc0 {
            0x00 if b == 0 => {
                pos += 1;
                break;
            }
            0x00 => {
                let l = b as usize;
                let label = msg.get(pos + 1..pos + 1 + l).ok_or("truncated label")?;
                len += l + 1;
                if len > 255 {
                    return Err("name longer than 255 bytes".into());
                }
                labels.push(
                    label
                        .iter()
                        .flat_map(|c| std::ascii::escape_default(*c))
                        .map(char::from)
                        .collect(),
                );
                pos += 1 + l;
            }
            0xc0 => {
                let &lo = msg.get(pos + 1).ok_or("truncated pointer")?;
                let target = (((b & 0x3f) as usize) << 8) | lo as usize;
                if end.is_none() {
                    end = Some(pos + 2);
                }
                if target >= limit {
                    return Err("name pointer does not point backwards".into());
                }
                limit = target;
                pos = target;
            }
            _ => return Err("unknown label type".into()),
        }
    }
    Ok((labels.join("."), end.unwrap_or(pos)))
}

/// Parse a reply message (header, question, answer section; the rest is not needed).
pub fn parse_reply(msg: &[u8]) -> Result<Reply, String> {
    let mut r = Reader { msg, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err("not a response".into());
    }
    let qd = r.u16()?;
    let an = r.u16()?;
    r.u16()?;
    r.u16()?;
    let mut question = None;
    for _ in 0..qd {
        let n = r.name()?;
        let t = r.u16()?;
        r.u16()?;
        if question.is_none() {
            question = Some((n, t));
        }
    }
    let mut answers = Vec::new();
    for _ in 0..an {
        let name = r.name()?;
        let rtype = r.u16()?;
        let _class = r.u16()?;
        let ttl = r.u32()?;
        let rdlen = r.u16()? as usize;
        let start = r.pos;
        let rdata = r.take(rdlen)?;
        let data = rdata_of(msg, start, rtype, rdata)?;
        answers.push(Record {
            name,
            rtype,
            ttl,
            data,
        });
    }
    Ok(Reply {
        id,
        rcode: (flags & 0x000f) as u8,
        truncated: flags & 0x0200 != 0,
        authoritative: flags & 0x0400 != 0,
        question,
        answers,
    })
}

fn rdata_of(msg: &[u8], start: usize, rtype: u16, rd: &[u8]) -> Result<RData, String> {
    let name_in = |off: usize| -> Result<String, String> {
        let (n, end) = read_name(msg, start + off)?;
        if end > start + rd.len() {
            return Err("name runs past its record".into());
        }
        Ok(n)
    };
    let u16_at = |i: usize| -> Result<u16, String> {
        rd.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated record".to_string())
    };
    Ok(match rtype {
        1 => RData::A(Ipv4Addr::from(
            <[u8; 4]>::try_from(rd).map_err(|_| "A record is not 4 bytes")?,
        )),
        28 => RData::Aaaa(Ipv6Addr::from(
            <[u8; 16]>::try_from(rd).map_err(|_| "AAAA record is not 16 bytes")?,
        )),
        5 => RData::Cname(name_in(0)?),
        15 => RData::Mx(u16_at(0)?, name_in(2)?),
        16 => {
            let mut parts = Vec::new();
            let mut i = 0;
            while i < rd.len() {
                let l = rd[i] as usize;
                parts.push(rd.get(i + 1..i + 1 + l).ok_or("truncated TXT")?.to_vec());
                i += 1 + l;
            }
            RData::Txt(parts)
        }
        33 => RData::Srv {
            priority: u16_at(0)?,
            weight: u16_at(2)?,
            port: u16_at(4)?,
            target: name_in(6)?,
        },
        _ => RData::Other(rd.to_vec()),
    })
}

/// A response code's name.
pub fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE {n}"),
    }
}

fn type_name(t: u16) -> String {
    TYPES
        .iter()
        .find(|(_, n)| *n == t)
        .map(|(s, _)| s.to_string())
        .unwrap_or_else(|| format!("TYPE{t}"))
}

/// The server a probe asks: `server`, else the first `nameserver` of /etc/resolv.conf.
pub fn server_of(spec: &DnsSpec) -> Result<SocketAddr, String> {
    if let Some(s) = &spec.server {
        return parse_server(s);
    }
    let conf = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("no server given and /etc/resolv.conf unreadable: {e}"))?;
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| {
            let a = a.trim();
            // A scoped IPv6 address (fe80::1%eth0) is left out.
            a.parse().ok().map(|ip| SocketAddr::new(ip, 53))
        })
        .next()
        .ok_or_else(|| "no server given and no nameserver in /etc/resolv.conf".into())
}

/// "example.com A @127.0.0.1:53" for messages.
pub fn target(spec: &DnsSpec) -> String {
    let server = spec.server.as_deref().unwrap_or("system resolver");
    format!(
        "{} {} @{server}",
        spec.name,
        spec.record_type.to_ascii_uppercase()
    )
}

fn query_id() -> u16 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u16::from_be_bytes(b)
}

/// Ask over UDP, resending every [`RESEND_AFTER`]; replies that do not match the id and
/// question are ignored (the engine's timeout ends a server that never answers).
async fn ask_udp(server: SocketAddr, query: &[u8], id: u16, name: &str) -> Result<Reply, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    sock.connect(server)
        .await
        .map_err(|e| format!("{server}: {}", super::tcp::io_reason(&e)))?;
    let mut buf = vec![0u8; 65_535];
    loop {
        sock.send(query)
            .await
            .map_err(|e| format!("{server}: {}", super::tcp::io_reason(&e)))?;
        let deadline = tokio::time::Instant::now() + RESEND_AFTER;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    // ICMP port unreachable comes back as a refused receive.
                    return Err(format!("{server}: {}", super::tcp::io_reason(&e)));
                }
                Ok(Ok(n)) => {
                    if let Ok(reply) = parse_reply(&buf[..n])
                        && reply.id == id
                        && reply
                            .question
                            .as_ref()
                            .is_none_or(|(q, _)| q.eq_ignore_ascii_case(name))
                    {
                        return Ok(reply);
                    }
                }
            }
        }
    }
}

/// Ask over TCP (after a truncated UDP answer).
async fn ask_tcp(server: SocketAddr, query: &[u8]) -> Result<Reply, String> {
    let io = |e: std::io::Error| format!("{server} (TCP): {}", super::tcp::io_reason(&e));
    let mut s = tokio::net::TcpStream::connect(server).await.map_err(io)?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed).await.map_err(io)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.map_err(io)?;
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut msg).await.map_err(io)?;
    parse_reply(&msg).map_err(|e| format!("{server} (TCP): malformed answer: {e}"))
}

/// Ask the question and judge the answer.
pub async fn check(spec: &DnsSpec, _ctx: &ProbeCtx) -> Outcome {
    let server = match server_of(spec) {
        Ok(s) => s,
        Err(e) => return Outcome::error(e),
    };
    let qtype = spec.qtype();
    let tname = type_name(qtype);
    let name = spec.name.trim_end_matches('.');
    let id = query_id();
    let query = match encode_query(id, name, qtype) {
        Ok(q) => q,
        Err(e) => return Outcome::error(e),
    };
    let t0 = Instant::now();
    let mut reply = match ask_udp(server, &query, id, name).await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(format!("{name} {tname}: {e}")),
    };
    if reply.truncated {
        reply = match ask_tcp(server, &query).await {
            Ok(r) => r,
            Err(e) => return Outcome::fail(format!("{name} {tname}: truncated over UDP; {e}")),
        };
    }
    let head = format!("{name} {tname} @{server}");
    let took = latency(t0.elapsed());
    judge(spec, &head, &took, &reply, qtype)
}

fn judge(spec: &DnsSpec, head: &str, took: &str, reply: &Reply, qtype: u16) -> Outcome {
    let detail = reply
        .answers
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.name,
                r.ttl,
                type_name(r.rtype),
                r.data.text()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    if reply.rcode != 0 {
        return Outcome::fail(format!("{head}: {} in {took}", rcode_name(reply.rcode)))
            .with_detail(detail);
    }
    let values: Vec<String> = reply
        .answers
        .iter()
        .filter(|r| r.rtype == qtype)
        .map(|r| r.data.text())
        .collect();
    if values.is_empty() {
        return Outcome::fail(format!("{head}: no {} record in {took}", type_name(qtype)))
            .with_detail(detail);
    }
    let shown = short_list(&values);
    let norm = |s: &str| s.trim().trim_end_matches('.').to_ascii_lowercase();
    let missing: Vec<&String> = spec
        .expect
        .iter()
        .filter(|e| !values.iter().any(|v| norm(v) == norm(e)))
        .collect();
    if !missing.is_empty() {
        let m: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
        return Outcome::fail(format!(
            "{head}: got {shown}, expected {} in {took}",
            m.join(", ")
        ))
        .with_detail(detail);
    }
    if let Some(p) = &spec.expect_regex {
        match regex::Regex::new(p) {
            Ok(re) if values.iter().any(|v| re.is_match(v)) => {}
            Ok(_) => {
                return Outcome::fail(format!("{head}: got {shown}, none matches /{p}/ in {took}"))
                    .with_detail(detail);
            }
            Err(e) => return Outcome::error(format!("invalid expect_regex: {e}")),
        }
    }
    Outcome::pass(format!("{head}: {shown} in {took}"))
}

fn short_list(values: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut s = values
        .iter()
        .take(SHOWN)
        .map(|v| {
            if v.chars().count() > 60 {
                format!("{}…", v.chars().take(60).collect::<String>())
            } else {
                v.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if values.len() > SHOWN {
        s.push_str(&format!(" (+{} more)", values.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to `q` with one answer record whose name is a pointer to the question.
    fn reply_with(q: &[u8], rcode: u8, rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut m = q.to_vec();
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[7] = 1; // ANCOUNT
        m.extend_from_slice(&[0xc0, 12]);
        m.extend_from_slice(&rtype.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(rdata);
        m
    }

    #[test]
    fn a_query_round_trips_through_a_reply() {
        let q = encode_query(0x1234, "db.example.com.", 1).unwrap();
        assert_eq!(&q[12..16], b"\x02db\x07");
        let r = parse_reply(&reply_with(&q, 0, 1, &[10, 0, 0, 7])).unwrap();
        assert_eq!(r.id, 0x1234);
        assert_eq!(r.question, Some(("db.example.com".into(), 1)));
        assert_eq!(r.answers[0].name, "db.example.com");
        assert_eq!(r.answers[0].data, RData::A(Ipv4Addr::new(10, 0, 0, 7)));
    }

    #[test]
    fn mx_srv_txt_and_compressed_targets() {
        let q = encode_query(1, "example.com", 15).unwrap();
        // MX 10, target "mail" + pointer to example.com (offset 12).
        let mx = [0, 10, 4, b'm', b'a', b'i', b'l', 0xc0, 12];
        let r = parse_reply(&reply_with(&q, 0, 15, &mx)).unwrap();
        assert_eq!(r.answers[0].data.text(), "10 mail.example.com");
        let srv = [0, 1, 0, 5, 0x03, 0xe1, 0xc0, 12];
        let r = parse_reply(&reply_with(&q, 0, 33, &srv)).unwrap();
        assert_eq!(r.answers[0].data.text(), "1 5 993 example.com");
        let txt = [2, b'h', b'i', 3, b' ', b'y', b'o'];
        let r = parse_reply(&reply_with(&q, 0, 16, &txt)).unwrap();
        assert_eq!(r.answers[0].data.text(), "hi yo");
    }

    #[test]
    fn forward_and_self_pointers_are_rejected() {
        let q = encode_query(1, "a.b", 1).unwrap();
        let mut m = reply_with(&q, 0, 5, &[0xc0, 0]);
        let at = m.len() - 2;
        m[at + 1] = at as u8; // points at itself
        assert!(parse_reply(&m).is_err());
        assert!(parse_reply(&[0x12, 0x34, 0x81, 0x80, 0, 1]).is_err());
    }

    #[test]
    fn names_over_255_bytes_are_refused() {
        let long = vec!["a".repeat(63); 5].join(".");
        assert!(encode_query(1, &long, 1).is_err());
    }
}
