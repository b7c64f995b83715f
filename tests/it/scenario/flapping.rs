//! Scenario 10: a flapping probe.
//!
//! A critical probe that alternates pass/fail never fails twice in a row, so its debounce
//! (`critical_after_consecutive_failures = 3`) is never met: only flap detection can escalate it.
//! It must be reported `flapping` (in `/status`, `talon status`), keep the system out of
//! `healthy` while it flaps (one incident, not one per flip), reach the SOS, and the number of
//! messages delivered to a local command channel must stay bounded: one SOS, reminders at the
//! configured cooldown, one "resolved" once it settles.

use super::flood::{get_json, wait_json};
use super::{Timeline, wait_for};
use crate::daemon::Daemon;
use crate::support::{free_port, write};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);
/// Messages are separated by this line in the channel's file.
const SEP: &str = "-----8<-----";

fn messages(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split(SEP)
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn s10_flapping_probe_is_reported_escalates_and_pages_a_bounded_number_of_times() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let pages = dir.join("pages.log");
    let (flap, counter) = (dir.join("flap"), dir.join("count"));
    let sos_cooldown = 3.0;
    let config = write(
        dir,
        "config.toml",
        &format!(
            r#"state_dir = "state"
check_interval_secs = 0.2
[health]
bind = "{addr}"
[escalation]
flap_threshold = 4
flap_window_secs = 8
critical_threshold_secs = 0.5
sos_cooldown_secs = {sos_cooldown}
[notify.pager]
kind = "command"
command = "cat >> {pages}; printf '\n{SEP}\n' >> {pages}"
[script.flappy]
command = "if [ -e {flap} ]; then n=$(($(cat {counter} 2>/dev/null || echo 0) + 1)); echo $n > {counter}; [ $((n % 2)) -eq 0 ]; fi"
critical = true
critical_after_consecutive_failures = 3
"#,
            pages = pages.display(),
            flap = flap.display(),
            counter = counter.display(),
        ),
    );
    let mut d = Daemon::start(dir, &config);
    wait_json(&addr, "/health", "healthy", LIMIT, &d, |c, v| {
        c == 200 && v["state"] == "healthy" && v["probe_count"] == 1
    });

    let mut tl = Timeline::start(10, "flapping probe");
    std::fs::write(&flap, "").unwrap();
    let (_, s) = wait_json(&addr, "/status", "flapping", LIMIT, &d, |_, s| {
        s["probes"][0]["flapping"] == true
    });
    tl.mark("detected");
    assert!(
        s["probes"][0]["streak"].as_u64().unwrap_or(9) < 3,
        "never three failures in a row: {s}"
    );
    let cli = d.json(&["status"]);
    assert_eq!(cli["probes"][0]["flapping"], true, "talon status: {cli}");
    wait_json(&addr, "/health", "an incident", LIMIT, &d, |c, v| {
        c == 503 && !v["incident_id"].is_null()
    });
    tl.mark("incident_opened");
    wait_for("the SOS", LIMIT, || {
        messages(&pages)
            .iter()
            .any(|m| m.contains("flappy"))
            .then_some(())
    });
    tl.mark("paged");

    // Keep it flapping a while: the system stays down (every sample), the same incident stays
    // open, and only reminders at the cooldown arrive.
    let flap_for = Duration::from_secs(7);
    let paged_at = Instant::now();
    let mut samples = 0;
    let mut incident = None;
    while paged_at.elapsed() < flap_for {
        if let Some((code, v)) = get_json(&addr, "/health") {
            assert_eq!(code, 503, "the system stays down while it flaps: {v}");
            let id = v["incident_id"].clone();
            assert!(!id.is_null(), "{v}");
            assert!(
                incident.get_or_insert(id.clone()) == &id,
                "one incident while it flaps, not one per flip: {v}"
            );
            samples += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(samples > 20, "{samples} samples");
    // The probe rewrites the counter (`echo $n > count` truncates first): read it until whole.
    let flips = super::wait_for("the flip counter", Duration::from_secs(10), || {
        std::fs::read_to_string(&counter)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    });
    assert!(flips >= 20, "it flipped {flips} times");
    let while_flapping = messages(&pages).len();
    // One SOS, then a reminder per cooldown at most (+1 for a reminder already on its way).
    let bound = 1 + (paged_at.elapsed().as_secs_f64() / sos_cooldown).ceil() as usize + 1;
    assert!(
        (1..=bound).contains(&while_flapping),
        "{while_flapping} messages for {flips} flips (bound {bound}):\n{}",
        std::fs::read_to_string(&pages).unwrap()
    );

    // It settles: flapping ends once the changes age out of the window, the incident closes,
    // one "resolved" is sent.
    std::fs::remove_file(&flap).unwrap();
    tl.mark("settled");
    wait_json(&addr, "/health", "healthy again", LIMIT, &d, |c, v| {
        c == 200 && v["incident_id"].is_null()
    });
    tl.mark("recovered");
    // The incident stayed open (reminders continuing) until the flaps aged out of the window:
    // the whole episode allows one SOS, a reminder per cooldown (+1 on its way), one resolved.
    let total_bound = 1 + (paged_at.elapsed().as_secs_f64() / sos_cooldown).ceil() as usize + 1 + 1;
    wait_for("the resolved message", LIMIT, || {
        messages(&pages)
            .last()
            .filter(|m| m.to_lowercase().contains("resolved"))
            .map(|_| ())
    });
    let all = messages(&pages);
    let resolved = all
        .iter()
        .filter(|m| m.to_lowercase().contains("resolved"))
        .count();
    assert_eq!(resolved, 1, "{all:#?}");
    assert!(
        all.len() <= total_bound,
        "{} messages (bound {total_bound}): {all:#?}",
        all.len()
    );
    let incidents = d.json(&["incidents"]);
    assert_eq!(
        incidents.as_array().map(Vec::len),
        Some(1),
        "exactly one incident for the whole episode: {incidents:#}"
    );
    tl.note("flips", flips);
    tl.note("messages", all.len() as u64);
    tl.note("message_bound", total_bound as u64);
    tl.finish();
    assert_eq!(d.terminate(), Some(0));
}
