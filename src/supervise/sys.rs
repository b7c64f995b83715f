//! Small process facts the supervisor needs: is a pid alive (a zombie is not), is anything left in
//! a process group, a process's group and command line. Linux reads `/proc`; elsewhere signals
//! and `ps` answer.

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::time::Duration;

/// `(state, ppid, pgrp)` from `/proc/PID/stat` (Linux).
#[cfg(target_os = "linux")]
pub fn proc_stat(pid: u32) -> Option<(char, u32, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parse the fields after the command name (which may itself contain spaces and parentheses).
pub fn parse_stat(text: &str) -> Option<(char, u32, u32)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Whether a process exists and is not a zombie (an orphaned zombie nobody reaps is dead).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        matches!(proc_stat(pid), Some((s, _, _)) if s != 'Z' && s != 'X')
    }
    #[cfg(not(target_os = "linux"))]
    {
        kill(Pid::from_raw(pid as i32), None).is_ok()
    }
}

/// Live (non-zombie) members of a process group. Off Linux only the group's existence is known,
/// reported as the group id itself.
pub fn group_members(pgid: u32) -> Vec<u32> {
    if pgid <= 1 {
        return Vec::new();
    }
    #[cfg(target_os = "linux")]
    {
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                matches!(proc_stat(*pid), Some((s, _, g)) if g == pgid && s != 'Z' && s != 'X')
            })
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        if killpg(Pid::from_raw(pgid as i32), None).is_ok() {
            vec![pgid]
        } else {
            Vec::new()
        }
    }
}

/// The process group of a pid.
pub fn pgid_of(pid: u32) -> Option<u32> {
    nix::unistd::getpgid(Some(Pid::from_raw(pid as i32)))
        .ok()
        .map(|p| p.as_raw() as u32)
}

/// A process's command line, best effort (empty when unknown).
pub fn cmdline(pid: u32) -> String {
    #[cfg(target_os = "linux")]
    {
        match std::fs::read(format!("/proc/{pid}/cmdline")) {
            Ok(b) if !b.is_empty() => b
                .split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            _ => std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|s| format!("[{}]", s.trim()))
                .unwrap_or_default(),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // Off Linux the caller has the command name from `lsof`; spawning `ps` here would
        // bypass the one subprocess runner.
        let _ = pid;
        String::new()
    }
}

/// Owner uid of a process.
pub fn uid_of(pid: u32) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{pid}"))
            .ok()
            .map(|m| m.uid())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// Signal a group (`pgid > 1`) or a single pid; gone already is not an error.
pub fn signal_target(target: Target, sig: Signal) {
    match target {
        Target::Group(g) if g > 1 => {
            let _ = killpg(Pid::from_raw(g as i32), sig);
        }
        Target::Group(_) => {}
        Target::Pid(p) if p > 1 => {
            let _ = kill(Pid::from_raw(p as i32), sig);
        }
        Target::Pid(_) => {}
    }
}

/// What a stop signal is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Group(u32),
    Pid(u32),
}

impl Target {
    /// Whether anything of the target is still alive.
    pub fn alive(self) -> bool {
        match self {
            Target::Group(g) => !group_members(g).is_empty(),
            Target::Pid(p) => pid_alive(p),
        }
    }
}

/// Wait until `done()` holds, checking every 10 ms, for at most `limit`. Returns whether it held.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stop targets: TERM, wait up to `grace` for all of them to be gone, KILL what is left, then
/// wait (bounded) for the KILL to land. Returns whether everything is gone.
pub async fn stop_targets(targets: &[Target], grace: Duration) -> bool {
    if targets.iter().all(|t| !t.alive()) {
        return true;
    }
    for t in targets {
        signal_target(*t, Signal::SIGTERM);
    }
    if wait_until(grace, || targets.iter().all(|t| !t.alive())).await {
        return true;
    }
    for t in targets {
        signal_target(*t, Signal::SIGKILL);
    }
    wait_until(Duration::from_secs(2), || {
        targets.iter().all(|t| !t.alive())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parses_names_with_parens_and_spaces() {
        let s = "123 (my (odd) prog) S 45 678 678 0 -1 4194560 100 0 0 0";
        assert_eq!(parse_stat(s), Some(('S', 45, 678)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_process_is_alive_and_in_its_group() {
        let me = std::process::id();
        assert!(pid_alive(me));
        let g = pgid_of(me).unwrap();
        assert!(group_members(g).contains(&me));
        assert!(!cmdline(me).is_empty());
        assert!(uid_of(me).is_some());
    }
}
