//! Readiness and health of one worker life: after `startup_sync_delay`, the sync call
//! (`PUT sync_endpoint`) retried up to `sync_attempts`; then `GET health_endpoint` at once and
//! every `health_interval`. Results go to the supervisor as messages; this task never decides
//! a restart itself and is aborted when the worker's life ends.

use crate::config::WorkerConfig;
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

/// Run the sync call and the health loop for one worker life.
pub async fn run(cfg: WorkerConfig, tx: mpsc::Sender<MonitorMsg>) {
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
    let Some(url) = &cfg.health_endpoint else {
        let _ = tx.send(MonitorMsg::Healthy).await;
        return;
    };
    let mut consecutive = 0u32;
    let mut healthy = false;
    loop {
        match call(&client, reqwest::Method::GET, url).await {
            Ok(()) => {
                consecutive = 0;
                if !healthy {
                    healthy = true;
                    if tx.send(MonitorMsg::Healthy).await.is_err() {
                        return;
                    }
                }
            }
            Err(reason) => {
                consecutive += 1;
                healthy = false;
                if tx
                    .send(MonitorMsg::HealthFailed {
                        consecutive,
                        reason,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        tokio::time::sleep(cfg.health_interval).await;
    }
}
