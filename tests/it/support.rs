//! Small helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The real binary under test.
pub fn talon_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_talon"))
}

/// A `talon` command isolated from the developer's own config: HOME and XDG dirs point into
/// `home`, and `TALON_CONFIG` is unset.
pub fn talon(home: &Path) -> Command {
    talon_at(&talon_bin(), home)
}

/// [`talon`] with another copy of the binary.
pub fn talon_at(bin: &Path, home: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env("HOME", home)
        .env_remove("TALON_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// Run and capture, with a generous bound so a hung binary fails the test instead of hanging it.
pub fn run(mut c: Command) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().expect("spawn talon");
    wait_output(child, std::time::Duration::from_secs(60))
}

/// Wait for a child with a deadline, reading its pipes concurrently (no pipe stall).
pub fn wait_output(mut child: std::process::Child, limit: std::time::Duration) -> Output {
    use std::io::Read;
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("talon did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Write `text` to `dir/name` and return the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write fixture");
    p
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// `GET path` on a loopback address with one overall `timeout`; `(status, body)`.
pub fn http_get(addr: &str, path: &str, timeout: std::time::Duration) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    use std::time::Instant;
    let deadline = Instant::now() + timeout;
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, timeout).ok()?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(std::time::Duration::from_millis(1));
    s.set_read_timeout(Some(left)).ok()?;
    s.set_write_timeout(Some(left)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((code, body))
}
