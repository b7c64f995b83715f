//! `redis` probe spec: the URL (`redis://[user:pass@]host:port[/db]` or `host:port`), where the
//! password comes from, and `INFO` expectations. The RESP client and the check live in
//! `crate::probe::redis`.

use super::{Check, Kind, KindSpec, ProbeKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[redis.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "redis",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Redis),
};

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
    pub fn password(&self, t: &Target) -> Result<Option<String>, String> {
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
}
