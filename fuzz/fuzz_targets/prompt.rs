//! The agent prompt: untrusted text never outside a fence, fences balanced, size bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use talon::escalate::prompt::{FailingProbe, HostFacts, PromptInput, TimelineEntry, build_prompt};

const SENTINEL: &str = "INJECTED";

fuzz_target!(|data: (String, String, u16)| {
    let (output, what, max) = data;
    let max = 256 + max as usize;
    let failing = [FailingProbe {
        name: "api".into(),
        kind: "http".into(),
        status: "fail".into(),
        output: format!("{output}{SENTINEL}{output}"),
        runbook: None,
        witness: None,
    }];
    let timeline = [TimelineEntry {
        at_ms: 0,
        what: format!("{what}{SENTINEL}"),
    }];
    let p = build_prompt(
        &PromptInput {
            incident_id: "inc-1",
            state: "investigating",
            host: HostFacts {
                hostname: "box".into(),
                os: "linux".into(),
                uptime_secs: None,
            },
            timeline: &timeline,
            failing: &failing,
            heals: &[],
            talon_log: None,
            worker_log: None,
            log_tail_lines: 10,
            guardrails: None,
            max_bytes: max,
        },
        &talon::redact::Redactor::default(),
    );
    assert!(p.len() <= max);
    let marker = "Text between `BEGIN UNTRUSTED DATA ";
    let Some(nonce) = p
        .find(marker)
        .and_then(|i| p.get(i + marker.len()..i + marker.len() + 16))
    else {
        assert!(!p.contains(SENTINEL));
        return;
    };
    let begin = format!("----- BEGIN UNTRUSTED DATA {nonce} (");
    let end = format!("----- END UNTRUSTED DATA {nonce} -----");
    let mut inside = false;
    for line in p.lines() {
        if line.starts_with(&begin) {
            assert!(!inside, "nested fence");
            inside = true;
        } else if line == end {
            assert!(inside, "END without BEGIN");
            inside = false;
        } else if !inside {
            assert!(
                !line.contains(SENTINEL),
                "untrusted text outside a fence: {line}"
            );
        }
    }
    assert!(!inside, "fence left open");
});
