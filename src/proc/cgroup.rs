//! A process-count limit that holds for root: a `pids` cgroup per child.
//!
//! `RLIMIT_NPROC` counts the user's processes and the kernel ignores it for root, so when Talon
//! runs as root and a `processes` limit is set, each limited child gets its own cgroup in the
//! `pids` controller's hierarchy — cgroup v2 (`/sys/fs/cgroup`, where `pids` is enabled for
//! Talon's own cgroup's children) or a cgroup v1 `pids` hierarchy — with `pids.max` set to the
//! limit. The child moves itself into it between fork and exec (it writes `0` to
//! `cgroup.procs`, async-signal-safe), so everything it starts is counted and a fork storm gets
//! `EAGAIN` at the limit. The cgroup is removed once the child's group is gone.
//!
//! Where no such cgroup can be created (no `pids` controller mounted, not writable, a cgroup v2
//! whose parent does not delegate `pids`), [`PidsCgroup::create`] says why, and the caller
//! reports that no process limit applies.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// One child's `pids` cgroup; removed on drop (retried in the background while processes are
/// still leaving it).
#[derive(Debug)]
pub struct PidsCgroup {
    dir: PathBuf,
    /// `<dir>/cgroup.procs`, prepared before fork (no allocation in the child).
    procs: CString,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Where the `pids` controller is: the directory of Talon's own cgroup in that hierarchy.
fn own_pids_dir(mountinfo: &str, self_cgroup: &str) -> Result<PathBuf, String> {
    // cgroup v1: a mount of type `cgroup` with `pids` among its super options.
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        let (fstype, _source, opts) = (post.next(), post.next(), post.next().unwrap_or(""));
        let mount_point = pre.split_whitespace().nth(4).unwrap_or("");
        if fstype == Some("cgroup") && opts.split(',').any(|o| o == "pids") {
            let rel = self_cgroup
                .lines()
                .find_map(|l| {
                    let mut f = l.splitn(3, ':');
                    let (_id, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                    ctrls.split(',').any(|c| c == "pids").then_some(path)
                })
                .unwrap_or("/");
            return Ok(Path::new(mount_point).join(rel.trim_start_matches('/')));
        }
    }
    // cgroup v2: the unified mount, and Talon's cgroup from the `0::` line.
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        if post.split_whitespace().next() == Some("cgroup2") {
            let mount_point = pre.split_whitespace().nth(4).unwrap_or("");
            let rel = self_cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/");
            return Ok(Path::new(mount_point).join(rel.trim_start_matches('/')));
        }
    }
    Err("no pids cgroup controller is mounted".into())
}

impl PidsCgroup {
    /// A new cgroup under Talon's own in the `pids` hierarchy with `pids.max = max`.
    pub fn create(max: u64) -> Result<PidsCgroup, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let base = own_pids_dir(&mountinfo, &own)?;
        Self::create_in(&base, max)
    }

    fn create_in(base: &Path, max: u64) -> Result<PidsCgroup, String> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("talon-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))?;
        let cg = PidsCgroup {
            procs: CString::new(dir.join("cgroup.procs").as_os_str().as_encoded_bytes())
                .map_err(|_| format!("{}: a NUL in the path", dir.display()))?,
            dir,
        };
        std::fs::write(cg.dir.join("pids.max"), max.to_string()).map_err(|e| {
            format!(
                "cannot set {}: {e} (is the pids controller enabled for this cgroup's children?)",
                cg.dir.join("pids.max").display()
            )
        })?;
        Ok(cg)
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// In the child, between fork and exec: move this process into the cgroup. Only `open`,
    /// `write` and `close` (async-signal-safe, no allocation).
    pub(crate) fn enter_in_child(&self) -> io::Result<()> {
        // SAFETY: `procs` is a valid NUL-terminated path prepared before fork; the buffer is a
        // static byte string; the fd is closed on every path.
        unsafe {
            let fd = libc::open(self.procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            let err = io::Error::last_os_error();
            libc::close(fd);
            if ok { Ok(()) } else { Err(err) }
        }
    }

    /// How many processes were refused a fork by the limit so far (`pids.events`'s `max`).
    pub fn refused(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("pids.events"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("max "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for PidsCgroup {
    /// Remove the cgroup; while processes are still leaving it (`EBUSY`), retry for a few
    /// seconds on a thread of its own.
    fn drop(&mut self) {
        if std::fs::remove_dir(&self.dir).is_ok() {
            return;
        }
        let dir = self.dir.clone();
        let _ = std::thread::Builder::new()
            .name("cgroup-rmdir".into())
            .spawn(move || {
                for _ in 0..100 {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    match std::fs::remove_dir(&dir) {
                        Ok(()) => return,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                        Err(_) => {}
                    }
                }
                tracing::warn!(cgroup = %dir.display(), "could not remove a child's pids cgroup");
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
";
    const V2: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn the_pids_hierarchy_is_found_in_v1_and_v2() {
        assert_eq!(
            own_pids_dir(V1, "8:pids:/\n4:memory:/x\n0::/\n").unwrap(),
            PathBuf::from("/sys/fs/cgroup/pids")
        );
        assert_eq!(
            own_pids_dir(V1, "8:pids:/system.slice/talon.service\n").unwrap(),
            PathBuf::from("/sys/fs/cgroup/pids/system.slice/talon.service")
        );
        assert_eq!(
            own_pids_dir(V2, "0::/system.slice/talon.service\n").unwrap(),
            PathBuf::from("/sys/fs/cgroup/system.slice/talon.service")
        );
        assert!(own_pids_dir("", "").is_err());
        assert!(
            own_pids_dir(
                V1.lines().take(2).collect::<Vec<_>>().join("\n").as_str(),
                ""
            )
            .is_err()
        );
    }

    #[test]
    fn a_base_that_cannot_hold_a_cgroup_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        // A plain directory: the cgroup dir is made, but `pids.max` is not a controller file;
        // writing it creates a regular file, so use a missing base to see the error instead.
        let e = PidsCgroup::create_in(&tmp.path().join("missing"), 5).unwrap_err();
        assert!(e.contains("cannot create the cgroup"), "{e}");
    }
}
