//! What redaction costs per MiB of text.
//!
//! `cargo bench --bench redact` prints MiB/s (median, min and max of `RUNS` runs, 15 by default)
//! of `Redactor::redact` over 4 MiB of text, for:
//! - **prose**: log-like lines with no secret in them (the common case: nothing is replaced);
//! - **dense**: the same lines with a secret of some built-in kind in every fourth line;
//! - **worst adversarial**: the slowest of inputs built to make a pattern rescan (each pattern's
//!   opening repeated without its end, long runs of a value's characters, no line breaks);
//!
//! each with the built-in patterns on (the default) and off (`redact_builtin = false`: literals
//! and `redact` patterns only), with a redactor holding 3 literal secrets and 1 `redact` pattern
//! as a typical config does. Then the cost of one log line (110 bytes), which is what the log pays
//! per event. Writes `target/bench/redact.json`.

mod common;

use std::time::Instant;
use talon::redact::Redactor;

const MIB: usize = 1 << 20;

fn lines() -> Vec<String> {
    let ok = [
        "2026-11-28T02:16:00.123Z INFO probe api passed in 3 ms (HTTP 200) request 123e4567-e89b-12d3-a456-426614174000",
        "HEAD is now at 3f786850e387550fdab836ed7e6dc881de23001b deploy: bump worker to 1.4.2",
        "Nov 28 02:16:00 host kernel: [12345.678] eth0: link up, 1000 Mbps, full duplex",
        "FATAL: password authentication failed for user \"app\" (connection from 10.0.0.5:51234)",
        "GET /v1/items?page=2&limit=50 200 0.004s bytes=18231 ua=\"curl/8.5.0\" key: value",
        "payload aGVsbG8gd29ybGQsIHRoaXMgaXMgYSB0ZXN0Cg== decoded; max_tokens=1000 retries=3",
    ];
    ok.iter().map(|s| s.to_string()).collect()
}

const SECRETS: &[&str] = &[
    "token=123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
    "using AKIAIOSFODNN7EXAMPLE and aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "remote rejected ghp_16C7e42F292c6912E7710c838347Ae178B4a and glpat-xxxxxxxxxxxxxxxxxxxx",
    "slack xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
    "> Authorization: Bearer 0b79bab50daca910b000d4f1a2b675d604257e42",
    "connect password=hunter2 DB_PASSWD: 'correct horse' \"api_key\": \"k-8f14e45fceea167a\"",
    "jwt eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_X",
    "dial redis://default:s3cretPass@10.0.0.5:6379/0: refused",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n-----END RSA PRIVATE KEY-----",
];

/// `len` bytes of lines; with `dense`, every fourth line carries a secret.
fn text(len: usize, dense: bool) -> String {
    let ok = lines();
    let mut out = String::with_capacity(len + 256);
    let mut i = 0;
    while out.len() < len {
        if dense && i % 4 == 3 {
            out.push_str(SECRETS[(i / 4) % SECRETS.len()]);
        } else {
            out.push_str(&ok[i % ok.len()]);
        }
        out.push('\n');
        i += 1;
    }
    out
}

fn adversarial(len: usize) -> Vec<(String, String)> {
    let fragments = [
        "-----BEGIN PRIVATE KEY-----\nAAAA\n",
        "AAAA\n",
        "eyJhbGciOi.eyJzdWIiOi",
        "123456:",
        "AKIA",
        "secret_access_key=",
        "ghp_",
        "a://b:",
        "Authorization: Bearer ",
        "bearer ",
        "password=",
        "password=\"",
        "x",
    ];
    let mut out: Vec<(String, String)> = fragments
        .iter()
        .map(|f| (format!("{f:?} repeated"), f.repeat(len / f.len() + 1)))
        .collect();
    for (open, run) in [
        ("password=\"", "a"),
        ("Authorization: Bearer ", "a"),
        ("-----BEGIN PRIVATE KEY-----", "A"),
    ] {
        out.push((
            format!("{open:?} then {run:?}"),
            format!("{open}{}", run.repeat(len)),
        ));
    }
    out
}

fn redactor(builtin: bool) -> Redactor {
    Redactor::new(
        [
            "tok-SECRET-9876",
            "hunter22-pass",
            "0123456789:literal-bot-token",
        ],
        &["sk-[A-Za-z0-9]{8,}".to_string()],
    )
    .unwrap()
    .with_builtin(builtin)
}

/// MiB/s of `runs` redactions of `text`: (median, min, max).
fn throughput(r: &Redactor, text: &str, runs: usize) -> (f64, f64, f64) {
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(r.redact(std::hint::black_box(text)));
            text.len() as f64 / MIB as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (rates[rates.len() / 2], rates[0], rates[rates.len() - 1])
}

fn main() {
    if !common::asked_to_run("redact") {
        return;
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "redact: {runs} runs of 4 MiB each; load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut json = serde_json::Map::new();
    let prose = text(4 * MIB, false);
    let dense = text(4 * MIB, true);
    for builtin in [true, false] {
        let r = redactor(builtin);
        // Warm up: compile the built-ins, fill the automata's caches.
        std::hint::black_box(r.redact(&dense));
        let label = if builtin { "builtin on" } else { "builtin off" };
        for (name, t) in [("prose", &prose), ("dense", &dense)] {
            let (med, min, max) = throughput(&r, t, runs);
            println!("{label:12} {name:20} median {med:7.1} MiB/s (min {min:.1}, max {max:.1})");
            json.insert(
                format!("{name}_{}", if builtin { "on" } else { "off" }),
                serde_json::json!({"median_mib_s": med, "min_mib_s": min, "max_mib_s": max}),
            );
        }
        let mut worst: Option<(String, f64)> = None;
        for (name, t) in adversarial(4 * MIB) {
            let (med, _, _) = throughput(&r, &t, runs.min(5));
            if worst.as_ref().is_none_or(|(_, w)| med < *w) {
                worst = Some((name, med));
            }
        }
        let (wname, wmed) = worst.unwrap();
        println!(
            "{label:12} {:20} median {wmed:7.1} MiB/s ({wname})",
            "worst adversarial"
        );
        json.insert(
            format!("worst_adversarial_{}", if builtin { "on" } else { "off" }),
            serde_json::json!({"median_mib_s": wmed, "input": wname}),
        );
        // One log line, as the log redacts every event.
        let line = &lines()[0];
        let n = 200_000;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(r.redact(std::hint::black_box(line)));
        }
        let per = t.elapsed() / n;
        println!(
            "{label:12} {:20} {:.2} µs per {}-byte line",
            "one log line",
            per.as_secs_f64() * 1e6,
            line.len()
        );
        json.insert(
            format!("log_line_us_{}", if builtin { "on" } else { "off" }),
            serde_json::json!(per.as_secs_f64() * 1e6),
        );
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join("redact.json"),
        serde_json::to_string_pretty(&serde_json::Value::Object(json)).unwrap(),
    );
}
