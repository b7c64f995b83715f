//! The daemon's outside sources, wired into the inbox by [`Runtime::run`]: OS signals, the config
//! file watcher, the HTTP server (whose control endpoints feed [`Msg::Control`]), systemd's
//! notify socket and the heartbeat. Tests drive [`Runtime::serve`] without them.

use super::Runtime;
use super::inbox::{Inbox, Msg, ReloadTrigger};
use nix::sys::signal::Signal;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often the config files are checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(1);

impl Runtime {
    /// Run until SIGTERM/SIGINT. Then: stop starting work, kill in-flight heal/agent groups,
    /// drain the worker, flush the store.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let forwarded = self
            .cfg
            .worker
            .as_ref()
            .map(|w| w.forward_signals.clone())
            .unwrap_or_default();
        let pumps = signals(&self.inbox, &forwarded)?;
        self.pumps.extend(pumps);
        self.start_server().await;
        let (changes_tx, changes) = mpsc::channel(16);
        self.surfaces.watch = Some(crate::watch::spawn(
            self.watched_paths(),
            WATCH_EVERY,
            changes_tx,
        ));
        self.pumps.push(self.inbox.forward_from(changes, |c| {
            Msg::Reload(ReloadTrigger::FileChanged {
                path: c.path,
                exists: c.exists,
            })
        }));
        self.surfaces.sd = crate::sdnotify::Notifier::from_env().ok();
        if let Some(interval) = crate::sdnotify::watchdog_interval_from_env()
            && let Ok(n) = crate::sdnotify::Notifier::from_env()
        {
            crate::sdnotify::spawn_watchdog(n, interval, self.surfaces.progress.clone());
        }
        if let Some(hb) = self.cfg.heartbeat.clone() {
            let status = self.surfaces.board.subscribe();
            if let Err(e) = crate::heartbeat::spawn(hb, status, Some(self.surfaces.metrics.clone()))
            {
                tracing::error!(error = %e, "heartbeat disabled");
            }
        }
        self.surfaces.alerts = Some(super::alerts::spawn(
            self.cfg.clone(),
            self.surfaces.board.subscribe(),
        ));
        self.serve().await;
        Ok(())
    }
}

/// TERM and INT stop the daemon, HUP reloads, `forward` (`worker.forward_signals` names, e.g.
/// `USR1`) go on to the worker. One pump task per signal.
fn signals(inbox: &Inbox, forward: &[String]) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut wanted = vec![
        (Signal::SIGTERM, Msg::Shutdown as fn(Signal) -> Msg),
        (Signal::SIGINT, Msg::Shutdown),
        (Signal::SIGHUP, |_| Msg::Reload(ReloadTrigger::Sighup)),
    ];
    for name in forward {
        if let Ok(sig) = format!("SIG{name}").parse::<Signal>() {
            wanted.push((sig, Msg::Forward));
        }
    }
    let mut pumps = Vec::new();
    for (sig, to_msg) in wanted {
        let mut stream = signal(SignalKind::from_raw(sig as i32))?;
        let inbox = inbox.clone();
        pumps.push(tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if !inbox.send(to_msg(sig)) {
                    return;
                }
            }
        }));
    }
    Ok(pumps)
}
