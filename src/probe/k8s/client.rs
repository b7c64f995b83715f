//! Clients: one [`kube::Client`] per kubeconfig file and context, kept in a [`K8sCtx`] and reused
//! across cycles, rebuilt when the kubeconfig file changes. Without an explicit `kubeconfig` or
//! `context`, kube infers the configuration: `$KUBECONFIG`, `~/.kube/config`, then in-cluster.
//!
//! In-cluster (a pod, no kubeconfig) is kube's own `Config::incluster`, as client-go does it: the
//! API server at `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, verified with the
//! service account's CA bundle, authenticated with its token file — both under
//! [`SERVICE_ACCOUNT_DIR`]. kube re-reads the token file about once a minute and the CA bundle
//! likewise; on top of that the cached client is rebuilt as soon as either file changes (the
//! kubelet rotates a projected token by swapping the files), so a rotated token is used from
//! the next probe on.

use super::errors::{chain, classify};
use crate::config::probe::k8s::K8sSpec;
use crate::core::outcome::Outcome;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Shared state for `k8s` probes: the client cache. Create one per daemon (or per `talon check`)
/// and pass it to every [`K8sSpec::check`].
pub struct K8sCtx {
    home: Option<PathBuf>,
    clients: Mutex<HashMap<ClientKey, Cached>>,
    /// Connect timeout given to every client (the probe's timeout still bounds the whole check).
    pub connect_timeout: Duration,
    /// Read/write timeout given to every client.
    pub io_timeout: Duration,
    /// A fixed "now" for judging ages ("NotReady for 3m 12s"); `None` = the system clock.
    now: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
}

/// Where a pod's service account credentials are mounted (kube and client-go read them here).
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Modification times of the files a client was built from: the kubeconfig, and for the
/// implicit configuration the service account's token and CA bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    kubeconfig: Option<SystemTime>,
    token: Option<SystemTime>,
    ca: Option<SystemTime>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

#[derive(Clone)]
struct Cached {
    conn: Conn,
    stamp: Stamp,
}

/// A client and the server it talks to (for messages).
#[derive(Clone)]
pub(super) struct Conn {
    pub(super) client: kube::Client,
    pub(super) url: String,
}

impl Conn {
    /// The outcome for a failed request about `what` (`node x`, `deployment a/b`).
    /// Its detail is the whole error chain.
    pub(super) fn fail(&self, what: &str, e: kube::Error) -> Outcome {
        classify(&e, &self.url, what).with_detail(crate::net::error_chain(&e))
    }
}

impl Default for K8sCtx {
    fn default() -> Self {
        Self::new()
    }
}

impl K8sCtx {
    /// A context that expands `~` with `$HOME`.
    pub fn new() -> Self {
        Self::with_home(std::env::var_os("HOME").map(PathBuf::from))
    }

    /// A context with an explicit home directory (for `~` in `kubeconfig`).
    pub fn with_home(home: Option<PathBuf>) -> Self {
        Self {
            home,
            clients: Mutex::new(HashMap::new()),
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            now: None,
        }
    }

    /// Judge ages against this instant instead of the system clock (tests, replays).
    pub fn at(mut self, now: SystemTime) -> Self {
        self.now = Some(now);
        self
    }

    /// The instant ages are judged against.
    pub(super) fn now(&self) -> SystemTime {
        self.now.unwrap_or_else(crate::clock::wall_time)
    }

    /// How many clients are cached (one per kubeconfig + context in use).
    pub fn cached_clients(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn kubeconfig_path(&self, spec: &K8sSpec) -> Option<PathBuf> {
        spec.kubeconfig
            .as_deref()
            .map(|p| crate::config::expand_path(p, self.home.as_deref(), None))
    }

    /// The kubeconfig file a client without an explicit `kubeconfig` would read, if any.
    fn implicit_kubeconfig(&self) -> Option<PathBuf> {
        if let Some(v) = std::env::var_os("KUBECONFIG") {
            return std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty());
        }
        self.home.as_ref().map(|h| h.join(".kube/config"))
    }

    /// The cached client for this spec's kubeconfig and context, built (again) when missing or
    /// when the kubeconfig file changed since.
    pub(super) async fn client(&self, spec: &K8sSpec) -> Result<Conn, Outcome> {
        let path = self.kubeconfig_path(spec);
        let key = ClientKey {
            kubeconfig: path.clone(),
            context: spec.context.clone(),
        };
        let stamp_path = path.clone().or_else(|| self.implicit_kubeconfig());
        let implicit = path.is_none() && spec.context.is_none();
        let sa = Path::new(SERVICE_ACCOUNT_DIR);
        let stamp = Stamp {
            kubeconfig: stamp_path.as_deref().and_then(mtime),
            token: implicit.then(|| mtime(&sa.join("token"))).flatten(),
            ca: implicit.then(|| mtime(&sa.join("ca.crt"))).flatten(),
        };
        if let Ok(cache) = self.clients.lock()
            && let Some(c) = cache.get(&key)
            && c.stamp == stamp
        {
            return Ok(c.conn.clone());
        }
        let mut config = load_config(path.as_deref(), spec.context.as_deref())
            .await
            .map_err(Outcome::error)?;
        config.connect_timeout = Some(self.connect_timeout);
        config.read_timeout = Some(self.io_timeout);
        config.write_timeout = Some(self.io_timeout);
        let url = config.cluster_url.to_string();
        let url = url.trim_end_matches('/').to_string();
        crate::net::install_tls_provider();
        let client = kube::Client::try_from(config).map_err(|e| {
            Outcome::error(format!("cannot build a client for {url}: {}", chain(&e)))
        })?;
        let conn = Conn { client, url };
        if let Ok(mut cache) = self.clients.lock() {
            cache.insert(
                key,
                Cached {
                    conn: conn.clone(),
                    stamp,
                },
            );
        }
        Ok(conn)
    }
}

async fn load_config(path: Option<&Path>, context: Option<&str>) -> Result<kube::Config, String> {
    let opts = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        cluster: None,
        user: None,
    };
    match path {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| {
                format!("kubeconfig {}: {}", p.display(), chain(&e))
            })?;
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| format!("kubeconfig {}: {}", p.display(), chain(&e)))
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&opts)
            .await
            .map_err(|e| format!("kubeconfig: {}", chain(&e))),
        None => kube::Config::infer().await.map_err(|e| {
            format!(
                "no Kubernetes credentials: no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a pod: {}",
                chain(&e)
            )
        }),
    }
}
