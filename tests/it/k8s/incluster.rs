//! In-cluster credentials, as in a DaemonSet pod: the real `talon run` with no kubeconfig,
//! `KUBERNETES_SERVICE_HOST/PORT` in its environment and the service account mounted where
//! kube (and client-go) read it, `/var/run/secrets/kubernetes.io/serviceaccount` — a private
//! tmpfs in the daemon's own mount namespace (`unshare --mount`), so the host's `/run` is never
//! touched. The API server is the HTTPS fake (self-signed CA = the pod's `ca.crt`, bearer
//! tokens); the projected token is rotated mid-run the way the kubelet does it (new files, an
//! atomic swap) and the old one revoked: the probe must pass again with the new token.

use super::fake_apiserver::{FakeApi, Pki};
use crate::metrics::Killed;
use crate::support::{free_port, http_get, talon_bin, write};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `api` probe's entry in `/status`, once the daemon answers.
fn api_probe(health: &str) -> Option<Value> {
    let (_, body) = http_get(health, "/status", Duration::from_secs(2))?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["probes"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "api")
        .cloned()
}

/// Mount the service account as the kubelet does: `..data` → a timestamped dir, `token` and
/// `ca.crt` → `..data/…`; a rotation writes a new dir and swaps `..data` atomically.
fn project(sa: &Path, generation: u32, token: &str, ca_pem: &str) {
    let dir = sa.join(format!("..gen{generation}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), token).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_pem).unwrap();
    std::fs::write(dir.join("namespace"), "talon").unwrap();
    let tmp = sa.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..gen{generation}"), &tmp).unwrap();
    std::fs::rename(&tmp, sa.join("..data")).unwrap();
    for f in ["token", "ca.crt", "namespace"] {
        let link = sa.join(f);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), &link).unwrap();
        }
    }
}

#[test]
fn in_cluster_service_account_with_a_rotated_token() {
    // Needs root for a private mount namespace (the suite runs as root, as CI does).
    assert!(
        nix::unistd::geteuid().is_root(),
        "run the suite as root (scripts/test): this test mounts a tmpfs in its own namespace"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = Pki::new(dir, "incluster");
    let api = rt.block_on(FakeApi::start(&pki, "token-one"));
    api.route(
        "GET",
        "/version",
        200,
        serde_json::json!({"major": "1", "minor": "33", "gitVersion": "v1.33.2", "gitCommit": "x",
            "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64"}),
    );
    let port = api.url.rsplit(':').next().unwrap().to_string();
    let ca_pem = std::fs::read_to_string(&pki.ca_path).unwrap();
    let sa = dir.join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    project(&sa, 1, "token-one", &ca_pem);

    let health = format!("127.0.0.1:{}", free_port());
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let cfg = write(
        dir,
        "talon.toml",
        &format!(
            "state_dir = \"{}\"\ncheck_interval_secs = 0.5\n[health]\nbind = \"{health}\"\n[k8s.api]\ncheck = \"api\"\ncritical = true\n",
            dir.join("state").display()
        ),
    );
    let script = "mount -t tmpfs -o mode=0755 tmpfs /run \
        && mkdir -p /run/secrets/kubernetes.io \
        && ln -s \"$SA\" /run/secrets/kubernetes.io/serviceaccount \
        && exec \"$TALON\" run --config \"$CFG\"";
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", &home)
        .env("SA", &sa)
        .env("TALON", talon_bin())
        .env("CFG", &cfg)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", &port)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("talon.stderr")).unwrap())
        .spawn()
        .expect("unshare (util-linux)");
    let _daemon = Killed(child);
    let log = || {
        std::fs::read_to_string(dir.join("talon.stderr")).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("state/talon.log")).unwrap_or_default()
    };
    let wait_pass = |what: &str, after: Instant| -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(p) = api_probe(&health)
                && p["passed"] == true
                && Instant::now() > after
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: last {:?}\nrequests: {:?}\nlog:\n{}",
                api_probe(&health),
                api.requests().last(),
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let p = wait_pass("the api probe passes in-cluster", Instant::now());
    let out = p["output"].as_str().unwrap();
    assert!(
        out.starts_with(&format!("API https://127.0.0.1:{port} answered v1.33.2")),
        "{out}"
    );
    let seen = api.requests();
    assert!(
        seen.iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer token-one")),
        "{seen:?}"
    );

    // The kubelet rotates the projected token; the API server stops taking the old one.
    let before = api.requests().len();
    project(&sa, 2, "token-two", &ca_pem);
    api.set_token("token-two");
    let rotated = Instant::now();
    let new = wait_for_new_token(&api, before);
    eprintln!(
        "rotated token in use {} ms after the swap",
        rotated.elapsed().as_millis()
    );
    assert!(new >= before);
    // Picked up at the next probe, not at kube's own once-a-minute re-read: at most the run in
    // flight during the swap still carried the old token (the probe runs every 0.5 s).
    let stale = api.requests()[before..new]
        .iter()
        .filter(|r| r.authorization.as_deref() == Some("Bearer token-one"))
        .count();
    assert!(
        stale <= 2,
        "{stale} requests with the revoked token after the swap"
    );
    // From the first request with the new token on, the old one is never sent again.
    let seen = api.requests();
    assert!(
        seen[new..]
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer token-two")),
        "{:?}",
        &seen[new..]
    );
    let p = wait_pass("still passing", Instant::now() + Duration::from_secs(1));
    assert_eq!(p["status"], "pass", "{p}");
}

/// The index of the first request carrying the rotated token.
fn wait_for_new_token(api: &FakeApi, from: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(i) = api.requests()[from..]
            .iter()
            .position(|r| r.authorization.as_deref() == Some("Bearer token-two"))
        {
            return from + i;
        }
        assert!(Instant::now() < deadline, "the new token was never sent");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A DaemonSet's Talon watches only its own node's pods: `node` narrows `selector` with the
/// field selector `spec.nodeName` (the API server does the filtering), and says so.
#[tokio::test]
async fn pod_ready_on_this_node_only() {
    use super::{Env, list, pod};
    use talon::probe::k8s::api::Pod;
    let env = Env::new().await;
    env.api.route(
        "GET",
        "/api/v1/namespaces/apps/pods",
        200,
        list::<Pod>("PodList", &[pod("web-0", true, None, 0)]),
    );
    let o = env
        .check("check = \"pod_ready\"\nnamespace = \"apps\"\nselector = \"app=web\"\nnode = \"node-a\"")
        .await;
    assert_eq!(o.status, talon::core::Status::Pass, "{o:?}");
    let last = env.api.requests().pop().unwrap();
    assert!(
        last.query.contains("labelSelector=app%3Dweb")
            && last.query.contains("fieldSelector=spec.nodeName%3Dnode-a"),
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
        .check("check = \"pod_ready\"\nnamespace = \"apps\"\nselector = \"app=web\"\nnode = \"node-a\"")
        .await;
    assert_eq!(o.status, talon::core::Status::Fail);
    assert_eq!(
        o.output,
        "no pods match app=web on node node-a in namespace apps"
    );

    // `node` needs a selector (a named pod is wherever it is).
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "c.toml",
        "[k8s.web]\ncheck = \"pod_ready\"\nname = \"web-0\"\nnode = \"${NODE_NAME}\"\n",
    );
    let mut c = crate::support::talon(dir.path());
    c.args(["validate", "--no-resolve", "--config"]).arg(&cfg);
    let out = crate::support::run(c);
    let err = crate::support::stderr(&out) + &crate::support::stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`node` narrows a `selector`"), "{err}");
}
