//! sd_notify over a real unix datagram socket, as systemd would receive it.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use talon::sdnotify::{Notifier, Progress, spawn_watchdog};

fn recv(sock: &UnixDatagram, within: Duration) -> Option<String> {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("recv: {e}"),
    }
}

#[test]
fn ready_status_stopping_reach_a_path_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let n = Notifier::connect(path.as_os_str()).unwrap();
    assert!(n.is_enabled());
    n.ready("3 probes, healthy").unwrap();
    n.status("degraded: api\nfailing").unwrap();
    n.reloading().unwrap();
    n.stopping().unwrap();
    let t = Duration::from_secs(5);
    assert_eq!(recv(&sock, t).unwrap(), "READY=1\nSTATUS=3 probes, healthy");
    assert_eq!(recv(&sock, t).unwrap(), "STATUS=degraded: api failing");
    assert_eq!(recv(&sock, t).unwrap(), "RELOADING=1");
    assert_eq!(recv(&sock, t).unwrap(), "STOPPING=1");
}

#[cfg(target_os = "linux")]
#[test]
fn abstract_socket_names_work() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("talon-test-{}-{:?}", std::process::id(), Instant::now());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    let n = Notifier::connect(OsStr::new(&format!("@{name}"))).unwrap();
    n.ready("up").unwrap();
    assert_eq!(
        recv(&sock, Duration::from_secs(5)).unwrap(),
        "READY=1\nSTATUS=up"
    );
}

#[test]
fn a_missing_socket_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let n = Notifier::connect(dir.path().join("nobody-here").as_os_str()).unwrap();
    assert!(n.ready("x").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_pings_only_while_the_loop_makes_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let n = Notifier::connect(path.as_os_str()).unwrap();
    let progress = Progress::default();
    // WATCHDOG_USEC = 400 ms → a check every 200 ms.
    let task = spawn_watchdog(n, Duration::from_millis(400), progress.clone()).unwrap();

    let sock = std::sync::Arc::new(sock);
    let rx = |within| {
        let s = sock.clone();
        tokio::task::spawn_blocking(move || recv(&s, within))
    };

    // A live loop: ticks keep coming, pings keep coming.
    let ticker = {
        let p = progress.clone();
        tokio::spawn(async move {
            loop {
                p.tick();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    for _ in 0..3 {
        assert_eq!(
            rx(Duration::from_secs(5)).await.unwrap().as_deref(),
            Some("WATCHDOG=1")
        );
    }

    // A wedged loop: no ticks. At most one ping already decided may still arrive; then silence
    // over several ping periods.
    ticker.abort();
    let _ = ticker.await;
    let _ = rx(Duration::from_millis(300)).await.unwrap();
    let silent = rx(Duration::from_millis(1200)).await.unwrap();
    assert_eq!(silent, None, "pinged while the loop made no progress");

    // Progress again: pings resume.
    progress.tick();
    assert_eq!(
        rx(Duration::from_secs(5)).await.unwrap().as_deref(),
        Some("WATCHDOG=1")
    );
    task.abort();
}

#[test]
fn disabled_notifier_spawns_nothing() {
    assert!(
        spawn_watchdog(
            Notifier::default(),
            Duration::from_secs(1),
            Progress::default()
        )
        .is_none()
    );
}
