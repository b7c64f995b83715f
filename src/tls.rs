//! The process-wide TLS crypto provider. Talon is ring-only: reqwest is built with
//! `rustls-no-provider` and kube with `ring`, so rustls cannot pick a provider by itself when more
//! than one crate feature could apply. Install ring once, before the first TLS client is built.

/// Install rustls' ring provider as the process default. Idempotent: a provider already
/// installed (by an earlier call, or by a test harness) is left as it is.
pub fn install_default_provider() {
    // `Err` only means a default provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn installing_twice_is_harmless() {
        super::install_default_provider();
        super::install_default_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
