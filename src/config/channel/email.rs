//! `email` channel spec: an SMTP relay (`server = "host:port"`), how the connection is secured
//! (`tls`), optional AUTH (`username` and exactly one of `password_env`, `password_file`,
//! `password_command`), `from` and `to`. Sending lives in `crate::notify::email`.

use super::blank;
use crate::config::probe::tcp::split_address;
use serde::{Deserialize, Serialize};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP upgraded with `STARTTLS` (submission, port 587). The default.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// No TLS at all: only for a relay on loopback.
    None,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// `host:port` of the SMTP server.
    pub server: String,
    /// `starttls` (default), `implicit` or `none` (loopback only).
    #[serde(default)]
    pub tls: TlsMode,
    /// A PEM file of CA certificates to trust instead of the system's (a private relay).
    pub ca_file: Option<String>,
    /// AUTH user name; the password comes from exactly one of the three sources below.
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File whose first line is the password.
    pub password_file: Option<String>,
    /// Shell command whose first output line is the password.
    pub password_command: Option<String>,
    /// The sender address (`MAIL FROM` and the `From:` header).
    pub from: String,
    /// Recipient addresses.
    pub to: Vec<String>,
}

/// Is `host` a loopback name or address?
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `Some(problem)` unless `a` looks like a bare mail address (`user@host`, nothing that could
/// break a header or an SMTP command).
pub fn address_problem(a: &str) -> Option<String> {
    let ok = a
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '"'));
    (!ok).then(|| format!("`{a}` is not a mail address like ops@example.com"))
}

impl EmailSpec {
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        match split_address(&self.server) {
            Err(e) => v.push(("server", e)),
            Ok((host, _)) if self.tls == TlsMode::None && !is_loopback(host) => v.push((
                "tls",
                format!(
                    "`none` sends mail and the password in clear text; it is only allowed for a \
                     server on loopback, not `{host}` (use `starttls` or `implicit`)"
                ),
            )),
            Ok(_) => {}
        }
        if let Some(p) = self.ca_file.as_deref().and_then(blank) {
            v.push(("ca_file", p));
        }
        let sources = [
            ("password_env", &self.password_env),
            ("password_file", &self.password_file),
            ("password_command", &self.password_command),
        ];
        let given = sources.iter().filter(|(_, s)| s.is_some()).count();
        for (k, x) in sources {
            if let Some(p) = x.as_deref().and_then(blank) {
                v.push((k, p));
            }
        }
        match (&self.username, given) {
            (Some(u), _) if u.trim().is_empty() => v.push(("username", "must not be empty".into())),
            (Some(_), 1) | (None, 0) => {}
            (Some(_), 0) => v.push((
                "username",
                "give the password's source as one of password_env, password_file or password_command"
                    .into(),
            )),
            (Some(_), _) => v.push((
                "username",
                "give exactly one of password_env, password_file or password_command".into(),
            )),
            (None, _) => v.push((
                "username",
                "a password source is set but no `username` to log in with".into(),
            )),
        }
        if let Some(p) = address_problem(&self.from) {
            v.push(("from", p));
        }
        if self.to.is_empty() {
            v.push(("to", "name at least one recipient".into()));
        }
        for a in &self.to {
            if let Some(p) = address_problem(a) {
                v.push(("to", p));
            }
        }
        v
    }

    /// The password when it can be read without running anything (env var or file).
    pub fn static_password(&self) -> Option<String> {
        if let Some(e) = &self.password_env {
            return std::env::var(e).ok().map(|t| t.trim().to_string());
        }
        if let Some(f) = &self.password_file {
            return std::fs::read_to_string(super::telegram::expand_home(f))
                .ok()
                .and_then(|t| t.lines().next().map(|l| l.trim().to_string()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> EmailSpec {
        EmailSpec {
            server: "smtp.example.com:587".into(),
            tls: TlsMode::Starttls,
            ca_file: None,
            username: None,
            password_env: None,
            password_file: None,
            password_command: None,
            from: "talon@example.com".into(),
            to: vec!["ops@example.com".into()],
        }
    }

    fn keys(s: &EmailSpec) -> Vec<&'static str> {
        s.validate().into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn plain_text_only_on_loopback() {
        let mut s = spec();
        assert!(keys(&s).is_empty());
        s.tls = TlsMode::None;
        assert_eq!(keys(&s), ["tls"]);
        for ok in ["127.0.0.1:25", "localhost:25", "[::1]:25"] {
            s.server = ok.into();
            assert!(keys(&s).is_empty(), "{ok}");
        }
    }

    #[test]
    fn auth_needs_exactly_one_password_source() {
        let mut s = spec();
        s.username = Some("u".into());
        assert_eq!(keys(&s), ["username"]);
        s.password_env = Some("SMTP_PASSWORD".into());
        assert!(keys(&s).is_empty());
        s.password_file = Some("/run/pw".into());
        assert_eq!(keys(&s), ["username"]);
        s.username = None;
        s.password_file = None;
        assert_eq!(keys(&s), ["username"]);
    }

    #[test]
    fn addresses_cannot_break_headers() {
        let mut s = spec();
        s.from = "talon@example.com\r\nBcc: x@y".into();
        s.to = vec![];
        assert_eq!(keys(&s), ["from", "to"]);
        s.to = vec!["a@b".into(), "nobody".into(), "<x@y>".into()];
        assert_eq!(keys(&s), ["from", "to", "to"]);
    }
}
