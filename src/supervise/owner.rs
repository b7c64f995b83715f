//! One owner: when an external supervisor owns the worker (a launchd label loaded in the system
//! or gui domain on macOS, a systemd unit active on Linux), Talon neither supervises it nor
//! touches its port. The check runs through the one subprocess runner and is repeated every
//! `owner_check`; the parsers are pure and tested on captured output on every platform.

use crate::config::WorkerConfig;
use crate::config::path::SearchPath;
use crate::proc::{Cmd, End};
use std::time::Duration;

/// The answer of one owner check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// An external supervisor owns the worker; the text names it (`systemd unit w.service
    /// (active)`).
    External(String),
    /// Nobody else owns it: Talon supervises.
    Free,
    /// The check itself failed (tool missing, timeout): keep the previous decision.
    Unknown(String),
}

/// How long one `systemctl`/`launchctl` call may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Interpret `systemctl is-active UNIT`: the unit owns the worker while it is active or moving
/// between states (activating, reloading, deactivating, refreshing).
pub fn parse_systemctl_is_active(unit: &str, end: End, stdout: &str) -> Ownership {
    let state = stdout.lines().map(str::trim).find(|l| !l.is_empty());
    match state {
        Some(s @ ("active" | "activating" | "reloading" | "deactivating" | "refreshing")) => {
            Ownership::External(format!("systemd unit {unit} ({s})"))
        }
        Some("inactive" | "failed" | "dead" | "unknown" | "maintenance") => Ownership::Free,
        Some(other) => Ownership::Unknown(format!(
            "`systemctl is-active {unit}` said `{other}` ({end})"
        )),
        None => Ownership::Unknown(format!(
            "`systemctl is-active {unit}` printed nothing ({end})"
        )),
    }
}

/// Interpret `launchctl print DOMAIN/LABEL`: exit 0 means the label is loaded in that domain.
/// Exit 113 ("Could not find service") means it is not.
pub fn parse_launchctl_print(target: &str, end: End, stdout: &str) -> Ownership {
    match end {
        End::Exited(0) => {
            let mut state = None;
            let mut pid = None;
            for l in stdout.lines().map(str::trim) {
                if let Some(v) = l.strip_prefix("state = ") {
                    state.get_or_insert(v.trim().to_string());
                } else if let Some(v) = l.strip_prefix("pid = ") {
                    pid.get_or_insert(v.trim().to_string());
                }
            }
            let mut d = format!("launchd service {target} (loaded");
            if let Some(s) = state {
                d.push_str(&format!(", {s}"));
            }
            if let Some(p) = pid {
                d.push_str(&format!(", pid {p}"));
            }
            d.push(')');
            Ownership::External(d)
        }
        End::Exited(113) => Ownership::Free,
        other => Ownership::Unknown(format!("`launchctl print {target}` {other}")),
    }
}

async fn systemd(unit: &str, search: &SearchPath) -> Ownership {
    match Cmd::new("systemctl")
        .args(["is-active", unit])
        .search_path(search)
        .timeout(CHECK_TIMEOUT)
        .run()
        .await
    {
        Ok(f) if f.end == End::TimedOut => {
            Ownership::Unknown(format!("`systemctl is-active {unit}` timed out"))
        }
        Ok(f) => parse_systemctl_is_active(unit, f.end, &f.stdout.text()),
        Err(e) => Ownership::Unknown(e.to_string()),
    }
}

async fn launchd(label: &str, search: &SearchPath) -> Ownership {
    let uid = nix::unistd::getuid().as_raw();
    let mut unknown = None;
    for target in [format!("system/{label}"), format!("gui/{uid}/{label}")] {
        let o = match Cmd::new("launchctl")
            .args(["print", target.as_str()])
            .search_path(search)
            .timeout(CHECK_TIMEOUT)
            .run()
            .await
        {
            Ok(f) => parse_launchctl_print(&target, f.end, &f.stdout.text()),
            Err(e) => Ownership::Unknown(e.to_string()),
        };
        match o {
            Ownership::External(_) => return o,
            Ownership::Unknown(r) => unknown = Some(r),
            Ownership::Free => {}
        }
    }
    unknown.map_or(Ownership::Free, Ownership::Unknown)
}

/// Check the configured external owners (none configured → `Free`).
pub async fn check(cfg: &WorkerConfig, search: &SearchPath) -> Ownership {
    let mut unknown = None;
    if let Some(unit) = &cfg.external_systemd_unit {
        match systemd(unit, search).await {
            o @ Ownership::External(_) => return o,
            Ownership::Unknown(r) => unknown = Some(r),
            Ownership::Free => {}
        }
    }
    if let Some(label) = &cfg.external_launchd_label {
        match launchd(label, search).await {
            o @ Ownership::External(_) => return o,
            Ownership::Unknown(r) => unknown = Some(r),
            Ownership::Free => {}
        }
    }
    unknown.map_or(Ownership::Free, Ownership::Unknown)
}

/// Whether any external owner is configured at all.
pub fn configured(cfg: &WorkerConfig) -> bool {
    cfg.external_systemd_unit.is_some() || cfg.external_launchd_label.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_states() {
        let o = parse_systemctl_is_active("w.service", End::Exited(0), "active\n");
        assert_eq!(
            o,
            Ownership::External("systemd unit w.service (active)".into())
        );
        assert!(matches!(
            parse_systemctl_is_active("w", End::Exited(3), "activating\n"),
            Ownership::External(_)
        ));
        for s in ["inactive\n", "failed\n", "unknown\n"] {
            assert_eq!(
                parse_systemctl_is_active("w", End::Exited(3), s),
                Ownership::Free,
                "{s}"
            );
        }
        // systemd not running as PID 1: systemctl prints to stderr only.
        assert!(matches!(
            parse_systemctl_is_active("w", End::Exited(1), ""),
            Ownership::Unknown(_)
        ));
        assert!(matches!(
            parse_systemctl_is_active(
                "w",
                End::Exited(1),
                "System has not been booted with systemd\n"
            ),
            Ownership::Unknown(_)
        ));
    }

    #[test]
    fn launchctl_print_loaded_and_missing() {
        let loaded = "gui/501/com.example.worker = {\n\tactive count = 1\n\tpath = /Users/me/Library/LaunchAgents/com.example.worker.plist\n\ttype = LaunchAgent\n\tstate = running\n\n\tprogram = /usr/local/bin/worker\n\tpid = 4242\n\tendpoints = {\n\t}\n}\n";
        assert_eq!(
            parse_launchctl_print("gui/501/com.example.worker", End::Exited(0), loaded),
            Ownership::External(
                "launchd service gui/501/com.example.worker (loaded, running, pid 4242)".into()
            )
        );
        assert_eq!(
            parse_launchctl_print("system/x", End::Exited(113), ""),
            Ownership::Free
        );
        assert!(matches!(
            parse_launchctl_print("system/x", End::TimedOut, ""),
            Ownership::Unknown(_)
        ));
    }
}
