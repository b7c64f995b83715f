//! The one place Talon builds HTTP clients, and so the one place that installs the process-wide
//! TLS crypto provider. Talon is ring-only: reqwest is built with `rustls-no-provider` (the `k8s`
//! probe's API client is a reqwest client from here too), so rustls cannot pick a provider by
//! itself; ring is installed once, before the first client is built.

use std::sync::OnceLock;

/// Install rustls' ring provider as the process default. Idempotent: a provider already
/// installed (by an earlier call, or by a test harness) is left as it is.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // `Err` only means a default provider is already installed, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client builder with the TLS provider installed and Talon's user agent set; callers add
/// their own timeouts, redirect and proxy policy.
pub fn client() -> reqwest::ClientBuilder {
    install_tls_provider();
    reqwest::Client::builder().user_agent(concat!("talon/", env!("CARGO_PKG_VERSION")))
}

/// The shared HTTP clients, one per (TLS verification, redirect following) combination.
#[derive(Debug, Default)]
pub struct HttpClients {
    slots: [OnceLock<Result<reqwest::Client, String>>; 4],
}

impl HttpClients {
    /// The client for these settings, built on first use.
    pub fn get(&self, tls_verify: bool, follow_redirects: bool) -> Result<reqwest::Client, String> {
        let i = usize::from(tls_verify) * 2 + usize::from(follow_redirects);
        self.slots[i]
            .get_or_init(|| {
                let redirects = if follow_redirects {
                    reqwest::redirect::Policy::limited(10)
                } else {
                    reqwest::redirect::Policy::none()
                };
                client()
                    .redirect(redirects)
                    .tls_danger_accept_invalid_certs(!tls_verify)
                    .pool_max_idle_per_host(0)
                    // The peer's certificate, for the days left an `https://` probe reports.
                    .tls_info(true)
                    .no_proxy()
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
            })
            .clone()
    }
}

/// An error and its sources on one line, without repeats.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn installing_twice_is_harmless() {
        super::install_tls_provider();
        super::install_tls_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn clients_build_for_every_setting() {
        let c = super::HttpClients::default();
        for verify in [true, false] {
            for follow in [true, false] {
                assert!(c.get(verify, follow).is_ok());
            }
        }
    }
}
