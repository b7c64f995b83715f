//! systemd's notify protocol, so the service manager watches the watchdog: `READY=1` once the
//! daemon is up, `STATUS=…` for `systemctl status`, `STOPPING=1` on the way out, and `WATCHDOG=1`
//! at half of `WATCHDOG_USEC` — but only while the event loop is making progress: the runtime
//! calls [`Progress::tick`] on every loop iteration, and a ping is sent only if a tick happened
//! since the previous ping. A wedged loop stops the pings and systemd restarts Talon.
//!
//! Messages are datagrams to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//! Without `NOTIFY_SOCKET` everything is a no-op.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// A connection to the service manager, or nothing (not started by systemd).
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Arc<(UnixDatagram, SocketAddr)>>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a no-op notifier when it is unset or empty.
    pub fn from_env() -> io::Result<Self> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(s) if !s.is_empty() => Self::connect(&s),
            _ => Ok(Self::default()),
        }
    }

    /// To an explicit socket (`/run/...` path or `@abstract`).
    pub fn connect(socket: &OsStr) -> io::Result<Self> {
        let addr = socket_addr(socket)?;
        let sock = UnixDatagram::unbound()?;
        // A full receive queue must never block the event loop: drop the message instead.
        sock.set_nonblocking(true)?;
        Ok(Self {
            target: Some(Arc::new((sock, addr))),
        })
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Send raw `KEY=VALUE` lines. No-op when disabled.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let Some(t) = &self.target else {
            return Ok(());
        };
        match t.0.send_to_addr(state.as_bytes(), &t.1) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `READY=1` (with a status line).
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// `STATUS=…`: shown by `systemctl status`.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", one_line(status)))
    }

    /// `RELOADING=1` before applying a reload; send [`Notifier::ready`] after it.
    pub fn reloading(&self) -> io::Result<()> {
        self.send("RELOADING=1")
    }

    /// `STOPPING=1` when shutdown begins.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    /// One `WATCHDOG=1` ping.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn socket_addr(socket: &OsStr) -> io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = socket.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use std::os::linux::net::SocketAddrExt;
            return SocketAddr::from_abstract_name(name);
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract NOTIFY_SOCKET needs Linux",
            ));
        }
    }
    SocketAddr::from_pathname(std::path::Path::new(socket))
}

/// The watchdog interval systemd asked for: `WATCHDOG_USEC`, when `WATCHDOG_PID` is unset or
/// names this process.
pub fn watchdog_interval_from_env() -> Option<Duration> {
    watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// Pure form of [`watchdog_interval_from_env`].
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid.filter(|p| !p.is_empty())
        && pid.trim().parse::<u32>().ok() != Some(my_pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Counts event-loop iterations; shared between the loop (which ticks) and the pinger.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// The loop made progress (call once per iteration; an atomic increment).
    pub fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Send `WATCHDOG=1` every `interval / 2`, but only when `progress` ticked since the last ping.
/// Returns `None` (nothing spawned) when the notifier is disabled.
pub fn spawn_watchdog(
    notifier: Notifier,
    interval: Duration,
    progress: Progress,
) -> Option<JoinHandle<()>> {
    if !notifier.is_enabled() || interval.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut timer = tokio::time::interval(interval / 2);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = progress.count();
        // The first tick fires at once: nothing has happened yet, so it sends nothing.
        loop {
            timer.tick().await;
            let now = progress.count();
            if now != seen {
                seen = now;
                if let Err(e) = notifier.watchdog() {
                    tracing::warn!(error = %e, "sd_notify: WATCHDOG=1 failed");
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_parsing() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn disabled_is_a_no_op() {
        let n = Notifier::default();
        assert!(!n.is_enabled());
        n.ready("up").unwrap();
        n.stopping().unwrap();
    }
}
