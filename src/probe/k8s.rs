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
//! One [`kube::Client`] is kept per kubeconfig file and context in a [`K8sCtx`] and reused across
//! cycles; it is rebuilt when the kubeconfig file changes (a VM restart that rotates
//! certificates must not leave Talon with stale credentials). Exec credential plugins in the
//! kubeconfig are run by kube itself, with Talon's environment.
//!
//! Failures are data: an unreachable server, a TLS failure, 401/403, a missing object or a
//! timeout each become an [`Outcome`] whose output names the class of failure.

use crate::config::probe::k8s::{K8sCheck, K8sSpec, TaintRule, Verbs, env_ref};
use crate::core::outcome::Outcome;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SubjectAccessReview,
    SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, PostParams};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Clients: one per kubeconfig + context, reused.

/// Shared state for `k8s` probes: the client cache. Create one per daemon (or per `talon check`)
/// and pass it to every [`K8sSpec::check`].
pub struct K8sCtx {
    home: Option<PathBuf>,
    clients: Mutex<HashMap<ClientKey, Cached>>,
    /// Connect timeout given to every client (the probe's timeout still bounds the whole check).
    pub connect_timeout: Duration,
    /// Read/write timeout given to every client.
    pub io_timeout: Duration,
    /// A fixed "now" for judging ages ("NotReady for 3m12s"); `None` = the system clock.
    now: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
}

#[derive(Clone)]
struct Cached {
    conn: Conn,
    /// Modification time of the kubeconfig the client was built from, when there is one.
    stamp: Option<SystemTime>,
}

/// A client and the server it talks to (for messages).
#[derive(Clone)]
struct Conn {
    client: kube::Client,
    url: String,
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

    async fn client(&self, spec: &K8sSpec) -> Result<Conn, Outcome> {
        let path = self.kubeconfig_path(spec);
        let key = ClientKey {
            kubeconfig: path.clone(),
            context: spec.context.clone(),
        };
        let stamp_path = path.clone().or_else(|| self.implicit_kubeconfig());
        let stamp = stamp_path
            .as_deref()
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| m.modified().ok());
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

// ---------------------------------------------------------------------------------------------
// Running a check.

/// The node name to ask for: as written, or read from the environment for `"${VAR}"`.
fn resolve_node(n: &str) -> Result<String, Outcome> {
    let Some(var) = env_ref(n) else {
        return Ok(n.to_string());
    };
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(Outcome::error(format!(
            "node = \"{n}\": environment variable {var} is not set (in a DaemonSet, set it from the downward API: fieldRef spec.nodeName)"
        ))),
    }
}

/// Whether an allowed-taint rule accepts this taint of a node.
fn allows(rule: &TaintRule, t: &k8s_openapi::api::core::v1::Taint) -> bool {
    rule.key == t.key
        && rule
            .value
            .as_deref()
            .is_none_or(|v| t.value.as_deref().unwrap_or("") == v)
        && rule.effect.as_deref().is_none_or(|e| e == t.effect)
}

impl K8sSpec {
    /// Run this check under `timeout` (which also bounds loading credentials). Never panics and
    /// never returns `Err`: every failure is an [`Outcome`].
    pub async fn check(&self, ctx: &K8sCtx, timeout: Duration) -> Outcome {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = match tokio::time::timeout_at(deadline, ctx.client(self)).await {
            Err(_) => {
                return Outcome::timeout(format!(
                    "timeout: loading Kubernetes credentials took longer than {}",
                    human(timeout)
                ));
            }
            Ok(Err(o)) => return o,
            Ok(Ok(c)) => c,
        };
        let now = ctx.now.unwrap_or_else(SystemTime::now);
        match tokio::time::timeout_at(deadline, self.run(&conn, now)).await {
            Err(_) => Outcome::timeout(format!(
                "timeout: {} did not answer within {}",
                conn.url,
                human(timeout)
            )),
            Ok(o) => o,
        }
    }

    async fn run(&self, conn: &Conn, now: SystemTime) -> Outcome {
        let client = conn.client.clone();
        let ns = self
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let name = self.name.clone().unwrap_or_default();
        let fail = |what: &str, e: kube::Error| classify(&e, &conn.url, what);
        match self.check {
            K8sCheck::Api => {
                let start = Instant::now();
                match client.apiserver_version().await {
                    Ok(v) => Outcome::pass(format!(
                        "API {} answered {} in {} ms",
                        conn.url,
                        v.git_version,
                        start.elapsed().as_millis()
                    )),
                    Err(e) => fail("the version endpoint", e),
                }
            }
            K8sCheck::NodeReady | K8sCheck::NodeSchedulable => {
                let api: Api<Node> = Api::all(client);
                let node = match self.node.as_deref().map(resolve_node).transpose() {
                    Ok(n) => n,
                    Err(o) => return o,
                };
                let nodes = match &node {
                    Some(n) => api
                        .get(n)
                        .await
                        .map(|n| vec![n])
                        .map_err(|e| fail(&format!("node {n}"), e)),
                    None => {
                        let mut lp = ListParams::default();
                        if let Some(s) = &self.selector {
                            lp = lp.labels(s);
                        }
                        api.list(&lp)
                            .await
                            .map(|l| l.items)
                            .map_err(|e| fail("nodes", e))
                    }
                };
                match nodes {
                    Err(o) => o,
                    Ok(nodes) if self.check == K8sCheck::NodeReady => {
                        node_ready_outcome(&nodes, self.selector.as_deref(), now)
                    }
                    Ok(nodes) => node_schedulable_outcome(
                        &nodes,
                        self.selector.as_deref(),
                        &self.taint_rules(),
                    ),
                }
            }
            K8sCheck::DaemonsetReady => {
                let what = format!("daemonset {ns}/{name}");
                match Api::<DaemonSet>::namespaced(client, &ns).get(&name).await {
                    Ok(d) => daemonset_outcome(&what, &d),
                    Err(e) => fail(&what, e),
                }
            }
            K8sCheck::DeploymentReady => {
                let what = format!("deployment {ns}/{name}");
                match Api::<Deployment>::namespaced(client, &ns).get(&name).await {
                    Ok(d) => deployment_outcome(&what, &d),
                    Err(e) => fail(&what, e),
                }
            }
            K8sCheck::StatefulsetReady => {
                let what = format!("statefulset {ns}/{name}");
                match Api::<StatefulSet>::namespaced(client, &ns).get(&name).await {
                    Ok(s) => statefulset_outcome(&what, &s),
                    Err(e) => fail(&what, e),
                }
            }
            K8sCheck::PodReady => {
                let api: Api<Pod> = Api::namespaced(client, &ns);
                match &self.selector {
                    None => {
                        let what = format!("pod {ns}/{name}");
                        match api.get(&name).await {
                            Ok(p) => pods_outcome(&[p], None, &ns, now),
                            Err(e) => fail(&what, e),
                        }
                    }
                    Some(sel) => match api.list(&ListParams::default().labels(sel)).await {
                        Ok(l) => pods_outcome(&l.items, Some(sel), &ns, now),
                        Err(e) => fail(&format!("pods {sel} in {ns}"), e),
                    },
                }
            }
            K8sCheck::CanI => self.can_i(conn).await,
        }
    }

    async fn can_i(&self, conn: &Conn) -> Outcome {
        let verbs = self.verb.as_ref().map(Verbs::list).unwrap_or_default();
        let resource = self.resource.clone().unwrap_or_default();
        let target = resource_display(
            &resource,
            self.subresource.as_deref(),
            self.group.as_deref(),
            self.namespace.as_deref(),
            self.name.as_deref(),
        );
        let who = self
            .as_user
            .clone()
            .unwrap_or_else(|| "Talon's credentials".to_string());
        let mut denied: Vec<(String, String)> = Vec::new();
        for verb in &verbs {
            let attrs = ResourceAttributes {
                verb: Some(verb.to_string()),
                resource: Some(resource.clone()),
                subresource: self.subresource.clone(),
                group: self.group.clone(),
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                ..Default::default()
            };
            let pp = PostParams::default();
            let status: Result<Option<SubjectAccessReviewStatus>, kube::Error> = match &self.as_user
            {
                Some(user) => {
                    let review = SubjectAccessReview {
                        spec: SubjectAccessReviewSpec {
                            user: Some(user.clone()),
                            resource_attributes: Some(attrs),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    Api::<SubjectAccessReview>::all(conn.client.clone())
                        .create(&pp, &review)
                        .await
                        .map(|r| r.status)
                }
                None => {
                    let review = SelfSubjectAccessReview {
                        spec: SelfSubjectAccessReviewSpec {
                            resource_attributes: Some(attrs),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    Api::<SelfSubjectAccessReview>::all(conn.client.clone())
                        .create(&pp, &review)
                        .await
                        .map(|r| r.status)
                }
            };
            match status {
                Err(e) => {
                    return classify(
                        &e,
                        &conn.url,
                        &format!("an access review for {verb} {target}"),
                    );
                }
                Ok(None) => {
                    return Outcome::error(format!(
                        "the access review for {verb} {target} came back without a status"
                    ));
                }
                Ok(Some(s)) if s.allowed => {}
                Ok(Some(s)) => {
                    let mut why = if s.denied == Some(true) {
                        "explicitly denied".to_string()
                    } else {
                        "no rule allows it".to_string()
                    };
                    if let Some(r) = s.reason.filter(|r| !r.is_empty()) {
                        why = format!("{why}: {}", clip(&r, 160));
                    }
                    if let Some(r) = s.evaluation_error.filter(|r| !r.is_empty()) {
                        why = format!("{why} (evaluation error: {})", clip(&r, 160));
                    }
                    denied.push((verb.to_string(), why));
                }
            }
        }
        if denied.is_empty() {
            return Outcome::pass(format!("{who} may {} {target}", verbs.join(", ")));
        }
        let names: Vec<&str> = denied.iter().map(|(v, _)| v.as_str()).collect();
        let why = if denied.iter().all(|(_, w)| *w == denied[0].1) {
            denied[0].1.clone()
        } else {
            denied
                .iter()
                .map(|(v, w)| format!("{v}: {w}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        Outcome::fail(format!(
            "{who} may not {} {target}: {why}",
            names.join(", ")
        ))
    }
}

/// `nodes/proxy`, `deployments.apps "web" in namespace default`, kubectl style.
fn resource_display(
    resource: &str,
    sub: Option<&str>,
    group: Option<&str>,
    ns: Option<&str>,
    name: Option<&str>,
) -> String {
    let mut s = resource.to_string();
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        s = format!("{s}.{g}");
    }
    if let Some(sub) = sub {
        s = format!("{s}/{sub}");
    }
    if let Some(n) = name {
        s = format!("{s} \"{n}\"");
    }
    if let Some(ns) = ns {
        s = format!("{s} in namespace {ns}");
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Judging objects (pure: objects and a clock reading in, outcome out).

/// `node_ready` over the nodes found.
pub fn node_ready_outcome(nodes: &[Node], selector: Option<&str>, now: SystemTime) -> Outcome {
    if nodes.is_empty() {
        return Outcome::fail(match selector {
            Some(s) => format!("no nodes match {s}"),
            None => "the cluster has no nodes".to_string(),
        });
    }
    let mut bad = Vec::new();
    let mut ready_since = None;
    for n in nodes {
        let name = n.metadata.name.as_deref().unwrap_or("?");
        let cond = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        match cond {
            None => bad.push(format!(
                "node {name} has no Ready condition (the kubelet has not reported)"
            )),
            Some(c) if c.status == "True" => {
                ready_since = c.last_transition_time.as_ref().map(|t| age(t, now));
            }
            Some(c) => {
                let state = if c.status == "False" {
                    "NotReady".to_string()
                } else {
                    format!("NotReady (Ready={})", c.status)
                };
                let mut s = format!("node {name} {state}");
                if let Some(t) = &c.last_transition_time {
                    s.push_str(&format!(" for {}", human(age(t, now))));
                }
                s.push_str(&reason_message(c.reason.as_deref(), c.message.as_deref()));
                bad.push(s);
            }
        }
    }
    if bad.is_empty() {
        if nodes.len() == 1 {
            let name = nodes[0].metadata.name.as_deref().unwrap_or("?");
            let since = ready_since
                .map(|d| format!(" for {}", human(d)))
                .unwrap_or_default();
            Outcome::pass(format!("node {name} Ready{since}"))
        } else {
            Outcome::pass(format!("{}/{} nodes Ready", nodes.len(), nodes.len()))
        }
    } else if nodes.len() == 1 {
        Outcome::fail(bad.remove(0))
    } else {
        Outcome::fail(format!(
            "{}/{} nodes not Ready: {}",
            bad.len(),
            nodes.len(),
            list_clipped(&bad)
        ))
    }
}

/// `node_schedulable` over the nodes found.
fn node_schedulable_outcome(
    nodes: &[Node],
    selector: Option<&str>,
    allowed: &[TaintRule],
) -> Outcome {
    if nodes.is_empty() {
        return Outcome::fail(match selector {
            Some(s) => format!("no nodes match {s}"),
            None => "the cluster has no nodes".to_string(),
        });
    }
    let mut bad = Vec::new();
    let mut tolerated: Vec<String> = Vec::new();
    for n in nodes {
        let name = n.metadata.name.as_deref().unwrap_or("?");
        let spec = n.spec.as_ref();
        let cordoned = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let mut problems = Vec::new();
        if cordoned {
            problems.push("cordoned (spec.unschedulable)".to_string());
        }
        for t in spec.and_then(|s| s.taints.as_ref()).into_iter().flatten() {
            let text = taint_text(t);
            if t.effect == "PreferNoSchedule"
                || (cordoned && t.key == "node.kubernetes.io/unschedulable")
            {
                continue;
            }
            if allowed.iter().any(|r| allows(r, t)) {
                if !tolerated.contains(&text) {
                    tolerated.push(text);
                }
                continue;
            }
            problems.push(format!("taint {text}"));
        }
        for c in n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
        {
            let pressure = matches!(
                c.type_.as_str(),
                "MemoryPressure" | "DiskPressure" | "PIDPressure" | "NetworkUnavailable"
            );
            if pressure && c.status == "True" {
                problems.push(format!(
                    "{}{}",
                    c.type_,
                    reason_message(None, c.message.as_deref())
                ));
            }
        }
        if !problems.is_empty() {
            bad.push(format!(
                "node {name} not schedulable: {}",
                problems.join(", ")
            ));
        }
    }
    let note = if tolerated.is_empty() {
        String::new()
    } else {
        format!(" (allowed taint {})", tolerated.join(", "))
    };
    if bad.is_empty() {
        if nodes.len() == 1 {
            let name = nodes[0].metadata.name.as_deref().unwrap_or("?");
            Outcome::pass(format!("node {name} schedulable{note}"))
        } else {
            Outcome::pass(format!(
                "{}/{} nodes schedulable{note}",
                nodes.len(),
                nodes.len()
            ))
        }
    } else if nodes.len() == 1 {
        Outcome::fail(bad.remove(0))
    } else {
        Outcome::fail(format!(
            "{}/{} nodes not schedulable: {}",
            bad.len(),
            nodes.len(),
            list_clipped(&bad)
        ))
    }
}

fn taint_text(t: &k8s_openapi::api::core::v1::Taint) -> String {
    match t.value.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => format!("{}={v}:{}", t.key, t.effect),
        None => format!("{}:{}", t.key, t.effect),
    }
}

/// The shared part of the workload checks: observed rollout, desired > 0, ready/available.
struct Counts {
    desired: i32,
    ready: i32,
    available: i32,
    updated: Option<i32>,
    generation: Option<i64>,
    observed: Option<i64>,
}

fn workload_outcome(what: &str, c: Counts, extra_fail: Option<String>) -> Outcome {
    let ready = format!("{}/{} ready", c.ready, c.desired);
    if let (Some(g), Some(o)) = (c.generation, c.observed)
        && o < g
    {
        return Outcome::fail(format!(
            "{what} rollout not observed yet (generation {g}, observed {o}); {ready}"
        ));
    }
    if c.generation.is_some() && c.observed.is_none() {
        return Outcome::fail(format!(
            "{what} has no status yet (its controller has not observed it)"
        ));
    }
    if let Some(f) = extra_fail {
        return Outcome::fail(format!("{what} {f}; {ready}"));
    }
    if c.desired <= 0 {
        return Outcome::fail(format!("{what} wants 0 pods (desired 0)"));
    }
    if c.ready < c.desired || c.available < c.desired {
        let mut s = format!("{what} {ready}, {} available", c.available);
        if let Some(u) = c.updated.filter(|u| *u < c.desired) {
            s.push_str(&format!(
                ", {u}/{} updated (rollout in progress)",
                c.desired
            ));
        }
        return Outcome::fail(s);
    }
    let mut s = format!("{what} {ready}");
    if let Some(u) = c.updated.filter(|u| *u < c.desired) {
        s.push_str(&format!(
            " (rollout in progress: {u}/{} updated)",
            c.desired
        ));
    }
    Outcome::pass(s)
}

/// `daemonset_ready` for one DaemonSet.
pub fn daemonset_outcome(what: &str, d: &DaemonSet) -> Outcome {
    let Some(s) = &d.status else {
        return Outcome::fail(format!(
            "{what} has no status yet (its controller has not observed it)"
        ));
    };
    let desired = s.desired_number_scheduled;
    let mut out = workload_outcome(
        what,
        Counts {
            desired,
            ready: s.number_ready,
            available: s.number_available.unwrap_or(0),
            updated: s.updated_number_scheduled,
            generation: d.metadata.generation,
            observed: s.observed_generation,
        },
        None,
    );
    if desired == 0 && out.output.ends_with("(desired 0)") {
        out.output = format!(
            "{what} schedules no pods (desired 0): no node matches its node selector and tolerations"
        );
    }
    out
}

/// `deployment_ready` for one Deployment.
pub fn deployment_outcome(what: &str, d: &Deployment) -> Outcome {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &d.status else {
        return Outcome::fail(format!(
            "{what} has no status yet (its controller has not observed it)"
        ));
    };
    let stalled = s.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let extra = stalled.map(|c| {
        format!(
            "rollout stalled{}",
            reason_message(c.reason.as_deref(), c.message.as_deref())
        )
    });
    let mut out = workload_outcome(
        what,
        Counts {
            desired,
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            updated: s.updated_replicas,
            generation: d.metadata.generation,
            observed: s.observed_generation,
        },
        extra,
    );
    if desired == 0 && out.output.ends_with("(desired 0)") {
        out.output = format!("{what} is scaled to 0 replicas");
    }
    out
}

/// `statefulset_ready` for one StatefulSet.
pub fn statefulset_outcome(what: &str, st: &StatefulSet) -> Outcome {
    let desired = st.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &st.status else {
        return Outcome::fail(format!(
            "{what} has no status yet (its controller has not observed it)"
        ));
    };
    let mut out = workload_outcome(
        what,
        Counts {
            desired,
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            updated: s.updated_replicas,
            generation: st.metadata.generation,
            observed: s.observed_generation,
        },
        None,
    );
    if desired == 0 && out.output.ends_with("(desired 0)") {
        out.output = format!("{what} is scaled to 0 replicas");
    }
    out
}

/// `pod_ready` over the pods found (by name: one; by selector: every match).
pub fn pods_outcome(pods: &[Pod], selector: Option<&str>, ns: &str, now: SystemTime) -> Outcome {
    // Completed pods (Jobs) matched by a selector are neither ready nor a problem.
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            selector.is_none()
                || p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded")
        })
        .collect();
    if live.is_empty() {
        return Outcome::fail(match selector {
            Some(s) => format!("no pods match {s} in namespace {ns}"),
            None => format!("no pod in namespace {ns}"),
        });
    }
    let mut bad = Vec::new();
    for p in &live {
        if let Some(why) = pod_problem(p, now) {
            let name = p.metadata.name.as_deref().unwrap_or("?");
            bad.push(format!("pod {ns}/{name} not ready: {why}"));
        }
    }
    let scope = selector
        .map(|s| format!(" ({s} in {ns})"))
        .unwrap_or_default();
    if bad.is_empty() {
        if selector.is_none() {
            let name = live[0].metadata.name.as_deref().unwrap_or("?");
            Outcome::pass(format!("pod {ns}/{name} Ready"))
        } else {
            Outcome::pass(format!("{}/{} pods ready{scope}", live.len(), live.len()))
        }
    } else if selector.is_none() {
        Outcome::fail(bad.remove(0))
    } else {
        Outcome::fail(format!(
            "{}/{} pods ready{scope}; {}",
            live.len() - bad.len(),
            live.len(),
            list_clipped(&bad)
        ))
    }
}

/// Why a pod is not Ready, or `None` when it is.
fn pod_problem(p: &Pod, now: SystemTime) -> Option<String> {
    let Some(s) = &p.status else {
        return Some("no status yet".to_string());
    };
    let ready = s
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready && p.metadata.deletion_timestamp.is_none() {
        return None;
    }
    let mut why = Vec::new();
    if let Some(t) = &p.metadata.deletion_timestamp {
        why.push(format!("terminating for {}", human(age(t, now))));
    }
    let phase = s.phase.as_deref().unwrap_or("Unknown");
    if phase == "Succeeded" || phase == "Failed" {
        why.push(format!(
            "phase {phase}{}",
            reason_message(s.reason.as_deref(), s.message.as_deref())
        ));
    }
    let statuses = s
        .init_container_statuses
        .iter()
        .flatten()
        .map(|c| (true, c))
        .chain(s.container_statuses.iter().flatten().map(|c| (false, c)));
    for (init, c) in statuses {
        let kind = if init { "init container" } else { "container" };
        let restarts = if c.restart_count > 0 {
            format!(", {} restarts", c.restart_count)
        } else {
            String::new()
        };
        let state = c.state.as_ref();
        if let Some(w) = state.and_then(|st| st.waiting.as_ref()) {
            why.push(format!(
                "{kind} {} {}{}{restarts}",
                c.name,
                w.reason.as_deref().unwrap_or("Waiting"),
                reason_message(None, w.message.as_deref())
            ));
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            if init && t.exit_code == 0 {
                continue;
            }
            why.push(format!(
                "{kind} {} terminated: {} (exit {}){restarts}",
                c.name,
                t.reason.as_deref().unwrap_or("Terminated"),
                t.exit_code
            ));
        } else if !c.ready && !init {
            why.push(format!("{kind} {} running but not ready{restarts}", c.name));
        }
    }
    if why.is_empty() {
        let unscheduled = s
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False");
        match unscheduled {
            Some(c) => why.push(format!(
                "unschedulable{}",
                reason_message(None, c.message.as_deref())
            )),
            None => why.push(format!(
                "phase {phase}{}",
                reason_message(s.reason.as_deref(), s.message.as_deref())
            )),
        }
    }
    Some(why.join(", "))
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// Turn a client error into an outcome whose output says which class of failure it is:
/// unreachable, TLS, unauthorized/forbidden, not found, timeout — or, for what is none of those,
/// an API error with the server's own message.
fn classify(e: &kube::Error, url: &str, what: &str) -> Outcome {
    if let kube::Error::Api(s) = e {
        let msg = clip(s.message.trim(), 240);
        let with_msg = |prefix: String| {
            if msg.is_empty() {
                prefix
            } else {
                format!("{prefix}: {msg}")
            }
        };
        return match s.code {
            401 => Outcome::fail(with_msg(format!(
                "unauthorized (401) by {url}: the credentials were rejected"
            ))),
            403 => Outcome::fail(with_msg(format!("forbidden (403) reading {what}"))),
            404 => Outcome::fail(format!("not found: {what} does not exist (404)")),
            code => {
                let reason = if s.reason.is_empty() {
                    String::new()
                } else {
                    format!(" {}", s.reason)
                };
                Outcome::fail(with_msg(format!("API error {code}{reason} from {url}")))
            }
        };
    }
    let text = chain(e);
    let mut io_kinds = Vec::new();
    let mut tls: Option<String> = None;
    walk(e, &mut |err| {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            io_kinds.push(io.kind());
        }
        if tls.is_none()
            && let Some(r) = err.downcast_ref::<rustls::Error>()
        {
            tls = Some(r.to_string());
        }
    });
    if io_kinds.contains(&std::io::ErrorKind::TimedOut) {
        return Outcome::timeout(format!("timeout: {url} did not answer ({text})"));
    }
    if let Some(t) = tls {
        return Outcome::fail(format!("TLS failure talking to {url}: {t}"));
    }
    if matches!(e, kube::Error::Auth(_)) {
        return Outcome::error(format!("credentials for {url} could not be loaded: {text}"));
    }
    if io_kinds.contains(&std::io::ErrorKind::ConnectionRefused) {
        return Outcome::fail(format!("unreachable: {url} refused the connection"));
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("dns error") || lower.contains("failed to lookup address") {
        return Outcome::fail(format!(
            "unreachable: cannot resolve the host of {url} ({text})"
        ));
    }
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        return Outcome::fail(format!("TLS failure talking to {url}: {text}"));
    }
    let connectish = io_kinds.iter().any(|k| {
        use std::io::ErrorKind::*;
        matches!(
            k,
            ConnectionReset
                | ConnectionAborted
                | NotConnected
                | HostUnreachable
                | NetworkUnreachable
                | AddrNotAvailable
                | BrokenPipe
                | UnexpectedEof
        )
    });
    if connectish || lower.contains("connect") {
        return Outcome::fail(format!("unreachable: {url}: {text}"));
    }
    if matches!(e, kube::Error::SerdeError(_)) {
        return Outcome::fail(format!("unexpected answer from {url} about {what}: {text}"));
    }
    Outcome::error(format!("{what}: {text}"))
}

/// Visit an error and all its sources, including errors wrapped inside `std::io::Error`
/// (whose `source()` skips the wrapped error itself).
fn walk<'a>(
    e: &'a (dyn std::error::Error + 'static),
    f: &mut dyn FnMut(&'a (dyn std::error::Error + 'static)),
) {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut depth = 0;
    while let Some(err) = cur {
        f(err);
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            f(inner);
        }
        depth += 1;
        if depth > 16 {
            break;
        }
        cur = err.source();
    }
}

/// An error and its sources on one line, without repeating a message its wrapper already shows.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    walk(e, &mut |err| {
        let (raw, s) = (err.to_string(), describe(err));
        // A rewritten message replaces its raw form where a wrapper already quoted it.
        if s != raw {
            let mut replaced = false;
            for p in parts.iter_mut().filter(|p| p.contains(&raw)) {
                *p = p.replace(&raw, &s);
                replaced = true;
            }
            if replaced {
                return;
            }
        }
        let s = s.trim();
        if s.is_empty() || parts.iter().any(|p| p.contains(s)) {
            return;
        }
        parts.push(s.to_string());
    });
    clip(&parts.join(": "), 400)
}

/// One error's own message; an exec plugin's failure without kube's debug dump of its output.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    if let Some(kube::client::AuthError::AuthExecRun { out, .. }) =
        err.downcast_ref::<kube::client::AuthError>()
    {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let said = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        return format!(
            "exec credential plugin failed ({}): {}",
            out.status,
            clip(said.trim(), 200)
        );
    }
    err.to_string()
}

// ---------------------------------------------------------------------------------------------
// Small formatting helpers.

/// ": Reason (message)" with whichever parts exist.
fn reason_message(reason: Option<&str>, message: Option<&str>) -> String {
    let reason = reason.map(str::trim).filter(|s| !s.is_empty());
    let message = message
        .map(|m| clip(m.trim(), 200))
        .filter(|s| !s.is_empty());
    match (reason, message) {
        (Some(r), Some(m)) => format!(": {r} ({m})"),
        (Some(r), None) => format!(": {r}"),
        (None, Some(m)) => format!(" ({m})"),
        (None, None) => String::new(),
    }
}

/// At most three items joined by "; ", then "and N more".
fn list_clipped(items: &[String]) -> String {
    let mut s = items.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
    if items.len() > 3 {
        s.push_str(&format!("; and {} more", items.len() - 3));
    }
    s
}

/// One line, at most `max` characters.
fn clip(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        one
    } else {
        let mut t: String = one.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn age(t: &Time, now: SystemTime) -> Duration {
    let secs = t.0.as_second();
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Duration::from_secs(now_secs.saturating_sub(secs).max(0) as u64)
}

/// `45s`, `3m12s`, `2h5m`, `3d4h`; sub-second durations as `850ms`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (days, h, m, sec) = (s / 86400, (s / 3600) % 24, (s / 60) % 60, s % 60);
    if days > 0 {
        format!("{days}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, Taint};
    use kube::api::ObjectMeta;

    fn time_ago(now: SystemTime, secs: u64) -> Time {
        let t = now.duration_since(UNIX_EPOCH).unwrap().as_secs() - secs;
        Time(k8s_openapi::jiff::Timestamp::from_second(t as i64).unwrap())
    }

    fn node(name: &str, ready: &str, reason: &str, msg: &str, ago: u64, now: SystemTime) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    reason: Some(reason.into()),
                    message: Some(msg.into()),
                    last_transition_time: Some(time_ago(now, ago)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn node_not_ready_names_node_reason_and_duration() {
        let now = SystemTime::now();
        let n = node(
            "lima-default",
            "False",
            "KubeletNotReady",
            "PLEG is not healthy",
            192,
            now,
        );
        let o = node_ready_outcome(&[n], None, now);
        assert_eq!(o.status, crate::core::Status::Fail);
        assert_eq!(
            o.output,
            "node lima-default NotReady for 3m12s: KubeletNotReady (PLEG is not healthy)"
        );
    }

    #[test]
    fn control_plane_taint_is_allowed_by_default_but_custom_taint_is_not() {
        let now = SystemTime::now();
        let mut n = node("cp", "True", "KubeletReady", "ok", 10, now);
        n.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "node-role.kubernetes.io/control-plane".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let spec = |allowed: Option<Vec<String>>| K8sSpec {
            check: K8sCheck::NodeSchedulable,
            kubeconfig: None,
            context: None,
            namespace: None,
            name: None,
            selector: None,
            node: None,
            allowed_taints: allowed,
            verb: None,
            resource: None,
            subresource: None,
            group: None,
            as_user: None,
        };
        let o = node_schedulable_outcome(std::slice::from_ref(&n), None, &spec(None).taint_rules());
        assert!(o.status.passed(), "{o:?}");
        assert!(
            o.output
                .contains("allowed taint node-role.kubernetes.io/control-plane:NoSchedule")
        );
        // An empty allow-list makes the same taint a failure.
        let o = node_schedulable_outcome(&[n], None, &spec(Some(vec![])).taint_rules());
        assert_eq!(
            o.output,
            "node cp not schedulable: taint node-role.kubernetes.io/control-plane:NoSchedule"
        );
    }

    #[test]
    fn taint_rules_parse_and_match() {
        let r = TaintRule::parse("dedicated=gpu:NoSchedule").unwrap();
        let t = |k: &str, v: Option<&str>, e: &str| Taint {
            key: k.into(),
            value: v.map(Into::into),
            effect: e.into(),
            time_added: None,
        };
        assert!(allows(&r, &t("dedicated", Some("gpu"), "NoSchedule")));
        assert!(!allows(&r, &t("dedicated", Some("cpu"), "NoSchedule")));
        assert!(!allows(&r, &t("dedicated", Some("gpu"), "NoExecute")));
        assert!(allows(
            &TaintRule::parse("key").unwrap(),
            &t("key", Some("v"), "NoExecute")
        ));
        assert!(
            TaintRule::parse("key:Sometimes")
                .unwrap_err()
                .contains("effect `Sometimes`")
        );
    }

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(192)), "3m12s");
        assert_eq!(human(Duration::from_secs(7500)), "2h5m");
        assert_eq!(human(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d4h");
        assert_eq!(human(Duration::from_millis(850)), "850ms");
    }

    fn pod_with(status: k8s_openapi::api::core::v1::PodStatus) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                ..Default::default()
            },
            spec: None,
            status: Some(status),
        }
    }

    #[test]
    fn pods_explain_eviction_scheduling_and_failing_init_containers() {
        use k8s_openapi::api::core::v1::{
            ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodStatus,
        };
        let now = SystemTime::now();
        let evicted = pod_with(PodStatus {
            phase: Some("Failed".into()),
            reason: Some("Evicted".into()),
            message: Some("The node was low on resource: memory.".into()),
            ..Default::default()
        });
        assert_eq!(
            pods_outcome(&[evicted], None, "apps", now).output,
            "pod apps/p not ready: phase Failed: Evicted (The node was low on resource: memory.)"
        );
        let pending = pod_with(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                message: Some("0/1 nodes are available: 1 node(s) had untolerated taint.".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(
            pods_outcome(&[pending], None, "apps", now).output,
            "pod apps/p not ready: unschedulable (0/1 nodes are available: 1 node(s) had untolerated taint.)"
        );
        let init_failed = pod_with(PodStatus {
            phase: Some("Pending".into()),
            init_container_statuses: Some(vec![ContainerStatus {
                name: "migrate".into(),
                restart_count: 2,
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 1,
                        reason: Some("Error".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let o = pods_outcome(&[init_failed], None, "apps", now);
        assert_eq!(o.status, crate::core::Status::Fail);
        assert_eq!(
            o.output,
            "pod apps/p not ready: init container migrate terminated: Error (exit 1), 2 restarts"
        );
        // A completed Job pod matched by a selector is neither ready nor a failure.
        let done = pod_with(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert_eq!(
            pods_outcome(&[done], Some("job=backup"), "apps", now).output,
            "no pods match job=backup in namespace apps"
        );
    }

    #[test]
    fn objects_without_status_or_conditions_are_explained() {
        let now = SystemTime::now();
        let mut n = node("fresh", "True", "", "", 1, now);
        n.status = None;
        assert_eq!(
            node_ready_outcome(&[n], None, now).output,
            "node fresh has no Ready condition (the kubelet has not reported)"
        );
        assert_eq!(
            node_ready_outcome(&[], Some("pool=gpu"), now).output,
            "no nodes match pool=gpu"
        );
        let d = Deployment {
            metadata: ObjectMeta {
                generation: Some(1),
                ..Default::default()
            },
            ..Default::default()
        };
        let o = deployment_outcome("deployment a/b", &d);
        assert_eq!(o.status, crate::core::Status::Fail);
        assert_eq!(
            o.output,
            "deployment a/b has no status yet (its controller has not observed it)"
        );
    }

    #[test]
    fn an_error_chain_reads_as_one_line_without_repeats() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "request failed: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(chain(&e), "request failed: connection refused");
    }

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
