//! The one stop path: the first signal (TERM unless told otherwise) to every target, up to a
//! grace for all of them to be gone, KILL to whatever is left, the leader reaped, then a bounded
//! wait for the KILL to land. Timeouts of [`Cmd::run`](super::Cmd::run), the worker's drain,
//! what a dead worker left in its group and a stale listener on the worker's port all stop
//! this way; [`Target::signal`] is the only code in Talon that sends a signal to a process.
//!
//! A child Talon spawned is stopped through its handle ([`Spawned::stop`](super::Spawned::stop)),
//! so it is reaped and its end is known. Processes Talon did not spawn — a stale listener, or
//! what a reaped leader left in its group — go through [`Stop::processes`]: the same signals and
//! waits, with "gone" judged from the outside (a zombie counts as gone).

use super::End;
use crate::clock::Instant;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::time::Duration;

/// How long to wait for a KILL to land before reporting that something survived it.
const KILL_LANDS: Duration = Duration::from_secs(2);

/// A process group (its id is the leader's pid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group(pub u32);

impl Group {
    /// Signal every process in the group; a group that is already gone is not an error.
    pub fn signal(self, sig: Signal) -> bool {
        Target::Group(self).signal(sig)
    }

    /// Whether any live (non-zombie) process is left in the group.
    pub fn alive(self) -> bool {
        !self.members().is_empty()
    }

    /// Live (non-zombie) members of the group. Off Linux only the group's existence is known,
    /// reported as the group id itself.
    pub fn members(self) -> Vec<u32> {
        let pgid = self.0;
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
            if raw_pid(pgid).is_some_and(|g| killpg(g, None).is_ok()) {
                vec![pgid]
            } else {
                Vec::new()
            }
        }
    }
}

/// What a stop (or a signal) reaches: a whole process group, or one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Group(Group),
    Pid(u32),
}

impl Target {
    /// Send `sig`. A target that is already gone is not an error (`false`). Never signals init,
    /// Talon itself or Talon's own process group: those are refused (`false`, logged).
    pub fn signal(self, sig: Signal) -> bool {
        match self {
            Target::Group(Group(g)) => {
                let Some(pg) = raw_pid(g) else { return false };
                if pg == nix::unistd::getpgrp() {
                    tracing::error!(
                        pgid = g,
                        signal = sig.as_str(),
                        "refusing to signal Talon's own process group"
                    );
                    return false;
                }
                killpg(pg, sig).is_ok()
            }
            Target::Pid(p) => {
                let Some(pid) = raw_pid(p) else { return false };
                if p == std::process::id() {
                    tracing::error!(
                        pid = p,
                        signal = sig.as_str(),
                        "refusing to signal Talon itself"
                    );
                    return false;
                }
                kill(pid, sig).is_ok()
            }
        }
    }

    /// Whether anything of the target is still alive (zombies are not).
    pub fn alive(self) -> bool {
        match self {
            Target::Group(g) => g.alive(),
            Target::Pid(p) => pid_alive(p),
        }
    }
}

/// A pid usable as a signal target: above init's, and representable.
fn raw_pid(id: u32) -> Option<Pid> {
    i32::try_from(id).ok().filter(|&i| i > 1).map(Pid::from_raw)
}

/// How to stop: the first signal, and how long everything has to exit before KILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    pub first: Signal,
    pub grace: Duration,
}

impl Stop {
    /// TERM, then KILL after `grace`.
    pub fn term(grace: Duration) -> Self {
        Self {
            first: Signal::SIGTERM,
            grace,
        }
    }

    /// Another first signal (Talon's own SIGINT is passed on as SIGINT).
    pub fn first(self, sig: Signal) -> Self {
        Self { first: sig, ..self }
    }

    /// Stop processes Talon holds no child handle for (a stale listener's group or pid, what a
    /// reaped leader left in its group). Nothing is signalled when all are gone already.
    /// Returns whether everything is gone (`false`: something survived KILL).
    pub async fn processes(self, targets: &[Target]) -> bool {
        self.run(targets, None).await.1
    }

    /// Stop a child Talon spawned, whose group is `group`: the leader is always reaped, and
    /// its end returned (the status it had if it had ended already).
    pub(super) async fn child(self, child: &mut tokio::process::Child, group: Group) -> End {
        let (end, _) = self.run(&[Target::Group(group)], Some(child)).await;
        end.unwrap_or(End::Signaled(Signal::SIGKILL as i32))
    }

    /// The stop itself. With a `leader`, "gone" also needs the leader reaped.
    async fn run(
        self,
        targets: &[Target],
        mut leader: Option<&mut tokio::process::Child>,
    ) -> (Option<End>, bool) {
        let all_gone = || targets.iter().all(|t| !t.alive());
        let deadline = Instant::now() + self.grace;
        let owns_leader = leader.is_some();
        let leader_gone = |end: &Option<End>| end.is_some() || !owns_leader;
        // A leader that has ended already is reaped here; its status is the answer.
        let mut end = leader
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .map(End::from_status);
        if leader_gone(&end) && all_gone() {
            return (end, true);
        }
        for t in targets {
            t.signal(self.first);
        }
        if end.is_none()
            && let Some(c) = leader.as_mut()
        {
            end = tokio::time::timeout_at(deadline, c.wait())
                .await
                .ok()
                .and_then(Result::ok)
                .map(End::from_status);
        }
        let mut gone = leader_gone(&end)
            && wait_until(deadline.saturating_duration_since(Instant::now()), all_gone).await;
        if !gone {
            // What is left (an unreaped leader, a live member) keeps the group id in use, so
            // the KILL cannot reach a stranger's group.
            for t in targets {
                t.signal(Signal::SIGKILL);
            }
        }
        if end.is_none()
            && let Some(c) = leader.as_mut()
        {
            end = Some(match c.wait().await {
                Ok(s) => End::from_status(s),
                Err(_) => End::Signaled(Signal::SIGKILL as i32),
            });
        }
        if !gone {
            gone = wait_until(KILL_LANDS, all_gone).await;
        }
        (end, gone)
    }
}

/// SIGKILLs a group when dropped while armed, so nothing Talon started outlives a cancelled
/// run or a supervisor torn down mid-life (the runtime shutting down, a panic unwinding).
#[derive(Debug)]
pub struct KillOnDrop(Option<Group>);

impl KillOnDrop {
    pub fn new(group: Group) -> Self {
        Self(Some(group))
    }

    /// The group was stopped or ended otherwise; dropping does nothing now.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            g.signal(Signal::SIGKILL);
        }
    }
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
        raw_pid(pid).is_some_and(|p| kill(p, None).is_ok())
    }
}

/// `(state, ppid, pgrp)` from `/proc/PID/stat` (Linux).
#[cfg(target_os = "linux")]
fn proc_stat(pid: u32) -> Option<(char, u32, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parse the fields after the command name (which may itself contain spaces and parentheses).
fn parse_stat(text: &str) -> Option<(char, u32, u32)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Wait until `done()` holds, checking every 10 ms, for at most `limit` (checked at least once).
/// Returns whether it held.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cmd, Output, Spawned};
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    const LIMIT: Duration = Duration::from_secs(10);

    /// Spawn a shell line with piped stdout and wait for its first `n` lines (the script says
    /// when its traps are set, and which pids it started).
    async fn spawn_and_read(line: &str, n: usize) -> (Spawned, Vec<String>) {
        let mut s = Cmd::shell(line).output(Output::Pipe).spawn().unwrap();
        let mut out = BufReader::new(s.child.stdout.take().unwrap());
        let mut lines = Vec::new();
        for _ in 0..n {
            let mut l = String::new();
            tokio::time::timeout(LIMIT, out.read_line(&mut l))
                .await
                .expect("the script printed its line")
                .unwrap();
            lines.push(l.trim().to_string());
        }
        (s, lines)
    }

    /// The first line of a std child's stdout (blocking; the child prints it at once).
    fn first_line(c: &mut std::process::Child) -> String {
        let mut l = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(c.stdout.take().unwrap()),
            &mut l,
        )
        .unwrap();
        l.trim().to_string()
    }

    #[tokio::test]
    async fn a_child_ignoring_term_is_killed_after_the_grace() {
        let (mut s, ready) = spawn_and_read("trap '' TERM; echo ready; exec sleep 300", 1).await;
        assert_eq!(ready, ["ready"]);
        let grace = Duration::from_millis(300);
        let started = Instant::now();
        let end = s.stop(Stop::term(grace)).await;
        assert_eq!(end, End::Signaled(Signal::SIGKILL as i32));
        assert!(started.elapsed() >= grace, "KILL came before the grace");
        assert!(!s.group.alive());
    }

    #[tokio::test]
    async fn a_grandchild_ignoring_term_is_gone_when_stop_returns() {
        // The leader dies of TERM at once; the grandchild ignores it and must still be KILLed
        // (after the grace) before the stop returns.
        let (mut s, lines) = spawn_and_read(
            "(trap '' TERM; echo ready; exec sleep 300) & echo $!; wait",
            2,
        )
        .await;
        assert!(lines.contains(&"ready".to_string()), "{lines:?}");
        let grandchild: u32 = lines.iter().find_map(|l| l.parse().ok()).unwrap();
        assert!(s.group.members().contains(&grandchild));
        let grace = Duration::from_millis(300);
        let started = Instant::now();
        let end = s.stop(Stop::term(grace)).await;
        assert_eq!(end, End::Signaled(Signal::SIGTERM as i32));
        assert!(started.elapsed() >= grace, "the grandchild got no grace");
        assert!(!pid_alive(grandchild), "grandchild {grandchild} survived");
        assert!(!s.group.alive());
    }

    #[tokio::test]
    async fn a_foreign_group_is_stopped_and_observed_gone() {
        // A group Talon did not spawn through the runner: no tokio handle, its own group.
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sleep 300 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let grandchild: u32 = first_line(&mut leader).parse().unwrap();
        let group = Group(leader.id());
        let mut cleanup = KillOnDrop::new(group);
        assert!(group.members().contains(&grandchild));
        let gone = Stop::term(Duration::from_secs(5))
            .processes(&[Target::Group(group)])
            .await;
        assert!(gone);
        assert!(!group.alive() && !pid_alive(grandchild));
        cleanup.disarm();
        // It died of the TERM (no KILL was needed), and is reaped here by its parent.
        let status = leader.wait().unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
    }

    #[tokio::test]
    async fn a_foreign_pid_ignoring_term_is_killed() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut p = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; echo ready; exec sleep 300"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut cleanup = KillOnDrop::new(Group(p.id()));
        assert_eq!(first_line(&mut p), "ready");
        let grace = Duration::from_millis(200);
        let started = Instant::now();
        assert!(Stop::term(grace).processes(&[Target::Pid(p.id())]).await);
        assert!(started.elapsed() >= grace);
        cleanup.disarm();
        assert_eq!(p.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
    }

    #[tokio::test]
    async fn stopping_what_is_gone_already_is_not_an_error() {
        use std::os::unix::process::CommandExt;
        let mut p = std::process::Command::new("true")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = p.id();
        assert!(p.wait().unwrap().success());
        let started = Instant::now();
        let grace = Duration::from_secs(5);
        assert!(
            Stop::term(grace)
                .processes(&[Target::Group(Group(pid)), Target::Pid(pid)])
                .await
        );
        assert!(started.elapsed() < grace, "waited for nothing");
        // (SIGCONT: harmless should the pid have been reused meanwhile.)
        assert!(!Group(pid).signal(Signal::SIGCONT));

        // A spawned child that ended by itself: the stop reaps it and reports its own end.
        let mut s = Cmd::shell("exit 3").output(Output::Null).spawn().unwrap();
        assert_eq!(s.wait().await.unwrap(), End::Exited(3));
        assert_eq!(s.stop(Stop::term(grace)).await, End::Exited(3));
        let mut s = Cmd::shell("exit 4").output(Output::Null).spawn().unwrap();
        let g = s.group;
        assert!(wait_until(LIMIT, || !pid_alive(g.0)).await);
        assert_eq!(s.stop(Stop::term(grace)).await, End::Exited(4));
        assert!(started.elapsed() < grace, "waited for nothing");
    }

    #[test]
    fn talon_itself_and_its_group_are_never_signalled() {
        // SIGCONT is harmless should the refusal ever fail.
        let own_group = nix::unistd::getpgrp().as_raw() as u32;
        assert!(!Target::Group(Group(own_group)).signal(Signal::SIGCONT));
        assert!(!Target::Pid(std::process::id()).signal(Signal::SIGCONT));
        assert!(!Target::Pid(1).signal(Signal::SIGCONT));
        assert!(!Target::Group(Group(0)).signal(Signal::SIGCONT));
        assert!(Target::Pid(std::process::id()).alive());
    }

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
        let g = nix::unistd::getpgrp().as_raw() as u32;
        assert!(Group(g).members().contains(&me));
    }
}
