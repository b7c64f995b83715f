//! `tls` probe: a TLS handshake with `address`, then judge the certificate it presented.
//!
//! The handshake always completes when the server speaks TLS, whatever the chain: the verifier
//! records the verdict of the real one (the system's roots, or `ca_file`) instead of aborting,
//! so an expired or misnamed certificate is still read and the output says both what is wrong
//! and when the leaf expires, for whom. It fails when the handshake fails, the verdict is bad
//! (unless `verify = false`), or the leaf expires within `warn_days`.

use super::ProbeCtx;
use super::cert::{self, CertInfo};
use crate::clock::{self, Instant};
use crate::config::probe::tcp::split_address;
use crate::config::probe::tls::TlsSpec;
use crate::core::outcome::Outcome;
use crate::format::latency;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, Mutex};

/// Asks the real verifier, remembers its verdict, and lets the handshake go on.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ServerCertVerifier>,
    verdict: Mutex<Option<Result<(), rustls::Error>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let v = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map(|_| ());
        if let Ok(mut slot) = self.verdict.lock() {
            *slot = Some(v);
        }
        Ok(ServerCertVerified::assertion())
    }

    // The handshake's signatures are always checked: a peer that cannot prove it holds the
    // certificate's key fails the handshake, verify or not.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The verifier whose verdict counts: `ca_file`'s roots, else the system's.
fn real_verifier(spec: &TlsSpec) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match &spec.ca_file {
        Some(f) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(f)
                .map_err(|e| format!("cannot read ca_file {f}: {e}"))?;
            for c in certs {
                let c = c.map_err(|e| format!("ca_file {f}: {e}"))?;
                roots
                    .add(c)
                    .map_err(|e| format!("ca_file {f}: bad CA certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("ca_file {f} holds no certificate"));
            }
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map(|v| v as Arc<dyn ServerCertVerifier>)
                .map_err(|e| format!("ca_file {f}: {e}"))
        }
        None => rustls_platform_verifier::Verifier::new(provider)
            .map(|v| Arc::new(v) as Arc<dyn ServerCertVerifier>)
            .map_err(|e| format!("cannot load the system's root certificates: {e}")),
    }
}

/// Connect, shake hands, judge the chain and the leaf's expiry.
pub async fn check(spec: &TlsSpec, _ctx: &ProbeCtx) -> Outcome {
    let (host, port) = match split_address(&spec.address) {
        Ok(hp) => hp,
        Err(e) => return Outcome::error(e),
    };
    let name = spec.name();
    let server_name = match ServerName::try_from(name.clone()) {
        Ok(n) => n,
        Err(_) => return Outcome::error(format!("`{name}` is not a DNS name or IP address")),
    };
    let inner = match real_verifier(spec) {
        Ok(v) => v,
        Err(e) => return Outcome::error(e),
    };
    let recording = Arc::new(Recording {
        inner,
        verdict: Mutex::new(None),
    });
    let config = match rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    {
        Ok(b) => b
            .dangerous()
            .with_custom_certificate_verifier(recording.clone())
            .with_no_client_auth(),
        Err(e) => return Outcome::error(format!("TLS setup: {e}")),
    };
    let t0 = Instant::now();
    let tcp = match tokio::net::TcpStream::connect((host, port)).await {
        Ok(s) => s,
        Err(e) => {
            return Outcome::fail(format!("{}: {}", spec.address, super::tcp::io_reason(&e)));
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = match connector.connect(server_name, tcp).await {
        Ok(s) => s,
        Err(e) => {
            return Outcome::fail(format!(
                "TLS handshake with {} failed: {}",
                spec.address,
                handshake_reason(&e)
            ));
        }
    };
    let took = latency(t0.elapsed());
    let (_, conn) = tls.get_ref();
    let version = conn
        .protocol_version()
        .and_then(|v| v.as_str())
        .unwrap_or("TLS")
        .replace('_', ".")
        .replace("TLSv", "TLS ");
    let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) else {
        return Outcome::fail(format!("{}: the server sent no certificate", spec.address));
    };
    let info = match cert::parse(leaf) {
        Ok(i) => i,
        Err(e) => {
            return Outcome::fail(format!(
                "{}: cannot read the certificate: {e}",
                spec.address
            ));
        }
    };
    let verdict = recording
        .verdict
        .lock()
        .ok()
        .and_then(|mut v| v.take())
        .unwrap_or_else(|| {
            Err(rustls::Error::General(
                "the certificate was not verified".into(),
            ))
        });
    judge(spec, &info, verdict, clock::wall_ms(), &version, &took)
}

/// The verdict on a certificate, as one line.
fn judge(
    spec: &TlsSpec,
    info: &CertInfo,
    verdict: Result<(), rustls::Error>,
    now_ms: i64,
    version: &str,
    took: &str,
) -> Outcome {
    let subject = if info.subject.is_empty() {
        "certificate".to_string()
    } else {
        format!("certificate {}", info.subject)
    };
    let expiry = info.expiry_text(now_ms);
    let days = info.days_left(now_ms);
    let head = format!("{} ({version}, {took}): {subject}", spec.address);
    if spec.verify
        && let Err(e) = verdict
    {
        return Outcome::fail(format!(
            "{head} does not verify for {}: {}; {expiry}",
            spec.name(),
            reason(&e, info.self_signed)
        ));
    }
    if info.not_after * 1000 <= now_ms {
        return Outcome::fail(format!("{head} {expiry}"));
    }
    if days < spec.warn_days {
        return Outcome::fail(format!(
            "{head} {expiry}, within warn_days = {}",
            spec.warn_days
        ));
    }
    let trust = if spec.verify { "verified, " } else { "" };
    Outcome::pass(format!("{head} {trust}{expiry}"))
}

/// What a certificate error means, in words.
fn reason(e: &rustls::Error, self_signed: bool) -> String {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(c) = e else {
        return e.to_string();
    };
    match c {
        C::Expired | C::ExpiredContext { .. } => "expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet".into(),
        C::NotValidForNameContext { presented, .. } => format!(
            "name mismatch: the certificate is for {}",
            presented
                .iter()
                .map(|p| {
                    // rustls shows names as `DnsName("x")`; show `x`.
                    p.split_once('(')
                        .map(|(_, v)| v.trim_end_matches(')').trim_matches('"'))
                        .unwrap_or(p)
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        C::NotValidForName => "name mismatch".into(),
        C::Revoked => "revoked".into(),
        _ if self_signed => {
            "self-signed (no CA this host trusts vouches for it; set ca_file, or verify = false)"
                .into()
        }
        C::UnknownIssuer => {
            "issuer unknown (signed by a CA this host does not trust; set ca_file)".into()
        }
        C::BadSignature => "bad signature".into(),
        _ => e.to_string(),
    }
}

/// The TLS reason inside a handshake error, else the I/O error.
fn handshake_reason(e: &std::io::Error) -> String {
    if let Some(inner) = e.get_ref()
        && let Some(tls) = inner.downcast_ref::<rustls::Error>()
    {
        return tls.to_string();
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "the server closed the connection".into(),
        _ => super::tcp::io_reason(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(verify: bool) -> TlsSpec {
        TlsSpec {
            address: "h:443".into(),
            server_name: None,
            warn_days: 14,
            verify,
            ca_file: None,
        }
    }

    #[test]
    fn verdicts() {
        let day = 86_400_000i64;
        let info = CertInfo {
            not_after: 30 * 86_400,
            subject: "CN=h".into(),
            self_signed: false,
        };
        let ok = judge(&spec(true), &info, Ok(()), 0, "TLS 1.3", "1 ms");
        assert!(
            ok.output.contains("verified, expires in 30 days"),
            "{}",
            ok.output
        );
        let soon = judge(&spec(true), &info, Ok(()), 20 * day, "TLS 1.3", "1 ms");
        assert!(
            soon.output.contains("within warn_days = 14"),
            "{}",
            soon.output
        );
        let bad = Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        let r = judge(&spec(true), &info, bad.clone(), 0, "TLS 1.3", "1 ms");
        assert!(r.output.contains("issuer unknown"), "{}", r.output);
        let r = judge(&spec(false), &info, bad, 0, "TLS 1.3", "1 ms");
        assert!(r.status.passed(), "{}", r.output);
    }
}
