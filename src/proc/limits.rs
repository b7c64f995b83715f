//! Resource limits for a child: rlimits set between fork and exec ([`crate::proc::Cmd::limits`]).
//!
//! A memory hog or a CPU spinner in a script probe, heal or agent then fails on its own (an
//! allocation error, `SIGXCPU`) and is reported as that command's failure; Talon itself is not
//! touched. The limits are inherited by every process the child starts.
//!
//! Where a limit does **not** apply, said plainly:
//! - `processes` is `RLIMIT_NPROC`: it counts every process of the *user*, not of the child's
//!   tree, and the kernel ignores it for root (and for processes with `CAP_SYS_RESOURCE` /
//!   `CAP_SYS_ADMIN`). So when Talon runs as root, the child also gets its own `pids` cgroup
//!   with `pids.max` (see [`super::cgroup`]: cgroup v2 or a v1 `pids` hierarchy), which counts
//!   the child's tree and holds for root. Where no such cgroup can be made, each such child logs
//!   a warning saying no process limit applies, and [`Limits::caveats`] says so.
//! - `memory_mb` is `RLIMIT_AS` (address space, not resident memory): programs that reserve much
//!   more than they use (JVMs, Go, some allocators) need a generous value.

use std::io;

/// Optional rlimits for one child (`None` = inherit Talon's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_AS`, in MiB.
    pub memory_mb: Option<u64>,
    /// `RLIMIT_NPROC` (per user; ignored for root).
    pub processes: Option<u64>,
    /// `RLIMIT_NOFILE`.
    pub open_files: Option<u64>,
    /// `RLIMIT_CPU`, in seconds of CPU time (`SIGXCPU`, then `SIGKILL` one second later).
    pub cpu_secs: Option<u64>,
}

/// Set one rlimit (soft and hard) in the child. Only `setrlimit`: async-signal-safe.
macro_rules! set_limit {
    ($res:expr, $v:expr) => {{
        let lim = libc::rlimit {
            rlim_cur: $v as libc::rlim_t,
            rlim_max: $v as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct we pass and nothing else.
        if unsafe { libc::setrlimit($res, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }};
}

impl From<crate::config::limits::LimitSet> for Limits {
    /// A kind's resolved `[limits]` table.
    fn from(l: crate::config::limits::LimitSet) -> Self {
        Limits {
            memory_mb: l.memory_mb,
            processes: l.processes,
            open_files: l.open_files,
            cpu_secs: l.cpu_secs,
        }
    }
}

impl Limits {
    /// No limit set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Apply in the child, between fork and exec (called from `pre_exec`): no allocation, only
    /// `setrlimit`.
    pub(crate) fn apply_in_child(&self) -> io::Result<()> {
        if let Some(mb) = self.memory_mb {
            set_limit!(libc::RLIMIT_AS, mb.saturating_mul(1024 * 1024));
        }
        if let Some(n) = self.processes {
            set_limit!(libc::RLIMIT_NPROC, n);
        }
        if let Some(n) = self.open_files {
            set_limit!(libc::RLIMIT_NOFILE, n);
        }
        if let Some(s) = self.cpu_secs {
            // Soft at the limit (SIGXCPU), hard one second later (SIGKILL).
            let lim = libc::rlimit {
                rlim_cur: s as libc::rlim_t,
                rlim_max: s.saturating_add(1) as libc::rlim_t,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_CPU, &lim) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Limits that will not hold for a child started by this process, and why.
    pub fn caveats(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(n) = self.processes
            && nix::unistd::geteuid().is_root()
            && let Err(why) = super::cgroup::PidsCgroup::create(n)
        {
            v.push(format!(
                "processes: Talon runs as root, the kernel ignores RLIMIT_NPROC for root, and no pids cgroup can be made ({why}); no process limit applies"
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::Cmd;
    use std::time::Duration;

    #[tokio::test]
    async fn a_memory_hog_fails_on_its_own() {
        let hog = "python3 -c 'x = bytearray(512 * 1024 * 1024); print(len(x))'";
        let limited = Cmd::shell(hog)
            .limits(Limits {
                memory_mb: Some(256),
                ..Limits::default()
            })
            .timeout(Duration::from_secs(30))
            .run()
            .await
            .unwrap();
        assert!(!limited.end.success(), "{:?}", limited.end);
        assert!(
            limited.stderr.text().contains("MemoryError"),
            "{}",
            limited.stderr.text()
        );
        // The same command without limits runs (the limit, not the host, stopped it).
        let free = Cmd::shell(hog)
            .timeout(Duration::from_secs(30))
            .run()
            .await
            .unwrap();
        assert!(free.end.success(), "{}", free.stderr.text());
    }

    #[tokio::test]
    async fn open_files_and_cpu_time_are_bounded() {
        let fds = Cmd::shell("exec 3</dev/null 4</dev/null 5</dev/null 6</dev/null 7</dev/null 8</dev/null; echo opened")
            .limits(Limits {
                open_files: Some(6),
                ..Limits::default()
            })
            .timeout(Duration::from_secs(30))
            .run()
            .await
            .unwrap();
        assert!(!fds.end.success(), "fd 6 and up are beyond the limit");
        assert!(!fds.stdout.text().contains("opened"));
        let spin = Cmd::shell("while :; do :; done")
            .limits(Limits {
                cpu_secs: Some(1),
                ..Limits::default()
            })
            .timeout(Duration::from_secs(60))
            .run()
            .await
            .unwrap();
        assert!(!spin.end.success(), "{:?}", spin.end);
        assert_ne!(
            spin.end,
            crate::proc::End::TimedOut,
            "stopped by RLIMIT_CPU, not the timeout"
        );
    }

    #[test]
    fn root_is_told_when_no_process_limit_applies() {
        let l = Limits {
            processes: Some(32),
            ..Limits::default()
        };
        let root = nix::unistd::geteuid().is_root();
        let cgroup = crate::proc::cgroup::PidsCgroup::create(32).is_ok();
        assert_eq!(l.caveats().is_empty(), !root || cgroup, "{:?}", l.caveats());
        assert!(Limits::default().caveats().is_empty());
        assert!(Limits::default().is_empty() && !l.is_empty());
    }

    /// As root (where RLIMIT_NPROC does not hold), a bounded storm of 40 background sleeps under
    /// `processes = 8` is cut at the limit by the child's pids cgroup, and the cgroup is removed
    /// afterwards. This host (and CI) runs tests as root with a `pids` controller mounted.
    #[tokio::test]
    async fn a_process_storm_is_cut_at_the_limit_even_for_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("not root: RLIMIT_NPROC applies and is tested by the kernel, not here");
            return;
        }
        let base_entries = || -> Vec<String> {
            std::fs::read_dir("/sys/fs/cgroup/pids")
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with(&format!("talon-{}-", std::process::id())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let f = Cmd::shell(
            "n=0; for i in $(seq 1 40); do sleep 5 & n=$((n+1)); done; wait; echo started",
        )
        .limits(Limits {
            processes: Some(8),
            ..Limits::default()
        })
        .timeout(Duration::from_secs(30))
        .run()
        .await
        .unwrap();
        assert!(f.forks_refused > 0, "the limit refused forks: {f:?}");
        let text = format!("{}{}", f.stdout.text(), f.stderr.text());
        assert!(
            text.contains("fork") || text.contains("Resource temporarily unavailable"),
            "the shell says it could not fork: {text}"
        );
        // The cgroup goes once its processes are gone (the group was killed at the end).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !base_entries().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(base_entries().is_empty(), "left: {:?}", base_entries());
    }
}
