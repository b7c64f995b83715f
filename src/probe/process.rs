//! `process` probe: processes whose command line matches `pattern` (a regular expression) exist —
//! at least `min_count` (default 1) and, when set, at most `max_count` (to catch leaked helpers;
//! `min_count = 0, max_count = 0` means "none may run").
//!
//! Linux reads `/proc/*/cmdline` (arguments joined by spaces); macOS asks `ps -axo pid=,command=`.
//! Talon's own process is never counted.

use super::ProbeCtx;
use crate::config::probe::process::ProcessSpec;
use crate::core::outcome::Outcome;

/// `(pid, command line)` of every process with a command line, from `/proc`.
#[cfg(target_os = "linux")]
pub fn list() -> Result<Vec<(u32, String)>, String> {
    let mut out = Vec::new();
    let dir = std::fs::read_dir("/proc").map_err(|e| format!("reading /proc: {e}"))?;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit between readdir and read: skip it.
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = cmdline_text(&raw);
        if !cmd.is_empty() {
            out.push((pid, cmd));
        }
    }
    Ok(out)
}

/// `/proc/PID/cmdline` (NUL-separated arguments) as one line.
pub fn cmdline_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parse `ps -axo pid=,command=` output.
pub fn parse_ps(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (pid, cmd) = l.split_once(char::is_whitespace)?;
            Some((pid.parse().ok()?, cmd.trim().to_string()))
        })
        .filter(|(_, c)| !c.is_empty())
        .collect()
}

/// Count matches (excluding `own_pid`) and judge.
pub fn judge(
    spec: &ProcessSpec,
    re: &regex::Regex,
    procs: &[(u32, String)],
    own_pid: u32,
) -> Outcome {
    let pids: Vec<u32> = procs
        .iter()
        .filter(|(pid, cmd)| *pid != own_pid && re.is_match(cmd))
        .map(|(pid, _)| *pid)
        .collect();
    let n = pids.len() as u32;
    let mut shown: Vec<String> = pids.iter().take(10).map(u32::to_string).collect();
    if pids.len() > 10 {
        shown.push("…".into());
    }
    let noun = if n == 1 {
        "process matches"
    } else {
        "processes match"
    };
    let listed = if n == 0 {
        String::new()
    } else {
        format!(" (pid {})", shown.join(", "))
    };
    let head = format!("{n} {noun} /{}/{listed}", spec.pattern);
    if n < spec.min() {
        return Outcome::fail(format!("{head}, at least {} expected", spec.min()));
    }
    if let Some(max) = spec.max_count
        && n > max
    {
        return Outcome::fail(format!("{head}, at most {max} allowed"));
    }
    Outcome::pass(head)
}

pub async fn check(spec: &ProcessSpec, ctx: &ProbeCtx) -> Outcome {
    let re = match regex::Regex::new(&spec.pattern) {
        Ok(r) => r,
        Err(e) => return Outcome::error(format!("invalid pattern: {e}")),
    };
    let procs = match snapshot(ctx).await {
        Ok(p) => p,
        Err(e) => return Outcome::error(e),
    };
    judge(spec, &re, &procs, std::process::id())
}

#[cfg(target_os = "linux")]
async fn snapshot(_ctx: &ProbeCtx) -> Result<Vec<(u32, String)>, String> {
    tokio::task::spawn_blocking(list)
        .await
        .map_err(|e| format!("internal error: {e}"))?
}

#[cfg(not(target_os = "linux"))]
async fn snapshot(ctx: &ProbeCtx) -> Result<Vec<(u32, String)>, String> {
    use crate::proc::{Cmd, End};
    let f = Cmd::new("ps")
        .args(["-axo", "pid=,command="])
        .search_path(ctx.search_path())
        .timeout(ctx.timeout)
        .grace(ctx.grace())
        .capture_limit(16 * 1024 * 1024)
        .run()
        .await
        .map_err(|e| e.to_string())?;
    match f.end {
        End::Exited(0) => Ok(parse_ps(&f.stdout.text())),
        end => Err(format!("ps failed ({end}): {}", f.last_line())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Status;

    fn spec(p: &str, min: Option<u32>, max: Option<u32>) -> ProcessSpec {
        ProcessSpec {
            pattern: p.into(),
            min_count: min,
            max_count: max,
        }
    }

    #[test]
    fn counts_against_min_and_max() {
        let procs = parse_ps(
            "  1 /sbin/init\n 200 redis-server 127.0.0.1:6379\n 300 redis-server *:6380\n 400 talon check\n",
        );
        assert_eq!(procs.len(), 4);
        let re = regex::Regex::new("redis-server").unwrap();
        let o = judge(&spec("redis-server", None, None), &re, &procs, 400);
        assert_eq!(
            o,
            Outcome::pass("2 processes match /redis-server/ (pid 200, 300)")
        );
        let o = judge(&spec("redis-server", None, Some(1)), &re, &procs, 400);
        assert_eq!(o.status, Status::Fail);
        assert!(o.output.ends_with("at most 1 allowed"), "{}", o.output);
        let o = judge(&spec("redis-server", Some(3), None), &re, &procs, 400);
        assert!(o.output.ends_with("at least 3 expected"), "{}", o.output);
        let re = regex::Regex::new("talon").unwrap();
        let o = judge(&spec("talon", Some(0), Some(0)), &re, &procs, 400);
        assert_eq!(
            o,
            Outcome::pass("0 processes match /talon/"),
            "own pid excluded"
        );
    }

    #[test]
    fn cmdline_nuls_become_spaces() {
        assert_eq!(cmdline_text(b"sleep\x00300\x00"), "sleep 300");
        assert_eq!(cmdline_text(b""), "");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn proc_lists_this_test_process_parent() {
        let all = list().unwrap();
        assert!(all.iter().any(|(p, _)| *p == std::process::id()));
    }
}
