//! `redis` probe: connect, `AUTH` when a password is configured, `PING` must answer `PONG`, and
//! optional expectations on `INFO` fields (`info = { role = "master" }`).
//!
//! A minimal RESP client over a tokio `TcpStream`: the probe needs four commands, not a driver.
//! The password comes from the URL, `password_env` or `password_file`; it is never put in an
//! output line or a log, and [`KindSpec::secrets`] hands it to redaction.

use super::engine::{ProbeCtx, fmt_duration};
use super::outcome::Outcome;
use super::spec::{Check, KindSpec};
use super::tcp::io_reason;
use crate::clock::Instant;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest bulk reply accepted (INFO is a few KB).
const MAX_BULK: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// `redis://[user:pass@]host:port[/db]`, or plain `host:port`.
    pub url: String,
    /// ACL user name (else the URL's, else none).
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (surrounding whitespace ignored).
    pub password_file: Option<String>,
    /// `INFO` fields that must have these values, e.g. `{ role = "master" }`.
    #[serde(default)]
    pub info: BTreeMap<String, String>,
}

/// Where to connect and who to be, parsed from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Parse `redis://[user:pass@]host[:port][/db]` or `host:port`.
pub fn parse_url(s: &str) -> Result<Target, String> {
    if !s.contains("://") {
        let (host, port) = super::tcp::split_address(s)?;
        return Ok(Target {
            host: host.to_string(),
            port,
            db: 0,
            username: None,
            password: None,
        });
    }
    let u = reqwest::Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
    match u.scheme() {
        "redis" => {}
        "rediss" => {
            return Err(
                "rediss:// (TLS) is not supported by the redis probe; probe a local TLS terminator's plain port instead"
                    .into(),
            );
        }
        other => return Err(format!("scheme `{other}` is not redis://")),
    }
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the URL has no host")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_string();
    let db = match u.path().trim_start_matches('/') {
        "" => 0,
        d => d
            .parse()
            .map_err(|_| format!("database `{d}` is not a number"))?,
    };
    let username = Some(percent_decode(u.username())).filter(|s| !s.is_empty());
    let password = u.password().map(percent_decode);
    Ok(Target {
        host,
        port: u.port().unwrap_or(6379),
        db,
        username,
        password,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl RedisSpec {
    /// `host:port/db`, without credentials: safe for messages.
    pub fn display_target(&self) -> String {
        match parse_url(&self.url) {
            Ok(t) if t.db != 0 => format!("{}:{}/{}", t.host, t.port, t.db),
            Ok(t) => format!("{}:{}", t.host, t.port),
            Err(_) => "<invalid redis url>".into(),
        }
    }

    /// The password, from wherever it is configured: `Ok(None)` when none is.
    fn password(&self, t: &Target) -> Result<Option<String>, String> {
        if let Some(p) = &t.password {
            return Ok(Some(p.clone()));
        }
        if let Some(var) = &self.password_env {
            return match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(v)),
                _ => Err(format!("password_env: ${var} is not set")),
            };
        }
        if let Some(file) = &self.password_file {
            let path = crate::config::expand_path(
                file,
                std::env::var_os("HOME")
                    .map(std::path::PathBuf::from)
                    .as_deref(),
                None,
            );
            return match std::fs::read_to_string(&path) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
                Ok(_) => Err(format!("password_file {} is empty", path.display())),
                Err(e) => Err(format!("password_file {}: {e}", path.display())),
            };
        }
        Ok(None)
    }
}

impl KindSpec for RedisSpec {
    fn validate(&self, c: &mut Check<'_>) {
        match parse_url(&self.url) {
            Ok(t) => {
                let sources = [
                    t.password.is_some(),
                    self.password_env.is_some(),
                    self.password_file.is_some(),
                ];
                if sources.iter().filter(|x| **x).count() > 1 {
                    c.error(
                        "password_env",
                        "give the password one way: in the URL, password_env or password_file",
                    );
                }
                if t.username.is_some() && self.username.is_some() {
                    c.error("username", "the URL already names a user");
                }
            }
            Err(e) => {
                // Never echo the URL: it may hold a password.
                c.error("url", e)
            }
        }
        if let Some(v) = &self.password_env
            && (v.is_empty() || v.contains('='))
        {
            c.error(
                "password_env",
                format!("`{v}` is not an environment variable name"),
            );
        }
        if let Some(f) = &self.password_file
            && !(f.starts_with('/') || f.starts_with("~/"))
        {
            c.error(
                "password_file",
                format!("`{f}` must be an absolute path (or start with ~/)"),
            );
        }
        for k in self.info.keys() {
            if k.trim().is_empty() {
                c.error("info", "INFO field names must not be empty");
            }
        }
    }

    fn secrets(&self) -> Vec<String> {
        let Ok(t) = parse_url(&self.url) else {
            return Vec::new();
        };
        self.password(&t).ok().flatten().into_iter().collect()
    }
}

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

/// Connect, authenticate, PING, and check INFO expectations.
pub async fn check(spec: &RedisSpec, _ctx: &ProbeCtx) -> Outcome {
    let t = match parse_url(&spec.url) {
        Ok(t) => t,
        Err(e) => return Outcome::error(format!("url: {e}")),
    };
    let password = match spec.password(&t) {
        Ok(p) => p,
        Err(e) => return Outcome::error(e),
    };
    let target = spec.display_target();
    let scrub = |s: String| match &password {
        Some(p) if !p.is_empty() => s.replace(p.as_str(), "***"),
        _ => s,
    };
    let t0 = Instant::now();
    let stream = match TcpStream::connect((t.host.as_str(), t.port)).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(format!("{target}: {}", io_reason(&e))),
    };
    let mut conn = BufReader::new(stream);
    let user = spec.username.clone().or(t.username.clone());
    if let Some(p) = &password {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(u) = &user {
            args.push(u.as_bytes());
        }
        args.push(p.as_bytes());
        match call(&mut conn, &args).await {
            Ok(Reply::Simple(ok)) if ok == "OK" => {}
            Ok(r) => {
                return Outcome::fail(scrub(format!("{target}: AUTH failed: {}", r.text())));
            }
            Err(e) => return Outcome::fail(scrub(format!("{target}: AUTH: {}", io_reason(&e)))),
        }
    }
    if t.db != 0 {
        let db = t.db.to_string();
        match call(&mut conn, &[b"SELECT", db.as_bytes()]).await {
            Ok(Reply::Simple(ok)) if ok == "OK" => {}
            Ok(r) => return Outcome::fail(scrub(format!("{target}: SELECT {db}: {}", r.text()))),
            Err(e) => return Outcome::fail(format!("{target}: SELECT: {}", io_reason(&e))),
        }
    }
    match call(&mut conn, &[b"PING"]).await {
        Ok(Reply::Simple(p)) if p == "PONG" => {}
        Ok(r) => {
            return Outcome::fail(scrub(format!("{target}: PONG expected, got {}", r.text())));
        }
        Err(e) => return Outcome::fail(format!("{target}: PING: {}", io_reason(&e))),
    }
    let mut head = format!("PONG from {target} in {}", fmt_duration(t0.elapsed()));
    if spec.info.is_empty() {
        return Outcome::pass(head);
    }
    let info = match call(&mut conn, &[b"INFO"]).await {
        Ok(Reply::Bulk(Some(b))) => parse_info(&String::from_utf8_lossy(&b)),
        Ok(r) => return Outcome::fail(scrub(format!("{target}: INFO: got {}", r.text()))),
        Err(e) => return Outcome::fail(format!("{target}: INFO: {}", io_reason(&e))),
    };
    if let Some(m) = info_mismatch(&info, &spec.info) {
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
    fn urls_parse_with_credentials_db_and_defaults() {
        let t = parse_url("redis://app:s%40cret@127.0.0.1:6380/2").unwrap();
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 6380);
        assert_eq!(t.db, 2);
        assert_eq!(t.username.as_deref(), Some("app"));
        assert_eq!(t.password.as_deref(), Some("s@cret"));
        let t = parse_url("redis://:pw@cache").unwrap();
        assert_eq!((t.port, t.db, t.username), (6379, 0, None));
        assert_eq!(t.password.as_deref(), Some("pw"));
        let t = parse_url("127.0.0.1:7000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 7000));
        assert!(parse_url("rediss://h:1").unwrap_err().contains("TLS"));
        assert!(parse_url("http://h:1").is_err());
        assert!(parse_url("redis://h:1/x").is_err());
    }

    #[test]
    fn display_target_never_shows_the_password() {
        let s = RedisSpec {
            url: "redis://u:hunter2@10.0.0.1:6379/1".into(),
            username: None,
            password_env: None,
            password_file: None,
            info: BTreeMap::new(),
        };
        assert_eq!(s.display_target(), "10.0.0.1:6379/1");
        assert_eq!(s.secrets(), vec!["hunter2".to_string()]);
    }

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
