//! Readiness and health of one worker life: after `startup_sync_delay`, the sync call
//! (`PUT sync_endpoint`) retried up to `sync_attempts`; then `GET health_endpoint` at once and
//! then on a fixed period, kubelet-style: checks start `health_interval` apart, start to start,
//! whatever the previous one took. A check ends at `http_timeout` or when the next one is due,
//! whichever comes first; either way it is one failure, so a hung worker costs exactly one
//! failure per period and is restarted at the N-th. Failures of checks started inside
//! `health_start_grace` after the spawn do not count (a pass ends the grace). Results go to the
//! supervisor as messages; this task never decides a restart itself and is aborted when the
//! worker's life ends.

use crate::clock::Instant;
use crate::config::WorkerConfig;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;

/// What the monitor learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorMsg {
    SyncDone {
        attempts: u32,
    },
    SyncFailed {
        attempts: u32,
        reason: String,
    },
    /// Health passed (or, without a health endpoint, the startup delay is over).
    Healthy,
    /// Health failed this many times in a row.
    HealthFailed {
        consecutive: u32,
        reason: String,
    },
}

/// An HTTP client for loopback checks. reqwest needs a rustls crypto provider even for plain
/// http; the ring one is installed when none is (idempotent, and what `main` does anyway).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    crate::net::client()
        .timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

async fn call(client: &reqwest::Client, method: reqwest::Method, url: &str) -> Result<(), String> {
    match client.request(method, url).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Err("timed out".into()),
        Err(e) => Err(innermost(&e)),
    }
}

/// The most specific cause of an HTTP error ("Connection refused (os error 111)"), which says
/// more than reqwest's "error sending request".
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Run the sync call and the health loop for one worker life (started at the spawn).
pub async fn run(cfg: WorkerConfig, tx: mpsc::Sender<MonitorMsg>) {
    let spawned_at = Instant::now();
    let client = match http_client(cfg.http_timeout) {
        Ok(c) => c,
        Err(reason) => {
            let _ = tx
                .send(MonitorMsg::HealthFailed {
                    consecutive: cfg.health_failures_before_restart.get(),
                    reason,
                })
                .await;
            return;
        }
    };
    tokio::time::sleep(cfg.startup_sync_delay).await;
    if let Some(url) = &cfg.sync_endpoint {
        let max = cfg.sync_attempts.get();
        let mut pause = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match call(&client, reqwest::Method::PUT, url).await {
                Ok(()) => {
                    let _ = tx.send(MonitorMsg::SyncDone { attempts: attempt }).await;
                    break;
                }
                Err(reason) if attempt >= max => {
                    let _ = tx
                        .send(MonitorMsg::SyncFailed {
                            attempts: attempt,
                            reason,
                        })
                        .await;
                    break;
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    let Some(url) = cfg.health_endpoint.clone() else {
        let _ = tx.send(MonitorMsg::Healthy).await;
        return;
    };
    let cadence = Cadence {
        period: cfg.health_interval,
        timeout: cfg.http_timeout,
        grace_until: spawned_at + cfg.health_start_grace,
    };
    let check = || {
        let (client, url) = (client.clone(), url.clone());
        async move { call(&client, reqwest::Method::GET, &url).await }
    };
    health_loop(cadence, check, tx).await;
}

/// When health checks run and how long each may take.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// Start to start.
    pub period: Duration,
    /// A check's own limit (it also ends when the next one is due).
    pub timeout: Duration,
    /// Failures of checks started before this do not count, until the first pass.
    pub grace_until: Instant,
}

/// The fixed-period health loop: the first check at once, then one every `period` (missed slots
/// are skipped, never run in a burst). Each check is cut at `timeout` or at the next slot,
/// whichever is first, and then counts as one failure; `HealthFailed` carries the count in a row,
/// `Healthy` is sent on the first pass and on every recovery. Returns when `tx` is closed.
pub async fn health_loop<F, Fut>(c: Cadence, mut check: F, tx: mpsc::Sender<MonitorMsg>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let period = c.period.max(Duration::from_millis(1));
    let mut slot = Instant::now();
    let mut consecutive = 0u32;
    let mut healthy = false;
    let mut in_grace = true;
    loop {
        tokio::time::sleep_until(slot).await;
        let started = Instant::now();
        let mut next = slot + period;
        while next <= started {
            next += period;
        }
        let limit = started + c.timeout;
        let result = match tokio::time::timeout_at(limit.min(next), check()).await {
            Ok(r) => r,
            Err(_) if limit <= next => Err(format!(
                "timed out after {}",
                crate::format::latency(c.timeout)
            )),
            Err(_) => Err(format!(
                "timed out: still running when the next check was due ({} apart); cancelled",
                crate::format::latency(period)
            )),
        };
        slot = next;
        let msg = match result {
            Ok(()) => {
                in_grace = false;
                consecutive = 0;
                if healthy {
                    continue;
                }
                healthy = true;
                MonitorMsg::Healthy
            }
            Err(reason) if in_grace && started < c.grace_until => {
                tracing::debug!(%reason, "worker health check failed inside the start grace; not counted");
                continue;
            }
            Err(reason) => {
                in_grace = false;
                healthy = false;
                consecutive += 1;
                MonitorMsg::HealthFailed {
                    consecutive,
                    reason,
                }
            }
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    /// Run the loop in paused time for `run_for` and collect (seconds since start, message).
    async fn collect<F, Fut>(c: Cadence, check: F, run_for: Duration) -> Vec<(f64, MonitorMsg)>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let t0 = Instant::now();
        let (tx, mut rx) = mpsc::channel(64);
        let task = tokio::spawn(health_loop(c, check, tx));
        let mut out = Vec::new();
        let end = t0 + run_for;
        while let Ok(Some(m)) = tokio::time::timeout_at(end, rx.recv()).await {
            out.push((t0.elapsed().as_secs_f64(), m));
        }
        task.abort();
        out
    }

    fn failures(msgs: &[(f64, MonitorMsg)]) -> Vec<(f64, u32)> {
        msgs.iter()
            .filter_map(|(t, m)| match m {
                MonitorMsg::HealthFailed { consecutive, .. } => Some((*t, *consecutive)),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_hanging_10_s_makes_exactly_one_failure_per_period() {
        let c = Cadence {
            period: S(1),
            timeout: S(1),
            grace_until: Instant::now(),
        };
        let hang = || async {
            tokio::time::sleep(S(10)).await;
            Ok(())
        };
        let msgs = collect(c, hang, Duration::from_millis(5_500)).await;
        assert_eq!(
            failures(&msgs),
            vec![(1.0, 1), (2.0, 2), (3.0, 3), (4.0, 4), (5.0, 5)],
            "{msgs:?}"
        );
        assert!(msgs.iter().all(|(_, m)| matches!(
            m,
            MonitorMsg::HealthFailed { reason, .. } if reason.contains("timed out")
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_longer_than_the_period_is_cancelled_at_the_next_start_and_counts_once() {
        // timeout 5 s > period 1 s: the check still running at the next slot is cut there.
        let c = Cadence {
            period: S(1),
            timeout: S(5),
            grace_until: Instant::now(),
        };
        let started = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let n = started.clone();
        let hang = move || {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {
                tokio::time::sleep(S(10)).await;
                Ok(())
            }
        };
        let msgs = collect(c, hang, Duration::from_millis(3_500)).await;
        assert_eq!(failures(&msgs), vec![(1.0, 1), (2.0, 2), (3.0, 3)]);
        assert!(matches!(
            &msgs[0].1,
            MonitorMsg::HealthFailed { reason, .. } if reason.contains("next check was due")
        ));
        // Checks at 0, 1, 2, 3: started on the period, never more than one at a time.
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_check_does_not_push_the_cadence() {
        // Each check takes 0.6 s and passes; they still start 1 s apart (not 1.6 s).
        let c = Cadence {
            period: S(1),
            timeout: S(1),
            grace_until: Instant::now(),
        };
        let t0 = Instant::now();
        let starts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let st = starts.clone();
        let slow = move || {
            st.lock().unwrap().push(t0.elapsed().as_secs_f64());
            async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                Ok(())
            }
        };
        let msgs = collect(c, slow, Duration::from_millis(3_500)).await;
        assert_eq!(*starts.lock().unwrap(), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(msgs.len(), 1, "one Healthy, no repeats: {msgs:?}");
        assert_eq!(msgs[0], (0.6, MonitorMsg::Healthy));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_inside_the_start_grace_do_not_count_and_a_pass_ends_it() {
        // A slow starter: fails until 4 s, passes after. Grace 2.5 s: the checks at 0, 1, 2 do
        // not count; the one at 3 is the first failure; 4 passes.
        let t0 = Instant::now();
        let c = Cadence {
            period: S(1),
            timeout: S(1),
            grace_until: t0 + Duration::from_millis(2_500),
        };
        let slow_start = move || {
            let up = t0.elapsed() >= S(4);
            async move { if up { Ok(()) } else { Err("refused".into()) } }
        };
        let msgs = collect(c, slow_start, Duration::from_millis(4_500)).await;
        assert_eq!(failures(&msgs), vec![(3.0, 1)]);
        assert_eq!(msgs.last().unwrap(), &(4.0, MonitorMsg::Healthy));

        // Once a check passed, the grace is over: the next failure counts at once.
        let t0 = Instant::now();
        let c = Cadence {
            period: S(1),
            timeout: S(1),
            grace_until: t0 + S(60),
        };
        let flaky = move || {
            let ok = t0.elapsed() < S(1);
            async move { if ok { Ok(()) } else { Err("HTTP 500".into()) } }
        };
        let msgs = collect(c, flaky, Duration::from_millis(2_500)).await;
        assert_eq!(msgs[0], (0.0, MonitorMsg::Healthy));
        assert_eq!(failures(&msgs), vec![(1.0, 1), (2.0, 2)]);
    }
}
