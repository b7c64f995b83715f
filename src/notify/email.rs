//! `email`: one plain-text mail through an SMTP relay, with a small SMTP client of our own over
//! tokio and tokio-rustls (both already in the tree; see `docs/notify.md` for why not lettre).
//!
//! The conversation: greeting, `EHLO`, `STARTTLS` and `EHLO` again (`tls = "starttls"`, the
//! default; refused when the server does not offer it), or TLS from the first byte
//! (`tls = "implicit"`), or neither (`tls = "none"`, loopback only, enforced by validation);
//! `AUTH PLAIN` (or `AUTH LOGIN` when that is all the server offers) when a `username` is set;
//! `MAIL FROM`, one `RCPT TO` per recipient (delivered when at least one is accepted), `DATA`,
//! the message, `QUIT`. Any other answer, a dropped connection or the channel's time limit is a
//! failed delivery, which the core retries like any channel's.
//!
//! The password comes from `password_env`, `password_file` or `password_command` (run through
//! [`crate::proc`]); it is sent only inside the TLS session (or to loopback), is learnt by the
//! redactor before anything could quote it, and never appears in argv, a child's environment,
//! a log line or an error (server replies quoted in errors are redacted).
//!
//! The subject is the notice's title (`SOS: host is sos (#42)`): host, state and incident id.

use super::{DeliveryError, Notice, NotifyCtx};
use crate::config::channel::email::{EmailSpec, TlsMode};
use crate::config::channel::telegram::expand_home;
use crate::config::probe::tcp::split_address;
use crate::format::Civil;
use crate::proc::Cmd;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Time limit for `password_command`.
pub const PASSWORD_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest reply line read from a server, and most lines in one reply.
const MAX_LINE: usize = 4096;
const MAX_LINES: usize = 100;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn smtp(msg: impl Into<String>) -> DeliveryError {
    DeliveryError::Transport(format!("SMTP: {}", msg.into()))
}

/// One SMTP connection.
struct Session {
    io: BufReader<Box<dyn Io>>,
    redactor: Arc<crate::redact::Redactor>,
}

/// A server reply: its code and text lines.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        self.lines.join(" / ")
    }
}

impl Session {
    async fn read_reply(&mut self) -> Result<Reply, DeliveryError> {
        let mut lines = Vec::new();
        loop {
            let mut raw = Vec::new();
            let n = (&mut self.io)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut raw)
                .await
                .map_err(|e| smtp(format!("reading the server's reply: {e}")))?;
            if n == 0 {
                return Err(smtp("the server closed the connection"));
            }
            let line = String::from_utf8_lossy(&raw).trim_end().to_string();
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| smtp(format!("not an SMTP reply: `{}`", short(&line))))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(Reply { code, lines });
            }
            if lines.len() > MAX_LINES {
                return Err(smtp("the server's reply is too long"));
            }
        }
    }

    async fn send_line(&mut self, line: &str) -> Result<(), DeliveryError> {
        let w = self.io.get_mut();
        w.write_all(line.as_bytes())
            .await
            .and(w.write_all(b"\r\n").await)
            .and(w.flush().await)
            .map_err(|e| smtp(format!("writing to the server: {e}")))
    }

    /// Send a command (`shown` is what an error may quote) and expect one of `ok` codes.
    async fn command(
        &mut self,
        line: &str,
        shown: &str,
        ok: &[u16],
    ) -> Result<Reply, DeliveryError> {
        self.send_line(line).await?;
        let r = self.read_reply().await?;
        if ok.contains(&r.code) {
            Ok(r)
        } else {
            Err(self.refused(shown, &r))
        }
    }

    fn refused(&self, what: &str, r: &Reply) -> DeliveryError {
        smtp(format!(
            "{what} refused: {} {}",
            r.code,
            self.redactor.clean(&short(&r.text()))
        ))
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s.to_string()
    }
}

/// The TLS client: the system's trust store, or only the CAs in `ca_file`.
fn tls_connector(spec: &EmailSpec) -> Result<tokio_rustls::TlsConnector, DeliveryError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    crate::net::install_tls_provider();
    let config = match &spec.ca_file {
        Some(f) => {
            let path = expand_home(f);
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(&path)
                .map_err(|e| DeliveryError::Config(format!("ca_file {f}: {e}")))?;
            for c in certs {
                let c = c.map_err(|e| DeliveryError::Config(format!("ca_file {f}: {e}")))?;
                roots
                    .add(c)
                    .map_err(|e| DeliveryError::Config(format!("ca_file {f}: {e}")))?;
            }
            if roots.is_empty() {
                return Err(DeliveryError::Config(format!(
                    "ca_file {f}: no certificates in it"
                )));
            }
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::ConfigVerifierExt;
            rustls::ClientConfig::with_platform_verifier()
                .map_err(|e| smtp(format!("cannot load the system's certificates: {e}")))?
        }
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn start_tls(
    io: Box<dyn Io>,
    host: &str,
    spec: &EmailSpec,
) -> Result<Box<dyn Io>, DeliveryError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| DeliveryError::Config(format!("`{host}` is not a valid TLS server name")))?;
    let tls = tls_connector(spec)?
        .connect(name, io)
        .await
        .map_err(|e| smtp(format!("TLS handshake with {host} failed: {e}")))?;
    Ok(Box::new(tls))
}

impl EmailSpec {
    /// The password, if AUTH is configured. Errors never contain it.
    async fn password(&self, ctx: &NotifyCtx) -> Result<Option<String>, DeliveryError> {
        if self.username.is_none() {
            return Ok(None);
        }
        let p = if let Some(e) = &self.password_env {
            std::env::var(e)
                .map_err(|_| smtp(format!("password: environment variable {e} is not set")))?
                .trim()
                .to_string()
        } else if let Some(f) = &self.password_file {
            let t = std::fs::read_to_string(expand_home(f))
                .map_err(|e| smtp(format!("password: cannot read password_file {f}: {e}")))?;
            t.lines().next().unwrap_or("").trim().to_string()
        } else if let Some(c) = &self.password_command {
            let f = Cmd::shell(c)
                .search_path(&ctx.search_path)
                .timeout(PASSWORD_COMMAND_TIMEOUT)
                .capture_limit(16 * 1024)
                .run()
                .await
                .map_err(|e| smtp(format!("password_command: {e}")))?;
            let first = f
                .stdout
                .text()
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            if !first.is_empty() {
                ctx.redactor.learn(first.as_str());
            }
            if !f.end.success() {
                return Err(smtp(format!(
                    "password_command `{}` failed ({})",
                    ctx.redactor.clean(c),
                    f.end
                )));
            }
            first
        } else {
            return Err(DeliveryError::Config("no password source".into()));
        };
        if p.is_empty() {
            return Err(smtp("password: the configured source is empty"));
        }
        ctx.redactor.learn(p.as_str());
        Ok(Some(p))
    }
}

/// Deliver one notice.
pub async fn send(spec: &EmailSpec, notice: &Notice, ctx: &NotifyCtx) -> Result<(), DeliveryError> {
    let password = spec.password(ctx).await?;
    let (host, port) = split_address(&spec.server).map_err(DeliveryError::Config)?;
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| smtp(format!("connecting to {}: {e}", spec.server)))?;
    let _ = tcp.set_nodelay(true);
    let mut io: Box<dyn Io> = Box::new(tcp);
    if spec.tls == TlsMode::Implicit {
        io = start_tls(io, host, spec).await?;
    }
    let mut s = Session {
        io: BufReader::new(io),
        redactor: ctx.redactor.clone(),
    };
    let greeting = s.read_reply().await?;
    if greeting.code != 220 {
        return Err(s.refused("the connection", &greeting));
    }
    let helo = format!("EHLO {}", helo_name(&notice.host));
    let mut caps = s.command(&helo, "EHLO", &[250]).await?;
    if spec.tls == TlsMode::Starttls {
        if !has_cap(&caps, "STARTTLS") {
            return Err(smtp(format!(
                "{} does not offer STARTTLS (set tls = \"implicit\" for port 465)",
                spec.server
            )));
        }
        s.command("STARTTLS", "STARTTLS", &[220]).await?;
        if !s.io.buffer().is_empty() {
            return Err(smtp("the server sent data before the TLS handshake"));
        }
        let plain = s.io.into_inner();
        s = Session {
            io: BufReader::new(start_tls(plain, host, spec).await?),
            redactor: ctx.redactor.clone(),
        };
        caps = s.command(&helo, "EHLO", &[250]).await?;
    }
    if let (Some(user), Some(pw)) = (&spec.username, &password) {
        auth(&mut s, &caps, user, pw).await?;
    }
    s.command(&format!("MAIL FROM:<{}>", spec.from), "MAIL FROM", &[250])
        .await?;
    let mut accepted = 0;
    let mut refused = Vec::new();
    for to in &spec.to {
        s.send_line(&format!("RCPT TO:<{to}>")).await?;
        let r = s.read_reply().await?;
        if matches!(r.code, 250 | 251) {
            accepted += 1;
        } else {
            refused.push(format!("{to}: {} {}", r.code, short(&r.text())));
        }
    }
    if accepted == 0 {
        return Err(smtp(format!(
            "every recipient was refused: {}",
            ctx.redactor.clean(&refused.join("; "))
        )));
    }
    if !refused.is_empty() {
        tracing::warn!(refused = %ctx.redactor.clean(&refused.join("; ")), "email: some recipients were refused");
    }
    s.command("DATA", "DATA", &[354]).await?;
    let msg = message(spec, notice);
    {
        let w = s.io.get_mut();
        w.write_all(msg.as_bytes())
            .await
            .and(w.write_all(b".\r\n").await)
            .and(w.flush().await)
            .map_err(|e| smtp(format!("sending the message: {e}")))?;
    }
    let r = s.read_reply().await?;
    if r.code != 250 {
        return Err(s.refused("the message", &r));
    }
    // Delivered; a failed QUIT changes nothing.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        if s.send_line("QUIT").await.is_ok() {
            let _ = s.read_reply().await;
        }
    })
    .await;
    Ok(())
}

async fn auth(s: &mut Session, caps: &Reply, user: &str, pw: &str) -> Result<(), DeliveryError> {
    let mechs: Vec<String> = caps
        .lines
        .iter()
        .filter_map(|l| {
            let u = l.to_ascii_uppercase();
            u.strip_prefix("AUTH ")
                .or_else(|| u.strip_prefix("AUTH="))
                .map(str::to_string)
        })
        .flat_map(|m| m.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    if mechs.iter().any(|m| m == "PLAIN") {
        let token = B64.encode(format!("\0{user}\0{pw}"));
        s.command(&format!("AUTH PLAIN {token}"), "AUTH", &[235])
            .await?;
    } else if mechs.iter().any(|m| m == "LOGIN") {
        s.command("AUTH LOGIN", "AUTH", &[334]).await?;
        s.command(&B64.encode(user), "AUTH (user name)", &[334])
            .await?;
        s.command(&B64.encode(pw), "AUTH", &[235]).await?;
    } else {
        return Err(smtp(format!(
            "the server offers no AUTH mechanism Talon speaks (PLAIN, LOGIN){}",
            if mechs.is_empty() {
                String::new()
            } else {
                format!("; it offers {}", mechs.join(" "))
            }
        )));
    }
    Ok(())
}

fn has_cap(r: &Reply, cap: &str) -> bool {
    r.lines.iter().any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(cap))
    })
}

/// A name for `EHLO`: the host name when it is a plain DNS name, else `talon`.
fn helo_name(host: &str) -> String {
    if !host.is_empty()
        && host.len() < 250
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        host.to_string()
    } else {
        "talon".to_string()
    }
}

/// A header value on one line: control characters become spaces; non-ASCII is RFC 2047
/// encoded.
fn header_text(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one.is_ascii() {
        one
    } else {
        format!("=?UTF-8?B?{}?=", B64.encode(one.as_bytes()))
    }
}

/// `Wed, 02 Dec 2026 19:00:00 +0000` (RFC 5322).
fn rfc5322_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = Civil::from_unix_ms(ms);
    let weekday = DAYS[ms.div_euclid(86_400_000).rem_euclid(7) as usize];
    format!(
        "{weekday}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        c.day,
        MONTHS[(c.month - 1) as usize],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// CRLF line ends, and a `.` doubled at the start of a line (RFC 5321 4.5.2), so no body line
/// can end the message early.
fn dot_stuffed(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 64);
    for line in body.lines() {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// The whole message as sent after `DATA` (headers, body; CRLF line ends, dot-stuffed; the
/// terminating `.` line is added by the caller).
pub fn message(spec: &EmailSpec, notice: &Notice) -> String {
    let body = notice.text();
    let mut m = String::new();
    let mut h = |k: &str, v: &str| {
        m.push_str(k);
        m.push_str(": ");
        m.push_str(v);
        m.push_str("\r\n");
    };
    h("From", &spec.from);
    h("To", &spec.to.join(", "));
    h("Subject", &header_text(&notice.title()));
    h("Date", &rfc5322_date(notice.at_ms));
    h(
        "Message-ID",
        &format!(
            "<talon.{}.{}.{}@{}>",
            notice.kind.as_str(),
            notice.at_ms,
            std::process::id(),
            helo_name(&notice.host)
        ),
    );
    h("Auto-Submitted", "auto-generated");
    if let Some(id) = &notice.incident_id {
        h("X-Talon-Incident", &header_text(id));
    }
    h("X-Talon-State", &header_text(&notice.state));
    h("MIME-Version", "1.0");
    h("Content-Type", "text/plain; charset=utf-8");
    if body.is_ascii() && body.lines().all(|l| l.len() <= 900) {
        h("Content-Transfer-Encoding", "7bit");
        m.push_str("\r\n");
        m.push_str(&dot_stuffed(&body));
    } else {
        // Base64 lines never start with `.` and stay short: no stuffing, no 8BITMIME needed.
        h("Content-Transfer-Encoding", "base64");
        m.push_str("\r\n");
        let encoded = B64.encode(body.replace('\n', "\r\n").as_bytes());
        for chunk in encoded.as_bytes().chunks(76) {
            m.push_str(std::str::from_utf8(chunk).unwrap_or(""));
            m.push_str("\r\n");
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::channel::email::TlsMode;
    use crate::notify::NoticeKind;

    fn spec() -> EmailSpec {
        EmailSpec {
            server: "127.0.0.1:25".into(),
            tls: TlsMode::None,
            ca_file: None,
            username: None,
            password_env: None,
            password_file: None,
            password_command: None,
            from: "talon@example.com".into(),
            to: vec!["a@example.com".into(), "b@example.com".into()],
        }
    }

    fn notice() -> Notice {
        let mut n = Notice::test("box", 1_764_702_000_000);
        n.kind = NoticeKind::Sos;
        n.state = "sos".into();
        n.incident_id = Some("42".into());
        n.tried = vec![".hidden dot line".into()];
        n
    }

    #[test]
    fn subject_carries_host_state_and_incident_and_lines_are_stuffed() {
        let m = message(&spec(), &notice());
        assert!(m.contains("Subject: SOS: box is sos (42)\r\n"), "{m}");
        assert!(m.contains("To: a@example.com, b@example.com\r\n"));
        assert!(m.contains("X-Talon-Incident: 42\r\n"));
        assert!(
            m.contains("Date: Tue, 02 Dec 2025 19:00:00 +0000\r\n"),
            "{m}"
        );
        assert!(!m.contains("\n\n") && !m.replace("\r\n", "").contains('\n'));
        assert_eq!(dot_stuffed("a\n.\n..b\nc"), "a\r\n..\r\n...b\r\nc\r\n");
    }

    #[test]
    fn non_ascii_is_encoded() {
        let mut n = notice();
        n.host = "bøx".into();
        let m = message(&spec(), &n);
        assert!(m.contains("Subject: =?UTF-8?B?"), "{m}");
        assert!(m.contains("Content-Transfer-Encoding: base64"));
        assert!(m.contains("Message-ID: <talon.sos.1764702000000."));
        assert!(
            m.contains("@talon>"),
            "a non-DNS host name is not used in EHLO/IDs"
        );
    }

    #[test]
    fn header_injection_is_flattened() {
        assert_eq!(header_text("a\r\nBcc: x"), "a  Bcc: x");
        assert_eq!(helo_name("host name"), "talon");
        assert_eq!(helo_name("db-1.example.com"), "db-1.example.com");
    }
}
