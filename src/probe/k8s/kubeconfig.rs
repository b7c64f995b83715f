//! Where a client's server and credentials come from: a kubeconfig file (the parts Talon
//! supports, below), or in-cluster (a pod's service account). Reads files only; running an
//! exec credential plugin is the client's job ([`Auth::Exec`]). Imports nothing else from the
//! folder.
//!
//! Supported kubeconfig keys: `current-context`; contexts' `cluster`, `user`, `namespace`;
//! clusters' `server`, `certificate-authority`, `certificate-authority-data`,
//! `insecure-skip-tls-verify`; users' `token`, `tokenFile`, `username`/`password`,
//! `client-certificate(-data)`, `client-key(-data)` and `exec` (`command`, `args`, `env`,
//! `apiVersion` client.authentication.k8s.io/v1 or v1beta1). Relative file paths are relative
//! to the kubeconfig's directory, as kubectl reads them. Anything else is ignored, except an
//! `auth-provider` (gone from kubectl since 1.26), which is an error saying so.

use base64::Engine as _;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where a pod's service account credentials are mounted (client-go reads them here).
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Everything needed to build a client. Debug shows no key material.
#[derive(Clone)]
pub(super) struct Config {
    /// `https://host:port` (no trailing slash; may carry a path prefix).
    pub url: String,
    /// PEM bundle to trust instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    /// Client certificate and key, PEM (mutual TLS).
    pub identity_pem: Option<Vec<u8>>,
    pub auth: Auth,
    /// The namespace of the context (or the pod), else `default`.
    pub namespace: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("insecure", &self.insecure)
            .field(
                "identity_pem",
                &self.identity_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("auth", &self.auth)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// How requests authenticate beyond a client certificate.
#[derive(Debug, Clone)]
pub(super) enum Auth {
    None,
    /// A fixed bearer token. Debug never shows it.
    Token(Secret),
    /// A token file, re-read for every request (rotated tokens are picked up).
    TokenFile(PathBuf),
    Basic(String, Secret),
    Exec(Box<Exec>),
}

/// A string that never prints.
#[derive(Clone)]
pub(super) struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An exec credential plugin, as the kubeconfig names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Exec {
    #[serde(default)]
    pub api_version: Option<String>,
    pub command: String,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<EnvVar>>,
}

/// One `env` entry of an exec plugin; Debug shows the name only (values may be secrets).
#[derive(Clone, Deserialize)]
pub(super) struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

impl std::fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}=<redacted>", self.name)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    clusters: Option<Vec<NamedCluster>>,
    #[serde(default)]
    contexts: Option<Vec<NamedContext>>,
    #[serde(default)]
    users: Option<Vec<NamedUser>>,
    #[serde(default)]
    current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedCluster {
    name: String,
    #[serde(default)]
    cluster: Option<Cluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    certificate_authority: Option<String>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    #[serde(default)]
    context: Option<Context>,
}

#[derive(Debug, Default, Deserialize)]
struct Context {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: Option<User>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    client_certificate: Option<String>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    exec: Option<Exec>,
    #[serde(default)]
    auth_provider: Option<serde::de::IgnoredAny>,
}

/// Read `path` and build the configuration of `context` (else its current context).
/// Errors name what is wrong, not the file (the caller adds it).
pub(super) fn from_file(path: &Path, context: Option<&str>) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let kc: Kubeconfig = if text.trim().is_empty() {
        Kubeconfig::default()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| format!("not a kubeconfig: {e}"))?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    from_kubeconfig(kc, context, base)
}

fn from_kubeconfig(kc: Kubeconfig, context: Option<&str>, base: &Path) -> Result<Config, String> {
    let name = match context.map(str::to_string).or(kc.current_context) {
        Some(n) if !n.is_empty() => n,
        _ => return Err("no context given and no current-context set".to_string()),
    };
    let ctx = kc
        .contexts
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("context \"{name}\" not found"))?
        .context
        .unwrap_or_default();
    let cluster = kc
        .clusters
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == ctx.cluster)
        .ok_or_else(|| {
            format!(
                "cluster \"{}\" (of context \"{name}\") not found",
                ctx.cluster
            )
        })?
        .cluster
        .unwrap_or_default();
    let user = match &ctx.user {
        Some(u) if !u.is_empty() => kc
            .users
            .unwrap_or_default()
            .into_iter()
            .find(|x| &x.name == u)
            .ok_or_else(|| format!("user \"{u}\" (of context \"{name}\") not found"))?
            .user
            .unwrap_or_default(),
        _ => User::default(),
    };
    let url = cluster
        .server
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("cluster \"{}\" has no server", ctx.cluster))?
        .trim()
        .trim_end_matches('/')
        .to_string();
    let ca_pem = data_or_file(
        cluster.certificate_authority_data.as_deref(),
        cluster.certificate_authority.as_deref(),
        base,
        "certificate-authority",
    )?;
    let cert = data_or_file(
        user.client_certificate_data.as_deref(),
        user.client_certificate.as_deref(),
        base,
        "client-certificate",
    )?;
    let key = data_or_file(
        user.client_key_data.as_deref(),
        user.client_key.as_deref(),
        base,
        "client-key",
    )?;
    let identity_pem = match (cert, key) {
        (Some(mut c), Some(k)) => {
            c.push(b'\n');
            c.extend_from_slice(&k);
            Some(c)
        }
        (None, None) => None,
        (Some(_), None) => return Err("client-certificate without client-key".to_string()),
        (None, Some(_)) => return Err("client-key without client-certificate".to_string()),
    };
    if user.auth_provider.is_some() {
        return Err(
            "user auth-provider is not supported (kubectl dropped it too): use an exec credential plugin"
                .to_string(),
        );
    }
    let auth = if let Some(t) = user.token.filter(|t| !t.is_empty()) {
        Auth::Token(Secret(t))
    } else if let Some(f) = user.token_file.filter(|f| !f.is_empty()) {
        Auth::TokenFile(resolve(&f, base))
    } else if let Some(mut e) = user.exec {
        if e.command.contains('/') {
            e.command = resolve(&e.command, base).to_string_lossy().into_owned();
        }
        Auth::Exec(Box::new(e))
    } else if let Some(u) = user.username.filter(|u| !u.is_empty()) {
        Auth::Basic(u, Secret(user.password.unwrap_or_default()))
    } else {
        Auth::None
    };
    Ok(Config {
        url,
        ca_pem,
        insecure: cluster.insecure_skip_tls_verify.unwrap_or(false),
        identity_pem,
        auth,
        namespace: ctx
            .namespace
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string()),
    })
}

/// A path from the kubeconfig, relative to its directory.
fn resolve(p: &str, base: &Path) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Inline base64 data (preferred, as kubectl does) or the contents of a file.
fn data_or_file(
    data: Option<&str>,
    file: Option<&str>,
    base: &Path,
    key: &str,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(d) = data.filter(|d| !d.trim().is_empty()) {
        let compact: String = d.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map(Some)
            .map_err(|e| format!("{key}-data is not base64: {e}"));
    }
    match file.filter(|f| !f.is_empty()) {
        None => Ok(None),
        Some(f) => {
            let p = resolve(f, base);
            std::fs::read(&p)
                .map(Some)
                .map_err(|e| format!("{key} {}: {e}", p.display()))
        }
    }
}

/// In a pod: the API server from `KUBERNETES_SERVICE_HOST`/`PORT`, the service account's CA
/// bundle, token file and namespace under `sa`.
pub(super) fn in_cluster(sa: &Path) -> Result<Config, String> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .ok_or("KUBERNETES_SERVICE_HOST is not set")?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT")
        .ok()
        .filter(|p| !p.is_empty())
        .ok_or("KUBERNETES_SERVICE_PORT is not set")?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let ca = sa.join("ca.crt");
    let ca_pem = std::fs::read(&ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let token = sa.join("token");
    std::fs::metadata(&token).map_err(|e| format!("{}: {e}", token.display()))?;
    let namespace = std::fs::read_to_string(sa.join("namespace"))
        .ok()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    Ok(Config {
        url: format!("https://{host}:{port}"),
        ca_pem: Some(ca_pem),
        insecure: false,
        identity_pem: None,
        auth: Auth::TokenFile(token),
        namespace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, context: Option<&str>) -> Result<Config, String> {
        let kc: Kubeconfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        from_kubeconfig(kc, context, Path::new("/etc/kube"))
    }

    const KC: &str = "apiVersion: v1
kind: Config
preferences: {}
clusters:
- name: a
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: aGVsbG8=
    extensions: []
- name: b
  cluster:
    server: http://127.0.0.1:8080
    insecure-skip-tls-verify: true
contexts:
- name: a
  context: {cluster: a, user: a, namespace: apps}
- name: b
  context: {cluster: b, user: b}
users:
- name: a
  user:
    tokenFile: token
- name: b
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: ./bin/login
      args: [get-token]
      env: [{name: X, value: y}]
current-context: a
";

    #[test]
    fn a_kubeconfig_yields_server_trust_credentials_and_namespace() {
        let c = parse(KC, None).unwrap();
        assert_eq!(c.url, "https://10.0.0.1:6443");
        assert_eq!(c.ca_pem.as_deref(), Some(&b"hello"[..]));
        assert_eq!(c.namespace, "apps");
        assert!(matches!(&c.auth, Auth::TokenFile(p) if p == Path::new("/etc/kube/token")));

        let c = parse(KC, Some("b")).unwrap();
        assert!(c.insecure);
        assert_eq!(c.namespace, "default");
        let Auth::Exec(e) = &c.auth else {
            panic!("{:?}", c.auth)
        };
        assert_eq!(e.command, "/etc/kube/./bin/login");
        assert_eq!(e.args.as_deref(), Some(&["get-token".to_string()][..]));
        assert_eq!(e.env.as_ref().unwrap()[0].value, "y");
    }

    #[test]
    fn missing_pieces_are_named() {
        assert_eq!(
            parse(KC, Some("nope")).unwrap_err(),
            "context \"nope\" not found"
        );
        let e = parse(
            "contexts: [{name: x, context: {cluster: gone}}]\ncurrent-context: x",
            None,
        )
        .unwrap_err();
        assert_eq!(e, "cluster \"gone\" (of context \"x\") not found");
        let e = parse("clusters: []", None).unwrap_err();
        assert!(e.contains("no current-context"), "{e}");
        let e = parse(
            "clusters: [{name: x, cluster: {server: 'https://h'}}]\ncontexts: [{name: x, context: {cluster: x, user: x}}]\nusers: [{name: x, user: {auth-provider: {name: gcp}}}]\ncurrent-context: x",
            None,
        )
        .unwrap_err();
        assert!(e.contains("auth-provider is not supported"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Any file is a configuration or an error, never a panic (YAML-ish text and raw bytes).
        #[test]
        fn any_text_is_a_config_or_an_error(
            s in "(clusters|contexts|users|current-context|name|server|user|cluster|: |- |\\{|\\}|\\[|\\]|\n|  |&a|\\*a|x|'|\")*",
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let _ = parse(&s, None);
            let _ = parse(&String::from_utf8_lossy(&raw), Some("x"));
        }
    }
}
