//! The probe engine: runs a set of probes concurrently (bounded by `probes.concurrency`), each
//! under its own timeout, honouring `depends_on`. A cycle costs about its slowest probe, not the
//! sum of them.
//!
//! The daemon and `talon check` use the same [`Engine`]:
//!
//! ```no_run
//! # async fn demo(config: &talon::config::Config) {
//! use talon::probe::Engine;
//! let engine = Engine::new(config);
//! // One cycle over every probe; results come back in config order.
//! let results = engine.run(&config.probes).await;
//! // One probe on its own (per-probe intervals, re-probing after a heal).
//! let one = engine.run_one(&config.probes[0]).await;
//! # }
//! ```
//!
//! Dependencies: a probe waits (without holding a concurrency slot) until every dependency in
//! the same run has a result; if any of them did not pass, it is not run and is reported
//! [`Status::Blocked`] naming that dependency. Independent probes never wait for each other.
//! A dependency that is not part of the run is ignored (the caller chose the set).

use super::http::HttpClients;
use super::outcome::{Outcome, ProbeResult, Status};
use super::spec::{ProbeConfig, ProbeKind};
use crate::clock;
use crate::config::Config;
use crate::config::path::SearchPath;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Time between TERM and KILL when a probe's subprocess group is stopped at its timeout.
pub const PROBE_KILL_GRACE: Duration = Duration::from_millis(500);

/// Extra time the engine allows a kind that enforces its own timeout (a subprocess kind) before
/// it gives up on it anyway. Only reached if the subprocess runner itself misbehaves.
const BACKSTOP: Duration = Duration::from_secs(2);

/// What the engine needs besides the probes themselves.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Talon's compiled PATH, for every subprocess a probe runs.
    pub search_path: SearchPath,
    /// Probes running at once, at most.
    pub concurrency: usize,
}

/// Everything a kind's check may use: shared clients, the compiled PATH, and this probe's
/// timeout. Cheap to clone (the shared parts are behind an `Arc`).
#[derive(Debug, Clone)]
pub struct ProbeCtx {
    shared: Arc<Shared>,
    /// This probe's timeout. Subprocess kinds pass it to [`crate::proc::Cmd::timeout`].
    pub timeout: Duration,
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
        }
    }

    fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            shared: self.shared.clone(),
            timeout,
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

/// Runs probes. Clone it freely: clones share the clients and the concurrency bound.
#[derive(Debug, Clone)]
pub struct Engine {
    ctx: ProbeCtx,
    slots: Arc<Semaphore>,
}

impl Engine {
    /// The engine for a validated config (its compiled PATH and `probes.concurrency`).
    pub fn new(config: &Config) -> Self {
        Self::with_options(EngineOptions {
            search_path: config.search_path.clone(),
            concurrency: config.probe_defaults.concurrency.get() as usize,
        })
    }

    pub fn with_options(opts: EngineOptions) -> Self {
        super::http::install_crypto_provider();
        Self {
            ctx: ProbeCtx::new(opts.search_path, Duration::from_secs(5)),
            slots: Arc::new(Semaphore::new(opts.concurrency.max(1))),
        }
    }

    /// Run one cycle over `probes` and return one result per probe, in the same order.
    pub async fn run(&self, probes: &[ProbeConfig]) -> Vec<ProbeResult> {
        let index: HashMap<&str, usize> = probes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let (senders, receivers): (Vec<_>, Vec<_>) = probes
            .iter()
            .map(|_| watch::channel::<Option<ProbeResult>>(None))
            .unzip();
        let mut tasks = Vec::with_capacity(probes.len());
        for (probe, tx) in probes.iter().zip(senders) {
            let deps: Vec<(String, watch::Receiver<Option<ProbeResult>>)> = probe
                .depends_on
                .iter()
                .filter_map(|d| {
                    index
                        .get(d.as_str())
                        .map(|&j| (d.clone(), receivers[j].clone()))
                })
                .collect();
            let engine = self.clone();
            let probe = probe.clone();
            tasks.push(tokio::spawn(async move {
                let result = match first_unhealthy_dependency(deps).await {
                    Some(dep) => blocked(&probe, &dep),
                    None => engine.run_here(&probe).await,
                };
                // Nobody listening (no dependents) is fine.
                let _ = tx.send(Some(result.clone()));
                result
            }));
        }
        let mut results = Vec::with_capacity(probes.len());
        for (task, probe) in tasks.into_iter().zip(probes) {
            results.push(match task.await {
                Ok(r) => r,
                Err(e) => result_of(
                    probe,
                    clock::wall_ms(),
                    Duration::ZERO,
                    Outcome::error(format!("internal error: probe task ended: {e}")),
                ),
            });
        }
        results
    }

    /// Run a single probe now (waiting for a concurrency slot), under its timeout. Its
    /// dependencies are the caller's business here (see [`blocked`]).
    ///
    /// The run happens on its own task: dropping this future (shutdown, a reload) does not cut
    /// a subprocess probe short, so its process group is still stopped at the timeout and reaped.
    pub async fn run_one(&self, probe: &ProbeConfig) -> ProbeResult {
        let engine = self.clone();
        let owned = probe.clone();
        match tokio::spawn(async move { engine.run_here(&owned).await }).await {
            Ok(r) => r,
            Err(e) => result_of(
                probe,
                clock::wall_ms(),
                Duration::ZERO,
                Outcome::error(format!("internal error: probe task ended: {e}")),
            ),
        }
    }

    async fn run_here(&self, probe: &ProbeConfig) -> ProbeResult {
        // The semaphore is never closed, so acquiring cannot fail.
        let _slot = self.slots.acquire().await.ok();
        let started_at = clock::wall_ms();
        let t0 = clock::now();
        let outcome = self.check(probe).await;
        let duration = t0.elapsed();
        let result = result_of(probe, started_at, duration, outcome);
        tracing::debug!(
            probe = %result.name,
            kind = %result.kind,
            status = result.status.as_str(),
            duration_ms = result.duration_ms,
            output = %result.output,
            "probe finished"
        );
        result
    }

    async fn check(&self, probe: &ProbeConfig) -> Outcome {
        if let Err(reason) = probe.kind.available() {
            return Outcome::error(reason);
        }
        let ctx = self.ctx.with_timeout(probe.timeout);
        let limit = if probe.kind.bounds_itself() {
            probe.timeout + PROBE_KILL_GRACE + BACKSTOP
        } else {
            probe.timeout
        };
        match tokio::time::timeout(limit, probe.kind.check(&ctx)).await {
            Ok(o) => o,
            Err(_) => {
                let target = target_of(&probe.kind)
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default();
                Outcome::timeout(format!(
                    "timed out after {}{target}",
                    fmt_duration(probe.timeout)
                ))
            }
        }
    }
}

/// Wait for every dependency's result; the first one that did not pass, if any.
async fn first_unhealthy_dependency(
    deps: Vec<(String, watch::Receiver<Option<ProbeResult>>)>,
) -> Option<ProbeResult> {
    for (name, mut rx) in deps {
        let r = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        match r {
            Some(r) if r.passed => {}
            Some(r) => return Some(r),
            None => {
                return Some(ProbeResult {
                    name,
                    kind: String::new(),
                    passed: false,
                    status: Status::Error,
                    output: "did not report a result".into(),
                    duration_ms: 0,
                    started_at: clock::wall_ms(),
                });
            }
        }
    }
    None
}

/// The result for `probe` when it was not run because `dependency` did not pass.
pub fn blocked(probe: &ProbeConfig, dependency: &ProbeResult) -> ProbeResult {
    let why = first_line(&dependency.output);
    let output = match dependency.status {
        Status::Blocked => format!("blocked: dependency `{}` is {why}", dependency.name),
        s => format!(
            "blocked: dependency `{}` {}: {why}",
            dependency.name,
            s.as_str()
        ),
    };
    result_of(
        probe,
        clock::wall_ms(),
        Duration::ZERO,
        Outcome {
            status: Status::Blocked,
            output,
        },
    )
}

fn result_of(
    probe: &ProbeConfig,
    started_at: i64,
    duration: Duration,
    outcome: Outcome,
) -> ProbeResult {
    ProbeResult {
        name: probe.name.clone(),
        kind: probe.kind.name().to_string(),
        passed: outcome.status.passed(),
        status: outcome.status,
        output: outcome.output,
        duration_ms: duration.as_millis() as u64,
        started_at,
    }
}

/// What a kind talks to, for messages that have nothing better (a timeout).
fn target_of(kind: &ProbeKind) -> Option<String> {
    match kind {
        ProbeKind::Http(s) => Some(format!("{} {}", s.method, s.url)),
        ProbeKind::Tcp(s) => Some(s.address.clone()),
        ProbeKind::Redis(s) => Some(s.display_target()),
        ProbeKind::Disk(s) => Some(s.path.clone()),
        _ => None,
    }
}

/// "12 ms", "2 s", "2.5 s".
pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The first line of a text, trimmed.
pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::probe::script::ScriptSpec;
    use std::num::NonZeroU32;

    fn script(name: &str, command: &str, deps: &[&str]) -> ProbeConfig {
        ProbeConfig {
            name: name.into(),
            kind: ProbeKind::Script(ScriptSpec {
                command: command.into(),
                env: Default::default(),
            }),
            critical: false,
            timeout: Duration::from_secs(5),
            interval: Duration::from_secs(60),
            critical_after: NonZeroU32::MIN,
            recover_after: NonZeroU32::MIN,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            runbook: None,
            heal: None,
            witness: None,
            defined_at: "test:1".into(),
        }
    }

    fn engine() -> Engine {
        Engine::with_options(EngineOptions {
            search_path: SearchPath {
                dirs: vec!["/usr/bin".into(), "/bin".into()],
            },
            concurrency: 4,
        })
    }

    #[tokio::test]
    async fn a_dependency_outside_the_run_is_ignored() {
        let probes = [
            script("down", "exit 1", &[]),
            script("up", "true", &["down"]),
        ];
        // Only `up`: its dependency is not part of this run, so it runs.
        let rs = engine().run(&probes[1..]).await;
        assert_eq!(rs[0].status, Status::Pass);
        // Both: `up` is blocked by `down`.
        let rs = engine().run(&probes).await;
        assert_eq!(rs[0].status, Status::Fail);
        assert_eq!(rs[1].status, Status::Blocked);
        assert_eq!(rs[1].output, "blocked: dependency `down` fail: exit 1");
        assert_eq!(rs[1].duration_ms, 0);
        assert_eq!(rs[1].kind, "script");
    }

    #[tokio::test]
    async fn a_diamond_waits_for_every_dependency() {
        let probes = [
            script("a", "true", &[]),
            script("b", "sleep 0.2", &["a"]),
            script("c", "exit 4", &["a"]),
            script("d", "true", &["b", "c"]),
        ];
        let rs = engine().run(&probes).await;
        let st: Vec<Status> = rs.iter().map(|r| r.status).collect();
        assert_eq!(
            st,
            [Status::Pass, Status::Pass, Status::Fail, Status::Blocked]
        );
        assert_eq!(rs[3].output, "blocked: dependency `c` fail: exit 4");
    }

    #[tokio::test]
    async fn unavailable_kinds_are_errors_without_running() {
        let mut p = script("x", "true", &[]);
        p.kind = ProbeKind::Launchd(crate::probe::launchd::LaunchdSpec { label: "l".into() });
        let r = engine().run_one(&p).await;
        if cfg!(target_os = "macos") {
            assert_ne!(r.status, Status::Blocked);
        } else {
            assert_eq!(r.status, Status::Error);
            assert_eq!(r.output, "launchd probes run only on macOS");
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_millis(12)), "12 ms");
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2 s");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2.5 s");
    }
}
