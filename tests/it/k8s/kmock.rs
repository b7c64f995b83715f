//! Happy paths against kmock, a third-party Kubernetes API emulator from PyPI (installed into
//! `target/py-kmock` by `scripts/kmock-venv`, which `scripts/test` runs). Its quirks: a resource
//! must be declared (or hold an object) before it is listed, and a missing object comes back as
//! reason "Object Not Found" — which Talon must still classify as not found (by code).

use super::fake_apiserver::{Ctx, write_kubeconfig};
use super::{check_with, daemonset, node, pod};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use talon::core::Status;

/// A kmock emulator on a loopback port, stopped (stdin closed, killed, reaped) on drop.
struct Kmock {
    child: Child,
    kubeconfig: PathBuf,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Kmock {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py-kmock/bin/python");
    assert!(
        p.exists(),
        "kmock is not installed: run scripts/kmock-venv (scripts/test does it) to create {}",
        p.display()
    );
    p
}

impl Kmock {
    /// Start with these entries (`{"resource", "namespace", "name", "object"}` or
    /// `{"declare": "v1/pods"}`) and a kubeconfig pointing at it.
    fn start(entries: Vec<Value>) -> Kmock {
        let dir = tempfile::tempdir().unwrap();
        let objects = dir.path().join("objects.json");
        std::fs::write(&objects, serde_json::to_vec(&entries).unwrap()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/k8s/kmock_server.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(&objects)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kmock");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut port = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while port.is_none() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => port = line.strip_prefix("PORT ").map(|p| p.trim().to_string()),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("kmock did not report its port within 30 s");
                }
            }
        }
        let url = format!("http://127.0.0.1:{}", port.unwrap());
        let kubeconfig = write_kubeconfig(
            &dir.path().join("kubeconfig"),
            &[Ctx {
                name: "kmock",
                server: &url,
                ca: None,
                token: None,
                namespace: None,
            }],
        );
        Kmock {
            child,
            kubeconfig,
            url,
            _dir: dir,
        }
    }

    async fn check(&self, toml: &str) -> talon::core::Outcome {
        check_with(&self.kubeconfig, toml, Duration::from_secs(10)).await
    }
}

fn entry<T: serde::Serialize>(resource: &str, ns: Option<&str>, name: &str, obj: &T) -> Value {
    json!({"resource": resource, "namespace": ns, "name": name, "object": obj})
}

#[tokio::test]
async fn kmock_api_and_nodes_ready_and_not_ready() {
    let ready = node(
        "colima",
        "True",
        "KubeletReady",
        "kubelet is posting ready status",
        60,
    );
    // Labels are not among the fields Talon reads: added to the object as JSON.
    let mut ready = serde_json::to_value(&ready).unwrap();
    ready["metadata"]["labels"] = json!({"node-role.kubernetes.io/control-plane": ""});
    let sick = node(
        "worker-1",
        "False",
        "KubeletNotReady",
        "container runtime network not ready",
        300,
    );
    let k = Kmock::start(vec![
        entry("v1/nodes", None, "colima", &ready),
        entry("v1/nodes", None, "worker-1", &sick),
    ]);

    let o = k.check(r#"check = "api""#).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert!(
        o.output.starts_with(&format!("API {} answered v1.", k.url)),
        "{}",
        o.output
    );

    let o = k.check("check = \"node_ready\"\nnode = \"colima\"").await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(o.output, "node colima Ready for 1m");

    let o = k.check("check = \"node_ready\"\nnode = \"worker-1\"").await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "node worker-1 NotReady for 5m: KubeletNotReady (container runtime network not ready)"
    );

    let o = k.check(r#"check = "node_ready""#).await;
    assert_eq!(o.status, Status::Fail);
    assert!(
        o.output
            .starts_with("1/2 nodes not Ready: node worker-1 NotReady"),
        "{}",
        o.output
    );

    // kmock's "Object Not Found" reason is still a 404.
    let o = k.check("check = \"node_ready\"\nnode = \"ghost\"").await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(o.output, "not found: node ghost does not exist (404)");
}

#[tokio::test]
async fn kmock_daemonset_ready_and_not() {
    let k = Kmock::start(vec![
        entry(
            "apps/v1/daemonsets",
            Some("kube-flannel"),
            "kube-flannel-ds",
            &daemonset(1, 1, 2),
        ),
        entry(
            "apps/v1/daemonsets",
            Some("kube-system"),
            "svclb",
            &daemonset(2, 1, 2),
        ),
    ]);
    let o = k
        .check(
            "check = \"daemonset_ready\"\nnamespace = \"kube-flannel\"\nname = \"kube-flannel-ds\"",
        )
        .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(o.output, "daemonset kube-flannel/kube-flannel-ds 1/1 ready");

    let o = k
        .check("check = \"daemonset_ready\"\nnamespace = \"kube-system\"\nname = \"svclb\"")
        .await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "daemonset kube-system/svclb 1/2 ready, 1 available"
    );
}

#[tokio::test]
async fn kmock_pods_ready_and_crashlooping() {
    let mut good = pod("web-0", true, None, 0);
    good.metadata.namespace = Some("apps".into());
    let bad = pod(
        "web-1",
        false,
        Some((
            "CrashLoopBackOff",
            "back-off 40s restarting failed container=web pod=web-1",
        )),
        3,
    );
    let k = Kmock::start(vec![
        json!({"declare": "v1/pods"}),
        entry("v1/pods", Some("apps"), "web-0", &good),
        entry("v1/pods", Some("apps"), "web-1", &bad),
    ]);
    let o = k
        .check("check = \"pod_ready\"\nnamespace = \"apps\"\nname = \"web-0\"")
        .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(o.output, "pod apps/web-0 Ready");

    let o = k
        .check("check = \"pod_ready\"\nnamespace = \"apps\"\nname = \"web-1\"")
        .await;
    assert_eq!(o.status, Status::Fail);
    assert_eq!(
        o.output,
        "pod apps/web-1 not ready: container web CrashLoopBackOff (back-off 40s restarting failed container=web pod=web-1), 3 restarts"
    );

    // kmock ignores label selectors, so listing the namespace sees both pods.
    let o = k
        .check("check = \"pod_ready\"\nnamespace = \"apps\"\nselector = \"app=web\"")
        .await;
    assert_eq!(o.status, Status::Fail);
    assert!(o.output.starts_with("1/2 pods ready (app=web in apps); pod apps/web-1 not ready: container web CrashLoopBackOff"), "{}", o.output);
}
