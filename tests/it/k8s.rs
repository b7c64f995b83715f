//! `k8s` probes against API servers on loopback: an in-suite fake (HTTPS, bearer tokens, real
//! `Status` errors, hangs) for every check and failure class, and the kmock emulator (PyPI) for
//! happy paths. Every check kind has a passing and a failing case, asserted on status and output.

mod fake_apiserver;
mod incluster;
mod kmock;

use fake_apiserver::{
    Creds, Ctx, FakeApi, Pki, status_body, write_kubeconfig, write_kubeconfig_with,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use talon::config::probe::k8s::K8sSpec;
use talon::core::Status;
use talon::probe::k8s::K8sCtx;
use talon::probe::k8s::api::{
    AccessReviewAnswer, ContainerState, ContainerStateWaiting, ContainerStatus, DaemonSet,
    DaemonSetStatus, Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, Node,
    NodeCondition, NodeSpec, NodeStatus, ObjectMeta, Pod, PodCondition, PodStatus, StatefulSet,
    StatefulSetSpec, StatefulSetStatus, SubjectAccessReviewStatus, Taint, Time,
};

const TOKEN: &str = "s3cr3t-token";

/// A fake API server over HTTPS and a kubeconfig that trusts its CA and carries the token.
struct Env {
    api: FakeApi,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path(), "cluster");
        let api = FakeApi::start(&pki, TOKEN).await;
        let kubeconfig = write_kubeconfig(
            &dir.path().join("kubeconfig"),
            &[Ctx {
                name: "colima",
                server: &api.url,
                ca: Some(&pki.ca_path),
                token: Some(TOKEN),
                namespace: None,
            }],
        );
        Env {
            api,
            kubeconfig,
            dir,
        }
    }

    /// Run the probe described by `toml` (its `kubeconfig` pointed at this env).
    async fn check(&self, toml: &str) -> talon::core::Outcome {
        check_with(&self.kubeconfig, toml, Duration::from_secs(10)).await
    }
}

fn spec(kubeconfig: &Path, toml_text: &str) -> K8sSpec {
    let text = format!(
        "kubeconfig = {:?}\n{toml_text}",
        kubeconfig.display().to_string()
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("bad spec {text}: {e}"))
}

async fn check_with(kubeconfig: &Path, toml_text: &str, timeout: Duration) -> talon::core::Outcome {
    spec(kubeconfig, toml_text).check(&ctx(), timeout).await
}

/// The instant every test object's age is measured from, so ages in outputs are exact.
fn base() -> SystemTime {
    static BASE: std::sync::OnceLock<SystemTime> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        UNIX_EPOCH + Duration::from_secs(s)
    })
}

fn ctx() -> K8sCtx {
    K8sCtx::with_home(None).at(base())
}

fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        generation: ns.map(|_| 2),
        ..Default::default()
    }
}

fn ago(secs: u64) -> Time {
    let now = base().duration_since(UNIX_EPOCH).unwrap().as_secs();
    Time(jiff::Timestamp::from_second((now - secs) as i64).unwrap())
}

fn node(name: &str, ready: &str, reason: &str, message: &str, since_secs: u64) -> Node {
    Node {
        metadata: meta(name, None),
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            conditions: Some(vec![
                NodeCondition {
                    type_: "MemoryPressure".into(),
                    status: "False".into(),
                    ..Default::default()
                },
                NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    last_transition_time: Some(ago(since_secs)),
                },
            ]),
        }),
    }
}

fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.map(Into::into),
        effect: effect.into(),
    }
}

fn list<T: serde::Serialize>(kind: &str, items: &[T]) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

// ---- api, auth, transport ------------------------------------------------------------------

#[tokio::test]
async fn api_passes_over_https_with_bearer_token_and_reports_version_and_latency() {
    let env = Env::new().await;
    env.api.route(
        "GET",
        "/version",
        200,
        json!({"major": "1", "minor": "33", "gitVersion": "v1.33.1+k3s1", "gitCommit": "x",
               "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
               "compiler": "gc", "platform": "linux/arm64"}),
    );
    let o = env.check(r#"check = "api""#).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    let prefix = format!("API {} answered v1.33.1+k3s1 in ", env.api.url);
    assert!(
        o.output.starts_with(&prefix) && o.output.ends_with(" ms"),
        "{}",
        o.output
    );
    let reqs = env.api.requests();
    assert_eq!(
        reqs[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[tokio::test]
async fn api_with_a_rejected_token_is_unauthorized() {
    let env = Env::new().await;
    let kc = write_kubeconfig(
        &env.dir.path().join("wrong-token"),
        &[Ctx {
            name: "colima",
            server: &env.api.url,
            ca: Some(&env.api.ca_path),
            token: Some("wrong"),
            namespace: None,
        }],
    );
    let o = check_with(&kc, r#"check = "api""#, Duration::from_secs(10)).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        format!(
            "unauthorized (401) by {}: the credentials were rejected: Unauthorized",
            env.api.url
        )
    );
}

#[tokio::test]
async fn a_server_certificate_from_an_unknown_ca_is_a_tls_failure() {
    let env = Env::new().await;
    let other = Pki::new(env.dir.path(), "other");
    let kc = write_kubeconfig(
        &env.dir.path().join("other-ca"),
        &[Ctx {
            name: "colima",
            server: &env.api.url,
            ca: Some(&other.ca_path),
            token: Some(TOKEN),
            namespace: None,
        }],
    );
    let o = check_with(&kc, r#"check = "api""#, Duration::from_secs(10)).await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert!(
        o.output
            .starts_with(&format!("TLS failure talking to {}: ", env.api.url))
            && o.output.contains("UnknownIssuer"),
        "{}",
        o.output
    );
    assert!(
        env.api.requests().is_empty(),
        "no request may pass an untrusted TLS session"
    );
}

fn version_body() -> serde_json::Value {
    json!({"major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "x",
           "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
           "compiler": "gc", "platform": "linux/arm64"})
}

#[tokio::test]
async fn client_certificates_authenticate_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "kubeadm");
    let api = FakeApi::start_with(&pki, None, true).await;
    api.route("GET", "/version", 200, version_body());
    let (cert, key) = pki.client_cert("kubernetes-admin");
    let ctx = |name| Ctx {
        name,
        server: &api.url,
        ca: Some(&pki.ca_path),
        token: None,
        namespace: None,
    };
    let with_cert = write_kubeconfig_with(
        &dir.path().join("admin.conf"),
        &[ctx("admin")],
        &Creds {
            client_cert: Some((&cert, &key)),
            ..Default::default()
        },
    );
    let o = check_with(&with_cert, r#"check = "api""#, Duration::from_secs(10)).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert!(
        o.output
            .starts_with(&format!("API {} answered v1.33.1 in ", api.url))
    );

    // Without a client certificate the server ends the handshake.
    let without = write_kubeconfig(&dir.path().join("anon.conf"), &[ctx("anon")]);
    let o = check_with(&without, r#"check = "api""#, Duration::from_secs(10)).await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert!(
        o.output
            .starts_with(&format!("TLS failure talking to {}: ", api.url))
            || o.output.starts_with(&format!("unreachable: {}: ", api.url)),
        "{}",
        o.output
    );
    assert_eq!(
        api.requests().len(),
        1,
        "only the authenticated request got through"
    );
}

#[tokio::test]
async fn an_exec_credential_plugin_supplies_the_token() {
    let env = Env::new().await;
    env.api.route("GET", "/version", 200, version_body());
    let plugin = env.dir.path().join("cred-plugin");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\nprintf '%s' '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{TOKEN}\"}}}}'\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let kc = write_kubeconfig_with(
        &env.dir.path().join("exec.conf"),
        &[Ctx {
            name: "exec",
            server: &env.api.url,
            ca: Some(&env.api.ca_path),
            token: None,
            namespace: None,
        }],
        &Creds {
            exec: Some(&plugin),
            ..Default::default()
        },
    );
    let o = check_with(&kc, r#"check = "api""#, Duration::from_secs(10)).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    let reqs = env.api.requests();
    assert_eq!(
        reqs.last().unwrap().authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    // A plugin that fails is a credentials error, not a cluster failure.
    std::fs::write(
        &plugin,
        "#!/bin/sh\necho 'token expired, run login' >&2\nexit 1\n",
    )
    .unwrap();
    let o = check_with(&kc, r#"check = "api""#, Duration::from_secs(10)).await;
    assert_eq!(o.status, Status::Error, "{o:?}");
    assert_eq!(
        o.output,
        format!(
            "cannot build a client for {}: auth error: exec credential plugin failed (exit status: 1): token expired, run login",
            env.api.url
        )
    );
}

/// A kubeconfig written by hand, for the keys `write_kubeconfig` does not produce.
fn write_raw_kubeconfig(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn inline_certificates_token_files_and_skipped_verification() {
    let env = Env::new().await;
    env.api.route("GET", "/version", 200, version_body());
    let ca = std::fs::read(&env.api.ca_path).unwrap();
    // A token file next to the kubeconfig, named by a relative path.
    std::fs::write(env.dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let kc = write_raw_kubeconfig(
        env.dir.path(),
        "inline.conf",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n- name: skip\n  cluster:\n    server: {url}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\n- name: skip\n  context: {{cluster: skip, user: u}}\nusers:\n- name: u\n  user:\n    tokenFile: token\ncurrent-context: c\n",
            url = env.api.url,
            ca = b64(&ca)
        ),
    );
    let ctx = ctx();
    let s = spec(&kc, r#"check = "api""#);
    let o = s.check(&ctx, Duration::from_secs(10)).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(
        env.api.requests().pop().unwrap().authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    // The token file is read for every request: a rotated token is used by the cached client.
    std::fs::write(env.dir.path().join("token"), "rotated").unwrap();
    let o = s.check(&ctx, Duration::from_secs(10)).await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert_eq!(
        env.api.requests().pop().unwrap().authorization.as_deref(),
        Some("Bearer rotated")
    );
    assert_eq!(ctx.cached_clients(), 1);
    std::fs::write(env.dir.path().join("token"), TOKEN).unwrap();
    // No CA at all, verification skipped as the kubeconfig asks.
    let o = check_with(
        &kc,
        "check = \"api\"\ncontext = \"skip\"",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    // Inline client certificate and key over mutual TLS.
    let pki = Pki::new(env.dir.path(), "mtls");
    let api = FakeApi::start_with(&pki, None, true).await;
    api.route("GET", "/version", 200, version_body());
    let (cert, key) = pki.client_cert("admin");
    let kc = write_raw_kubeconfig(
        env.dir.path(),
        "mtls.conf",
        &format!(
            "clusters:\n- name: c\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncurrent-context: c\n",
            url = api.url,
            ca = b64(&std::fs::read(&pki.ca_path).unwrap()),
            cert = b64(&std::fs::read(&cert).unwrap()),
            key = b64(&std::fs::read(&key).unwrap()),
        ),
    );
    let o = check_with(&kc, r#"check = "api""#, Duration::from_secs(10)).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(api.requests().len(), 1);
}

#[tokio::test]
async fn an_exec_plugin_gets_its_args_env_and_api_version_and_runs_again_when_its_token_expires() {
    let env = Env::new().await;
    env.api.route("GET", "/version", 200, version_body());
    let plugin = env.dir.path().join("login");
    let runs = env.dir.path().join("runs");
    // The token is built from an argument and an environment variable of the kubeconfig; the
    // expiry comes from the file `expiry`; each run appends KUBERNETES_EXEC_INFO to `runs`.
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\necho \"$KUBERNETES_EXEC_INFO\" >> {runs}\nprintf '{{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"%s-%s\",\"expirationTimestamp\":\"%s\"}}}}' \"$PREFIX\" \"$1\" \"$(cat {expiry})\"\n",
            runs = runs.display(),
            expiry = env.dir.path().join("expiry").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (prefix, arg) = TOKEN.split_once('-').unwrap();
    let kc = write_raw_kubeconfig(
        env.dir.path(),
        "exec.conf",
        &format!(
            "clusters:\n- name: c\n  cluster:\n    server: {url}\n    certificate-authority: {ca}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: ./login\n      args: [\"{arg}\"]\n      env:\n      - name: PREFIX\n        value: \"{prefix}\"\ncurrent-context: c\n",
            url = env.api.url,
            ca = env.api.ca_path.display(),
        ),
    );
    let ran = || std::fs::read_to_string(&runs).unwrap_or_default();
    // Valid for a long time: one run serves every check of the cached client.
    std::fs::write(env.dir.path().join("expiry"), "2999-01-01T00:00:00Z").unwrap();
    let ctx = ctx();
    let s = spec(&kc, r#"check = "api""#);
    for _ in 0..2 {
        let o = s.check(&ctx, Duration::from_secs(10)).await;
        assert_eq!(o.status, Status::Pass, "{o:?}");
    }
    assert_eq!(ran().lines().count(), 1, "{}", ran());
    let info: serde_json::Value = serde_json::from_str(ran().lines().next().unwrap()).unwrap();
    assert_eq!(
        info["apiVersion"], "client.authentication.k8s.io/v1beta1",
        "{info}"
    );
    assert_eq!(info["kind"], "ExecCredential");
    assert_eq!(
        env.api.requests().pop().unwrap().authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    // An expired token is fetched again before the request that would use it.
    std::fs::write(&runs, "").unwrap();
    std::fs::write(env.dir.path().join("expiry"), "2001-01-01T00:00:00Z").unwrap();
    let ctx = self::ctx();
    for _ in 0..2 {
        let o = s.check(&ctx, Duration::from_secs(10)).await;
        assert_eq!(o.status, Status::Pass, "{o:?}");
    }
    assert_eq!(
        ran().lines().count(),
        3,
        "one run to build the client, then one per request: {}",
        ran()
    );
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let kc = write_kubeconfig(
        &dir.path().join("kc"),
        &[Ctx {
            name: "down",
            server: &url,
            ca: None,
            token: None,
            namespace: None,
        }],
    );
    let o = check_with(&kc, r#"check = "node_ready""#, Duration::from_secs(10)).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        format!("unreachable: {url} refused the connection")
    );
}

#[tokio::test]
async fn a_hung_server_hits_the_probe_timeout() {
    let env = Env::new().await;
    env.api.hang();
    let started = std::time::Instant::now();
    let o = check_with(
        &env.kubeconfig,
        r#"check = "node_ready""#,
        Duration::from_millis(700),
    )
    .await;
    assert_eq!(o.status, Status::Timeout, "{o:?}");
    assert_eq!(
        o.output,
        format!("timeout: {} did not answer within 700 ms", env.api.url)
    );
    // Bounded by the probe timeout, not by the client's own (much longer) read timeout.
    assert!(started.elapsed() < Duration::from_secs(9));
}

#[tokio::test]
async fn a_missing_kubeconfig_is_an_error_naming_the_file() {
    let o = check_with(
        Path::new("/nonexistent/talon-kubeconfig"),
        r#"check = "api""#,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(o.status, Status::Error);
    assert!(
        o.output
            .starts_with("kubeconfig /nonexistent/talon-kubeconfig: "),
        "{}",
        o.output
    );
}

#[tokio::test]
async fn forbidden_is_reported_with_the_servers_message() {
    let env = Env::new().await;
    let msg = "nodes is forbidden: User \"system:serviceaccount:talon:talon\" cannot list resource \"nodes\" in API group \"\" at the cluster scope";
    env.api.route(
        "GET",
        "/api/v1/nodes",
        403,
        status_body(403, "Forbidden", msg),
    );
    let o = env.check(r#"check = "node_ready""#).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(o.output, format!("forbidden (403) reading nodes: {msg}"));
    assert!(o.detail.contains("403"), "the whole error: {}", o.detail);
}

#[tokio::test]
async fn context_selection_picks_the_cluster_and_credentials() {
    let env = Env::new().await;
    env.api.object(
        "/api/v1/nodes/colima",
        &node("colima", "True", "KubeletReady", "ok", 60),
    );
    // The current context has a stale token; the named context has the right one.
    let kc = write_kubeconfig(
        &env.dir.path().join("two-contexts"),
        &[
            Ctx {
                name: "stale",
                server: &env.api.url,
                ca: Some(&env.api.ca_path),
                token: Some("old"),
                namespace: None,
            },
            Ctx {
                name: "colima",
                server: &env.api.url,
                ca: Some(&env.api.ca_path),
                token: Some(TOKEN),
                namespace: None,
            },
        ],
    );
    let current = check_with(
        &kc,
        "check = \"node_ready\"\nnode = \"colima\"",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(current.status, Status::Fail);
    assert!(
        current.output.starts_with("unauthorized (401)"),
        "{}",
        current.output
    );
    let named = check_with(
        &kc,
        "check = \"node_ready\"\nnode = \"colima\"\ncontext = \"colima\"",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(named.status, Status::Pass, "{named:?}");
    assert_eq!(named.output, "node colima Ready for 1m");
    let missing = check_with(
        &kc,
        "check = \"api\"\ncontext = \"nope\"",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(missing.status, Status::Error);
    assert!(missing.output.contains("nope"), "{}", missing.output);
}

#[tokio::test]
async fn one_client_per_kubeconfig_and_context_is_reused_and_rebuilt_when_the_file_changes() {
    let env = Env::new().await;
    env.api.object(
        "/api/v1/nodes/colima",
        &node("colima", "True", "KubeletReady", "ok", 60),
    );
    let ctx = ctx();
    let s = spec(&env.kubeconfig, "check = \"node_ready\"\nnode = \"colima\"");
    for _ in 0..3 {
        assert_eq!(
            s.check(&ctx, Duration::from_secs(10)).await.status,
            Status::Pass
        );
    }
    let api = spec(&env.kubeconfig, "check = \"api\"");
    let _ = api.check(&ctx, Duration::from_secs(10)).await;
    assert_eq!(
        ctx.cached_clients(),
        1,
        "same kubeconfig + context share one client"
    );

    // The VM restarted and its kubeconfig now carries another token: the next check uses it.
    write_kubeconfig(
        &env.kubeconfig,
        &[Ctx {
            name: "colima",
            server: &env.api.url,
            ca: Some(&env.api.ca_path),
            token: Some("rotated"),
            namespace: None,
        }],
    );
    let later = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&env.kubeconfig)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let o = s.check(&ctx, Duration::from_secs(10)).await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    let last = env.api.requests().pop().unwrap();
    assert_eq!(last.authorization.as_deref(), Some("Bearer rotated"));
    assert_eq!(ctx.cached_clients(), 1);
}

// ---- nodes -----------------------------------------------------------------------------------

#[tokio::test]
async fn node_ready_passes_and_fails_with_reason_message_and_duration() {
    let env = Env::new().await;
    env.api.object(
        "/api/v1/nodes/lima-default",
        &node(
            "lima-default",
            "False",
            "KubeletNotReady",
            "PLEG is not healthy",
            192,
        ),
    );
    let o = env
        .check("check = \"node_ready\"\nnode = \"lima-default\"")
        .await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "node lima-default NotReady for 3m 12s: KubeletNotReady (PLEG is not healthy)"
    );

    env.api.route(
        "GET",
        "/api/v1/nodes",
        200,
        list(
            "NodeList",
            &[
                node("a", "True", "KubeletReady", "ok", 100),
                node("b", "True", "KubeletReady", "ok", 100),
            ],
        ),
    );
    let o = env.check(r#"check = "node_ready""#).await;
    assert_eq!(o.status, Status::Pass);
    assert_eq!(o.output, "2/2 nodes Ready");

    env.api.route(
        "GET",
        "/api/v1/nodes",
        200,
        list(
            "NodeList",
            &[
                node("a", "True", "KubeletReady", "ok", 100),
                node(
                    "b",
                    "Unknown",
                    "NodeStatusUnknown",
                    "Kubelet stopped posting node status.",
                    3700,
                ),
            ],
        ),
    );
    let o = env
        .check("check = \"node_ready\"\nselector = \"node-role.kubernetes.io/worker\"")
        .await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "1/2 nodes not Ready: node b NotReady (Ready=Unknown) for 1h 1m: NodeStatusUnknown (Kubelet stopped posting node status.)"
    );
    // The detail is what the verdict was computed from: the node that is not Ready first,
    // with its conditions.
    assert!(o.detail.starts_with("node b:\n"), "{}", o.detail);
    assert!(
        o.detail.contains("\"reason\": \"NodeStatusUnknown\"")
            && o.detail
                .contains("\"message\": \"Kubelet stopped posting node status.\"")
            && o.detail.contains("node a:"),
        "{}",
        o.detail
    );
    let last = env.api.requests().pop().unwrap();
    assert!(
        last.query
            .contains("labelSelector=node-role.kubernetes.io%2Fworker"),
        "{}",
        last.query
    );
}

#[tokio::test]
async fn node_named_by_an_environment_variable_as_a_daemonset_sets_it() {
    let env = Env::new().await;
    // Cargo and nextest set CARGO_PKG_NAME for test processes.
    env.api.object(
        "/api/v1/nodes/talon",
        &node("talon", "True", "KubeletReady", "ok", 30),
    );
    let o = env
        .check("check = \"node_ready\"\nnode = \"${CARGO_PKG_NAME}\"")
        .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(o.output, "node talon Ready for 30s");

    let o = env
        .check("check = \"node_schedulable\"\nnode = \"${TALON_TEST_SURELY_UNSET_NODE}\"")
        .await;
    assert_eq!(o.status, Status::Error);
    assert!(
        o.output.starts_with(
            "node = \"${TALON_TEST_SURELY_UNSET_NODE}\": environment variable TALON_TEST_SURELY_UNSET_NODE is not set"
        ),
        "{}",
        o.output
    );
}

#[tokio::test]
async fn node_ready_for_a_missing_node_is_not_found() {
    let env = Env::new().await;
    let o = env.check("check = \"node_ready\"\nnode = \"ghost\"").await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(o.output, "not found: node ghost does not exist (404)");
}

#[tokio::test]
async fn node_schedulable_allows_the_control_plane_taint_and_flags_the_rest() {
    let env = Env::new().await;
    let mut n = node("colima", "True", "KubeletReady", "ok", 100);
    n.spec = Some(NodeSpec {
        taints: Some(vec![taint(
            "node-role.kubernetes.io/control-plane",
            None,
            "NoSchedule",
        )]),
        ..Default::default()
    });
    env.api.object("/api/v1/nodes/colima", &n);
    let probe = "check = \"node_schedulable\"\nnode = \"colima\"";
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(
        o.output,
        "node colima schedulable (allowed taint node-role.kubernetes.io/control-plane:NoSchedule)"
    );

    // A custom NoSchedule taint fails; PreferNoSchedule never does.
    n.spec = Some(NodeSpec {
        taints: Some(vec![
            taint("node-role.kubernetes.io/control-plane", None, "NoSchedule"),
            taint("example.com/maintenance", Some("true"), "NoSchedule"),
            taint("example.com/soft", None, "PreferNoSchedule"),
        ]),
        ..Default::default()
    });
    env.api.object("/api/v1/nodes/colima", &n);
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "node colima not schedulable: taint example.com/maintenance=true:NoSchedule"
    );
    // ... unless it is allowed (which replaces the defaults).
    let o = env
        .check(&format!(
            "{probe}\nallowed_taints = [\"example.com/maintenance\", \"node-role.kubernetes.io/control-plane:NoSchedule\"]"
        ))
        .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");

    // Cordoned, with the kubelet's disk pressure.
    n.spec = Some(NodeSpec {
        unschedulable: Some(true),
        taints: Some(vec![taint(
            "node.kubernetes.io/unschedulable",
            None,
            "NoSchedule",
        )]),
    });
    n.status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()
        .push(NodeCondition {
            type_: "DiskPressure".into(),
            status: "True".into(),
            message: Some("kubelet has disk pressure".into()),
            ..Default::default()
        });
    env.api.object("/api/v1/nodes/colima", &n);
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "node colima not schedulable: cordoned (spec.unschedulable), DiskPressure (kubelet has disk pressure)"
    );
}

// ---- workloads -------------------------------------------------------------------------------

fn daemonset(desired: i32, ready: i32, observed: i64) -> DaemonSet {
    DaemonSet {
        metadata: meta("kube-flannel-ds", Some("kube-flannel")),
        status: Some(DaemonSetStatus {
            desired_number_scheduled: desired,
            number_ready: ready,
            number_available: Some(ready),
            updated_number_scheduled: Some(desired),
            observed_generation: Some(observed),
        }),
    }
}

const FLANNEL: &str = "/apis/apps/v1/namespaces/kube-flannel/daemonsets/kube-flannel-ds";
const FLANNEL_PROBE: &str =
    "check = \"daemonset_ready\"\nnamespace = \"kube-flannel\"\nname = \"kube-flannel-ds\"";

#[tokio::test]
async fn daemonset_ready_pass_and_fail() {
    let env = Env::new().await;
    env.api.object(FLANNEL, &daemonset(1, 1, 2));
    let o = env.check(FLANNEL_PROBE).await;
    assert_eq!(o.status, Status::Pass);
    assert_eq!(o.output, "daemonset kube-flannel/kube-flannel-ds 1/1 ready");

    env.api.object(FLANNEL, &daemonset(1, 0, 2));
    let o = env.check(FLANNEL_PROBE).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "daemonset kube-flannel/kube-flannel-ds 0/1 ready, 0 available"
    );

    env.api.object(FLANNEL, &daemonset(0, 0, 2));
    let o = env.check(FLANNEL_PROBE).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "daemonset kube-flannel/kube-flannel-ds schedules no pods (desired 0): no node matches its node selector and tolerations"
    );

    env.api.object(FLANNEL, &daemonset(1, 1, 1));
    let o = env.check(FLANNEL_PROBE).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "daemonset kube-flannel/kube-flannel-ds rollout not observed yet (generation 2, observed 1); 1/1 ready"
    );
}

fn deployment(replicas: i32, ready: i32, updated: i32, observed: i64) -> Deployment {
    Deployment {
        metadata: meta("web", Some("apps")),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
        }),
        status: Some(DeploymentStatus {
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            updated_replicas: Some(updated),
            observed_generation: Some(observed),
            ..Default::default()
        }),
    }
}

const WEB: &str = "/apis/apps/v1/namespaces/apps/deployments/web";

#[tokio::test]
async fn deployment_ready_pass_rollout_in_progress_stalled_and_missing() {
    let env = Env::new().await;
    let probe = "check = \"deployment_ready\"\nnamespace = \"apps\"\nname = \"web\"";
    env.api.object(WEB, &deployment(3, 3, 3, 2));
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Pass);
    assert_eq!(o.output, "deployment apps/web 3/3 ready");

    // A rollout that replaced one pod so far and has one pod down.
    env.api.object(WEB, &deployment(3, 2, 1, 2));
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "deployment apps/web 2/3 ready, 2 available, 1/3 updated (rollout in progress)"
    );

    let mut stalled = deployment(3, 3, 1, 2);
    stalled.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
        type_: "Progressing".into(),
        status: "False".into(),
        reason: Some("ProgressDeadlineExceeded".into()),
        message: Some("ReplicaSet \"web-7d9\" has timed out progressing.".into()),
        ..Default::default()
    }]);
    env.api.object(WEB, &stalled);
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "deployment apps/web rollout stalled: ProgressDeadlineExceeded (ReplicaSet \"web-7d9\" has timed out progressing.); 3/3 ready"
    );

    env.api.object(WEB, &deployment(0, 0, 0, 2));
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(o.output, "deployment apps/web is scaled to 0 replicas");

    let o = env
        .check("check = \"deployment_ready\"\nnamespace = \"apps\"\nname = \"gone\"")
        .await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "not found: deployment apps/gone does not exist (404)"
    );
}

#[tokio::test]
async fn workloads_default_to_the_contexts_namespace() {
    let env = Env::new().await;
    let kc = write_kubeconfig(
        &env.dir.path().join("ns-context"),
        &[Ctx {
            name: "colima",
            server: &env.api.url,
            ca: Some(&env.api.ca_path),
            token: Some(TOKEN),
            namespace: Some("apps"),
        }],
    );
    env.api.object(WEB, &deployment(1, 1, 1, 2));
    let o = check_with(
        &kc,
        "check = \"deployment_ready\"\nname = \"web\"",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(o.output, "deployment apps/web 1/1 ready");
}

fn statefulset(replicas: i32, ready: i32) -> StatefulSet {
    StatefulSet {
        metadata: meta("redis", Some("data")),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
        }),
        status: Some(StatefulSetStatus {
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            updated_replicas: Some(replicas),
            observed_generation: Some(2),
        }),
    }
}

#[tokio::test]
async fn statefulset_ready_pass_and_fail() {
    let env = Env::new().await;
    let path = "/apis/apps/v1/namespaces/data/statefulsets/redis";
    let probe = "check = \"statefulset_ready\"\nnamespace = \"data\"\nname = \"redis\"";
    env.api.object(path, &statefulset(1, 1));
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Pass);
    assert_eq!(o.output, "statefulset data/redis 1/1 ready");

    env.api.object(path, &statefulset(3, 1));
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(o.output, "statefulset data/redis 1/3 ready, 1 available");
}

// ---- pods ------------------------------------------------------------------------------------

fn pod(name: &str, ready: bool, waiting: Option<(&str, &str)>, restarts: i32) -> Pod {
    Pod {
        metadata: meta(name, Some("apps")),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            container_statuses: Some(vec![ContainerStatus {
                name: "web".into(),
                ready,
                restart_count: restarts,
                state: waiting.map(|(reason, message)| ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason.into()),
                        message: Some(message.into()),
                    }),
                    ..Default::default()
                }),
            }]),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn pod_ready_by_name_and_by_selector_with_waiting_reasons() {
    let env = Env::new().await;
    env.api.object(
        "/api/v1/namespaces/apps/pods/web-0",
        &pod("web-0", true, None, 0),
    );
    let o = env
        .check("check = \"pod_ready\"\nnamespace = \"apps\"\nname = \"web-0\"")
        .await;
    assert_eq!(o.status, Status::Pass);
    assert_eq!(o.output, "pod apps/web-0 Ready");

    env.api.route(
        "GET",
        "/api/v1/namespaces/apps/pods",
        200,
        list(
            "PodList",
            &[
                pod("web-0", true, None, 0),
                pod(
                    "web-1",
                    false,
                    Some((
                        "CrashLoopBackOff",
                        "back-off 5m0s restarting failed container=web pod=web-1",
                    )),
                    12,
                ),
                pod(
                    "web-2",
                    false,
                    Some(("ImagePullBackOff", "Back-off pulling image \"web:2\"")),
                    0,
                ),
            ],
        ),
    );
    let o = env
        .check("check = \"pod_ready\"\nnamespace = \"apps\"\nselector = \"app=web\"")
        .await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "1/3 pods ready (app=web in apps); pod apps/web-1 not ready: container web CrashLoopBackOff (back-off 5m0s restarting failed container=web pod=web-1), 12 restarts; pod apps/web-2 not ready: container web ImagePullBackOff (Back-off pulling image \"web:2\")"
    );
    let last = env.api.requests().pop().unwrap();
    assert!(
        last.query.contains("labelSelector=app%3Dweb"),
        "{}",
        last.query
    );

    env.api.route(
        "GET",
        "/api/v1/namespaces/apps/pods",
        200,
        list::<Pod>("PodList", &[]),
    );
    let o = env
        .check("check = \"pod_ready\"\nnamespace = \"apps\"\nselector = \"app=web\"")
        .await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(o.output, "no pods match app=web in namespace apps");
}

// ---- access reviews --------------------------------------------------------------------------

fn review_answer(allowed: bool, reason: &str) -> serde_json::Value {
    let r = AccessReviewAnswer {
        status: Some(SubjectAccessReviewStatus {
            allowed,
            reason: Some(reason.into()),
            ..Default::default()
        }),
    };
    let mut v = serde_json::to_value(r).unwrap();
    v["apiVersion"] = json!("authorization.k8s.io/v1");
    v["kind"] = json!("SubjectAccessReview");
    v
}

#[tokio::test]
async fn can_i_as_a_user_uses_a_subject_access_review() {
    let env = Env::new().await;
    let path = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let probe = "check = \"can_i\"\nas = \"kube-apiserver-kubelet-client\"\nverb = [\"get\", \"create\"]\nresource = \"nodes\"\nsubresource = \"proxy\"";
    env.api.route(
        "POST",
        path,
        201,
        review_answer(
            true,
            "RBAC: allowed by ClusterRoleBinding \"kubeadm:kubelet-api-admin\"",
        ),
    );
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(
        o.output,
        "kube-apiserver-kubelet-client may get, create nodes/proxy"
    );
    let reqs = env.api.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (reqs[1].method.as_str(), reqs[1].path.as_str()),
        ("POST", path)
    );
    assert_eq!(
        reqs[1].body["spec"]["user"],
        "kube-apiserver-kubelet-client"
    );
    assert_eq!(
        reqs[1].body["spec"]["resourceAttributes"],
        json!({"verb": "create", "resource": "nodes", "subresource": "proxy"})
    );

    env.api.route("POST", path, 201, review_answer(false, ""));
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "kube-apiserver-kubelet-client may not get, create nodes/proxy: no rule allows it"
    );
}

#[tokio::test]
async fn can_i_for_talon_itself_uses_a_self_subject_access_review() {
    let env = Env::new().await;
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let probe = "check = \"can_i\"\nverb = \"list\"\nresource = \"deployments\"\ngroup = \"apps\"\nnamespace = \"apps\"";
    let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}});
    let mut allowed = review.clone();
    allowed["status"] = json!({"allowed": true});
    env.api.route("POST", path, 201, allowed);
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(
        o.output,
        "Talon's credentials may list deployments.apps in namespace apps"
    );

    let mut denied = review;
    denied["status"] = json!({"allowed": false, "denied": true, "reason": "denied by policy"});
    env.api.route("POST", path, 201, denied);
    let o = env.check(probe).await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "Talon's credentials may not list deployments.apps in namespace apps: explicitly denied: denied by policy"
    );
}

// ---- config validation through the real binary ------------------------------------------------

fn validate(services: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "services_file = \"services.toml\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("services.toml"), services).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_talon"))
        .args(["validate", "--no-resolve", "--config"])
        .arg(dir.path().join("config.toml"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn validate_accepts_good_k8s_probes() {
    let (code, text) = validate(
        r#"
[k8s.api]
check = "api"
kubeconfig = "~/.kube/config"
context = "colima"
critical = true

[k8s.pods]
check = "pod_ready"
namespace = "apps"
selector = "app in (web, worker),tier!=cache"
depends_on = ["api"]
"#,
    );
    assert_eq!(code, 0, "{text}");
}

#[test]
fn validate_reports_every_k8s_mistake_with_its_key() {
    let (code, text) = validate(
        r#"
[k8s.typo_check]
check = "node_redy"

[k8s.no_name]
check = "deployment_ready"
namespace = "apps"

[k8s.bad_selector]
check = "pod_ready"
selector = "app in web"

[k8s.wrong_key]
check = "node_ready"
name = "colima"

[k8s.bad_taint]
check = "node_schedulable"
allowed_taints = ["dedicated=gpu:Sometimes"]

[k8s.can_i_incomplete]
check = "can_i"
verb = "get"

[k8s.unknown_key]
check = "api"
contxt = "colima"

[k8s.bad_node]
check = "node_ready"
node = "${1NODE}"
"#,
    );
    assert_eq!(code, 2, "{text}");
    for expected in [
        "k8s.typo_check.check: unknown value `node_redy` (did you mean `node_ready`?)",
        "k8s.no_name.check: check = \"deployment_ready\" needs `name`",
        "k8s.bad_selector.selector: `app in web` is not a valid label selector",
        "k8s.wrong_key.name: `name` does not apply to check = \"node_ready\" (name a node with `node`)",
        "k8s.bad_taint.allowed_taints: `dedicated=gpu:Sometimes`: effect `Sometimes` is not one of",
        "k8s.can_i_incomplete.check: check = \"can_i\" needs `resource`",
        "k8s.unknown_key.contxt: unknown key `contxt` (did you mean `context`?)",
        "k8s.bad_node.node: `${1NODE}` is not a node name or an environment reference",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn the_macos_colima_example_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/macos-colima-k8s");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_talon"))
        .args(["validate", "--no-resolve", "--json", "--config"])
        .arg(root.join("config.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let total: u64 = report["probe_counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 14, "the original host ran 14 probes: {stdout}");
    assert_eq!(report["probe_counts"]["k8s"], 5, "{stdout}");
}

#[test]
fn the_daemonset_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_talon"))
        .args(["validate", "--no-resolve", "--json", "--config"])
        .arg(root.join("talon.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["probe_counts"]["k8s"], 6, "{stdout}");
    // Each pod names itself after its node and watches only that node's pods.
    let toml = std::fs::read_to_string(root.join("talon.toml")).unwrap();
    assert!(toml.contains("host = \"${NODE_NAME}\""), "{toml}");
    assert!(toml.contains("[k8s.node_local_pods]"), "{toml}");
    // The DaemonSet mounts the file the test checked.
    let ds = std::fs::read_to_string(root.join("daemonset.yaml")).unwrap();
    assert!(ds.contains("/etc/talon/talon.toml") && ds.contains("fieldPath: spec.nodeName"));
    let kustomization = std::fs::read_to_string(root.join("kustomization.yaml")).unwrap();
    assert!(kustomization.contains("- talon.toml"));
}
