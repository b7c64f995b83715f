//! `dns` probes against real dnsmasq servers on loopback ports: every record type, NXDOMAIN,
//! SERVFAIL (a DNSSEC validation failure of a second dnsmasq's unsigned answer), a server that
//! never answers (an upstream that is down), a wrong answer; `talon check` and validation.

use crate::support;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use talon::config::{self, Config, LoadOptions};
use talon::core::{ProbeResult, Status};
use talon::probe::Engine;

/// The root zone's KSK-2017 trust anchor: a validating dnsmasq then rejects unsigned answers.
const ROOT_ANCHOR: &str =
    ".,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D";

fn dnsmasq_bin() -> PathBuf {
    for p in ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("dnsmasq is not installed (scripts/test installs dnsmasq-base)");
}

/// A UDP (and TCP) port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A dnsmasq on a loopback port; killed when dropped.
struct Dnsmasq {
    child: Child,
    port: u16,
}

impl Dnsmasq {
    fn start(dir: &Path, args: &[String]) -> Self {
        let port = free_port();
        let log = std::fs::File::create(dir.join(format!("dnsmasq-{port}.log"))).unwrap();
        let child = Command::new(dnsmasq_bin())
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--pid-file=",
                "--user=root",
                "--group=root",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dnsmasq");
        let d = Dnsmasq { child, port };
        // Ready once it accepts TCP on its port.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "dnsmasq did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn load(dir: &Path, probes: &str) -> Config {
    let main = dir.join("config.toml");
    std::fs::write(
        &main,
        "services_file = \"services.toml\"\nstate_dir = \"state\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("services.toml"), probes).unwrap();
    let l = config::load(&LoadOptions {
        config: Some(main),
        resolve: false,
        home: Some(dir.to_path_buf()),
        ..Default::default()
    });
    let msgs: Vec<String> = l.diags.items.iter().map(|d| d.to_string()).collect();
    l.config
        .unwrap_or_else(|| panic!("config invalid: {msgs:#?}"))
}

fn by<'a>(rs: &'a [ProbeResult], name: &str) -> &'a ProbeResult {
    rs.iter().find(|r| r.name == name).unwrap()
}

/// The authoritative-for-talon.test server every test asks.
fn zone(dir: &Path) -> Vec<String> {
    let hosts = support::write(
        dir,
        "hosts",
        "10.1.2.3 db.talon.test\nfd00::7 db.talon.test\n",
    );
    vec![
        format!("--addn-hosts={}", hosts.display()),
        "--local=/talon.test/".into(),
        "--mx-host=talon.test,mail.talon.test,10".into(),
        "--srv-host=_imap._tcp.talon.test,imap.talon.test,993,0,5".into(),
        "--txt-record=talon.test,v=spf1 -all".into(),
        "--cname=www.talon.test,db.talon.test".into(),
    ]
}

#[tokio::test]
async fn records_nxdomain_servfail_silence_and_wrong_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // An upstream holding an unsigned zone; the main server validates DNSSEC for everything it
    // forwards there, so answers from it are bogus: SERVFAIL.
    let upstream = Dnsmasq::start(
        dir,
        &[
            "--local=/signed.test/".into(),
            "--host-record=db.signed.test,10.9.9.9".into(),
        ],
    );
    let mut args = zone(dir);
    args.extend([
        "--dnssec".to_string(),
        format!("--trust-anchor={ROOT_ANCHOR}"),
        format!("--server=127.0.0.1#{}", upstream.port),
        // A zone whose upstream is down: dnsmasq forwards and nothing ever answers.
        format!("--server=/dead.test/127.0.0.1#{}", free_port()),
    ]);
    let dns = Dnsmasq::start(dir, &args);
    let s = dns.addr();
    let probes = format!(
        r#"
[dns.a]
name = "db.talon.test"
server = "{s}"
expect = ["10.1.2.3"]

[dns.aaaa]
name = "db.talon.test"
type = "AAAA"
server = "{s}"
expect = ["fd00::7"]

[dns.cname]
name = "www.talon.test"
type = "CNAME"
server = "{s}"
expect = ["db.talon.test."]

[dns.mx]
name = "talon.test"
type = "mx"
server = "{s}"
expect = ["10 MAIL.talon.test"]

[dns.txt]
name = "talon.test"
type = "TXT"
server = "{s}"
expect_regex = '^v=spf1 '

[dns.srv]
name = "_imap._tcp.talon.test"
type = "SRV"
server = "{s}"
expect = ["0 5 993 imap.talon.test"]

[dns.nx]
name = "nope.talon.test"
server = "{s}"

[dns.nodata]
name = "talon.test"
type = "AAAA"
server = "{s}"

[dns.wrong]
name = "db.talon.test"
server = "{s}"
expect = ["10.1.2.4"]

[dns.wrong_regex]
name = "talon.test"
type = "TXT"
server = "{s}"
expect_regex = 'google-site-verification'

[dns.servfail]
name = "db.signed.test"
server = "{s}"

[dns.silent]
name = "db.dead.test"
server = "{s}"
timeout_secs = 1.5
"#
    );
    let c = load(dir, &probes);
    let rs = Engine::new(&c).run(&c.probes).await;
    let show = rs
        .iter()
        .map(|r| format!("{} {:?} {}", r.name, r.status, r.output))
        .collect::<Vec<_>>()
        .join("\n");
    for name in ["a", "aaaa", "cname", "mx", "txt", "srv"] {
        assert_eq!(by(&rs, name).status, Status::Pass, "{name}:\n{show}");
    }
    assert!(
        by(&rs, "a")
            .output
            .starts_with(&format!("db.talon.test A @{s}: 10.1.2.3 in ")),
        "{show}"
    );
    assert!(
        by(&rs, "mx").output.contains(": 10 mail.talon.test in "),
        "{show}"
    );
    assert!(
        by(&rs, "srv")
            .output
            .contains(": 0 5 993 imap.talon.test in "),
        "{show}"
    );
    assert!(
        by(&rs, "txt").output.contains(": v=spf1 -all in "),
        "{show}"
    );

    let r = by(&rs, "nx");
    assert_eq!(r.status, Status::Fail, "{show}");
    assert!(r.output.contains(": NXDOMAIN in "), "{show}");
    let r = by(&rs, "nodata");
    assert_eq!(r.status, Status::Fail, "{show}");
    assert!(r.output.contains(": no AAAA record in "), "{show}");
    let r = by(&rs, "wrong");
    assert_eq!(r.status, Status::Fail, "{show}");
    assert!(
        r.output.contains("got 10.1.2.3, expected 10.1.2.4"),
        "{show}"
    );
    let r = by(&rs, "wrong_regex");
    assert_eq!(r.status, Status::Fail, "{show}");
    assert!(
        r.output.contains("none matches /google-site-verification/"),
        "{show}"
    );
    let r = by(&rs, "servfail");
    assert_eq!(r.status, Status::Fail, "{show}");
    assert!(r.output.contains(": SERVFAIL in "), "{show}");
    let r = by(&rs, "silent");
    assert_eq!(r.status, Status::Timeout, "{show}");
    assert!(
        r.output.contains("timed out after") && r.output.contains("db.dead.test A @"),
        "{show}"
    );
}

#[test]
fn talon_check_line_and_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let dns = Dnsmasq::start(dir, &zone(dir));
    support::write(
        dir,
        "config.toml",
        "services_file = \"services.toml\"\nstate_dir = \"state\"\n",
    );
    support::write(
        dir,
        "services.toml",
        &format!(
            "[dns.db]\nname = \"db.talon.test\"\nserver = \"{}\"\nexpect = [\"10.1.2.3\"]\n",
            dns.addr()
        ),
    );
    let mut c = support::talon(dir);
    c.arg("--config").arg(dir.join("config.toml")).arg("check");
    let out = support::run(c);
    let text = support::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        support::stderr(&out)
    );
    assert!(
        text.contains(&format!("db.talon.test A @{}: 10.1.2.3 in", dns.addr())),
        "{text}"
    );

    // `talon config` keeps the probe's name and shows the name asked for as `query`.
    let mut c = support::talon(dir);
    c.arg("--config").arg(dir.join("config.toml")).arg("config");
    let out = support::run(c);
    let text = support::stdout(&out);
    assert!(
        text.contains("name = \"db\"\n") && text.contains("query = \"db.talon.test\"\n"),
        "{text}"
    );

    for (body, key, msg) in [
        (
            "name = \"x.test\"\ntyp = \"A\"",
            "typ",
            "did you mean `type`?",
        ),
        (
            "name = \"x.test\"\ntype = \"PTR\"",
            "dns.t.type",
            "not one of A, AAAA, CNAME, MX, TXT, SRV",
        ),
        ("name = \"x..test\"", "dns.t.name", "not a DNS name"),
        (
            "name = \"x.test\"\nserver = \"ns1.example.com\"",
            "dns.t.server",
            "not an IP address",
        ),
        (
            "name = \"x.test\"\nexpect_regex = \"(\"",
            "dns.t.expect_regex",
            "invalid regular expression",
        ),
    ] {
        support::write(dir, "services.toml", &format!("[dns.t]\n{body}\n"));
        let mut c = support::talon(dir);
        c.arg("--config")
            .arg(dir.join("config.toml"))
            .arg("validate");
        let out = support::run(c);
        let err = format!("{}{}", support::stdout(&out), support::stderr(&out));
        assert_eq!(out.status.code(), Some(2), "{err}");
        let line = err
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("no diagnostic for {key}:\n{err}"));
        assert!(
            line.contains(msg) && line.contains("services.toml:"),
            "{line}"
        );
    }
}
