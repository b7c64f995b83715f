//! Small facts about a process that port reclaim reports and decides by: its process group, its
//! command line and its owner. Linux reads `/proc`; elsewhere `lsof` has answered already.
//! (Whether a pid or a group is alive, and stopping them, is the subprocess runner's:
//! [`crate::proc::Stop`].)

use nix::unistd::Pid;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn own_process_facts_are_known() {
        let me = std::process::id();
        let g = pgid_of(me).unwrap();
        assert_eq!(g, nix::unistd::getpgrp().as_raw() as u32);
        assert!(crate::proc::Group(g).members().contains(&me));
        assert!(!cmdline(me).is_empty());
        assert!(uid_of(me).is_some());
    }
}
