//! A small Kubernetes API server for tests: HTTPS with a self-signed CA (rcgen), bearer-token
//! auth, canned API objects per `METHOD /path`, real `Status` bodies for errors, every
//! request recorded, and a switch that makes it hang. Listens on 127.0.0.1 port 0 only.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    token: Option<String>,
    routes: HashMap<String, (u16, Value)>,
    hang: bool,
    requests: Vec<Recorded>,
}

/// A running fake API server; stops when dropped.
pub struct FakeApi {
    pub url: String,
    /// PEM file of the CA that signed the server certificate.
    pub ca_path: PathBuf,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A CA and a server certificate for 127.0.0.1, written to `dir`.
pub struct Pki {
    pub ca_path: PathBuf,
    dir: PathBuf,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: Vec<u8>,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let ca_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_path, ca.pem()).unwrap();
        Pki {
            ca_path,
            dir: dir.to_path_buf(),
            ca,
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    /// A client certificate for `user` signed by this CA: (certificate PEM path, key PEM path).
    pub fn client_cert(&self, user: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, user.to_string());
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (cp, kp) = (
            self.dir.join(format!("{user}.crt")),
            self.dir.join(format!("{user}.key")),
        );
        std::fs::write(&cp, cert.pem()).unwrap();
        std::fs::write(&kp, key.serialize_pem()).unwrap();
        (cp, kp)
    }
}

struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that rejects our certificate ends the handshake; wait for the next one.
            if let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(tcp)).await
            {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl FakeApi {
    /// Start over HTTPS with certificates from `pki`; requests must carry `Bearer <token>`.
    pub async fn start(pki: &Pki, token: &str) -> FakeApi {
        Self::start_with(pki, Some(token), false).await
    }

    /// Start over HTTPS; `token`: required bearer token; `client_certs`: require a client
    /// certificate signed by `pki`'s CA (mutual TLS, as kubeadm's admin kubeconfig uses).
    pub async fn start_with(pki: &Pki, token: Option<&str>, client_certs: bool) -> FakeApi {
        talon::net::install_tls_provider();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(pki.key.clone());
        let builder = rustls::ServerConfig::builder();
        let builder = if client_certs {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(vec![pki.cert.clone()], key.into())
            .unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            token: token.map(str::to_string),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApi {
            url: format!("https://127.0.0.1:{port}"),
            ca_path: pki.ca_path.clone(),
            state,
            task,
        }
    }

    /// Answer `method path` (path without query) with `code` and `body`.
    pub fn route(&self, method: &str, path: &str, code: u16, body: Value) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(format!("{method} {path}"), (code, body));
    }

    /// Answer `GET path` with 200 and the object serialized as the API server would.
    pub fn object<T: serde::Serialize>(&self, path: &str, obj: &T) {
        self.route("GET", path, 200, serde_json::to_value(obj).unwrap());
    }

    /// Accept only `Bearer <token>` from now on (a rotated service account token; the old one
    /// is revoked).
    pub fn set_token(&self, token: &str) {
        self.state.lock().unwrap().token = Some(token.to_string());
    }

    /// Never answer any request from now on.
    pub fn hang(&self) {
        self.state.lock().unwrap().hang = true;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }
}

/// A `metav1.Status` failure body, as the API server sends it.
pub fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<State>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (hang, answer) = {
        let mut s = state.lock().unwrap();
        s.requests.push(Recorded {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().unwrap_or("").to_string(),
            authorization: authorization.clone(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        let authorized = match &s.token {
            Some(t) => authorization.as_deref() == Some(&format!("Bearer {t}")),
            None => true,
        };
        let answer = if !authorized {
            (401, status_body(401, "Unauthorized", "Unauthorized"))
        } else {
            match s.routes.get(&format!("{method} {}", uri.path())) {
                Some(r) => r.clone(),
                None => {
                    let name = uri.path().rsplit('/').next().unwrap_or("");
                    (
                        404,
                        status_body(404, "NotFound", &format!("\"{name}\" not found")),
                    )
                }
            }
        };
        (s.hang, answer)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    let (code, body) = answer;
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// One context in a generated kubeconfig.
pub struct Ctx<'a> {
    pub name: &'a str,
    pub server: &'a str,
    pub ca: Option<&'a Path>,
    pub token: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

/// Credentials other than a token, for [`write_kubeconfig_with`].
#[derive(Default)]
pub struct Creds<'a> {
    /// An exec credential plugin (client.authentication.k8s.io/v1).
    pub exec: Option<&'a Path>,
    /// Client certificate and key files.
    pub client_cert: Option<(&'a Path, &'a Path)>,
}

/// Write a kubeconfig with these contexts (the first is current) and return its path.
pub fn write_kubeconfig(path: &Path, contexts: &[Ctx<'_>]) -> PathBuf {
    write_kubeconfig_with(path, contexts, &Creds::default())
}

/// [`write_kubeconfig`], with `creds` added to every user.
pub fn write_kubeconfig_with(path: &Path, contexts: &[Ctx<'_>], creds: &Creds<'_>) -> PathBuf {
    let mut clusters = String::new();
    let mut ctxs = String::new();
    let mut users = String::new();
    for c in contexts {
        clusters.push_str(&format!(
            "- name: {n}\n  cluster:\n    server: {s}\n",
            n = c.name,
            s = c.server
        ));
        if let Some(ca) = c.ca {
            clusters.push_str(&format!("    certificate-authority: {}\n", ca.display()));
        }
        ctxs.push_str(&format!(
            "- name: {n}\n  context:\n    cluster: {n}\n    user: {n}\n",
            n = c.name
        ));
        if let Some(ns) = c.namespace {
            ctxs.push_str(&format!("    namespace: {ns}\n"));
        }
        let mut user = String::new();
        if let Some(t) = c.token {
            user.push_str(&format!("    token: {t}\n"));
        }
        if let Some(cmd) = creds.exec {
            user.push_str(&format!(
                "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n",
                cmd.display()
            ));
        }
        if let Some((cert, key)) = creds.client_cert {
            user.push_str(&format!(
                "    client-certificate: {}\n    client-key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if user.is_empty() {
            users.push_str(&format!("- name: {n}\n  user: {{}}\n", n = c.name));
        } else {
            users.push_str(&format!("- name: {n}\n  user:\n{user}", n = c.name));
        }
    }
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{clusters}contexts:\n{ctxs}users:\n{users}current-context: {}\n",
        contexts[0].name
    );
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}
