//! The one subprocess runner. Probes, heals, agents, notifiers and the worker all spawn through
//! here, and nothing else calls `Command::spawn`.
//!
//! Every child gets: its own process group (so a timeout or stop reaches grandchildren too), an
//! explicit environment whose `PATH` is Talon's compiled PATH, stdin null or fed from bytes,
//! stdout/stderr read concurrently (no pipe stall) into buffers capped to their newest bytes, a
//! hard timeout that stops the whole group (TERM, grace, KILL), and it is always reaped.
//!
//! [`Stop`] is the one stop path (TERM → grace → KILL → reap) for those children and for
//! processes Talon did not spawn (a stale listener on the worker's port), and the one place
//! that sends signals.

pub mod cgroup;
pub mod limits;
mod stop;

pub use stop::{Group, KillOnDrop, Stop, Target, pid_alive, wait_until};

use crate::clock::Instant;
use nix::sys::signal::Signal;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Default cap on captured stdout and on captured stderr (each), keeping the newest bytes.
pub const DEFAULT_CAPTURE: usize = 64 * 1024;
/// Default time between TERM and KILL when stopping a group.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("program `{program}` not found on PATH ({path})")]
    NotFound { program: String, path: String },
    #[error("program `{program}` is not executable (permission denied)")]
    PermissionDenied { program: String },
    #[error("working directory {dir} does not exist or is not a directory")]
    BadDir { dir: PathBuf },
    #[error("could not start `{program}`: {source}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// How a finished child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "end", content = "value")]
pub enum End {
    /// Exited by itself with this code.
    Exited(i32),
    /// Killed by this signal (not by Talon's timeout).
    Signaled(i32),
    /// Talon stopped it at its timeout (the whole group was stopped).
    TimedOut,
}

impl End {
    pub fn success(self) -> bool {
        self == End::Exited(0)
    }
    fn from_status(s: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (s.code(), s.signal()) {
            (Some(c), _) => End::Exited(c),
            (None, Some(sig)) => End::Signaled(sig),
            (None, None) => End::Exited(-1),
        }
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Exited(c) => write!(f, "exit {c}"),
            End::Signaled(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed by {}", sig.as_str()),
                Err(_) => write!(f, "killed by signal {s}"),
            },
            End::TimedOut => write!(f, "timed out"),
        }
    }
}

/// Output captured from one stream, capped to its newest bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    /// Total bytes the stream produced (≥ `bytes.len()`).
    pub total: u64,
}

impl Captured {
    pub fn truncated(&self) -> bool {
        self.total > self.bytes.len() as u64
    }
    /// Lossy UTF-8 text of what was kept.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Finished {
    pub end: End,
    pub stdout: Captured,
    pub stderr: Captured,
    pub duration: Duration,
    pub pid: u32,
    /// Forks the child's tree was refused by its process limit (`pids` cgroup), 0 without one.
    pub forks_refused: u64,
}

impl Finished {
    /// The newest non-empty line of stderr, else of stdout: a one-line reason for messages.
    pub fn last_line(&self) -> String {
        for c in [&self.stderr, &self.stdout] {
            if let Some(l) = c
                .text()
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
            {
                return l.to_string();
            }
        }
        String::new()
    }
}

/// Where a spawned child's stdout/stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Captured by [`Cmd::run`] (capped).
    Capture,
    /// Piped and handed to the caller by [`Cmd::spawn`].
    Pipe,
    /// Discarded.
    Null,
}

/// A command to run. Build it, then [`Cmd::run`] (wait for it) or [`Cmd::spawn`] (long-running).
#[derive(Debug, Clone)]
pub struct Cmd {
    program: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    clear_env: bool,
    path: Option<String>,
    dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    grace: Duration,
    capture: usize,
    output: Output,
    keep_background: bool,
    new_session: bool,
    limits: limits::Limits,
}

impl Cmd {
    /// A program with arguments (no shell).
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            clear_env: false,
            path: None,
            dir: None,
            stdin: None,
            timeout: None,
            grace: DEFAULT_GRACE,
            capture: DEFAULT_CAPTURE,
            output: Output::Capture,
            keep_background: false,
            new_session: false,
            limits: limits::Limits::default(),
        }
    }

    /// Resource limits (rlimits) for the child and everything it starts; see [`limits`].
    pub fn limits(mut self, l: limits::Limits) -> Self {
        self.limits = l;
        self
    }

    /// A shell command line, run as `sh -c LINE` (not a login shell).
    pub fn shell(line: &str) -> Self {
        Self::new("sh").arg("-c").arg(line)
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, it: I) -> Self {
        self.args.extend(it.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn envs<I, K, V>(mut self, it: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env
            .extend(it.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Remove a variable inherited from Talon's environment.
    pub fn env_remove(mut self, k: impl Into<OsString>) -> Self {
        self.env_remove.push(k.into());
        self
    }

    /// Start from an empty environment (PATH is still set from [`Cmd::search_path`]).
    pub fn env_clear(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// Talon's compiled PATH: used to find the program and given to the child as `PATH`.
    pub fn search_path(mut self, p: &crate::config::path::SearchPath) -> Self {
        self.path = Some(p.to_env());
        self
    }

    pub fn dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.dir = Some(d.into());
        self
    }

    /// Bytes written to the child's stdin, which is then closed (default: stdin is null).
    pub fn stdin_bytes(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(b.into());
        self
    }

    /// Hard limit: at the timeout the whole group is stopped (TERM, grace, KILL).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Time between TERM and KILL when stopping the group.
    pub fn grace(mut self, g: Duration) -> Self {
        self.grace = g;
        self
    }

    /// Cap on captured bytes per stream (the newest bytes are kept).
    pub fn capture_limit(mut self, n: usize) -> Self {
        self.capture = n.max(1);
        self
    }

    pub fn output(mut self, o: Output) -> Self {
        self.output = o;
        self
    }

    /// Leave processes the command started in the background running after it exits
    /// (e.g. a heal that restarts a service with `&`). By default, when the command itself
    /// exits, whatever is left in its process group is killed.
    pub fn keep_background(mut self, keep: bool) -> Self {
        self.keep_background = keep;
        self
    }

    /// Start the child in a new session (setsid) instead of only a new process group.
    pub fn new_session(mut self, yes: bool) -> Self {
        self.new_session = yes;
        self
    }

    /// The program as given (for messages).
    pub fn program(&self) -> &str {
        &self.program
    }

    fn resolve(&self) -> Result<PathBuf, SpawnError> {
        let path_env = self
            .path
            .clone()
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_default();
        let sp = crate::config::path::SearchPath {
            dirs: path_env
                .split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect(),
        };
        if self.program.contains('/') {
            let p = PathBuf::from(&self.program);
            return match std::fs::metadata(&p) {
                Ok(m) if m.is_file() => Ok(p),
                _ => Err(SpawnError::NotFound {
                    program: self.program.clone(),
                    path: path_env,
                }),
            };
        }
        sp.resolve(&self.program).ok_or(SpawnError::NotFound {
            program: self.program.clone(),
            path: path_env,
        })
    }

    /// The child's own `pids` cgroup, when a process limit is set and Talon runs as root (where
    /// `RLIMIT_NPROC` does not hold; see [`cgroup`]). `None` when none applies or none could be
    /// made (logged once per reason).
    fn pids_cgroup(&self) -> Option<std::sync::Arc<cgroup::PidsCgroup>> {
        let max = self.limits.processes?;
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        match cgroup::PidsCgroup::create(max) {
            Ok(cg) => Some(std::sync::Arc::new(cg)),
            Err(why) => {
                tracing::warn!(program = %self.program, reason = %why, "no process limit applies to this child");
                None
            }
        }
    }

    fn build(&self) -> Result<tokio::process::Command, SpawnError> {
        if let Some(d) = &self.dir
            && !d.is_dir()
        {
            return Err(SpawnError::BadDir { dir: d.clone() });
        }
        let exe = self.resolve()?;
        let mut c = tokio::process::Command::new(&exe);
        c.arg0(&self.program);
        c.args(&self.args);
        if self.clear_env {
            c.env_clear();
        }
        for k in &self.env_remove {
            c.env_remove(k);
        }
        if let Some(p) = &self.path {
            c.env("PATH", p);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(d) = &self.dir {
            c.current_dir(d);
        }
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let out = || match self.output {
            Output::Capture | Output::Pipe => Stdio::piped(),
            Output::Null => Stdio::null(),
        };
        c.stdout(out());
        c.stderr(out());
        if self.new_session {
            // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                c.pre_exec(|| {
                    nix::unistd::setsid().map_err(std::io::Error::from)?;
                    Ok(())
                });
            }
        } else {
            c.process_group(0);
        }
        if !self.limits.is_empty() {
            let l = self.limits;
            // SAFETY: only setrlimit runs between fork and exec (async-signal-safe, no allocation).
            unsafe {
                c.pre_exec(move || l.apply_in_child());
            }
        }
        c.kill_on_drop(false);
        Ok(c)
    }

    /// Spawn; with a process limit as root, inside its own `pids` cgroup (held by the caller
    /// until the child's group is gone).
    fn spawn_child(
        &self,
    ) -> Result<
        (
            tokio::process::Child,
            Option<std::sync::Arc<cgroup::PidsCgroup>>,
        ),
        SpawnError,
    > {
        let mut c = self.build()?;
        let cg = self.pids_cgroup();
        if let Some(cg) = &cg {
            let cg = cg.clone();
            // SAFETY: only open/write/close of a path prepared before fork (async-signal-safe).
            unsafe {
                c.pre_exec(move || cg.enter_in_child());
            }
        }
        c.spawn()
            .map(|child| (child, cg))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => SpawnError::PermissionDenied {
                    program: self.program.clone(),
                },
                std::io::ErrorKind::NotFound => SpawnError::NotFound {
                    program: self.program.clone(),
                    path: self.path.clone().unwrap_or_default(),
                },
                _ => SpawnError::Io {
                    program: self.program.clone(),
                    source: e,
                },
            })
    }

    /// Run to completion (or timeout), capturing output. Always reaps; on timeout the whole
    /// process group is stopped, grandchildren included.
    pub async fn run(self) -> Result<Finished, SpawnError> {
        let started = Instant::now();
        let this = self.output(Output::Capture);
        let (mut child, cgroup) = this.spawn_child()?;
        let pid = child.id().unwrap_or(0);
        let group = Group(pid);
        // If this future is dropped (the caller was cancelled, e.g. at shutdown), the whole
        // group is killed: nothing Talon started outlives a cancelled run.
        let mut guard = KillOnDrop::new(group);
        if let (Some(bytes), Some(mut stdin)) = (this.stdin.clone(), child.stdin.take()) {
            tokio::spawn(async move {
                // A child that does not read its stdin is not an error.
                let _ = stdin.write_all(&bytes).await;
                let _ = stdin.shutdown().await;
            });
        }
        let out_task = tokio::spawn(capture(child.stdout.take(), this.capture));
        let err_task = tokio::spawn(capture(child.stderr.take(), this.capture));

        let waited = match this.timeout {
            Some(t) => tokio::time::timeout(t, child.wait()).await.ok(),
            None => Some(child.wait().await),
        };
        let end = match waited {
            Some(Ok(status)) => {
                if !this.keep_background {
                    group.signal(Signal::SIGKILL);
                }
                End::from_status(status)
            }
            Some(Err(e)) => {
                group.signal(Signal::SIGKILL);
                let _ = child.wait().await;
                return Err(SpawnError::Io {
                    program: this.program.clone(),
                    source: e,
                });
            }
            None => {
                Stop::term(this.grace).child(&mut child, group).await;
                End::TimedOut
            }
        };
        guard.disarm();
        // The child has exited. A background process that kept the pipes open (with
        // keep_background) must not hold us: give the readers a short moment, then stop waiting.
        let drain = Duration::from_millis(200);
        let stdout = join_capture(out_task, drain).await;
        let stderr = join_capture(err_task, drain).await;
        // Whatever is left of the group was killed above: the cgroup goes once it is empty.
        let forks_refused = cgroup.as_ref().map_or(0, |c| c.refused());
        drop(cgroup);
        Ok(Finished {
            end,
            stdout,
            stderr,
            duration: started.elapsed(),
            pid,
            forks_refused,
        })
    }

    /// Start a long-running child (the worker). Output is piped to the caller with
    /// [`Output::Pipe`] (take `child.stdout`/`child.stderr`), or discarded with [`Output::Null`].
    pub fn spawn(self) -> Result<Spawned, SpawnError> {
        let this = if self.output == Output::Capture {
            self.output(Output::Pipe)
        } else {
            self
        };
        // The worker has no process limit ([limits] covers script, heal, agent, action).
        let (mut child, _cgroup) = this.spawn_child()?;
        if let (Some(bytes), Some(mut stdin)) = (this.stdin.clone(), child.stdin.take()) {
            tokio::spawn(async move {
                let _ = stdin.write_all(&bytes).await;
                let _ = stdin.shutdown().await;
            });
        }
        let group = Group(child.id().unwrap_or(0));
        Ok(Spawned {
            child,
            group,
            started: Instant::now(),
            kill_on_drop: KillOnDrop::new(group),
        })
    }
}

/// A running long-lived child in its own group. Dropping it before [`Spawned::stop`] KILLs
/// the group.
#[derive(Debug)]
pub struct Spawned {
    pub child: tokio::process::Child,
    pub group: Group,
    pub started: Instant,
    kill_on_drop: KillOnDrop,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.group.0
    }

    /// Wait for the leader to exit (event-driven), reaping it.
    pub async fn wait(&mut self) -> std::io::Result<End> {
        self.child.wait().await.map(End::from_status)
    }

    /// Stop the whole group the [`Stop`] way (first signal, up to its grace for the leader and
    /// every group member to exit, KILL what is left); always reaps the leader. Returns how the
    /// leader ended (its own end if it had ended already; nothing is signalled then unless
    /// something is left in its group).
    pub async fn stop(&mut self, how: Stop) -> End {
        let end = how.child(&mut self.child, self.group).await;
        self.kill_on_drop.disarm();
        end
    }
}

/// Read a stream to EOF, keeping only its newest `cap` bytes.
async fn capture<R: AsyncRead + Unpin>(r: Option<R>, cap: usize) -> Captured {
    let Some(mut r) = r else {
        return Captured::default();
    };
    let mut ring: VecDeque<u8> = VecDeque::with_capacity(cap.min(64 * 1024));
    let mut total = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                let chunk = &buf[..n];
                let chunk = if chunk.len() > cap {
                    &chunk[chunk.len() - cap..]
                } else {
                    chunk
                };
                let overflow = (ring.len() + chunk.len()).saturating_sub(cap);
                ring.drain(..overflow);
                ring.extend(chunk);
            }
        }
    }
    Captured {
        bytes: ring.into_iter().collect(),
        total,
    }
}

async fn join_capture(task: tokio::task::JoinHandle<Captured>, drain: Duration) -> Captured {
    let abort = task.abort_handle();
    match tokio::time::timeout(drain, task).await {
        Ok(Ok(c)) => c,
        _ => {
            abort.abort();
            Captured::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::Pid;

    fn alive(pid: i32) -> bool {
        nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
    }

    #[tokio::test]
    async fn captures_exit_and_output() {
        let f = Cmd::shell("echo out; echo err >&2; exit 3")
            .run()
            .await
            .unwrap();
        assert_eq!(f.end, End::Exited(3));
        assert_eq!(f.stdout.text(), "out\n");
        assert_eq!(f.stderr.text(), "err\n");
        assert_eq!(f.last_line(), "err");
    }

    #[tokio::test]
    async fn stdin_is_fed_and_env_path_set() {
        let sp = crate::config::path::SearchPath {
            dirs: vec!["/usr/bin".into(), "/bin".into()],
        };
        let f = Cmd::shell("cat; printf %s \"$PATH\"; printf %s \"$X\"")
            .search_path(&sp)
            .env("X", "y")
            .stdin_bytes("hello ")
            .run()
            .await
            .unwrap();
        assert_eq!(f.stdout.text(), "hello /usr/bin:/biny");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        // The grandchild keeps the pipes open; the run must still end at the timeout and leave
        // nothing behind.
        let f = Cmd::shell("sleep 300 & echo $!; sleep 300")
            .timeout(Duration::from_millis(500))
            .grace(Duration::from_millis(200))
            .run()
            .await
            .unwrap();
        assert_eq!(f.end, End::TimedOut);
        let grandchild: i32 = f.stdout.text().trim().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(grandchild) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(grandchild), "grandchild {grandchild} survived");
        let group = Group(f.pid);
        while group.alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!group.alive(), "something is left in the group");
    }

    #[tokio::test]
    async fn cancelled_run_kills_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let line = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let task = tokio::spawn(Cmd::shell(&line).run());
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid: i32 = loop {
            if let Ok(s) = std::fs::read_to_string(&pidfile)
                && let Ok(p) = s.trim().parse()
            {
                break p;
            }
            assert!(Instant::now() < deadline, "script never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        task.abort();
        let _ = task.await;
        while alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(pid), "grandchild {pid} outlived the cancelled run");
    }

    #[tokio::test]
    async fn big_output_is_capped_to_newest_bytes() {
        let f = Cmd::shell("head -c 5000000 /dev/zero | tr '\\0' a; echo END")
            .capture_limit(1000)
            .timeout(Duration::from_secs(30))
            .run()
            .await
            .unwrap();
        assert_eq!(f.end, End::Exited(0));
        assert_eq!(f.stdout.bytes.len(), 1000);
        assert!(f.stdout.truncated());
        assert_eq!(f.stdout.total, 5_000_004);
        assert!(f.stdout.text().ends_with("aaaEND\n"));
    }

    #[tokio::test]
    async fn missing_program_and_bad_dir_are_spawn_errors() {
        let e = Cmd::new("talon-no-such-program").run().await.unwrap_err();
        assert!(matches!(e, SpawnError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("talon-no-such-program"));
        let e = Cmd::new("true")
            .dir("/nonexistent/dir")
            .run()
            .await
            .unwrap_err();
        assert!(matches!(e, SpawnError::BadDir { .. }), "{e}");
    }

    #[tokio::test]
    async fn background_leftovers_are_killed_unless_kept() {
        let f = Cmd::shell("sleep 300 >/dev/null 2>&1 & echo $!")
            .run()
            .await
            .unwrap();
        let pid: i32 = f.stdout.text().trim().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(pid));

        let f = Cmd::shell("sleep 300 >/dev/null 2>&1 & echo $!")
            .keep_background(true)
            .run()
            .await
            .unwrap();
        let pid: i32 = f.stdout.text().trim().parse().unwrap();
        assert!(alive(pid));
        Group(f.pid).signal(Signal::SIGKILL);
    }

    #[tokio::test]
    async fn spawned_stop_reaches_children_ignoring_term() {
        let mut s = Cmd::shell("trap '' TERM; sleep 300 & wait")
            .output(Output::Null)
            .spawn()
            .unwrap();
        let g = s.group;
        let end = s.stop(Stop::term(Duration::from_millis(300))).await;
        assert!(matches!(end, End::Signaled(_)), "{end:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while g.alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!g.alive());
    }
}
