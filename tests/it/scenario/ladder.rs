//! Scenarios 5–7: the whole ladder to SOS, every channel down, talon SIGKILLed mid-incident.
//!
//! The real `talon run` against a script probe whose target the test breaks and fixes (a file),
//! a heal that does not fix it, a cloud agent that fails and a local one that cannot fix it.
//! SOS goes to a local server speaking the Telegram Bot API and to a real Alertmanager. Timings
//! come from talon's incident record (`talon incident ID --json`: opened, every action's start
//! and end, every transition, every notification's creation and delivery).

use super::worker::{LIMIT, Reaper, find_log, get, since, wall_ms};
use super::{Timeline, wait_for};
use crate::daemon::Daemon;
use crate::notify::{Alertmanager, OK, Peer, TOKEN, am_alerts, start_alertmanager};
use crate::support::{free_port, write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A multi-threaded runtime for the loopback peers (they serve from its worker threads while
/// the test thread drives the daemon).
fn runtime() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The texts the Bot API server received on `sendMessage`, in order.
fn telegram_texts(tg: &Peer) -> Vec<String> {
    tg.seen()
        .iter()
        .filter(|s| s.path == format!("/bot{TOKEN}/sendMessage"))
        .filter_map(|s| {
            let v: serde_json::Value = serde_json::from_slice(&s.body).ok()?;
            assert_eq!(v["chat_id"], 4242, "{v}");
            Some(v["text"].as_str()?.to_string())
        })
        .collect()
}

fn count(texts: &[String], prefix: &str) -> usize {
    texts.iter().filter(|t| t.starts_with(prefix)).count()
}

/// Alerts Alertmanager holds as active for talon.
fn am_active(rt: &tokio::runtime::Runtime, am: &Alertmanager) -> Vec<serde_json::Value> {
    rt.block_on(am_alerts(&am.url))
}

/// A scenario's files: the config, the fault flag, the bot token.
struct Fx {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    fault: PathBuf,
    health: u16,
}

impl Fx {
    fn new() -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("tg-token"), format!("{TOKEN}\n")).unwrap();
        Fx {
            fault: dir.join("fault"),
            dir,
            _tmp: tmp,
            health: free_port(),
        }
    }

    /// The ladder: a heal that does not fix, a failing cloud agent, a local agent that cannot
    /// fix; `escalation` replaces the timing keys, `channels` are `[notify.*]` tables.
    fn config(&self, escalation: &str, channels: &str) -> PathBuf {
        write(
            &self.dir,
            "config.toml",
            &format!(
                r#"state_dir = "state"
check_interval_secs = 0.3
[health]
bind = "127.0.0.1:{health}"
[escalation]
heal_settle_secs = 0.2
critical_threshold_secs = 0.5
sos_cooldown_secs = 3600
{escalation}
[agent]
cloud_command = "cat >/dev/null; echo 'cloud model unavailable' >&2; exit 3"
local_command = "cat >/dev/null; echo 'local agent: the target flag is set; I cannot clear it'"
timeout_secs = 10
[script.target]
command = "test ! -e {fault}"
critical = true
critical_after_consecutive_failures = 2
heal = "echo 'restarting target'; exit 1"
{channels}
"#,
                health = self.health,
                fault = self.fault.display(),
            ),
        )
    }

    fn telegram(&self, api: &str) -> String {
        format!(
            "[notify.tg]\nkind = \"telegram\"\nchat_id = 4242\ntoken_file = \"{}\"\napi_base = \"{api}\"\n",
            self.dir.join("tg-token").display()
        )
    }

    fn alertmanager(url: &str) -> String {
        format!("[notify.am]\nkind = \"alertmanager\"\nurl = \"{url}\"\n")
    }

    fn break_target(&self) {
        std::fs::write(&self.fault, "").unwrap();
    }

    fn fix_target(&self) {
        std::fs::remove_file(&self.fault).unwrap();
    }
}

/// The one incident (the list must hold exactly one).
fn only_incident(d: &Daemon) -> serde_json::Value {
    let v = d.json(&["incidents"]);
    let a = v.as_array().cloned().unwrap_or_default();
    assert_eq!(a.len(), 1, "exactly one incident: {v:#}");
    a[0].clone()
}

fn detail(d: &Daemon, id: u64) -> serde_json::Value {
    d.json(&["incident", &id.to_string()])
}

fn rows<'a>(v: &'a serde_json::Value, key: &str) -> Vec<&'a serde_json::Value> {
    v[key]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// The time of the system transition into `to`.
fn entered(detail: &serde_json::Value, to: &str) -> Option<i64> {
    rows(detail, "transitions")
        .into_iter()
        .find(|t| t["subject"] == "system" && t["to"] == to)
        .and_then(|t| t["at"].as_i64())
}

/// The notification rows of `kind` (`sos`, `resolved`, `reminder`).
fn notifications<'a>(detail: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    rows(detail, "notifications")
        .into_iter()
        .filter(|n| n["kind"] == kind)
        .collect()
}

fn healthy(d: &Daemon) {
    d.wait_status("healthy, target passing", LIMIT, |v| {
        v["state"] == "healthy"
            && v["probes"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|p| p["name"] == "target" && p["passed"] == true)
            })
    });
}

#[test]
fn s05_heal_and_agents_fail_sos_reaches_telegram_and_alertmanager_then_resolved() {
    let rt = runtime();
    let tg = rt.block_on(Peer::start((200, OK), Duration::ZERO));
    let am = rt.block_on(start_alertmanager());
    let fx = Fx::new();
    let config = fx.config(
        "heal_cooldown_secs = 600\nagent_cooldown_secs = 600\nnotify_retry_secs = 1",
        &format!("{}{}", fx.telegram(&tg.url), Fx::alertmanager(&am.url)),
    );
    let _reaper = Reaper::new(&fx.dir);
    let mut d = Daemon::start(&fx.dir, &config);
    healthy(&d);

    let mut t = Timeline::start(
        5,
        "heal fails → agents fail → critical → SOS (Telegram + Alertmanager) → fixed → resolved",
    );
    let fault = wall_ms();
    fx.break_target();
    wait_for(
        "the SOS on the Bot API server and in Alertmanager",
        LIMIT,
        || {
            (count(&telegram_texts(&tg), "SOS:") == 1 && am_active(&rt, &am).len() == 1)
                .then_some(())
        },
    );
    t.mark("sos_seen");
    let sos_text = telegram_texts(&tg)
        .into_iter()
        .find(|t| t.starts_with("SOS:"))
        .unwrap();
    assert!(sos_text.contains("target"), "{sos_text}");
    // The page says everything automation tried, not only the newest action.
    let tried = sos_text.split("Tried:").nth(1).unwrap_or_default();
    for what in ["heal #", "cloud", "local"] {
        assert!(tried.contains(what), "SOS lists {what}: {sos_text}");
    }
    let alert = am_active(&rt, &am).remove(0);
    assert_eq!(alert["labels"]["probe"], "target", "{alert:#}");
    assert_eq!(alert["status"]["state"], "active", "{alert:#}");

    let incident = only_incident(&d);
    let id = incident["id"].as_u64().unwrap();
    assert_eq!(
        alert["annotations"]["incident_id"],
        id.to_string(),
        "{alert:#}"
    );
    let before_fix = detail(&d, id);
    // The ladder in order: heal (not fixed) → cloud agent (failed) → local agent (not fixed) →
    // critical → sos.
    let actions = rows(&before_fix, "actions");
    let summary: Vec<String> = actions
        .iter()
        .map(|a| {
            format!(
                "{} {} {}",
                a["kind"].as_str().unwrap_or(""),
                a["tier"].as_str().unwrap_or("-"),
                a["exit"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(
        summary,
        ["heal - exit 1", "agent cloud exit 3", "agent local exit 0"],
        "{before_fix:#}"
    );
    for a in [actions[0], actions[2]] {
        assert!(
            a["verdict"]
                .as_str()
                .is_some_and(|v| v.starts_with("not fixed")),
            "verified by re-probe, not by the exit code: {before_fix:#}"
        );
    }
    let heal = actions[0];
    let cloud = actions[1];
    let local = actions[2];
    assert!(
        local["output"]
            .as_str()
            .is_some_and(|o| o.contains("cannot clear it")),
        "{before_fix:#}"
    );
    let path: Vec<&str> = rows(&before_fix, "transitions")
        .iter()
        .filter(|t| t["subject"] == "system")
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        path,
        ["failed", "investigating", "critical", "sos"],
        "{before_fix:#}"
    );
    let sos = notifications(&before_fix, "sos");
    assert_eq!(sos.len(), 1, "{before_fix:#}");
    let sos_delivered = sos[0]["delivered_at"].as_i64().expect("sos delivered");
    let channels = sos[0]["channels"].to_string();
    assert!(
        channels.contains("\"tg\"") && channels.contains("\"am\""),
        "both channels tried: {channels}"
    );

    let fixed_at = wall_ms();
    fx.fix_target();
    t.mark("fixed");
    let deadline = Instant::now() + LIMIT;
    while !(count(&telegram_texts(&tg), "Resolved:") == 1 && am_active(&rt, &am).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "no resolved on both: telegram {:#?}\nalertmanager {:#?}\nincident {:#}\nlog:\n{}",
            telegram_texts(&tg),
            am_active(&rt, &am),
            detail(&d, id),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t.mark("resolved_seen");
    let after = detail(&d, id);
    let closed = after["incident"]["closed_at"].as_i64().expect("closed");
    let resolved = notifications(&after, "resolved");
    assert_eq!(resolved.len(), 1, "{after:#}");
    let resolved_at = resolved[0]["delivered_at"]
        .as_i64()
        .expect("resolved delivered");
    let texts = telegram_texts(&tg);
    assert_eq!(count(&texts, "SOS:"), 1, "{texts:#?}");
    assert_eq!(count(&texts, "Resolved:"), 1, "{texts:#?}");
    assert_eq!(texts.len(), 2, "nothing else was sent: {texts:#?}");
    d.wait_status("healthy again", LIMIT, |v| v["state"] == "healthy");
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());

    let ms = |k: &str, a: &serde_json::Value| a[k].as_i64().unwrap();
    t.mark_at(
        "detected",
        since(fault, incident["opened_at"].as_i64().unwrap()),
    );
    t.mark_at("heal", since(fault, ms("started_at", heal)));
    t.mark_at("agent_cloud", since(fault, ms("started_at", cloud)));
    t.mark_at("agent_local", since(fault, ms("started_at", local)));
    t.mark_at(
        "critical",
        since(fault, entered(&before_fix, "critical").unwrap()),
    );
    t.mark_at("sos", since(fault, entered(&before_fix, "sos").unwrap()));
    t.mark_at("sos_delivered", since(fault, sos_delivered));
    t.mark_at("recovered", since(fault, closed));
    t.mark_at("resolved_delivered", since(fault, resolved_at));
    t.note("fix_to_resolved_ms", resolved_at - fixed_at);
    t.note("telegram_messages", texts.len() as u64);
    t.finish();
}

/// `GET /metrics` from the daemon: the value of the first sample line starting with `series`.
fn metric(port: u16, series: &str) -> Option<f64> {
    let (_, body) = get(port, "/metrics", Duration::from_secs(2))?;
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn s06_every_channel_down_sos_pending_then_delivered_once_when_one_is_back() {
    let rt = runtime();
    let fx = Fx::new();
    // Nothing listens on either port yet.
    let tg_port = free_port();
    let am_port = free_port();
    let config = fx.config(
        "heal_cooldown_secs = 600\nagent_cooldown_secs = 600\nnotify_retry_secs = 1",
        &format!(
            "{}{}",
            fx.telegram(&format!("http://127.0.0.1:{tg_port}")),
            Fx::alertmanager(&format!("http://127.0.0.1:{am_port}"))
        ),
    );
    let _reaper = Reaper::new(&fx.dir);
    let mut d = Daemon::start(&fx.dir, &config);
    healthy(&d);

    let mut t = Timeline::start(
        6,
        "every channel down during SOS → pending → one channel back → delivered once",
    );
    let fault = wall_ms();
    fx.break_target();
    // Pending, everywhere an operator looks: status, metrics, log.
    let status = d.wait_status("an SOS pending after a failed attempt", LIMIT, |v| {
        v["state"] == "sos"
            && v["pending_notifications"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|n| n["kind"] == "sos" && n["attempt"].as_u64() >= Some(1))
            })
    });
    t.mark("pending_seen");
    assert_eq!(status["source"], "daemon", "{status:#}");
    wait_for("talon_notifications_pending 1", LIMIT, || {
        (metric(fx.health, "talon_notifications_pending ") == Some(1.0)).then_some(())
    });
    for ch in ["tg", "am"] {
        let failed = metric(
            fx.health,
            &format!("talon_notifications_total{{channel=\"{ch}\",outcome=\"failed\"}}"),
        );
        assert!(failed >= Some(1.0), "{ch} failures counted: {failed:?}");
    }
    assert!(
        find_log(
            &d,
            fault,
            "notification not delivered on any channel; will retry",
            |_| true
        )
        .is_some(),
        "log:\n{}",
        d.log()
    );
    let text = crate::support::stdout(&crate::support::run({
        let mut c = crate::support::talon(&fx.dir);
        c.args(["status", "--config"]).arg(&config);
        c
    }));
    assert!(
        text.contains("undelivered: sos"),
        "talon status shows it:\n{text}"
    );

    // The Telegram side comes back, on the very port the channel points at.
    let back_at = wall_ms();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", tg_port)))
        .expect("the Bot API port is still free");
    let tg = {
        let _g = rt.enter();
        Peer::serve(listener, (200, OK), Duration::ZERO)
    };
    t.mark("channel_back");
    wait_for("the SOS on the Bot API server", LIMIT, || {
        (count(&telegram_texts(&tg), "SOS:") >= 1).then_some(())
    });
    t.mark("delivered_seen");
    let incident = only_incident(&d);
    let id = incident["id"].as_u64().unwrap();
    let dt = wait_for("the SOS recorded as delivered", LIMIT, || {
        let v = detail(&d, id);
        notifications(&v, "sos")
            .first()
            .is_some_and(|n| !n["delivered_at"].is_null())
            .then_some(v)
    });
    let sos = notifications(&dt, "sos");
    assert_eq!(sos.len(), 1, "one SOS, retried under one id: {dt:#}");
    let attempts = sos[0]["attempts"].as_u64().unwrap();
    assert!(attempts >= 2, "retried: {dt:#}");
    let delivered_at = sos[0]["delivered_at"].as_i64().unwrap();
    let created_at = sos[0]["created_at"].as_i64().unwrap();
    d.wait_status("nothing pending", LIMIT, |v| {
        v["pending_notifications"]
            .as_array()
            .is_some_and(|p| p.is_empty())
    });
    wait_for("talon_notifications_pending 0", LIMIT, || {
        (metric(fx.health, "talon_notifications_pending ") == Some(0.0)).then_some(())
    });
    // Exactly once: over several more retry periods nothing else arrives (the other channel
    // is still down, and a delivered notice is never retried).
    let window = Instant::now() + Duration::from_secs(4);
    while Instant::now() < window {
        assert_eq!(telegram_texts(&tg).len(), 1, "{:#?}", telegram_texts(&tg));
        std::thread::sleep(Duration::from_millis(100));
    }

    fx.fix_target();
    wait_for("resolved on the Bot API server", LIMIT, || {
        (count(&telegram_texts(&tg), "Resolved:") == 1).then_some(())
    });
    let texts = telegram_texts(&tg);
    assert_eq!(count(&texts, "SOS:"), 1, "{texts:#?}");
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
    t.mark_at(
        "detected",
        since(fault, incident["opened_at"].as_i64().unwrap()),
    );
    t.mark_at("first_attempt", since(fault, created_at));
    t.mark_at("delivered", since(fault, delivered_at));
    t.note("attempts", attempts);
    t.note("back_to_delivered_ms", delivered_at - back_at);
    t.note("telegram_sos_messages", count(&texts, "SOS:") as u64);
    t.finish();
}

/// `talon status --json` from the store (the daemon is not running).
fn stored_status(dir: &Path, config: &Path) -> serde_json::Value {
    let mut c = crate::support::talon(dir);
    c.args(["status", "--json", "--config"]).arg(config);
    serde_json::from_str(&crate::support::stdout(&crate::support::run(c))).unwrap_or_default()
}

#[test]
fn s07_talon_sigkilled_after_paging_resumes_the_same_incident_without_a_second_page() {
    const HEAL_COOLDOWN_MS: i64 = 3000;
    let rt = runtime();
    let tg = rt.block_on(Peer::start((200, OK), Duration::ZERO));
    let fx = Fx::new();
    // Two heals per incident, 3 s apart: the first before the page, the second due after the
    // restart; agents once (600 s cooldown). No HTTP surface: status comes from the store.
    let config = fx.config(
        &format!(
            "heal_cooldown_secs = {}\nmax_heals_per_incident = 2\nagent_cooldown_secs = 600",
            HEAL_COOLDOWN_MS / 1000
        ),
        &fx.telegram(&tg.url),
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("bind = \"127.0.0.1:{}\"", fx.health),
        "enabled = false",
    );
    std::fs::write(&config, text).unwrap();
    let _reaper = Reaper::new(&fx.dir);
    let mut d = Daemon::start(&fx.dir, &config);
    healthy(&d);

    fx.break_target();
    let paged = d.wait_status("paged", LIMIT, |v| {
        v["state"] == "sos" && !v["incident"]["paged_at_unix"].is_null()
    });
    assert_eq!(count(&telegram_texts(&tg), "SOS:"), 1);
    let id: u64 = paged["incident"]["id"].as_str().unwrap().parse().unwrap();
    let heals_before = paged["incident"]["heals"].as_u64().unwrap();
    let agents_before = paged["incident"]["agents"].as_u64().unwrap();

    let mut t = Timeline::start(
        7,
        "talon SIGKILLed after paging → restarted → same incident, no second page",
    );
    let killed_at = wall_ms();
    let mut child = d.child.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    t.mark("killed");
    let at_rest = stored_status(&fx.dir, &config);
    assert_eq!(at_rest["state"], "sos", "{at_rest:#}");
    assert_eq!(at_rest["incident"]["id"], id.to_string(), "{at_rest:#}");

    let mut d = Daemon::start(&fx.dir, &config);
    let running = wait_for("the restarted daemon running", LIMIT, || {
        find_log(&d, killed_at, "talon running", |_| true)
    });
    t.mark_at("restarted", since(killed_at, running.at_ms));
    let restored = find_log(&d, killed_at, "restored state from the store", |_| true)
        .unwrap_or_else(|| panic!("log:\n{}", d.log()));
    assert_eq!(restored.v["state"], "sos", "{:?}", restored.v);
    assert_eq!(running.v["state"], "sos", "resumed in sos: {:?}", running.v);

    // The ladder goes on where it was: the second heal comes when its cooldown (counted from the
    // first heal, before the kill) allows, then the budget is spent; no new incident, no page.
    let dt = wait_for(
        "the second heal of the incident, after the restart",
        LIMIT,
        || {
            let v = detail(&d, id);
            (rows(&v, "actions")
                .iter()
                .filter(|a| a["kind"] == "heal" && !a["ended_at"].is_null())
                .count()
                == 2)
                .then_some(v)
        },
    );
    let heals: Vec<&serde_json::Value> = rows(&dt, "actions")
        .into_iter()
        .filter(|a| a["kind"] == "heal")
        .collect();
    let h1 = heals[0]["started_at"].as_i64().unwrap();
    let h2 = heals[1]["started_at"].as_i64().unwrap();
    assert!(h1 < killed_at, "{dt:#}");
    assert!(
        h2 - h1 >= HEAL_COOLDOWN_MS,
        "the cooldown ran across the restart: {dt:#}"
    );
    t.mark_at("ladder_resumed", since(killed_at, h2));
    // Let the restarted daemon run a while longer: no third heal (budget 2), no new agent run
    // (cooldown), no second page, still the same incident, still sos.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        assert_eq!(count(&telegram_texts(&tg), "SOS:"), 1, "paged again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = d.json(&["status"]);
    assert_eq!(st["state"], "sos", "{st:#}");
    assert_eq!(st["incident"]["id"], id.to_string(), "{st:#}");
    assert_eq!(
        st["incident"]["paged_at_unix"],
        paged["incident"]["paged_at_unix"]
    );
    assert_eq!(st["incident"]["heals"], 2, "{st:#}");
    assert!(heals_before >= 1);
    assert_eq!(st["incident"]["agents"], agents_before, "{st:#}");
    let dt = detail(&d, id);
    let path: Vec<&str> = rows(&dt, "transitions")
        .iter()
        .filter(|t| t["subject"] == "system")
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        path,
        ["failed", "investigating", "critical", "sos"],
        "never back to the bottom of the ladder: {dt:#}"
    );
    assert_eq!(notifications(&dt, "sos").len(), 1, "{dt:#}");
    assert!(notifications(&dt, "reminder").is_empty(), "{dt:#}");

    let fixed = wall_ms();
    fx.fix_target();
    wait_for("resolved on the Bot API server", LIMIT, || {
        (count(&telegram_texts(&tg), "Resolved:") == 1).then_some(())
    });
    let inc = only_incident(&d);
    assert_eq!(inc["id"], id);
    assert!(!inc["closed_at"].is_null());
    let texts = telegram_texts(&tg);
    assert_eq!(
        texts.len(),
        2,
        "one SOS and one resolved in all: {texts:#?}"
    );
    assert_eq!(d.terminate(), Some(0), "log:\n{}", d.log());
    t.mark_at(
        "recovered",
        since(killed_at, inc["closed_at"].as_i64().unwrap()),
    );
    t.note(
        "fix_to_closed_ms",
        inc["closed_at"].as_i64().unwrap() - fixed,
    );
    t.note("heals_before_kill", heals_before);
    t.note("telegram_sos_messages", 1u64);
    t.finish();
}
