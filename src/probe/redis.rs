//! `redis` probe: connect, `AUTH` when a password is configured, `PING` must answer `PONG`, and
//! optional expectations on `INFO` fields (`info = { role = "master" }`).
//!
//! A minimal RESP client over a tokio `TcpStream`: the probe needs four commands, not a driver.
//! A failure's detail is the exchange the verdict was computed from: each command sent (`AUTH`
//! without its password) and what came back, and for an `INFO` mismatch every expected field
//! with the value found.
//! The password comes from the URL, `password_env` or `password_file`; it is never put in an
//! output line or a log, and [`crate::config::probe::KindSpec::secrets`] hands it to redaction.

use super::ProbeCtx;
use super::tcp::io_reason;
use crate::clock::Instant;
use crate::config::probe::redis::{RedisSpec, parse_url};
use crate::core::outcome::Outcome;
use crate::format::latency;
use std::collections::BTreeMap;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest bulk reply accepted (INFO is a few KB).
const MAX_BULK: usize = 4 * 1024 * 1024;

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(usize),
}

impl Reply {
    fn text(&self) -> String {
        match self {
            Reply::Simple(s) | Reply::Error(s) => s.clone(),
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) => "(nil)".into(),
            Reply::Array(n) => format!("an array of {n}"),
        }
    }
}

/// Encode a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Read one reply (arrays: only the header; the probe sends no command answering one).
pub async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Reply> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut line = Vec::new();
    let n = r.take(64 * 1024).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    let line = String::from_utf8_lossy(&line);
    let line = line.trim_end_matches(['\r', '\n']);
    // The tag is one byte; split on a char boundary so a reply starting with a multi-byte
    // character (or an invalid byte turned into U+FFFD) is "not a Redis reply", not a panic.
    let tag_len = line.chars().next().map_or(0, char::len_utf8);
    let (tag, rest) = line.split_at(tag_len);
    match tag {
        "+" => Ok(Reply::Simple(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => rest
            .parse()
            .map(Reply::Int)
            .map_err(|_| bad(format!("bad integer reply `{rest}`"))),
        "$" => {
            let len: i64 = rest
                .parse()
                .map_err(|_| bad(format!("bad bulk length `{rest}`")))?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let len = len as usize;
            if len > MAX_BULK {
                return Err(bad(format!("bulk reply of {len} bytes is too large")));
            }
            let mut buf = vec![0u8; len + 2];
            r.read_exact(&mut buf).await?;
            buf.truncate(len);
            Ok(Reply::Bulk(Some(buf)))
        }
        "*" => rest
            .parse()
            .map(Reply::Array)
            .map_err(|_| bad(format!("bad array length `{rest}`"))),
        _ => Err(bad(format!(
            "not a Redis reply: `{}`",
            line.chars().take(40).collect::<String>()
        ))),
    }
}

/// `INFO` text → fields (`# Section` lines and blanks skipped).
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Compare INFO fields with expectations: the first mismatch, described.
pub fn info_mismatch(
    fields: &BTreeMap<String, String>,
    expect: &BTreeMap<String, String>,
) -> Option<String> {
    for (k, want) in expect {
        match fields.get(k) {
            None => return Some(format!("INFO has no field `{k}`")),
            Some(got) if got != want => {
                return Some(format!("INFO {k} is `{got}`, expected `{want}`"));
            }
            Some(_) => {}
        }
    }
    None
}

/// The commands sent and the replies read, for a failure's detail.
#[derive(Default)]
struct Transcript {
    lines: Vec<String>,
    /// Replaced by `***` wherever it appears.
    password: Option<String>,
}

impl Transcript {
    /// Send `args` (shown as `shown`), read the reply, and write both down.
    async fn call(
        &mut self,
        conn: &mut BufReader<TcpStream>,
        shown: &str,
        args: &[&[u8]],
    ) -> std::io::Result<Reply> {
        self.lines.push(format!("> {shown}"));
        let r = call(conn, args).await;
        self.lines.push(match &r {
            Ok(Reply::Bulk(Some(b))) if shown == "INFO" => format!("< ({} bytes)", b.len()),
            Ok(Reply::Error(e)) => format!("< -{e}"),
            Ok(reply) => format!("< {}", reply.text()),
            Err(e) => format!("! {e}"),
        });
        r
    }

    fn text(&self) -> String {
        let t = self.lines.join("\n");
        match &self.password {
            Some(p) if !p.is_empty() => t.replace(p.as_str(), "***"),
            _ => t,
        }
    }
}

/// Connect, authenticate, PING, and check INFO expectations.
pub async fn check(spec: &RedisSpec, ctx: &ProbeCtx) -> Outcome {
    let mut log = Transcript::default();
    let o = exchange(spec, &mut log).await;
    if o.status.is_failure() {
        let detail = crate::format::newest_excerpt(&log.text(), ctx.detail_bytes);
        return o.with_detail(detail);
    }
    o
}

async fn exchange(spec: &RedisSpec, log: &mut Transcript) -> Outcome {
    let t = match parse_url(&spec.url) {
        Ok(t) => t,
        Err(e) => return Outcome::error(format!("url: {e}")),
    };
    let password = match spec.password(&t) {
        Ok(p) => p,
        Err(e) => return Outcome::error(e),
    };
    log.password = password.clone();
    let target = spec.display_target();
    log.lines.push(format!("connect {target}"));
    let scrub = |s: String| match &password {
        Some(p) if !p.is_empty() => s.replace(p.as_str(), "***"),
        _ => s,
    };
    let t0 = Instant::now();
    let stream = match TcpStream::connect((t.host.as_str(), t.port)).await {
        Ok(s) => s,
        Err(e) => {
            log.lines.push(format!("! {e}"));
            return Outcome::fail(format!("{target}: {}", io_reason(&e)));
        }
    };
    let mut conn = BufReader::new(stream);
    let user = spec.username.clone().or(t.username.clone());
    if let Some(p) = &password {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(u) = &user {
            args.push(u.as_bytes());
        }
        args.push(p.as_bytes());
        let shown = match &user {
            Some(u) => format!("AUTH {u} ***"),
            None => "AUTH ***".to_string(),
        };
        match log.call(&mut conn, &shown, &args).await {
            Ok(Reply::Simple(ok)) if ok == "OK" => {}
            Ok(r) => {
                return Outcome::fail(scrub(format!("{target}: AUTH failed: {}", r.text())));
            }
            Err(e) => return Outcome::fail(scrub(format!("{target}: AUTH: {}", io_reason(&e)))),
        }
    }
    if t.db != 0 {
        let db = t.db.to_string();
        match log
            .call(
                &mut conn,
                &format!("SELECT {db}"),
                &[b"SELECT", db.as_bytes()],
            )
            .await
        {
            Ok(Reply::Simple(ok)) if ok == "OK" => {}
            Ok(r) => return Outcome::fail(scrub(format!("{target}: SELECT {db}: {}", r.text()))),
            Err(e) => return Outcome::fail(format!("{target}: SELECT: {}", io_reason(&e))),
        }
    }
    match log.call(&mut conn, "PING", &[b"PING"]).await {
        Ok(Reply::Simple(p)) if p == "PONG" => {}
        Ok(r) => {
            return Outcome::fail(scrub(format!("{target}: PONG expected, got {}", r.text())));
        }
        Err(e) => return Outcome::fail(format!("{target}: PING: {}", io_reason(&e))),
    }
    let mut head = format!("PONG from {target} in {}", latency(t0.elapsed()));
    if spec.info.is_empty() {
        return Outcome::pass(head);
    }
    let info = match log.call(&mut conn, "INFO", &[b"INFO"]).await {
        Ok(Reply::Bulk(Some(b))) => parse_info(&String::from_utf8_lossy(&b)),
        Ok(r) => return Outcome::fail(scrub(format!("{target}: INFO: got {}", r.text()))),
        Err(e) => return Outcome::fail(format!("{target}: INFO: {}", io_reason(&e))),
    };
    if let Some(m) = info_mismatch(&info, &spec.info) {
        log.lines.push("INFO fields checked:".into());
        for (k, want) in &spec.info {
            let got = info.get(k).map(String::as_str).unwrap_or("(absent)");
            let verdict = if got == want {
                "as expected".to_string()
            } else {
                format!("expected {want}")
            };
            log.lines.push(format!("  {k}: {got} ({verdict})"));
        }
        return Outcome::fail(scrub(format!("{head}, but {m}")));
    }
    let shown: Vec<String> = spec.info.iter().map(|(k, v)| format!("{k}={v}")).collect();
    head.push_str(&format!("; {}", shown.join(", ")));
    Outcome::pass(scrub(head))
}

async fn call(conn: &mut BufReader<TcpStream>, args: &[&[u8]]) -> std::io::Result<Reply> {
    conn.get_mut().write_all(&encode(args)).await?;
    read_reply(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_as_resp_arrays() {
        assert_eq!(encode(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode(&[b"AUTH", b"pw"]),
            b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n".to_vec()
        );
    }

    #[tokio::test]
    async fn replies_decode() {
        let mut r: &[u8] =
            b"+PONG\r\n-NOAUTH Authentication required.\r\n:5\r\n$3\r\nfoo\r\n$-1\r\n";
        assert_eq!(
            read_reply(&mut r).await.unwrap(),
            Reply::Simple("PONG".into())
        );
        assert_eq!(
            read_reply(&mut r).await.unwrap(),
            Reply::Error("NOAUTH Authentication required.".into())
        );
        assert_eq!(read_reply(&mut r).await.unwrap(), Reply::Int(5));
        assert_eq!(
            read_reply(&mut r).await.unwrap(),
            Reply::Bulk(Some(b"foo".to_vec()))
        );
        assert_eq!(read_reply(&mut r).await.unwrap(), Reply::Bulk(None));
        assert!(read_reply(&mut r).await.is_err());
        let mut junk: &[u8] = b"HTTP/1.1 400 Bad Request\r\n";
        assert!(read_reply(&mut junk).await.is_err());
        // Regression (found by tests/it/fuzz.rs): a reply starting with a multi-byte character
        // or an invalid UTF-8 byte panicked in `split_at(1)`.
        for bad in [
            &b"\xc3\xa9PONG\r\n"[..],
            b"\xffPONG\r\n",
            b"\xe2\x82\xac\r\n",
        ] {
            let mut r = bad;
            let e = read_reply(&mut r).await.unwrap_err();
            assert!(e.to_string().contains("not a Redis reply"), "{e}");
        }
    }

    #[test]
    fn info_expectations() {
        let info = parse_info(
            "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n# Persistence\r\naof_last_bgrewrite_status:ok\r\n",
        );
        assert_eq!(info.get("role").map(String::as_str), Some("master"));
        let mut want = BTreeMap::new();
        want.insert("role".to_string(), "master".to_string());
        assert_eq!(info_mismatch(&info, &want), None);
        want.insert("aof_last_bgrewrite_status".into(), "err".into());
        assert_eq!(
            info_mismatch(&info, &want).unwrap(),
            "INFO aof_last_bgrewrite_status is `ok`, expected `err`"
        );
        want.clear();
        want.insert("nope".into(), "x".into());
        assert_eq!(
            info_mismatch(&info, &want).unwrap(),
            "INFO has no field `nope`"
        );
    }
}
