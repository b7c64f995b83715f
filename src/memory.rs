//! Giving back what start-up used: after the daemon has started (and after each applied reload),
//! the memory only start-up needed is returned to the kernel, so the resident set is what the
//! running loop uses.
//!
//! Two things, both advice that loses nothing:
//!
//! - **Code pages** ([`page_out_own_code`]): reading the config, validating it, opening the
//!   store, building TLS clients and the first probe cycle run code from all over the binary, and
//!   the kernel maps file pages in large blocks (fault-around, large page-cache folios), so a
//!   freshly started `talon run` had most of its 20 MB binary resident, of which the idle loop
//!   uses about 4 MiB (measured: 14.9 → 3.8 MiB of the binary's pages after a page-out, staying
//!   there while idle). `madvise(MADV_PAGEOUT)` over Talon's own read-only mappings of its
//!   executable asks the kernel to reclaim those pages now rather than under pressure; what the
//!   loop runs next is faulted back in from the file (once). Pages shared with another process
//!   are left alone by the kernel, and writable mappings are not touched. Linux 5.4 or later;
//!   elsewhere, or when the kernel refuses, nothing happens.
//! - **Heap** ([`trim_heap`]): glibc's `malloc_trim(0)` returns free heap pages (the config
//!   parse's and validation's garbage) to the kernel; the probe loop also calls it after each
//!   cycle, at most every 5 s ([`trim_heap_every`]), for what the cycle's checks used.
//!
//! A leaf: imports nothing from the crate.

/// What [`after_start`] gave back, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Bytes of code mappings advised (not all of them were resident).
    pub code_bytes: u64,
    /// Resident set (VmRSS) before and after, KiB; 0 when unknown.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

/// Page out start-up code and trim the heap; returns what it did.
pub fn after_start() -> Trimmed {
    let rss_before_kib = rss_kib();
    let code_bytes = page_out_own_code();
    trim_heap();
    Trimmed {
        code_bytes,
        rss_before_kib,
        rss_after_kib: rss_kib(),
    }
}

/// `VmRSS` of this process in KiB (0 when `/proc` cannot tell).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| status_field(&s, "VmRSS:"))
        .unwrap_or(0)
}

fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A mapping of `/proc/self/maps` that may be paged out: read-only (or read+execute), private,
/// backed by `exe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: usize,
    end: usize,
}

/// The read-only mappings of the file `exe` in a `/proc/PID/maps` text.
fn code_ranges(maps: &str, exe: &str) -> Vec<Range> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            // offset, dev, inode, then the path (which may contain spaces).
            let path = line.splitn(6, char::is_whitespace).nth(5)?.trim_start();
            let p = perms.as_bytes();
            // r, not w, any x, private: `r--p` or `r-xp`.
            if path != exe
                || p.first() != Some(&b'r')
                || p.get(1) != Some(&b'-')
                || p.get(3) != Some(&b'p')
            {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let start = usize::from_str_radix(a, 16).ok()?;
            let end = usize::from_str_radix(b, 16).ok()?;
            (end > start).then_some(Range { start, end })
        })
        .collect()
}

/// Advise the kernel to page out this process's read-only mappings of its own executable.
/// Returns the bytes advised (0 when nothing could be).
#[cfg(target_os = "linux")]
pub fn page_out_own_code() -> u64 {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let Some(exe) = exe.to_str().map(str::to_string) else {
        return 0;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut advised = 0u64;
    for r in code_ranges(&maps, &exe) {
        // SAFETY: the range is a whole mapping of this process, read from /proc/self/maps;
        // MADV_PAGEOUT only reclaims pages (clean file pages are read back on the next access),
        // it never changes the mapping's contents.
        let rc = unsafe {
            libc::madvise(
                r.start as *mut libc::c_void,
                r.end - r.start,
                libc::MADV_PAGEOUT,
            )
        };
        if rc == 0 {
            advised += (r.end - r.start) as u64;
        }
    }
    advised
}

#[cfg(not(target_os = "linux"))]
pub fn page_out_own_code() -> u64 {
    0
}

/// [`trim_heap`], unless it ran less than `every` ago (process-wide). For the probe loop: a
/// cycle's checks in flight at once (connections, buffers, futures) leave the heap at that
/// cycle's high-water mark, ~1 MiB more than the daemon holds between cycles with 100 HTTP
/// probes; trimming after the cycle gives it back while the loop waits for the next one. The
/// next cycle takes it again (page faults on ~300 zeroed pages), so this is rate-limited and
/// is worth it only when cycles are seconds apart. Returns whether it trimmed.
pub fn trim_heap_every(every: std::time::Duration) -> bool {
    use std::sync::Mutex;
    use std::time::Instant;
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let now = Instant::now();
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|t| now.duration_since(t) < every) {
        return false;
    }
    *last = Some(now);
    drop(last);
    trim_heap();
    true
}

/// Return free heap pages to the kernel (glibc only).
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0000000-55d0c0400000 r--p 00000000 fd:01 123 /usr/bin/talon
55d0c0400000-55d0c1300000 r-xp 00400000 fd:01 123 /usr/bin/talon
55d0c1300000-55d0c1380000 r--p 01300000 fd:01 123 /usr/bin/talon
55d0c1380000-55d0c1390000 rw-p 01380000 fd:01 123 /usr/bin/talon
55d0c2000000-55d0c2100000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000200000 r-xp 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1000000000-7f1000001000 r--p 00000000 fd:01 124 /usr/bin/talon (deleted)
7f2000000000-7f2000001000 r--s 00000000 fd:01 125 /usr/bin/talon
";

    #[test]
    fn trimming_is_rate_limited() {
        // Other tests may trim at any time (the probe loop does): only the second of two calls
        // an hour apart at most is known to be refused.
        trim_heap_every(std::time::Duration::from_secs(3600));
        assert!(!trim_heap_every(std::time::Duration::from_secs(3600)));
        assert!(trim_heap_every(std::time::Duration::ZERO));
    }

    #[test]
    fn only_the_executables_read_only_private_mappings_are_chosen() {
        let r = code_ranges(MAPS, "/usr/bin/talon");
        assert_eq!(
            r,
            vec![
                Range {
                    start: 0x55d0c0000000,
                    end: 0x55d0c0400000
                },
                Range {
                    start: 0x55d0c0400000,
                    end: 0x55d0c1300000
                },
                Range {
                    start: 0x55d0c1300000,
                    end: 0x55d0c1380000
                },
            ],
            "not the writable data, not libc, not another file, not a shared mapping"
        );
        assert!(code_ranges(MAPS, "/usr/bin/other").is_empty());
        assert!(code_ranges("garbage\n\n1-0 r-xp 0 0 0 /x\n", "/x").is_empty());
    }

    #[test]
    fn a_path_with_spaces_is_matched_whole() {
        let maps = "1000-2000 r-xp 00000000 fd:01 1 /opt/my talon/talon\n";
        assert_eq!(code_ranges(maps, "/opt/my talon/talon").len(), 1);
        assert!(code_ranges(maps, "/opt/my").is_empty());
    }

    #[test]
    fn status_fields_parse() {
        let s = "Name:\ttalon\nVmRSS:\t   18436 kB\nThreads:\t4\n";
        assert_eq!(status_field(s, "VmRSS:"), Some(18436));
        assert_eq!(status_field(s, "VmHWM:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn paging_out_this_test_binary_keeps_it_running() {
        // The test binary's own code: advised, and the code still runs afterwards.
        let t = after_start();
        assert!(t.code_bytes > 0, "{t:?}");
        assert!(t.rss_before_kib > 0);
        assert_eq!(code_ranges("", "x"), vec![]);
        assert!(rss_kib() > 0);
    }
}
