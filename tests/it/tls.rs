//! `tls` probes (and the days left an `https://` `http` probe reports) against real TLS servers
//! on loopback, with certificates made in the test: valid, expiring in 3 days, expired, for
//! another name, self-signed.

use crate::support;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use talon::config::{self, Config, LoadOptions};
use talon::core::{ProbeResult, Status};
use talon::probe::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

const DAY: u64 = 86_400;

/// `now + days` (negative: in the past) as Unix seconds.
fn secs(days: f64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    Duration::from_secs((now + days * DAY as f64) as u64)
}

/// `now + days` as rcgen's date type (a macro: the type lives in a crate this one does not name).
macro_rules! at {
    ($days:expr) => {
        rcgen::date_time_ymd(1970, 1, 1) + secs($days)
    };
}

/// A test CA (written as PEM to `dir/ca.pem`) that signs leaves.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "Talon Test CA");
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf for `names`, valid from 10 days ago until `days` from now.
    fn leaf(
        &self,
        names: &[&str],
        days: f64,
    ) -> (rustls::pki_types::CertificateDer<'static>, KeyPair) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.distinguished_name
            .push(DnType::OrganizationName, "Talon Tests");
        p.not_before = at!(-10.0);
        p.not_after = at!(days);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.der().clone(), key)
    }
}

/// A self-signed leaf for `names`, valid for `days`.
fn self_signed(names: &[&str], days: f64) -> (rustls::pki_types::CertificateDer<'static>, KeyPair) {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.not_after = at!(days);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    (cert.der().clone(), key)
}

/// A TLS server presenting `cert`; answers any HTTP request with 200 "secure".
async fn serve(cert: rustls::pki_types::CertificateDer<'static>, key: KeyPair) -> SocketAddr {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecure",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn load(dir: &Path, probes: &str) -> Config {
    let main = dir.join("config.toml");
    std::fs::write(
        &main,
        "services_file = \"services.toml\"\nstate_dir = \"state\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("services.toml"), probes).unwrap();
    let l = config::load(&LoadOptions {
        config: Some(main),
        resolve: false,
        home: Some(dir.to_path_buf()),
        ..Default::default()
    });
    let msgs: Vec<String> = l.diags.items.iter().map(|d| d.to_string()).collect();
    l.config
        .unwrap_or_else(|| panic!("config invalid: {msgs:#?}"))
}

async fn run(dir: &Path, probes: &str) -> Vec<ProbeResult> {
    let c = load(dir, probes);
    Engine::new(&c).run(&c.probes).await
}

fn by<'a>(rs: &'a [ProbeResult], name: &str) -> &'a ProbeResult {
    rs.iter().find(|r| r.name == name).unwrap()
}

#[tokio::test]
async fn certificates_valid_expiring_expired_misnamed_and_self_signed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let ca_file = support::write(dir.path(), "ca.pem", &ca.pem);
    let ca_file = ca_file.display();

    let (c, k) = ca.leaf(&["localhost"], 90.5);
    let valid = serve(c, k).await;
    let (c, k) = ca.leaf(&["localhost"], 3.5);
    let soon = serve(c, k).await;
    let (c, k) = ca.leaf(&["localhost"], -2.5);
    let expired = serve(c, k).await;
    let (c, k) = ca.leaf(&["other.test"], 90.5);
    let misnamed = serve(c, k).await;
    let (c, k) = self_signed(&["localhost"], 40.5);
    let selfsigned = serve(c, k).await;
    // Something that accepts TCP but does not speak TLS.
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = plain.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = plain.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });

    let probes = format!(
        r#"
[tls.valid]
address = "{valid}"
server_name = "localhost"
ca_file = "{ca_file}"

[tls.soon]
address = "{soon}"
server_name = "localhost"
ca_file = "{ca_file}"

[tls.soon_ok]
address = "{soon}"
server_name = "localhost"
ca_file = "{ca_file}"
warn_days = 2

[tls.expired]
address = "{expired}"
server_name = "localhost"
ca_file = "{ca_file}"

[tls.misnamed]
address = "{misnamed}"
server_name = "localhost"
ca_file = "{ca_file}"

[tls.self_signed]
address = "{selfsigned}"
server_name = "localhost"

[tls.self_signed_unverified]
address = "{selfsigned}"
server_name = "localhost"
verify = false

[tls.expired_unverified]
address = "{expired}"
server_name = "localhost"
verify = false

[tls.plain]
address = "{plain_addr}"
server_name = "localhost"

[tls.closed]
address = "127.0.0.1:{closed}"
"#,
        closed = support::free_port(),
    );
    let rs = run(dir.path(), &probes).await;
    let show: Vec<String> = rs
        .iter()
        .map(|r| format!("{} {:?} {}", r.name, r.status, r.output))
        .collect();
    let show = show.join("\n");

    let r = by(&rs, "valid");
    assert_eq!(r.status, Status::Pass, "{show}");
    assert!(r.output.contains("CN=localhost, O=Talon Tests"), "{show}");
    assert!(r.output.contains("verified, expires in 90 days"), "{show}");

    let r = by(&rs, "soon");
    assert_eq!(r.status, Status::Fail, "{show}");
    assert!(
        r.output.contains("expires in 3 days") && r.output.contains("within warn_days = 14"),
        "{show}"
    );
    assert_eq!(by(&rs, "soon_ok").status, Status::Pass, "{show}");

    let r = by(&rs, "expired");
    assert_eq!(r.status, Status::Fail, "{show}");
    assert!(
        r.output.contains("does not verify for localhost: expired")
            && r.output.contains("expired 2 days ago"),
        "{show}"
    );
    // Unverified, an expired certificate still fails: expiry is judged on its own.
    let r = by(&rs, "expired_unverified");
    assert_eq!(r.status, Status::Fail, "{show}");
    assert!(r.output.contains("expired 2 days ago"), "{show}");

    let r = by(&rs, "misnamed");
    assert_eq!(r.status, Status::Fail, "{show}");
    assert!(
        r.output.contains(
            "does not verify for localhost: name mismatch: the certificate is for other.test"
        ),
        "{show}"
    );
    assert!(r.output.contains("CN=other.test"), "{show}");

    let r = by(&rs, "self_signed");
    assert_eq!(r.status, Status::Fail, "{show}");
    assert!(r.output.contains("self-signed"), "{show}");
    assert!(r.output.contains("expires in 40 days"), "{show}");
    let r = by(&rs, "self_signed_unverified");
    assert_eq!(r.status, Status::Pass, "{show}");
    assert!(r.output.contains("expires in 40 days"), "{show}");
    assert!(!r.output.contains("verified,"), "{show}");

    let r = by(&rs, "plain");
    assert_eq!(r.status, Status::Fail, "{show}");
    assert!(r.output.contains("TLS handshake with"), "{show}");
    let r = by(&rs, "closed");
    assert_eq!(r.status, Status::Fail, "{show}");
    assert!(r.output.contains("connection refused"), "{show}");
}

#[tokio::test]
async fn https_probes_report_the_days_left() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = self_signed(&["127.0.0.1"], 20.5);
    let addr = serve(c, k).await;
    let probes = format!(
        "[http.site]\nurl = \"https://{addr}/\"\ntls_verify = false\nbody_contains = \"secure\"\n"
    );
    let rs = run(dir.path(), &probes).await;
    let r = by(&rs, "site");
    assert_eq!(r.status, Status::Pass, "{}", r.output);
    assert!(
        r.output.contains("; certificate expires in 20 days"),
        "{}",
        r.output
    );
}

#[test]
fn talon_check_says_what_it_saw_and_validation_names_the_key() {
    let home = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (c, k) = self_signed(&["localhost"], 5.5);
    let addr = rt.block_on(serve(c, k));
    support::write(
        home.path(),
        "config.toml",
        "services_file = \"services.toml\"\nstate_dir = \"state\"\n",
    );
    support::write(
        home.path(),
        "services.toml",
        &format!("[tls.web]\naddress = \"{addr}\"\nserver_name = \"localhost\"\nverify = false\n"),
    );
    let mut cmd = support::talon(home.path());
    cmd.arg("--config")
        .arg(home.path().join("config.toml"))
        .arg("check");
    let out = support::run(cmd);
    let text = support::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        support::stderr(&out)
    );
    assert!(text.contains("web"), "{text}");
    assert!(text.contains("expires in 5 days"), "{text}");
    assert!(text.contains("within warn_days = 14"), "{text}");

    // A typo and bad values, with file:line:column and the key.
    support::write(
        home.path(),
        "services.toml",
        "[tls.web]\naddress = \"localhost\"\nwarn_dayz = 3\n",
    );
    let mut cmd = support::talon(home.path());
    cmd.arg("--config")
        .arg(home.path().join("config.toml"))
        .arg("validate");
    let out = support::run(cmd);
    let err = format!("{}{}", support::stdout(&out), support::stderr(&out));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown key `warn_dayz` (did you mean `warn_days`?)"),
        "{err}"
    );
    assert!(err.contains("services.toml:3:"), "{err}");
    support::write(
        home.path(),
        "services.toml",
        "[tls.web]\naddress = \"localhost\"\nwarn_days = -1\nverify = false\nca_file = \"/x.pem\"\n",
    );
    let mut cmd = support::talon(home.path());
    cmd.arg("--config")
        .arg(home.path().join("config.toml"))
        .arg("validate");
    let out = support::run(cmd);
    let err = format!("{}{}", support::stdout(&out), support::stderr(&out));
    assert!(
        err.contains("tls.web.address") && err.contains("host:port"),
        "{err}"
    );
    assert!(err.contains("tls.web.warn_days"), "{err}");
    assert!(
        err.contains("tls.web.ca_file") && err.contains("verify = false"),
        "{err}"
    );
}
