//! `ping` probes: ICMP echo to 127.0.0.1 (raw socket as root here), and inside a network
//! namespace the test creates: unprivileged ICMP sockets when its `ping_group_range` allows them,
//! an address on a dummy link that never answers, and the clear error when a process may use
//! neither kind of ICMP socket. Runs as root (CI does): `ip netns add` needs it.

use crate::support;
use std::path::Path;
use std::process::{Command, Output};
use talon::config::{self, LoadOptions};
use talon::core::Status;
use talon::probe::Engine;

/// A network namespace with `lo` up and a link 10.200.0.1/24 where 10.200.0.2 never answers;
/// deleted when dropped.
struct Netns {
    name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("talon-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        // A veth pair: what goes out of v0 arrives at v1, which has no address and answers
        // nothing; a permanent neighbour entry keeps ARP out of it.
        ns.exec(&[
            "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ]);
        ns.exec(&["ip", "addr", "add", "10.200.0.1/24", "dev", "v0"]);
        ns.exec(&["ip", "link", "set", "v0", "up"]);
        ns.exec(&["ip", "link", "set", "v1", "up"]);
        ns.exec(&[
            "ip",
            "neigh",
            "add",
            "10.200.0.2",
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "v0",
            "nud",
            "permanent",
        ]);
        ns
    }

    fn exec(&self, cmd: &[&str]) {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        ip(&args);
    }

    /// `talon ARGS` inside the namespace, as `user` (uid:gid) when given.
    fn talon(&self, home: &Path, user: Option<&str>, args: &[&str]) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        if let Some(u) = user {
            let (uid, gid) = u.split_once(':').unwrap();
            c.args([
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
            ]);
        }
        c.arg(support::talon_bin())
            .arg("--config")
            .arg(home.join("config.toml"))
            .args(args)
            .env("HOME", home)
            .env_remove("TALON_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME")
            .stdin(std::process::Stdio::null());
        support::run(c)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn home(probes: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    support::write(
        dir.path(),
        "config.toml",
        "services_file = \"services.toml\"\nstate_dir = \"state\"\n",
    );
    support::write(dir.path(), "services.toml", probes);
    dir
}

#[tokio::test]
async fn loopback_v4_and_v6_answer_in_this_namespace() {
    let dir = home(
        "[ping.lo]\nhost = \"127.0.0.1\"\ncount = 3\nmax_rtt_ms = 1000\n\n\
         [ping.lo6]\nhost = \"::1\"\ncount = 2\n",
    );
    let l = config::load(&LoadOptions {
        config: Some(dir.path().join("config.toml")),
        resolve: false,
        home: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    let c = l.config.expect("valid config");
    let rs = Engine::new(&c).run(&c.probes).await;
    let r = &rs[0];
    assert_eq!(r.status, Status::Pass, "{}", r.output);
    assert!(
        r.output
            .starts_with("127.0.0.1: 3/3 replies, 0% loss, rtt avg"),
        "{}",
        r.output
    );
    // ICMPv6 (the kernel fills in its checksum) to the IPv6 loopback.
    let r = &rs[1];
    assert_eq!(r.status, Status::Pass, "{}", r.output);
    assert!(
        r.output.starts_with("::1: 2/2 replies, 0% loss"),
        "{}",
        r.output
    );
}

#[test]
fn a_namespace_with_unprivileged_icmp_a_silent_address_and_no_icmp_at_all() {
    let ns = Netns::new("ping");
    let dir = home(
        r#"
[ping.lo]
host = "127.0.0.1"
count = 2

[ping.lo6]
host = "::1"
count = 2

[ping.void]
host = "10.200.0.2"
count = 2
timeout_secs = 3

[ping.lossy_ok]
host = "10.200.0.2"
count = 2
max_loss_percent = 100
timeout_secs = 3
"#,
    );
    // talon runs as another user too: let it read the config.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    // Unprivileged ICMP for every group, as a non-root user: the SOCK_DGRAM path.
    ns.exec(&["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"]);
    let out = ns.talon(dir.path(), Some("65534:65534"), &["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON: {}{}",
            support::stdout(&out),
            support::stderr(&out)
        )
    });
    let find = |n: &str| {
        v.as_array()
            .or_else(|| v["results"].as_array())
            .and_then(|a| a.iter().find(|r| r["name"] == n))
            .cloned()
            .unwrap_or_else(|| panic!("no {n} in {v:#}"))
    };
    let lo = find("lo");
    assert_eq!(lo["status"], "pass", "{v:#}");
    assert!(
        lo["output"]
            .as_str()
            .unwrap()
            .contains("2/2 replies, 0% loss"),
        "{lo:#}"
    );
    let lo6 = find("lo6");
    assert_eq!(lo6["status"], "pass", "{v:#}");
    let void = find("void");
    assert_eq!(void["status"], "fail", "{v:#}");
    assert_eq!(
        void["output"], "10.200.0.2: 0/2 replies, 100% loss (max_loss_percent = 0)",
        "{void:#}"
    );
    assert_eq!(find("lossy_ok")["status"], "pass", "{v:#}");
    assert_eq!(out.status.code(), Some(1));

    // Root in the same namespace uses the same socket kind; still answers.
    let out = ns.talon(dir.path(), None, &["check", "--probe", "lo"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stdout(&out));

    // Neither kind permitted: no group may use unprivileged ICMP and the user is not root.
    ns.exec(&["sysctl", "-qw", "net.ipv4.ping_group_range=1 0"]);
    let out = ns.talon(dir.path(), Some("65534:65534"), &["check", "--probe", "lo"]);
    let text = support::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        support::stderr(&out)
    );
    assert!(
        text.contains("ICMP is not permitted to this process"),
        "{text}"
    );
    assert!(text.contains("net.ipv4.ping_group_range"), "{text}");
    let out = ns.talon(dir.path(), Some("65534:65534"), &["validate"]);
    let err = format!("{}{}", support::stdout(&out), support::stderr(&out));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ping.lo") && err.contains("ICMP is not permitted"),
        "{err}"
    );
}

#[test]
fn validation_names_the_key() {
    for (body, key, msg) in [
        ("host = \"h\"\ncont = 3", "cont", "did you mean `count`?"),
        (
            "host = \"h\"\ncount = 0",
            "ping.t.count",
            "between 1 and 100",
        ),
        (
            "host = \"h\"\nmax_loss_percent = 101",
            "ping.t.max_loss_percent",
            "between 0 and 100",
        ),
        (
            "host = \"h\"\nmax_rtt_ms = 0",
            "ping.t.max_rtt_ms",
            "above 0",
        ),
        ("host = \"a b\"", "ping.t.host", "not a host name"),
    ] {
        let dir = home(&format!("[ping.t]\n{body}\n"));
        let mut c = support::talon(dir.path());
        c.arg("--config")
            .arg(dir.path().join("config.toml"))
            .args(["validate", "--no-resolve"]);
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
