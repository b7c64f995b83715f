//! `launchd` probe (macOS): a job label that must be running, looked up in the system domain
//! and the user's gui domain (`launchctl print system/<label>`, then `gui/<uid>/<label>`).
//! Passes when the job has a PID or reports `state = running`.
//!
//! The parser is plain code, unit-tested on captured `launchctl print` output on every platform;
//! on other platforms the probe reports status `error` ("launchd probes run only on macOS").

use super::ProbeCtx;
use crate::config::probe::launchd::{LaunchdSpec, UNAVAILABLE};
use crate::core::outcome::Outcome;
use crate::proc::{Cmd, End};

/// What `launchctl print` says about a job (top-level keys only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobStatus {
    pub state: Option<String>,
    pub pid: Option<u32>,
    pub last_exit: Option<String>,
}

impl JobStatus {
    pub fn running(&self) -> bool {
        self.pid.is_some_and(|p| p > 0) || self.state.as_deref() == Some("running")
    }
}

/// Parse `launchctl print DOMAIN/LABEL` output. Nested blocks (`{ ... }`) are skipped so their
/// own `state =` lines (endpoints, sockets) are not mistaken for the job's.
pub fn parse_print(text: &str) -> JobStatus {
    let mut st = JobStatus::default();
    let mut depth = 0usize;
    for line in text.lines() {
        let l = line.trim();
        if l.ends_with('{') {
            depth += 1;
            continue;
        }
        if l == "}" {
            depth = depth.saturating_sub(1);
            continue;
        }
        if depth != 1 {
            continue;
        }
        let Some((k, v)) = l.split_once(" = ") else {
            continue;
        };
        match k.trim() {
            "state" => st.state = Some(v.trim().to_string()),
            "pid" => st.pid = v.trim().parse().ok(),
            "last exit code" => st.last_exit = Some(v.trim().to_string()),
            _ => {}
        }
    }
    st
}

/// Check the job (macOS only; elsewhere an `error` outcome).
pub async fn check(spec: &LaunchdSpec, ctx: &ProbeCtx) -> Outcome {
    if cfg!(not(target_os = "macos")) {
        return Outcome::error(UNAVAILABLE);
    }
    query(spec, ctx, nix::unistd::getuid().as_raw()).await
}

/// Ask `launchctl` in the system domain, then in `gui/<uid>`.
pub async fn query(spec: &LaunchdSpec, ctx: &ProbeCtx, uid: u32) -> Outcome {
    let domains = [
        format!("system/{}", spec.label),
        format!("gui/{uid}/{}", spec.label),
    ];
    let mut reasons = Vec::new();
    for target in &domains {
        let run = Cmd::new("launchctl")
            .arg("print")
            .arg(target)
            .search_path(ctx.search_path())
            .timeout(ctx.timeout)
            .grace(ctx.grace())
            .run()
            .await;
        let f = match run {
            Ok(f) => f,
            Err(e) => return Outcome::error(e.to_string()),
        };
        match f.end {
            End::Exited(0) => {
                let st = parse_print(&f.stdout.text());
                return if st.running() {
                    let pid = st.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                    Outcome::pass(format!("{target} running{pid}"))
                } else {
                    let state = st.state.as_deref().unwrap_or("state unknown");
                    let exit = st
                        .last_exit
                        .map(|e| format!(", last exit code = {e}"))
                        .unwrap_or_default();
                    Outcome::fail(format!("{target} {state}{exit}"))
                };
            }
            End::TimedOut => {
                return Outcome::timeout(format!("launchctl print {target} timed out"));
            }
            end => {
                let why = f.last_line();
                reasons.push(if why.is_empty() { end.to_string() } else { why });
            }
        }
    }
    Outcome::fail(format!(
        "launchd job `{}` not found in system or gui/{uid} domain ({})",
        spec.label,
        reasons.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from `launchctl print system/com.openssh.sshd` (macOS 14), trimmed.
    const RUNNING: &str = "system/com.openssh.sshd = {
\tactive count = 1
\tpath = /System/Library/LaunchDaemons/ssh.plist
\ttype = LaunchDaemon
\tstate = running

\tprogram = /usr/libexec/sshd-keygen-wrapper
\targuments = {
\t\t/usr/libexec/sshd-keygen-wrapper
\t}

\tinherited environment = {
\t\tSSH_AUTH_SOCK => /private/var/run/com.apple.launchd.abc/Listeners
\t}

\tpid = 4711
\timmediate reason = inetd
\tforks = 0
\texecs = 1
\tlast exit code = (never exited)

\tendpoints = {
\t\t\"Listeners\" = {
\t\t\tport = 000000000000000
\t\t\tstate = active
\t\t}
\t}
}
";

    /// Captured from `launchctl print gui/501/com.example.worker` after the job crashed.
    const STOPPED: &str = "gui/501/com.example.worker = {
\tactive count = 0
\tpath = /Users/me/Library/LaunchAgents/com.example.worker.plist
\ttype = LaunchAgent
\tstate = not running

\tprogram = /Users/me/bin/worker
\tdefault environment = {
\t\tPATH => /usr/bin:/bin:/usr/sbin:/sbin
\t}

\truns = 3
\tlast exit code = 78: EX_CONFIG
\tspawn type = daemon (3)
\tjetsam priority = 40
\tproperties = keepalive | runatload | inferred program
}
";

    #[test]
    fn running_job_is_running() {
        let st = parse_print(RUNNING);
        assert_eq!(st.state.as_deref(), Some("running"));
        assert_eq!(st.pid, Some(4711));
        assert_eq!(st.last_exit.as_deref(), Some("(never exited)"));
        assert!(st.running());
    }

    #[test]
    fn stopped_job_is_not_running_and_nested_state_is_ignored() {
        let st = parse_print(STOPPED);
        assert_eq!(st.state.as_deref(), Some("not running"));
        assert_eq!(st.pid, None);
        assert_eq!(st.last_exit.as_deref(), Some("78: EX_CONFIG"));
        assert!(!st.running());
        // An endpoint's `state = active` inside a nested block is not the job's state.
        let only_endpoint = "x = {\n\tendpoints = {\n\t\tstate = running\n\t}\n}\n";
        assert!(!parse_print(only_endpoint).running());
    }

    #[cfg(not(target_os = "macos"))]
    #[tokio::test]
    async fn elsewhere_it_is_an_error_not_a_failure() {
        let ctx = ProbeCtx::new(
            crate::config::path::SearchPath { dirs: vec![] },
            std::time::Duration::from_secs(1),
        );
        let o = check(&LaunchdSpec { label: "x".into() }, &ctx).await;
        assert_eq!(o.status, crate::core::Status::Error);
        assert_eq!(o.output, UNAVAILABLE);
    }

    /// The query logic through a stand-in `launchctl` on PATH (found in gui domain only).
    #[tokio::test]
    async fn query_falls_back_to_the_gui_domain() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let stub = dir.path().join("launchctl");
        let body = format!(
            "#!/bin/sh\ncase \"$2\" in\n  gui/501/*) cat <<'EOF'\n{STOPPED}EOF\n;;\n  *) echo 'Could not find service \"com.example.worker\" in domain for port' >&2; exit 113;;\nesac\n"
        );
        std::fs::write(&stub, body).unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sp = crate::config::path::SearchPath {
            dirs: vec![dir.path().to_path_buf(), "/usr/bin".into(), "/bin".into()],
        };
        let ctx = ProbeCtx::new(sp, std::time::Duration::from_secs(5));
        let spec = LaunchdSpec {
            label: "com.example.worker".into(),
        };
        let o = query(&spec, &ctx, 501).await;
        assert_eq!(o.status, crate::core::Status::Fail, "{o:?}");
        assert_eq!(
            o.output,
            "gui/501/com.example.worker not running, last exit code = 78: EX_CONFIG"
        );
        let o = query(&spec, &ctx, 502).await;
        assert_eq!(o.status, crate::core::Status::Fail);
        assert!(
            o.output.contains("not found in system or gui/502"),
            "{}",
            o.output
        );
    }
}
