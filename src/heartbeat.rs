//! The outbound heartbeat (a dead-man switch outside the host, healthchecks.io-style): a GET to
//! `[heartbeat].url` every `interval` while the system is OK (healthy or degraded — the same
//! states in which `/health` answers 200). When the host goes to failed or worse, or Talon itself
//! dies, the pings stop and the outside service raises the alarm.

use crate::config::HeartbeatConfig;
use crate::metrics::Metrics;
use crate::server::snapshot::StatusSnapshot;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest a single ping may take.
const MAX_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Ping `cfg.url` every `cfg.interval` while `status` says the system is OK. The first ping goes
/// out at once (when OK). Ends when the status board is dropped.
pub fn spawn(
    cfg: HeartbeatConfig,
    mut status: watch::Receiver<StatusSnapshot>,
    metrics: Option<Arc<Metrics>>,
) -> Result<JoinHandle<()>, reqwest::Error> {
    let timeout = cfg
        .interval
        .min(MAX_PING_TIMEOUT)
        .max(Duration::from_secs(1));
    let client = crate::net::client().timeout(timeout).build()?;
    Ok(tokio::spawn(async move {
        loop {
            // Wait until the system is OK (at once when it already is).
            let mut paused = false;
            while !status.borrow_and_update().state.is_ok() {
                if !paused {
                    tracing::info!("heartbeat: paused while the system is not OK");
                    paused = true;
                }
                if status.changed().await.is_err() {
                    return;
                }
            }
            let delivered = match client.get(&cfg.url).send().await {
                Ok(resp) if resp.status().is_success() => true,
                Ok(resp) => {
                    tracing::warn!(status = resp.status().as_u16(), "heartbeat: ping rejected");
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat: ping failed");
                    false
                }
            };
            if let Some(m) = &metrics {
                m.heartbeat(delivered);
            }
            let next = crate::clock::now() + cfg.interval;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => break,
                    r = status.changed() => if r.is_err() { return },
                }
            }
        }
    }))
}
