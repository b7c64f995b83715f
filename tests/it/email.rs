//! The `email` channel against a real SMTP server (aiosmtpd from PyPI, in `target/py-smtp`,
//! made by `scripts/smtp-venv`, which `scripts/test` runs): plain on loopback, STARTTLS and
//! implicit TLS with a CA made in the test, AUTH PLAIN and LOGIN, a refused password, and a
//! server that drops the connection mid-message (the daemon retries and the SOS arrives once).

use crate::daemon::Daemon;
use crate::support::{free_port, run, stderr, stdout, talon, write};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "s3cret-smtp-pass-7781";

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py-smtp/bin/python");
    assert!(
        p.exists(),
        "aiosmtpd is not installed: run scripts/smtp-venv (scripts/test does it) to create {}",
        p.display()
    );
    p
}

/// A running aiosmtpd; stopped when dropped.
struct Smtp {
    child: Child,
    port: u16,
    mailbox: PathBuf,
}

impl Smtp {
    fn start(dir: &Path, args: &[&str]) -> Smtp {
        let port = free_port();
        let mailbox = dir.join(format!("mailbox-{port}.jsonl"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_server.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(&mailbox)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let _ = out.read_line(&mut line);
        assert_eq!(line.trim(), "READY", "aiosmtpd did not start");
        Smtp {
            child,
            port,
            mailbox,
        }
    }

    fn mails(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.mailbox)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a leaf for 127.0.0.1/localhost signed by it: (ca.pem, cert.pem, key.pem).
fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (
        write(dir, "ca.pem", &ca.pem()),
        write(dir, "cert.pem", &leaf.pem()),
        write(dir, "key.pem", &leaf_key.serialize_pem()),
    )
}

fn notify_test(dir: &Path, config: &Path) -> std::process::Output {
    let mut c = talon(dir);
    c.args(["notify", "--test", "--config"])
        .arg(config)
        .current_dir(dir)
        .env("SMTP_PASSWORD", PASSWORD);
    run(c)
}

/// Each call writes a new config file (`config.toml`, `config-2.toml`, …).
fn channel(dir: &Path, body: &str) -> PathBuf {
    let mut name = "config.toml".to_string();
    let mut n = 1;
    while dir.join(&name).exists() {
        n += 1;
        name = format!("config-{n}.toml");
    }
    write(
        dir,
        &name,
        &format!(
            "state_dir = \"state\"\n[notify.mail]\nkind = \"email\"\nfrom = \"talon@example.com\"\nto = [\"ops@example.com\", \"oncall@example.com\"]\n{body}"
        ),
    )
}

#[test]
fn plain_on_loopback_delivers_a_test_mail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let smtp = Smtp::start(dir, &[]);
    let config = channel(
        dir,
        &format!("server = \"127.0.0.1:{}\"\ntls = \"none\"\n", smtp.port),
    );
    let out = notify_test(dir, &config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert_eq!(m["from"], "talon@example.com");
    assert_eq!(
        m["to"],
        serde_json::json!(["ops@example.com", "oncall@example.com"])
    );
    let data = m["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: Test: Talon notification from "),
        "{data}"
    );
    assert!(data.contains("If you can read it, this channel works."));

    // The same server does not offer STARTTLS: the default (`starttls`) refuses to go on in
    // clear text.
    let config = channel(dir, &format!("server = \"127.0.0.1:{}\"\n", smtp.port));
    let out = notify_test(dir, &config);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("does not offer STARTTLS"),
        "{}",
        stdout(&out)
    );
    assert_eq!(smtp.mails().len(), 1);
}

#[test]
fn starttls_with_a_private_ca_and_auth_plain_and_a_refused_password() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ca, cert, key) = test_ca(dir);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let smtp = Smtp::start(
        dir,
        &[
            "--starttls",
            cert,
            key,
            "--user",
            "talon",
            "--password",
            PASSWORD,
        ],
    );
    let config = channel(
        dir,
        &format!(
            "server = \"127.0.0.1:{}\"\ntls = \"starttls\"\nca_file = \"{}\"\nusername = \"talon\"\npassword_env = \"SMTP_PASSWORD\"\n",
            smtp.port,
            ca.display()
        ),
    );
    let out = notify_test(dir, &config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0]["tls"], true, "sent inside STARTTLS");
    assert_eq!(mails[0]["login"], "talon");

    // Without the private CA, the system trust store does not know the server: no mail.
    let config_no_ca = channel(
        dir,
        &format!(
            "server = \"127.0.0.1:{}\"\nusername = \"talon\"\npassword_env = \"SMTP_PASSWORD\"\n",
            smtp.port
        ),
    );
    let out = notify_test(dir, &config_no_ca);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("TLS handshake"), "{}", stdout(&out));

    // A wrong password: refused with the server's answer, and the password is never printed.
    let mut c = talon(dir);
    c.args(["notify", "--test", "--config"])
        .arg(&config)
        .current_dir(dir)
        .env("SMTP_PASSWORD", "wrong-password-123");
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("AUTH refused: 535"), "{text}");
    assert!(!text.contains("wrong-password-123"), "{text}");
    assert_eq!(smtp.mails().len(), 1);
}

#[test]
fn implicit_tls_with_auth_login_and_a_password_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ca, cert, key) = test_ca(dir);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let smtp = Smtp::start(
        dir,
        &[
            "--implicit",
            cert,
            key,
            "--user",
            "talon",
            "--password",
            PASSWORD,
            "--auth-login-only",
        ],
    );
    let pw = write(dir, "smtp.pw", &format!("{PASSWORD}\n"));
    let config = channel(
        dir,
        &format!(
            "server = \"localhost:{}\"\ntls = \"implicit\"\nca_file = \"{}\"\nusername = \"talon\"\npassword_file = \"{}\"\n",
            smtp.port,
            ca.display(),
            pw.display()
        ),
    );
    let out = notify_test(dir, &config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0]["tls"], true);
    assert_eq!(mails[0]["login"], "talon");
}

#[test]
fn plain_text_to_a_remote_server_is_a_validation_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = channel(
        dir,
        "server = \"smtp.example.com:25\"\ntls = \"none\"\nusername = \"u\"\n",
    );
    let mut c = talon(dir);
    c.args(["validate", "--config"])
        .arg(&config)
        .current_dir(dir);
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    let e = format!("{}{}", stdout(&out), stderr(&out));
    assert!(e.contains("config.toml:7:7: error: notify.mail.tls"), "{e}");
    assert!(e.contains("only allowed for a server on loopback"), "{e}");
    assert!(e.contains("notify.mail.username"), "{e}");
}

#[test]
fn a_dropped_connection_mid_message_is_retried_and_the_sos_arrives_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let smtp = Smtp::start(dir, &["--drop-first", "1"]);
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 0.3
[escalation]
critical_threshold_secs = 0.3
notify_retry_secs = 0.5
[notify.mail]
kind = "email"
server = "127.0.0.1:{port}"
tls = "none"
from = "talon@example.com"
to = ["ops@example.com"]
[script.target]
command = "false"
critical = true
critical_after_consecutive_failures = 1
"#,
            port = smtp.port
        ),
    );
    let d = Daemon::start(dir, &config);
    let deadline = Instant::now() + Duration::from_secs(60);
    let sos = loop {
        let mails = smtp.mails();
        if let Some(m) = mails
            .iter()
            .find(|m| m["data"].as_str().unwrap_or("").contains("Subject: SOS: "))
        {
            break m.clone();
        }
        assert!(Instant::now() < deadline, "no SOS mail; log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    let data = sos["data"].as_str().unwrap();
    assert!(
        data.contains(" is sos ("),
        "subject names host, state and incident: {data}"
    );
    assert!(data.contains("X-Talon-Incident: "), "{data}");
    assert!(data.contains("- target: "), "{data}");
    let log = d.log();
    assert!(
        log.contains("notice not delivered") && log.contains("SMTP"),
        "the first attempt failed on the dropped connection: {log}"
    );
    let sos_count = smtp
        .mails()
        .iter()
        .filter(|m| m["data"].as_str().unwrap_or("").contains("Subject: SOS: "))
        .count();
    assert_eq!(sos_count, 1);
}
