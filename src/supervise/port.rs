//! Safe port reclaim: find the processes **listening** on the worker's TCP port (IPv4 and IPv6;
//! never clients, never Talon itself), stop each by its process group (TERM, grace, KILL), and
//! prove the port is free with a bind test before the worker is spawned.
//!
//! Linux reads `/proc/net/tcp{,6}` (LISTEN state only) and maps socket inodes to pids through
//! `/proc/*/fd`. macOS asks `lsof -nP -iTCP:PORT -sTCP:LISTEN -Fpcgu` through the one subprocess
//! runner; its parser is tested on every platform.

use super::sys;
use crate::proc::{Group, Stop, Target};
use serde::Serialize;
use std::time::Duration;

/// A process listening on the port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub pid: u32,
    /// Its process group (0 when unknown).
    pub pgid: u32,
    /// Owner uid, when known.
    pub uid: Option<u32>,
    /// Command line (or command name), best effort.
    pub cmdline: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} (`{}`", self.pid, self.cmdline)?;
        if let Some(u) = self.uid {
            write!(f, ", uid {u}")?;
        }
        write!(f, ")")
    }
}

/// Why the port could not be made free for the worker.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReclaimError {
    #[error("port {port} is held by Talon itself; give the worker another port")]
    Talon { port: u16 },
    #[error(
        "port {port} is in use by {} and reclaim_port = false: not touching it",
        list(.holders)
    )]
    NotAllowed { port: u16, holders: Vec<Holder> },
    #[error(
        "port {port} is in use by a process Talon cannot identify (another user's, or a different network namespace); stop it by hand"
    )]
    Unidentified { port: u16 },
    #[error("port {port} is still in use after stopping {}: {reason}", list(.holders))]
    StillInUse {
        port: u16,
        holders: Vec<Holder>,
        reason: String,
    },
}

fn list(h: &[Holder]) -> String {
    h.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parse `/proc/net/tcp` or `/proc/net/tcp6` text: socket inodes in LISTEN state on `port`.
pub fn parse_proc_net_tcp(text: &str, port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let Some((_, p)) = f[1].rsplit_once(':') else {
            continue;
        };
        // State 0A is TCP_LISTEN; every other state is a connection (a client or an accepted
        // peer), which reclaim never touches.
        if u16::from_str_radix(p, 16).ok() == Some(port)
            && f[3].eq_ignore_ascii_case("0A")
            && let Ok(inode) = f[9].parse::<u64>()
            && inode != 0
        {
            inodes.push(inode);
        }
    }
    inodes
}

/// Parse `lsof -F` output (fields `p` pid, `c` command, `g` pgid, `u` uid; others ignored).
pub fn parse_lsof(text: &str) -> Vec<Holder> {
    let mut out: Vec<Holder> = Vec::new();
    for line in text.lines() {
        let (tag, val) = match line.chars().next() {
            Some(c) => (c, &line[c.len_utf8()..]),
            None => continue,
        };
        match tag {
            'p' => {
                if let Ok(pid) = val.parse() {
                    out.push(Holder {
                        pid,
                        pgid: 0,
                        uid: None,
                        cmdline: String::new(),
                    });
                }
            }
            'c' => {
                if let Some(h) = out.last_mut() {
                    h.cmdline = val.to_string();
                }
            }
            'g' => {
                if let Some(h) = out.last_mut() {
                    h.pgid = val.parse().unwrap_or(0);
                }
            }
            'u' => {
                if let Some(h) = out.last_mut() {
                    h.uid = val.parse().ok();
                }
            }
            _ => {}
        }
    }
    out.dedup_by_key(|h| h.pid);
    out
}

/// Every process listening on `port` (Talon itself included; the caller decides).
/// `Ok(None)` means the listeners could not be identified at all.
#[cfg(target_os = "linux")]
pub async fn listeners(
    port: u16,
    _search: &crate::config::path::SearchPath,
) -> Result<Vec<Holder>, String> {
    let mut inodes = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(f) {
            inodes.extend(parse_proc_net_tcp(&text, port));
        }
    }
    if inodes.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut holders = Vec::new();
    let rd = std::fs::read_dir("/proc").map_err(|e| format!("cannot read /proc: {e}"))?;
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| l.to_str().map(|s| wanted.iter().any(|w| w == s)))
                .unwrap_or(false)
        });
        if holds {
            holders.push(Holder {
                pid,
                pgid: sys::pgid_of(pid).unwrap_or(0),
                uid: sys::uid_of(pid),
                cmdline: sys::cmdline(pid),
            });
        }
    }
    Ok(holders)
}

/// Every process listening on `port`, from `lsof`.
#[cfg(not(target_os = "linux"))]
pub async fn listeners(
    port: u16,
    search: &crate::config::path::SearchPath,
) -> Result<Vec<Holder>, String> {
    let f = crate::proc::Cmd::new("lsof")
        .args([
            "-nP".to_string(),
            format!("-iTCP:{port}"),
            "-sTCP:LISTEN".to_string(),
            "-Fpcgu".to_string(),
        ])
        .search_path(search)
        .timeout(Duration::from_secs(10))
        .run()
        .await
        .map_err(|e| e.to_string())?;
    // lsof exits 1 when nothing matched.
    match f.end {
        crate::proc::End::Exited(0) | crate::proc::End::Exited(1) => {
            Ok(parse_lsof(&f.stdout.text()))
        }
        other => Err(format!("lsof {other}: {}", f.last_line())),
    }
}

/// Whether nothing listens on `port`: binding it on the IPv4 and IPv6 wildcard addresses works.
/// (The std listener sets `SO_REUSEADDR`, so connections in TIME_WAIT do not count.)
pub fn port_free(port: u16) -> Result<(), String> {
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
    match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
        Ok(l) => drop(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(format!("bind 0.0.0.0:{port}: {e}"));
        }
        // Privileged port or similar: the bind test cannot tell; the listener scan decided.
        Err(_) => {}
    }
    match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(l) => drop(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(format!("bind [::]:{port}: {e}"));
        }
        // No IPv6 on this host, or a privileged port: nothing more to learn.
        Err(_) => {}
    }
    Ok(())
}

/// What to signal to stop a holder: its whole group when it leads one, or when its group does
/// not contain Talon; else only the pid (never Talon's own group, never init's).
pub fn stop_target(h: &Holder, own_pgid: u32) -> Target {
    if h.pgid > 1 && h.pgid != own_pgid {
        Target::Group(Group(h.pgid))
    } else {
        Target::Pid(h.pid)
    }
}

/// Make `port` free for the worker. Returns the holders that were stopped (empty if the port
/// was already free). With `allowed = false`, nothing is ever signalled.
pub async fn reclaim(
    port: u16,
    allowed: bool,
    grace: Duration,
    search: &crate::config::path::SearchPath,
) -> Result<Vec<Holder>, ReclaimError> {
    let me = std::process::id();
    let found = listeners(port, search).await.unwrap_or_else(|e| {
        tracing::warn!(port, error = %e, "could not list the port's listeners");
        Vec::new()
    });
    if found.iter().any(|h| h.pid == me) {
        return Err(ReclaimError::Talon { port });
    }
    if found.is_empty() {
        return match port_free(port) {
            Ok(()) => Ok(Vec::new()),
            Err(_) => Err(ReclaimError::Unidentified { port }),
        };
    }
    if !allowed {
        return Err(ReclaimError::NotAllowed {
            port,
            holders: found,
        });
    }
    let own_pgid = sys::pgid_of(me).unwrap_or(0);
    let mut targets = Vec::new();
    for h in &found {
        let t = stop_target(h, own_pgid);
        tracing::warn!(
            port,
            pid = h.pid,
            pgid = h.pgid,
            uid = h.uid,
            cmdline = %h.cmdline,
            target = ?t,
            "stopping a stale listener on the worker's port"
        );
        if !targets.contains(&t) {
            targets.push(t);
        }
        // A holder outside the group signalled must still go.
        if let Target::Group(_) = t {
            let p = Target::Pid(h.pid);
            if !targets.contains(&p) {
                targets.push(p);
            }
        }
    }
    let gone = Stop::term(grace).processes(&targets).await;
    // The listening socket may outlive the pid by a moment (a child that inherited it).
    let free = crate::proc::wait_until(Duration::from_secs(2), || port_free(port).is_ok()).await;
    if free {
        return Ok(found);
    }
    let reason = match port_free(port) {
        Err(e) => e,
        Ok(()) => "freed too late".into(),
    };
    let reason = if gone {
        reason
    } else {
        format!("{reason}; some of them survived SIGKILL")
    };
    Err(ReclaimError::StillInUse {
        port,
        holders: found,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0000000000000000 20 4 30 10 -1
   3: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 555 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:E0C2 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
";

    #[test]
    fn proc_net_tcp_keeps_only_listeners_on_the_port() {
        // 8080 = 0x1F90: the listener (111) only; the accepted peer (222) and the client whose
        // remote port is 8080 (333) are connections, and port 80 (444) is another port.
        assert_eq!(parse_proc_net_tcp(TCP, 8080), vec![111]);
        assert_eq!(parse_proc_net_tcp(TCP, 80), vec![444]);
        assert_eq!(parse_proc_net_tcp(TCP6, 8080), vec![555]);
        assert!(parse_proc_net_tcp(TCP, 9).is_empty());
        assert!(parse_proc_net_tcp("garbage\nline", 8080).is_empty());
    }

    #[test]
    fn lsof_field_output_parses() {
        // `lsof -nP -iTCP:8080 -sTCP:LISTEN -Fpcgu` on macOS: per process p/g/c/u, then per file f/n.
        let out = "p812\ng812\ncnode\nu501\nf23\nn*:8080\nf24\nn[::1]:8080\np900\ng850\ncpython3.11\nu0\nf3\nn127.0.0.1:8080\n";
        let h = parse_lsof(out);
        assert_eq!(
            h,
            vec![
                Holder {
                    pid: 812,
                    pgid: 812,
                    uid: Some(501),
                    cmdline: "node".into()
                },
                Holder {
                    pid: 900,
                    pgid: 850,
                    uid: Some(0),
                    cmdline: "python3.11".into()
                },
            ]
        );
        assert!(parse_lsof("").is_empty());
        // -Fpc only, no pgid/uid fields.
        let h = parse_lsof("p77\ncredis-server\nf6\n");
        assert_eq!(h[0].pid, 77);
        assert_eq!(h[0].pgid, 0);
        assert_eq!(h[0].cmdline, "redis-server");
    }

    #[test]
    fn stop_target_never_hits_talons_group() {
        let h = |pid, pgid| Holder {
            pid,
            pgid,
            uid: None,
            cmdline: String::new(),
        };
        assert_eq!(stop_target(&h(10, 10), 5), Target::Group(Group(10)));
        assert_eq!(stop_target(&h(11, 10), 5), Target::Group(Group(10)));
        assert_eq!(stop_target(&h(11, 5), 5), Target::Pid(11));
        assert_eq!(stop_target(&h(11, 1), 5), Target::Pid(11));
        assert_eq!(stop_target(&h(11, 0), 5), Target::Pid(11));
    }

    #[tokio::test]
    async fn own_listener_is_found_and_refused() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(port_free(port).is_err());
        let sp = crate::config::path::SearchPath::compile(
            &[],
            None,
            std::env::var("PATH").ok().as_deref(),
        );
        if cfg!(target_os = "linux") {
            let found = listeners(port, &sp).await.unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].pid, std::process::id());
        }
        let e = reclaim(port, true, Duration::from_millis(100), &sp).await;
        if cfg!(target_os = "linux") {
            assert_eq!(e, Err(ReclaimError::Talon { port }));
        }
        drop(l);
        assert!(port_free(port).is_ok());
    }
}
