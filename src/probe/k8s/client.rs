//! Clients: one [`Api`] (a reqwest client from [`crate::net::client`], the server, the
//! credentials) per kubeconfig file and context, kept in a [`K8sCtx`] and reused across cycles,
//! rebuilt when the kubeconfig file changes. Without an explicit `kubeconfig` or `context`, the
//! configuration is inferred as kubectl does: `$KUBECONFIG` (its first path), `~/.kube/config`,
//! then in-cluster.
//!
//! In-cluster (a pod, no kubeconfig) is as client-go does it: the API server at
//! `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, verified with the service
//! account's CA bundle, authenticated with its token file — both under [`SERVICE_ACCOUNT_DIR`].
//! The token file is read for every request, and the cached client is rebuilt as soon as the
//! token or CA file changes (the kubelet rotates a projected token by swapping the files), so a
//! rotated token is used from the next probe on.

use super::errors::{Error, chain, classify};
use super::exec;
pub use super::kubeconfig::SERVICE_ACCOUNT_DIR;
use super::kubeconfig::{self, Auth, Config};
use crate::config::probe::k8s::K8sSpec;
use crate::core::outcome::Outcome;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
    pub(super) client: Arc<Api>,
    pub(super) url: String,
}

impl Conn {
    /// The outcome for a failed request about `what` (`node x`, `deployment a/b`).
    /// Its detail is the whole error chain.
    pub(super) fn fail(&self, what: &str, e: Error) -> Outcome {
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
        let config = load_config(
            path.as_deref(),
            self.implicit_kubeconfig(),
            spec.context.as_deref(),
        )
        .map_err(Outcome::error)?;
        let url = config.url.clone();
        let client = Api::build(config, self.connect_timeout, self.io_timeout)
            .await
            .map_err(|e| Outcome::error(format!("cannot build a client for {url}: {e}")))?;
        let client = Arc::new(client);
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

/// The configuration for an explicit kubeconfig `path`, else the implicit one (`implicit`:
/// `$KUBECONFIG`'s first path or `~/.kube/config`) when it exists, else in-cluster.
fn load_config(
    path: Option<&Path>,
    implicit: Option<PathBuf>,
    context: Option<&str>,
) -> Result<Config, String> {
    let from = |p: &Path| {
        kubeconfig::from_file(p, context).map_err(|e| format!("kubeconfig {}: {e}", p.display()))
    };
    if let Some(p) = path {
        return from(p);
    }
    match implicit {
        Some(p) if p.exists() => from(&p),
        Some(p) if context.is_some() => Err(format!(
            "kubeconfig: {} does not exist (context \"{}\" needs a kubeconfig)",
            p.display(),
            context.unwrap_or_default()
        )),
        None if context.is_some() => Err(
            "kubeconfig: neither $KUBECONFIG nor $HOME is set (a context needs a kubeconfig)"
                .to_string(),
        ),
        _ => kubeconfig::in_cluster(Path::new(SERVICE_ACCOUNT_DIR)).map_err(|e| {
            format!(
                "no Kubernetes credentials: no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a pod: {e}"
            )
        }),
    }
}

/// Most bytes read from one answer (a list of thousands of pods fits).
const MAX_ANSWER: usize = 64 << 20;

/// A client for one API server with one set of credentials.
pub(super) struct Api {
    http: reqwest::Client,
    base: reqwest::Url,
    auth: Auth,
    /// The exec plugin's current credential ([`Auth::Exec`] only).
    exec: tokio::sync::Mutex<Option<exec::Credential>>,
    io_timeout: Duration,
    /// The context's (or the pod's) namespace.
    namespace: String,
}

impl Api {
    /// Build the client (running an exec plugin first, for its token or certificate).
    async fn build(c: Config, connect: Duration, io: Duration) -> Result<Api, String> {
        let base = reqwest::Url::parse(&c.url).map_err(|e| format!("invalid server URL: {e}"))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err("invalid server URL: not http:// or https://".to_string());
        }
        let mut cred = None;
        let mut identity = c.identity_pem.clone();
        if let Auth::Exec(e) = &c.auth {
            let got = exec::run(e, io)
                .await
                .map_err(|e| format!("auth error: {e}"))?;
            if got.identity_pem.is_some() {
                identity = got.identity_pem.clone();
            }
            cred = Some(got);
        }
        let mut b = crate::net::client()
            .connect_timeout(connect)
            .read_timeout(io)
            .no_proxy();
        if let Some(pem) = &c.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("certificate-authority: {}", chain(&e)))?;
            if certs.is_empty() {
                return Err("certificate-authority: no PEM certificate in it".to_string());
            }
            b = b.tls_certs_only(certs);
        }
        if c.insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        if let Some(pem) = &identity {
            let id = reqwest::Identity::from_pem(pem)
                .map_err(|e| format!("client certificate: {}", chain(&e)))?;
            b = b.identity(id);
        }
        let http = b.build().map_err(|e| chain(&e))?;
        Ok(Api {
            http,
            base,
            auth: c.auth,
            exec: tokio::sync::Mutex::new(cred),
            io_timeout: io,
            namespace: c.namespace,
        })
    }

    /// The namespace a namespaced check without `namespace` uses.
    pub(super) fn default_namespace(&self) -> &str {
        &self.namespace
    }

    /// `GET` the path made of `segments` (each percent-encoded) with `query`.
    pub(super) async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<serde_json::Value, Error> {
        self.send(reqwest::Method::GET, segments, query, None).await
    }

    /// `POST` `body` as JSON to the path made of `segments`.
    pub(super) async fn post<B: Serialize>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<serde_json::Value, Error> {
        let body = serde_json::to_vec(body).map_err(|e| Error::Decode(e.to_string()))?;
        self.send(reqwest::Method::POST, segments, &[], Some(body))
            .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<serde_json::Value, Error> {
        let mut url = self.base.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut req = self
            .http
            .request(method, url)
            .header("accept", "application/json");
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        req = match &self.auth {
            Auth::None => req,
            Auth::Token(t) => req.bearer_auth(&t.0),
            Auth::Basic(u, p) => req.basic_auth(u, Some(&p.0)),
            Auth::TokenFile(f) => {
                let t = std::fs::read_to_string(f)
                    .map_err(|e| Error::Auth(format!("token file {}: {e}", f.display())))?;
                req.bearer_auth(t.trim())
            }
            Auth::Exec(e) => match self.exec_token(e).await? {
                Some(t) => req.bearer_auth(t),
                None => req,
            },
        };
        let mut resp = req.send().await.map_err(Error::Http)?;
        let code = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(Error::Http)? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(Error::Decode(format!(
                    "the answer is larger than {} MiB",
                    MAX_ANSWER >> 20
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !code.is_success() {
            let mut s = match serde_json::from_slice::<super::api::Status>(&bytes) {
                Ok(s) => s,
                Err(_) => super::api::Status {
                    message: super::text::clip(&String::from_utf8_lossy(&bytes), 240),
                    ..Default::default()
                },
            };
            s.code = code.as_u16();
            if s.reason.is_empty() {
                s.reason = code.canonical_reason().unwrap_or("").replace(' ', "");
            }
            return Err(Error::Api(s));
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// The exec plugin's token, fetched again once it expired (10 s early).
    async fn exec_token(&self, e: &kubeconfig::Exec) -> Result<Option<String>, Error> {
        let mut cur = self.exec.lock().await;
        let now = crate::clock::wall_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let fresh = cur
            .as_ref()
            .is_some_and(|c| c.expires.is_none_or(|x| now + 10 < x));
        if !fresh {
            *cur = Some(exec::run(e, self.io_timeout).await.map_err(Error::Auth)?);
        }
        Ok(cur.as_ref().and_then(|c| c.token.clone()))
    }
}

/// The answer as `T`, or an error saying why it is not one.
pub(super) fn typed<T: DeserializeOwned>(v: &serde_json::Value) -> Result<T, Error> {
    T::deserialize(v).map_err(|e| Error::Decode(e.to_string()))
}

/// A list answer's items, each as `T` and as the server wrote it (for a failure's detail).
pub(super) fn items<T: DeserializeOwned>(
    v: &serde_json::Value,
) -> Result<(Vec<T>, Vec<serde_json::Value>), Error> {
    let raw = typed::<super::api::List<serde_json::Value>>(v)?.items;
    let objects = raw.iter().map(typed).collect::<Result<Vec<T>, Error>>()?;
    Ok((objects, raw))
}
