//! `k8s` probe: asks the Kubernetes API about the cluster and explains what is wrong in one line.
//!
//! ```toml
//! [k8s.node_ready]
//! check = "node_ready"          # api | node_ready | node_schedulable | daemonset_ready |
//!                               # deployment_ready | statefulset_ready | pod_ready | can_i
//! kubeconfig = "~/.kube/config" # optional; default: $KUBECONFIG, ~/.kube/config, in-cluster
//! context = "colima"            # optional; default: the kubeconfig's current context
//! node = "colima"               # optional; default: every node
//! ```
//!
//! Talon's own small API client: reqwest (the one HTTP client stack, built by
//! [`crate::net::client`], rustls with ring) and the few objects and fields the checks read
//! (`api.rs`), no generated API types. One client is kept per kubeconfig file and context in a
//! [`K8sCtx`] and reused across cycles; it is rebuilt when the kubeconfig file changes (a VM
//! restart that rotates certificates must not leave Talon with stale credentials). Exec
//! credential plugins in the kubeconfig run through Talon's subprocess runner.
//!
//! Failures are data: an unreachable server, a TLS failure, 401/403, a missing object or a
//! timeout each become an [`Outcome`] whose output names the class of failure.
//!
//! Layout — each file imports only the ones below it, never back up:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`K8sSpec::check`]: the timeout, then dispatch to one check |
//! | `nodes.rs`, `workloads.rs`, `pods.rs`, `access.rs` | fetch the objects of one check and judge them |
//! | `client.rs` | [`K8sCtx`]: the client cache; one API client: requests, answers, errors |
//! | `exec.rs` | exec credential plugins: run one, read its `ExecCredential` |
//! | `errors.rs` | a client error → one line naming the class of failure |
//! | `kubeconfig.rs` | a kubeconfig file (or a pod's service account) → server and credentials |
//! | `text.rs` | clipping, lists, ages, durations |
//! | `api.rs` | the API objects, only the fields the checks read |

mod access;
pub mod api;
mod client;
mod errors;
mod exec;
mod kubeconfig;
mod nodes;
mod pods;
mod text;
mod workloads;

pub use client::K8sCtx;
pub use nodes::node_ready_outcome;
pub use pods::pods_outcome;
pub use text::human;
pub use workloads::{daemonset_outcome, deployment_outcome, statefulset_outcome};

use crate::clock::Instant;
use crate::config::probe::k8s::{K8sCheck, K8sSpec};
use crate::core::outcome::Outcome;
use api::{DaemonSet, Deployment, StatefulSet};
use client::Conn;
use std::time::{Duration, SystemTime};

impl K8sSpec {
    /// Run this check under `timeout` (which also bounds loading credentials). Never panics and
    /// never returns `Err`: every failure is an [`Outcome`].
    pub async fn check(&self, ctx: &K8sCtx, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let conn = match tokio::time::timeout_at(deadline, ctx.client(self)).await {
            Err(_) => {
                return Outcome::timeout(format!(
                    "timeout: loading Kubernetes credentials took longer than {}",
                    crate::format::latency(timeout)
                ));
            }
            Ok(Err(o)) => return o,
            Ok(Ok(c)) => c,
        };
        match tokio::time::timeout_at(deadline, self.run(&conn, ctx.now())).await {
            Err(_) => Outcome::timeout(format!(
                "timeout: {} did not answer within {}",
                conn.url,
                crate::format::latency(timeout)
            )),
            Ok(o) => o,
        }
    }

    /// The check itself, on a connected client; `now` judges ages.
    async fn run(&self, conn: &Conn, now: SystemTime) -> Outcome {
        let ns = self
            .namespace
            .clone()
            .unwrap_or_else(|| conn.client.default_namespace().to_string());
        let name = self.name.clone().unwrap_or_default();
        match self.check {
            K8sCheck::Api => {
                let start = Instant::now();
                let version = match conn.client.get(&["version"], &[]).await {
                    Ok(v) => client::typed::<api::Version>(&v),
                    Err(e) => Err(e),
                };
                match version {
                    Ok(v) => Outcome::pass(format!(
                        "API {} answered {} in {} ms",
                        conn.url,
                        v.git_version,
                        start.elapsed().as_millis()
                    )),
                    Err(e) => conn.fail("the version endpoint", e),
                }
            }
            K8sCheck::NodeReady | K8sCheck::NodeSchedulable => nodes::check(self, conn, now).await,
            K8sCheck::DaemonsetReady => workloads::check::<DaemonSet>(conn, &ns, &name).await,
            K8sCheck::DeploymentReady => workloads::check::<Deployment>(conn, &ns, &name).await,
            K8sCheck::StatefulsetReady => workloads::check::<StatefulSet>(conn, &ns, &name).await,
            K8sCheck::PodReady => {
                let node = match self.node.as_deref().map(nodes::resolve_node).transpose() {
                    Ok(n) => n,
                    Err(o) => return o,
                };
                pods::check(
                    conn,
                    &ns,
                    &name,
                    self.selector.as_deref(),
                    node.as_deref(),
                    now,
                )
                .await
            }
            K8sCheck::CanI => access::check(self, conn).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_can_run_on_any_worker_thread() {
        fn assert_send<T: Send>(_: &T) {}
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<K8sCtx>();
        let spec: K8sSpec = toml::from_str("check = \"api\"").unwrap();
        let ctx = K8sCtx::with_home(None);
        let fut = spec.check(&ctx, Duration::from_secs(1));
        assert_send(&fut);
    }
}
