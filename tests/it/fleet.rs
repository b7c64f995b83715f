//! A fleet on the engines that already exist: two real `talon` daemons (separate state dirs,
//! `host` names) posting to a real two-member Alertmanager cluster (gossip on loopback) with a
//! webhook receiver; a real Prometheus scraping two Talons with the rules of
//! `deploy/prometheus/` (and `promtool test rules` on their unit tests); `talon status --remote`
//! over both.

use crate::daemon::Daemon;
use crate::metrics::Killed;
use crate::notify::Peer;
use crate::scenario::wait_for;
use crate::support::{free_port, write};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A multi-threaded runtime for the loopback peers (they serve from its worker threads while
/// the test thread drives the daemons).
fn runtime() -> tokio::runtime::Runtime {
    talon::net::install_tls_provider();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A loopback port free for both TCP and UDP a moment ago (Alertmanager's gossip uses both).
fn free_tcp_udp_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One member of an Alertmanager cluster.
struct AmNode {
    child: Option<Killed>,
    url: String,
    log: PathBuf,
}

impl AmNode {
    fn kill(&mut self) {
        self.child.take();
    }
}

/// Two Alertmanagers gossiping with each other; member `i` sends its notifications to
/// `{hook}/hook/{i}` (one receiver named `hook`, so the cluster deduplicates them), grouped by
/// `alertname`.
fn am_cluster(dir: &Path, hook: &str) -> [AmNode; 2] {
    let gossip = [free_tcp_udp_port(), free_tcp_udp_port()];
    let web = [free_port(), free_port()];
    let nodes = [0usize, 1].map(|i| {
        let d = dir.join(format!("am{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let cfg = write(
            &d,
            "am.yml",
            &format!(
                "route:\n  receiver: hook\n  group_by: ['alertname']\n  group_wait: 5s\n  group_interval: 10s\n  repeat_interval: 4h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: '{hook}/hook/{i}'\n        send_resolved: true\n"
            ),
        );
        let log = d.join("am.log");
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", d.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", web[i]))
            .arg(format!("--cluster.listen-address=127.0.0.1:{}", gossip[i]))
            .arg(format!("--cluster.peer=127.0.0.1:{}", gossip[1 - i]))
            .arg("--cluster.peer-timeout=3s")
            .arg("--cluster.settle-timeout=10s")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus-alertmanager must be installed: scripts/test installs it");
        AmNode {
            child: Some(Killed(child)),
            url: format!("http://127.0.0.1:{}", web[i]),
            log,
        }
    });
    // Both answer and each sees the other.
    for n in &nodes {
        wait_for(
            "the Alertmanager cluster to form",
            Duration::from_secs(60),
            || {
                let (code, body) = crate::support::http_get(
                    n.url.trim_start_matches("http://"),
                    "/api/v2/status",
                    Duration::from_secs(2),
                )?;
                let v: Value = serde_json::from_str(&body).ok()?;
                (code == 200 && v["cluster"]["peers"].as_array()?.len() == 2).then_some(())
            },
        );
    }
    nodes
}

/// The alerts Alertmanager holds as active for Talon.
fn active(url: &str) -> Vec<Value> {
    crate::support::http_get(
        url.trim_start_matches("http://"),
        "/api/v2/alerts?filter=alertname%3D%22TalonProbeFailing%22&active=true&silenced=false&inhibited=false",
        Duration::from_secs(5),
    )
    .and_then(|(_, b)| serde_json::from_str::<Vec<Value>>(&b).ok())
    .unwrap_or_default()
    .into_iter()
    .filter(|a| a["status"]["state"] == "active")
    .collect()
}

/// The webhook notifications the receiver got: (member index, payload).
fn notifications(hook: &Peer) -> Vec<(usize, Value)> {
    hook.seen()
        .iter()
        .filter_map(|s| {
            let i = s.path.strip_prefix("/hook/")?.parse().ok()?;
            Some((i, serde_json::from_slice(&s.body).ok()?))
        })
        .collect()
}

fn hosts(n: &Value) -> Vec<String> {
    let mut h: Vec<String> = n["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["labels"]["host"].as_str().map(str::to_string))
        .collect();
    h.sort();
    h
}

/// A Talon on `host` whose critical script probe fails while `fault` exists; the heal does not
/// fix it and there is no agent, so it reaches `sos` in a few seconds.
fn talon_config(dir: &Path, host: &str, fault: &Path, health: u16, channels: &str) -> PathBuf {
    write(
        dir,
        "config.toml",
        &format!(
            r#"host = "{host}"
state_dir = "state"
check_interval_secs = 0.3
[health]
bind = "127.0.0.1:{health}"
[escalation]
heal_settle_secs = 0.2
critical_threshold_secs = 0.5
sos_cooldown_secs = 3600
[script.target]
command = "test ! -e {fault}"
critical = true
critical_after_consecutive_failures = 2
heal = "echo 'restarting target'; exit 1"
{channels}
"#,
            fault = fault.display(),
        ),
    )
}

#[test]
fn two_talons_one_alertmanager_cluster_one_grouped_page_one_resolution() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let hook = rt.block_on(Peer::start((200, "{}"), Duration::ZERO));
    let mut ams = am_cluster(tmp.path(), &hook.url);
    let fault = tmp.path().join("network-down");
    std::fs::write(&fault, "").unwrap();
    let channels = format!(
        "[notify.am]\nkind = \"alertmanager\"\nurls = [\"{}\", \"{}\"]\nrepost_secs = 2\n",
        ams[0].url, ams[1].url
    );
    let daemons: Vec<Daemon> = ["web-1", "web-2"]
        .iter()
        .map(|host| {
            let d = tmp.path().join(host);
            std::fs::create_dir_all(&d).unwrap();
            let cfg = talon_config(&d, host, &fault, free_port(), &channels);
            Daemon::start(&d, &cfg)
        })
        .collect();
    let am_logs = [ams[0].log.clone(), ams[1].log.clone()];
    let logs = || {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "notifications: {:#?}\n{}\nam0:\n{}\nam1:\n{}",
            notifications(&hook),
            daemons
                .iter()
                .map(Daemon::log)
                .collect::<Vec<_>>()
                .join("\n"),
            read(&am_logs[0]),
            read(&am_logs[1])
        )
    };

    // Both Talons page; each member of the cluster holds both hosts' alerts (posted to both).
    let limit = Duration::from_secs(60);
    let deadline = Instant::now() + limit;
    loop {
        let all = [active(&ams[0].url), active(&ams[1].url)];
        if all.iter().all(|a| a.len() == 2) {
            for a in all.iter().flatten() {
                let l = &a["labels"];
                assert_eq!(l["probe"], "target", "{a:#}");
                assert_eq!(l["severity"], "critical", "{a:#}");
                assert_eq!(l["alertname"], "TalonProbeFailing", "{a:#}");
                assert!(
                    l["incident"].as_str().is_some_and(|i| !i.is_empty()),
                    "{a:#}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alerts never reached both members\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Exactly one grouped notification, holding both hosts.
    let (sender, first) = wait_for("a firing notification", limit, || {
        notifications(&hook)
            .into_iter()
            .find(|(_, n)| n["status"] == "firing")
    });
    assert_eq!(hosts(&first), ["web-1", "web-2"], "{first:#}\n{}", logs());
    let fired_at = Instant::now();
    // Re-posts keep pushing `endsAt` forward (repost_secs = 2, endsAt = now + 8 s) …
    let ends = |url: &str| -> Vec<String> {
        let mut e: Vec<String> = active(url)
            .iter()
            .filter_map(|a| a["endsAt"].as_str().map(str::to_string))
            .collect();
        e.sort();
        e
    };
    let before = ends(&ams[0].url);
    wait_for("re-posts to move endsAt", Duration::from_secs(30), || {
        let now = ends(&ams[0].url);
        (now.len() == 2 && now.iter().zip(&before).all(|(n, b)| n > b)).then_some(())
    });
    // … and change nothing a receiver sees: still one notification after a group_interval
    // (10 s) has passed.
    wait_for("a group interval to pass", Duration::from_secs(30), || {
        (fired_at.elapsed() > Duration::from_secs(12)).then_some(())
    });
    let fired: Vec<_> = notifications(&hook);
    assert_eq!(fired.len(), 1, "one grouped page for two hosts\n{}", logs());

    // The member that sent it dies; then the fault clears. The other one resolves.
    ams[sender].kill();
    std::fs::remove_file(&fault).unwrap();
    for d in &daemons {
        d.wait_status("healthy again", limit, |v| v["state"] == "healthy");
    }
    let (by, resolved) = wait_for("the resolution", Duration::from_secs(90), || {
        notifications(&hook)
            .into_iter()
            .find(|(_, n)| n["status"] == "resolved")
    });
    assert_eq!(by, 1 - sender, "sent by the surviving member");
    assert_eq!(
        hosts(&resolved),
        ["web-1", "web-2"],
        "{resolved:#}\n{}",
        logs()
    );
    assert!(
        resolved["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "resolved" && a["endsAt"].as_str().is_some()),
        "{resolved:#}"
    );
    assert!(
        active(&ams[1 - sender].url).is_empty(),
        "nothing left firing"
    );
    let all = notifications(&hook);
    let firing: Vec<_> = all
        .iter()
        .filter(|(_, n)| n["status"] == "firing")
        .collect();
    let resolutions: Vec<_> = all
        .iter()
        .filter(|(_, n)| n["status"] == "resolved")
        .collect();
    assert_eq!(resolutions.len(), 1, "one resolution\n{}", logs());
    // Both Talons recover in the same probe cycle; a group tick between them would show one
    // partial notification (one alert resolved, one firing) — never a second page of the same.
    assert!(
        firing.len() == 1
            || (firing.len() == 2
                && firing[1].1["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["status"] == "resolved")),
        "{all:#?}"
    );
    // Each Talon's own record: the SOS and the resolution delivered on `am`.
    for d in &daemons {
        let inc = d.json(&["incidents"]);
        assert_eq!(inc.as_array().map(Vec::len), Some(1), "{inc:#}");
    }
}

/// `promtool` on what `deploy/prometheus/` ships.
fn promtool(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect(
            "promtool (Debian package `prometheus`) must be installed: scripts/test installs it",
        )
}

#[test]
fn promtool_checks_the_shipped_config_and_runs_the_rule_unit_tests() {
    let deploy = root().join("deploy/prometheus");
    let check = promtool(&["check", "config", "prometheus.yml"], &deploy);
    let text = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 5 rules found"), "{text}");
    let test = promtool(&["test", "rules", "tests/talon.rules.test.yml"], &deploy);
    let text =
        String::from_utf8_lossy(&test.stdout).to_string() + &String::from_utf8_lossy(&test.stderr);
    assert!(test.status.success(), "{text}");

    // The unit tests can fail: a rule that waits longer than they expect breaks them.
    let tmp = tempfile::tempdir().unwrap();
    for d in ["rules", "tests"] {
        std::fs::create_dir_all(tmp.path().join(d)).unwrap();
    }
    let rules = std::fs::read_to_string(deploy.join("rules/talon.rules.yml")).unwrap();
    assert!(rules.contains("for: 2m"), "TalonDown waits 2m");
    write(
        &tmp.path().join("rules"),
        "talon.rules.yml",
        &rules.replacen("for: 2m", "for: 5m", 1),
    );
    std::fs::copy(
        deploy.join("tests/talon.rules.test.yml"),
        tmp.path().join("tests/talon.rules.test.yml"),
    )
    .unwrap();
    let broken = promtool(&["test", "rules", "tests/talon.rules.test.yml"], tmp.path());
    let text = String::from_utf8_lossy(&broken.stdout).to_string()
        + &String::from_utf8_lossy(&broken.stderr);
    assert!(!broken.status.success(), "{text}");
    assert!(text.contains("TalonDown"), "{text}");
}

/// A real Prometheus with the shipped rules, scraping `targets` (`(address, host)`) every second
/// and evaluating every second.
fn prometheus(dir: &Path, targets: &[(String, &str)]) -> (Killed, u16, PathBuf) {
    let rules = root().join("deploy/prometheus/rules/talon.rules.yml");
    let mut cfg = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: talon\n    static_configs:\n",
        rules.display()
    );
    for (addr, host) in targets {
        cfg.push_str(&format!(
            "      - targets: ['{addr}']\n        labels:\n          host: {host}\n"
        ));
    }
    let file = write(dir, "prometheus.yml", &cfg);
    let port = free_port();
    let log = dir.join("prometheus.log");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect(
            "prometheus (Debian package `prometheus`) must be installed: scripts/test installs it",
        );
    (Killed(child), port, log)
}

/// An instant query's result through Prometheus's HTTP API.
fn query(port: u16, q: &str) -> Option<Vec<Value>> {
    let url = reqwest::Url::parse_with_params(
        &format!("http://127.0.0.1:{port}/api/v1/query"),
        &[("query", q)],
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let v: Value = rt.block_on(async {
        let c = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        c.get(url).send().await.ok()?.json().await.ok()
    })?;
    (v["status"] == "success").then(|| v["data"]["result"].as_array().cloned())?
}

#[test]
fn prometheus_scrapes_two_talons_and_the_sos_rule_fires_for_one_and_status_remote_shows_both() {
    talon::net::install_tls_provider();
    let tmp = tempfile::tempdir().unwrap();
    let fault = tmp.path().join("web-2-down");
    std::fs::write(&fault, "").unwrap();
    let mut hosts = Vec::new();
    let mut daemons = Vec::new();
    for (host, fault) in [
        ("web-1", tmp.path().join("never")),
        ("web-2", fault.clone()),
    ] {
        let d = tmp.path().join(host);
        std::fs::create_dir_all(&d).unwrap();
        let port = free_port();
        let cfg = talon_config(&d, host, &fault, port, "");
        daemons.push(Daemon::start(&d, &cfg));
        hosts.push((format!("127.0.0.1:{port}"), host));
    }
    let (_prom, port, log) = prometheus(tmp.path(), &hosts);
    let context = |what: &str| {
        format!(
            "{what}\nprometheus:\n{}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            daemons
                .iter()
                .map(Daemon::log)
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    let up = wait_for("both Talons scraped", Duration::from_secs(60), || {
        let r = query(port, r#"up{job="talon"} == 1"#)?;
        (r.len() == 2).then_some(r)
    });
    let mut up_hosts: Vec<&str> = up
        .iter()
        .filter_map(|r| r["metric"]["host"].as_str())
        .collect();
    up_hosts.sort();
    assert_eq!(up_hosts, ["web-1", "web-2"]);
    let firing = wait_for("TalonSos firing", Duration::from_secs(60), || {
        let r = query(port, r#"ALERTS{alertname="TalonSos", alertstate="firing"}"#)?;
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(firing.len(), 1, "{}", context(&format!("{firing:#?}")));
    assert_eq!(firing[0]["metric"]["host"], "web-2");
    assert_eq!(firing[0]["metric"]["severity"], "critical");
    // Bounded cardinality: no incident id or output in any Talon series' labels.
    let series = query(port, r#"{job="talon"}"#).unwrap();
    for s in &series {
        let m = s["metric"].as_object().unwrap();
        for k in m.keys() {
            assert!(
                !["incident", "incident_id", "output", "reason"].contains(&k.as_str()),
                "label {k} on {s}"
            );
        }
    }
    assert!(
        query(port, r#"ALERTS{alertname="TalonDown"}"#)
            .unwrap()
            .is_empty(),
        "nobody is down"
    );

    // The fleet view, from the same two /status endpoints (and one that is not there).
    let gone = format!("http://127.0.0.1:{}", free_port());
    let urls = [
        format!("http://{}", hosts[0].0),
        hosts[1].0.clone(),
        gone.clone(),
    ];
    let mut c = crate::support::talon(tmp.path());
    c.arg("status").arg("--remote").args(&urls);
    let out = crate::support::run(c);
    let text = crate::support::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        crate::support::stderr(&out)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("HOST"), "{text}");
    assert!(
        lines[1].starts_with("web-1") && lines[1].contains("healthy"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("web-2") && lines[2].contains("sos") && lines[2].contains("target"),
        "{text}"
    );
    assert!(
        lines[3].starts_with('?') && lines[3].contains("unreachable"),
        "{text}"
    );
    let mut c = crate::support::talon(tmp.path());
    c.arg("status")
        .arg("--json")
        .arg("--remote")
        .args(&urls[..2]);
    let out = crate::support::run(c);
    let v: Value = serde_json::from_str(&crate::support::stdout(&out)).unwrap();
    assert_eq!(v[0]["host"], "web-1");
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[1]["host"], "web-2");
    assert_eq!(v[1]["state"], "sos");
    assert_eq!(v[1]["failing"][0], "target");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn host_is_validated_with_its_position_and_can_come_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let validate = |text: &str| {
        let cfg = write(tmp.path(), "config.toml", text);
        let mut c = crate::support::talon(tmp.path());
        c.args(["validate", "--no-resolve", "--config"]).arg(&cfg);
        let out = crate::support::run(c);
        (
            out.status.code(),
            crate::support::stderr(&out) + &crate::support::stdout(&out),
        )
    };
    let (code, text) = validate("check_interval_secs = 5\nhost = \"web 1\"\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("config.toml:2:"), "{text}");
    assert!(text.contains("`web 1` is not a host name"), "{text}");
    let (code, text) = validate("hots = \"web-1\"\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("host"),
        "a typo is rejected, with a suggestion: {text}"
    );
    for ok in ["host = \"web-1.eu\"\n", "host = \"${NODE_NAME}\"\n"] {
        let (code, text) = validate(ok);
        assert_eq!(code, Some(0), "{ok}: {text}");
    }
    let (code, text) = validate("host = \"${1BAD}\"\n");
    assert_eq!(code, Some(2), "{text}");

    // `talon config` shows it; the name Talon uses is the variable's value.
    let cfg = write(tmp.path(), "config.toml", "host = \"${TALON_TEST_NODE}\"\n");
    let mut c = crate::support::talon(tmp.path());
    c.args(["config", "--json", "--config"]).arg(&cfg);
    let out = crate::support::run(c);
    let v: Value = serde_json::from_str(&crate::support::stdout(&out)).unwrap();
    assert_eq!(v["host"], "${TALON_TEST_NODE}");
}

/// `urls`: every member gets the same alerts; one member down still delivers, all down names
/// each; labels and times are the stable ones the cluster deduplicates on.
#[test]
fn alertmanager_urls_post_to_every_member_and_one_is_enough() {
    use talon::config::channel::alertmanager::AlertmanagerSpec;
    use talon::notify::{ChannelConfig, ChannelKind, FailingLine, Notice, NoticeKind, NotifyCtx};
    let rt = runtime();
    let (a, b) = rt.block_on(async {
        (
            Peer::start((200, "{}"), Duration::ZERO).await,
            Peer::start((200, "{}"), Duration::ZERO).await,
        )
    });
    let dead = format!("http://127.0.0.1:{}", free_port());
    let channel = |urls: Vec<String>| ChannelConfig {
        name: "am".into(),
        kind: ChannelKind::Alertmanager(AlertmanagerSpec {
            urls,
            repost_secs: Some(30),
            ..AlertmanagerSpec::single("x")
        }),
    };
    let fix = |c: ChannelConfig| match c.kind {
        ChannelKind::Alertmanager(mut s) => {
            s.url = None;
            ChannelConfig {
                name: c.name,
                kind: ChannelKind::Alertmanager(s),
            }
        }
        _ => unreachable!(),
    };
    let notice = Notice {
        kind: NoticeKind::Sos,
        host: "web-1".into(),
        state: "sos".into(),
        incident_id: Some("12".into()),
        failing: vec![FailingLine {
            probe: "api".into(),
            reason: "HTTP 503".into(),
        }],
        tried: Vec::new(),
        since_ms: Some(1_700_000_000_750),
        at_ms: 1_700_000_100_000,
        duration_secs: None,
        ack_hint: None,
    };
    let ctx = NotifyCtx::new(
        crate::heal::sp(&[]),
        std::sync::Arc::new(talon::redact::Redactor::default()),
    )
    .unwrap();
    let send = |ch: ChannelConfig| rt.block_on(talon::notify::send(&notice, &fix(ch), &ctx));
    send(channel(vec![a.url.clone(), dead.clone(), b.url.clone()])).expect("two of three took it");
    for p in [&a, &b] {
        let seen = p.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, "/api/v2/alerts");
        let v: Value = serde_json::from_slice(&seen[0].body).unwrap();
        let l = &v[0]["labels"];
        assert_eq!(l["alertname"], "TalonProbeFailing");
        assert_eq!(l["host"], "web-1");
        assert_eq!(l["probe"], "api");
        assert_eq!(l["severity"], "critical");
        assert_eq!(l["incident"], "12");
        assert_eq!(
            v[0]["startsAt"], "2023-11-14T22:13:20.000Z",
            "whole seconds"
        );
        // endsAt = now (22:15:00) + 4 × repost_secs (2 m).
        assert_eq!(v[0]["endsAt"], "2023-11-14T22:17:00.000Z");
    }
    let other_dead = format!("http://127.0.0.1:{}", free_port());
    let err = send(channel(vec![dead.clone(), other_dead.clone()])).unwrap_err();
    let text = err.to_string();
    for d in [&dead, &other_dead] {
        assert!(text.contains(d.trim_start_matches("http://")), "{text}");
    }
    assert!(
        text.starts_with("no Alertmanager took the alerts"),
        "{text}"
    );
}
