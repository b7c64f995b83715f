//! What a probe kind's check gets: the shared clients, the compiled PATH, and its own timeout.

use crate::config::path::SearchPath;
use crate::net::HttpClients;
use std::sync::Arc;
use std::time::Duration;

/// Time between TERM and KILL when a probe's subprocess group is stopped at its timeout.
pub const PROBE_KILL_GRACE: Duration = Duration::from_millis(500);

/// Everything a kind's check may use: shared clients, the compiled PATH, and this probe's
/// timeout. Cheap to clone (the shared parts are behind an `Arc`).
#[derive(Debug, Clone)]
pub struct ProbeCtx {
    shared: Arc<Shared>,
    /// This probe's timeout. Subprocess kinds pass it to [`crate::proc::Cmd::timeout`].
    pub timeout: Duration,
    /// How much detail a failing outcome may carry (`[probes] detail_bytes`).
    pub detail_bytes: usize,
    /// The name of the probe being checked (empty outside the engine).
    pub probe: String,
    /// Pings of `push` probes, shared with the HTTP server that receives them.
    pub pushes: super::push::Pushes,
}

struct Shared {
    search_path: SearchPath,
    http: HttpClients,
    /// Kubernetes clients, one per kubeconfig + context, reused across cycles.
    #[cfg(feature = "k8s")]
    k8s: super::k8s::K8sCtx,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("search_path", &self.search_path)
            .finish_non_exhaustive()
    }
}

impl ProbeCtx {
    /// A context with fresh shared clients (tests, or running a kind outside an engine).
    pub fn new(search_path: SearchPath, timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                search_path,
                http: HttpClients::default(),
                #[cfg(feature = "k8s")]
                k8s: super::k8s::K8sCtx::new(),
            }),
            timeout,
            detail_bytes: crate::config::defaults::probes::DETAIL_BYTES as usize,
            probe: String::new(),
            pushes: super::push::Pushes::default(),
        }
    }

    /// The same context reading `push` pings from `pushes`.
    pub fn with_pushes(mut self, pushes: super::push::Pushes) -> Self {
        self.pushes = pushes;
        self
    }

    /// The same context for the probe named `name`.
    pub fn for_probe(mut self, name: &str) -> Self {
        self.probe = name.to_string();
        self
    }

    /// The same context keeping at most `n` bytes of detail.
    pub fn with_detail_bytes(mut self, n: usize) -> Self {
        self.detail_bytes = n;
        self
    }

    pub(super) fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            shared: self.shared.clone(),
            timeout,
            detail_bytes: self.detail_bytes,
            probe: self.probe.clone(),
            pushes: self.pushes.clone(),
        }
    }

    /// The compiled PATH.
    pub fn search_path(&self) -> &SearchPath {
        &self.shared.search_path
    }

    /// The shared HTTP clients (one per TLS-verify/redirect combination, built once).
    pub fn http(&self) -> &HttpClients {
        &self.shared.http
    }

    /// The Kubernetes client cache.
    #[cfg(feature = "k8s")]
    pub fn k8s(&self) -> &super::k8s::K8sCtx {
        &self.shared.k8s
    }

    /// TERM→KILL grace for a probe's subprocess group.
    pub fn grace(&self) -> Duration {
        PROBE_KILL_GRACE
    }
}
