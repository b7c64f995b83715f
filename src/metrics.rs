//! Prometheus metrics: one [`Metrics`] value shared by the runtime (which records) and the HTTP
//! server (which renders `/metrics` in the OpenMetrics text format).
//!
//! Every metric is prefixed `talon_`. Recording is lock-free (atomics), except the small map
//! used to forget a probe removed by a reload.

use crate::core::{ProbeResult, Status, SystemState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::sync::Mutex;

/// The `Content-Type` of [`Metrics::render_openmetrics`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of [`Metrics::render`]'s output (the classic Prometheus text format).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Histogram buckets for probe durations, in seconds (5 ms … 60 s).
const DURATION_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    probe: String,
    kind: String,
    critical: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    tier: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifyLabels {
    channel: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn new_duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// All of Talon's metrics.
pub struct Metrics {
    registry: Registry,
    probe_up: Family<ProbeLabels, Gauge>,
    probe_duration: Family<ProbeLabels, Histogram, fn() -> Histogram>,
    probe_failures: Family<ProbeLabels, Counter>,
    /// Labels last used per probe name, so a removed probe's series can be dropped.
    probe_labels: Mutex<HashMap<String, ProbeLabels>>,
    state: Family<StateLabels, Gauge>,
    escalation_actions: Family<ActionLabels, Counter>,
    worker_restarts: Counter,
    notifications: Family<NotifyLabels, Counter>,
    notifications_pending: Gauge,
    heartbeats: Family<OutcomeLabels, Counter>,
    reload_successes: Counter,
    reload_failures: Counter,
    config_error: Gauge,
    store_write_failures: Counter,
    clock_steps: Counter,
    resident: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Register every metric. The state gauge starts at `healthy`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("talon");
        let probe_up = Family::<ProbeLabels, Gauge>::default();
        registry.register(
            "probe_up",
            "1 when the probe's newest result passed, 0 otherwise",
            probe_up.clone(),
        );
        let probe_duration =
            Family::<ProbeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                new_duration_histogram,
            );
        registry.register_with_unit(
            "probe_duration",
            "How long probe runs took",
            Unit::Seconds,
            probe_duration.clone(),
        );
        let probe_failures = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "probe_failures",
            "Probe runs that failed, timed out or errored",
            probe_failures.clone(),
        );
        let state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "state",
            "The system state: 1 for the current state, 0 for the others",
            state.clone(),
        );
        let escalation_actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "escalation_actions",
            "Escalation actions run, by tier (heal, agent_cloud, agent_local, sos) and outcome",
            escalation_actions.clone(),
        );
        let worker_restarts = Counter::default();
        registry.register(
            "worker_restarts",
            "Times the supervised worker was restarted",
            worker_restarts.clone(),
        );
        let notifications = Family::<NotifyLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications sent, by channel and outcome (delivered, failed)",
            notifications.clone(),
        );
        let notifications_pending = Gauge::default();
        registry.register(
            "notifications_pending",
            "Notifications no channel has taken yet (in flight or waiting for a retry)",
            notifications_pending.clone(),
        );
        let heartbeats = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "heartbeat_pings",
            "Outbound heartbeat pings, by outcome (ok, failed)",
            heartbeats.clone(),
        );
        let reload_successes = Counter::default();
        registry.register(
            "config_reload_successes",
            "Config reloads applied",
            reload_successes.clone(),
        );
        let reload_failures = Counter::default();
        registry.register(
            "config_reload_failures",
            "Config reloads rejected (the last good config kept running)",
            reload_failures.clone(),
        );
        let config_error = Gauge::default();
        registry.register(
            "config_error",
            "1 while the newest edit of a config file is invalid",
            config_error.clone(),
        );
        let store_write_failures = Counter::default();
        registry.register(
            "store_errors",
            "Store writes (history, state snapshots) that failed, e.g. on a full disk",
            store_write_failures.clone(),
        );
        let clock_steps = Counter::default();
        registry.register(
            "clock_steps",
            "Steps of the wall clock (NTP step, date -s, resume from suspend) seen; pending deadlines were moved with each",
            clock_steps.clone(),
        );
        let resident = Gauge::default();
        registry.register_with_unit(
            "resident_memory",
            "Talon's resident set size (VmRSS), read when scraped",
            prometheus_client::registry::Unit::Bytes,
            resident.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register("build_info", "Talon's version", build.clone());
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);

        let m = Self {
            registry,
            probe_up,
            probe_duration,
            probe_failures,
            probe_labels: Mutex::new(HashMap::new()),
            state,
            escalation_actions,
            worker_restarts,
            notifications,
            notifications_pending,
            heartbeats,
            reload_successes,
            reload_failures,
            config_error,
            store_write_failures,
            clock_steps,
            resident,
        };
        m.set_state(SystemState::Healthy);
        m
    }

    /// Record one probe result: up gauge, duration histogram, failure counter.
    pub fn observe_probe(&self, r: &ProbeResult, critical: bool) {
        let labels = ProbeLabels {
            probe: r.name.clone(),
            kind: r.kind.clone(),
            critical: critical.to_string(),
        };
        {
            let mut known = self.probe_labels.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = known.get(&r.name)
                && *old != labels
            {
                // Kind or criticality changed by a reload: do not leave a stale series behind.
                self.remove_series(old);
            }
            known.insert(r.name.clone(), labels.clone());
        }
        self.probe_up
            .get_or_create(&labels)
            .set(i64::from(r.passed));
        if r.status != Status::Blocked {
            self.probe_duration
                .get_or_create(&labels)
                .observe(r.duration_ms as f64 / 1000.0);
        }
        if r.status.is_failure() {
            self.probe_failures.get_or_create(&labels).inc();
        }
    }

    /// Drop a probe's series (it was removed from the config).
    pub fn forget_probe(&self, name: &str) {
        let old = self
            .probe_labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(old) = old {
            self.remove_series(&old);
        }
    }

    fn remove_series(&self, labels: &ProbeLabels) {
        self.probe_up.remove(labels);
        self.probe_duration.remove(labels);
        self.probe_failures.remove(labels);
    }

    /// Set the system state: its series to 1, every other state's to 0.
    pub fn set_state(&self, current: SystemState) {
        for s in SystemState::ALL {
            self.state
                .get_or_create(&StateLabels {
                    state: s.as_str().to_string(),
                })
                .set(i64::from(s == current));
        }
    }

    /// Count an escalation action: `tier` e.g. `heal`, `agent_cloud`, `agent_local`, `sos`;
    /// `outcome` e.g. `fixed`, `not_fixed`, `failed`, `timeout`.
    pub fn escalation_action(&self, tier: &str, outcome: &str) {
        self.escalation_actions
            .get_or_create(&ActionLabels {
                tier: tier.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Count a worker restart.
    pub fn worker_restart(&self) {
        self.worker_restarts.inc();
    }

    /// Count a notification attempt on a channel (`outcome` = `delivered` or `failed`).
    pub fn notification(&self, channel: &str, ok: bool) {
        self.notifications
            .get_or_create(&NotifyLabels {
                channel: channel.to_string(),
                outcome: if ok { "delivered" } else { "failed" }.to_string(),
            })
            .inc();
    }

    /// How many notifications are waiting to be delivered.
    pub fn set_pending_notifications(&self, n: usize) {
        self.notifications_pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Count an outbound heartbeat ping.
    pub fn heartbeat(&self, ok: bool) {
        self.heartbeats
            .get_or_create(&OutcomeLabels {
                outcome: if ok { "ok" } else { "failed" }.to_string(),
            })
            .inc();
    }

    /// Count a config reload: applied (`true`) or rejected (`false`). Also sets
    /// `talon_config_error` (1 after a rejected reload, 0 after an applied one).
    pub fn reload(&self, ok: bool) {
        if ok {
            self.reload_successes.inc();
        } else {
            self.reload_failures.inc();
        }
        self.config_error.set(i64::from(!ok));
    }

    /// Count `n` more failed store writes.
    pub fn store_write_failed(&self, n: u64) {
        self.store_write_failures.inc_by(n);
    }

    /// Count a step of the wall clock.
    pub fn clock_step(&self) {
        self.clock_steps.inc();
    }

    /// The OpenMetrics text exposition (serve with [`OPENMETRICS_CONTENT_TYPE`]).
    pub fn render_openmetrics(&self) -> String {
        self.resident
            .set(i64::try_from(crate::memory::rss_kib() * 1024).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(4096);
        // Encoding into a String cannot fail (fmt::Write on String is infallible).
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The classic Prometheus text exposition, 0.0.4 (serve with [`TEXT_CONTENT_TYPE`]): what
    /// `promtool check metrics` and plain-text scrapers read.
    pub fn render(&self) -> String {
        openmetrics_to_text(&self.render_openmetrics())
    }
}

/// Convert the OpenMetrics text that prometheus-client writes into the classic text format:
/// counter families are named with their `_total` suffix in `# HELP`/`# TYPE` (OpenMetrics names
/// the family without it), and the OpenMetrics-only `# UNIT` and `# EOF` lines are dropped.
/// Sample lines are the same in both formats.
fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut lines = om.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let counter = lines
                .peek()
                .is_some_and(|next| *next == format!("# TYPE {name} counter"));
            let name = if counter {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            out.push_str(&format!("# HELP {name} {help}\n"));
            if counter {
                lines.next();
                out.push_str(&format!("# TYPE {name} counter\n"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            // `unknown` is OpenMetrics' name for the classic `untyped`.
            if let Some(name) = rest.strip_suffix(" unknown") {
                out.push_str(&format!("# TYPE {name} untyped\n"));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, status: Status, ms: u64) -> ProbeResult {
        ProbeResult {
            name: name.into(),
            kind: "http".into(),
            passed: status.passed(),
            status,
            output: String::new(),
            detail: String::new(),
            duration_ms: ms,
            started_at: 0,
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn probe_series() {
        let m = Metrics::new();
        m.observe_probe(&result("api", Status::Pass, 120), true);
        m.observe_probe(&result("api", Status::Fail, 30), true);
        m.observe_probe(&result("api", Status::Timeout, 5000), true);
        let t = m.render();
        let l = r#"talon_probe_up{probe="api",kind="http",critical="true"} 0"#;
        assert!(t.contains(l), "{t}");
        assert!(
            t.contains(r#"talon_probe_failures_total{probe="api",kind="http",critical="true"} 2"#),
            "{t}"
        );
        assert!(
            t.contains(
                r#"talon_probe_duration_seconds_count{probe="api",kind="http",critical="true"} 3"#
            ),
            "{t}"
        );
        m.forget_probe("api");
        let t = m.render();
        assert!(line(&t, "talon_probe_up{").is_none(), "{t}");
    }

    #[test]
    fn changed_labels_replace_the_old_series() {
        let m = Metrics::new();
        m.observe_probe(&result("db", Status::Pass, 1), false);
        m.observe_probe(&result("db", Status::Pass, 1), true);
        let t = m.render();
        assert!(!t.contains(r#"critical="false""#), "{t}");
        assert!(t.contains(r#"talon_probe_up{probe="db",kind="http",critical="true"} 1"#));
    }

    #[test]
    fn state_is_one_hot() {
        let m = Metrics::new();
        m.set_state(SystemState::Sos);
        let t = m.render();
        let ones: Vec<_> = t
            .lines()
            .filter(|l| l.starts_with("talon_state{") && l.ends_with(" 1"))
            .collect();
        assert_eq!(ones, [r#"talon_state{state="sos"} 1"#]);
        assert_eq!(
            t.lines().filter(|l| l.starts_with("talon_state{")).count(),
            6
        );
    }

    #[test]
    fn counters_and_names() {
        let m = Metrics::new();
        m.escalation_action("heal", "fixed");
        m.worker_restart();
        m.worker_restart();
        m.notification("telegram", true);
        m.notification("telegram", false);
        m.reload(false);
        let t = m.render();
        for want in [
            r#"talon_escalation_actions_total{tier="heal",outcome="fixed"} 1"#,
            "talon_worker_restarts_total 2",
            r#"talon_notifications_total{channel="telegram",outcome="delivered"} 1"#,
            r#"talon_notifications_total{channel="telegram",outcome="failed"} 1"#,
            "talon_config_reload_failures_total 1",
            "talon_config_reload_successes_total 0",
            "talon_config_error 1",
            "talon_build_info{version=",
            "# HELP talon_worker_restarts_total ",
            "# TYPE talon_worker_restarts_total counter",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        assert!(!t.contains("# EOF") && !t.contains("# UNIT"), "{t}");
        let om = m.render_openmetrics();
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE talon_worker_restarts counter"), "{om}");
        m.reload(true);
        assert!(m.render().contains("talon_config_error 0"));
    }
}
