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

use super::ctx::PROBE_KILL_GRACE;
pub use super::ctx::ProbeCtx;
use crate::clock;
use crate::config::Config;
use crate::config::path::SearchPath;
use crate::config::probe::{ProbeConfig, ProbeKind};
use crate::core::outcome::{Outcome, ProbeResult, Status};
use crate::format::latency;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

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
    /// How much detail a failing result keeps (`[probes] detail_bytes`).
    pub detail_bytes: usize,
    /// rlimits for `script` probes (`[limits]`).
    pub script_limits: crate::proc::limits::Limits,
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
            detail_bytes: config.probe_defaults.detail_bytes as usize,
            script_limits: config.limits.script.into(),
        })
    }

    /// The same engine, with `push` probes reading their pings from `pushes` (the daemon shares
    /// them with its HTTP server; `talon check` loads them from the store).
    pub fn with_pushes(mut self, pushes: super::push::Pushes) -> Self {
        self.ctx = self.ctx.with_pushes(pushes);
        self
    }

    pub fn with_options(opts: EngineOptions) -> Self {
        crate::net::install_tls_provider();
        Self {
            ctx: ProbeCtx::new(opts.search_path, Duration::from_secs(5))
                .with_detail_bytes(opts.detail_bytes)
                .with_script_limits(opts.script_limits),
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
        let result = with_detail(
            result_of(probe, started_at, duration, outcome),
            self.ctx.detail_bytes,
        );
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
        let ctx = self.ctx.with_timeout(probe.timeout).for_probe(&probe.name);
        let limit = if bounds_itself(&probe.kind) {
            probe.timeout + PROBE_KILL_GRACE + BACKSTOP
        } else {
            probe.timeout
        };
        match tokio::time::timeout(limit, check(&probe.kind, &ctx)).await {
            Ok(o) => o,
            Err(_) => {
                let target = target_of(&probe.kind)
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default();
                Outcome::timeout(format!(
                    "timed out after {}{target}",
                    latency(probe.timeout)
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
                    detail: String::new(),
                    duration_ms: 0,
                    started_at: clock::wall_ms(),
                });
            }
        }
    }
    None
}

/// Run this probe's check once. The engine bounds it by the probe's timeout (see
/// [`bounds_itself`]) and answers `error` first when the kind is unavailable here.
pub async fn check(kind: &ProbeKind, ctx: &ProbeCtx) -> Outcome {
    match kind {
        ProbeKind::Http(s) => crate::probe::http::check(s, ctx).await,
        ProbeKind::Tcp(s) => crate::probe::tcp::check(s, ctx).await,
        ProbeKind::Script(s) => crate::probe::script::check(s, ctx).await,
        ProbeKind::Redis(s) => crate::probe::redis::check(s, ctx).await,
        ProbeKind::Launchd(s) => crate::probe::launchd::check(s, ctx).await,
        ProbeKind::Systemd(s) => crate::probe::systemd::check(s, ctx).await,
        ProbeKind::Disk(s) => crate::probe::disk::check(s, ctx).await,
        ProbeKind::Process(s) => crate::probe::process::check(s, ctx).await,
        ProbeKind::Push(s) => crate::probe::push::check(s, ctx),
        #[cfg(feature = "k8s")]
        ProbeKind::K8s(s) => s.check(ctx.k8s(), ctx.timeout).await,
        ProbeKind::Tls(s) => crate::probe::tls::check(s, ctx).await,
        ProbeKind::Dns(s) => crate::probe::dns::check(s, ctx).await,
        ProbeKind::Ping(s) => crate::probe::ping::check(s, ctx).await,
        ProbeKind::Logfile(s) => crate::probe::logfile::check(s, ctx).await,
    }
}

/// Kinds that run a subprocess enforce the timeout themselves through [`crate::proc`] (which
/// stops the whole process group); the engine then only adds a backstop, because dropping a
/// running subprocess future would leave the group behind.
pub fn bounds_itself(kind: &ProbeKind) -> bool {
    matches!(
        kind,
        ProbeKind::Script(_) | ProbeKind::Launchd(_) | ProbeKind::Systemd(_)
    ) || is_k8s(kind)
        || (cfg!(not(target_os = "linux")) && matches!(kind, ProbeKind::Process(_)))
}

/// `k8s` checks apply the timeout themselves, with a more specific message.
fn is_k8s(kind: &ProbeKind) -> bool {
    #[cfg(feature = "k8s")]
    return matches!(kind, ProbeKind::K8s(_));
    #[cfg(not(feature = "k8s"))]
    {
        let _ = kind;
        false
    }
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
            detail: String::new(),
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
        detail: outcome.detail,
        duration_ms: duration.as_millis() as u64,
        started_at,
    }
}

/// A result's detail as it is kept: only for a failure, at most about `max` bytes. A kind
/// shapes its own detail within the bound (plus the few bytes of a "… omitted" marker); this
/// is the backstop, keeping the newest part.
fn with_detail(mut r: ProbeResult, max: usize) -> ProbeResult {
    const MARKERS: usize = 128;
    if !r.status.is_failure() || max == 0 {
        r.detail.clear();
    } else if r.detail.len() > max + MARKERS {
        r.detail = crate::format::newest_excerpt(&r.detail, max);
    }
    r
}

/// What a kind talks to, for messages that have nothing better (a timeout).
fn target_of(kind: &ProbeKind) -> Option<String> {
    match kind {
        ProbeKind::Http(s) => Some(format!("{} {}", s.method, s.url)),
        ProbeKind::Tcp(s) => Some(s.address.clone()),
        ProbeKind::Redis(s) => Some(s.display_target()),
        ProbeKind::Disk(s) => Some(s.path.clone()),
        ProbeKind::Tls(s) => Some(s.address.clone()),
        ProbeKind::Dns(s) => Some(crate::probe::dns::target(s)),
        ProbeKind::Ping(s) => Some(s.host.clone()),
        ProbeKind::Logfile(s) => Some(s.path.clone()),
        _ => None,
    }
}

/// The first line of a text, trimmed.
pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::probe::script::ScriptSpec;
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
            detail_bytes: 4096,
            script_limits: Default::default(),
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
        p.kind =
            ProbeKind::Launchd(crate::config::probe::launchd::LaunchdSpec { label: "l".into() });
        let r = engine().run_one(&p).await;
        if cfg!(target_os = "macos") {
            assert_ne!(r.status, Status::Blocked);
        } else {
            assert_eq!(r.status, Status::Error);
            assert_eq!(r.output, "launchd probes run only on macOS");
        }
    }
}
