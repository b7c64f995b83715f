//! `push` probe spec: a dead-man check for cron jobs and backups. The job pings Talon
//! (`POST /ping/NAME`, or `talon ping NAME`); the probe fails when no ping arrived within
//! `period_secs` (or after the next time of the cron `schedule`) plus `grace_secs`, or when the
//! job's newest report was a failure (`/ping/NAME/fail`). The check lives in
//! `crate::probe::push`; the pings arrive on the HTTP server (`crate::server`).

use super::{Check, Kind, KindSpec, ProbeKind};
use crate::config::cron::Cron;
use crate::config::raw::Secs;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[push.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "push",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Push),
};

/// Default `grace_secs`: how late a ping may be before the probe fails.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PushSpec {
    /// The job runs (and pings) at least this often.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_secs"
    )]
    pub period_secs: Option<SecsValue>,
    /// Or: the job runs on this 5-field cron schedule (UTC), and pings after each run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How late a ping may be (default 60 s; `talon config` shows the default when unset).
    #[serde(default, serialize_with = "ser_grace")]
    pub grace_secs: Option<SecsValue>,
}

/// Seconds as written (integer or float), kept comparable for reload diffs.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct SecsValue(#[serde(deserialize_with = "de_secs")] pub f64);

fn de_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Secs::deserialize(d).map(|s| s.0)
}

fn ser_opt_secs<S: serde::Serializer>(v: &Option<SecsValue>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) if x.0.fract() == 0.0 => s.serialize_u64(x.0 as u64),
        Some(x) => s.serialize_f64(x.0),
        None => s.serialize_none(),
    }
}

fn ser_grace<S: serde::Serializer>(v: &Option<SecsValue>, s: S) -> Result<S::Ok, S::Error> {
    ser_opt_secs(
        &Some(v.unwrap_or(SecsValue(DEFAULT_GRACE.as_secs_f64()))),
        s,
    )
}

/// When the next ping is due after one that arrived (or after Talon started waiting).
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    Every(Duration),
    Schedule(Cron),
}

impl PushSpec {
    /// `grace_secs`, or its default.
    pub fn grace(&self) -> Duration {
        self.grace_secs
            .map(|s| Duration::from_secs_f64(s.0.max(0.0)))
            .unwrap_or(DEFAULT_GRACE)
    }

    /// The period or the parsed schedule (`Err` only for a spec that did not validate).
    pub fn due(&self) -> Result<Due, String> {
        match (&self.period_secs, &self.schedule) {
            (Some(p), None) if p.0.is_finite() && p.0 > 0.0 => {
                Ok(Due::Every(Duration::from_secs_f64(p.0)))
            }
            (None, Some(s)) => Cron::parse(s).map(Due::Schedule),
            _ => Err("give exactly one of period_secs or schedule".into()),
        }
    }
}

/// Longest period or grace accepted: a year (a typo such as a period in milliseconds is caught).
const MAX_SECS: f64 = 366.0 * 86_400.0;

impl KindSpec for PushSpec {
    fn validate(&self, c: &mut Check<'_>) {
        match (&self.period_secs, &self.schedule) {
            (None, None) => c.error(
                "period_secs",
                "a push probe needs `period_secs` (how often the job pings) or a cron `schedule`",
            ),
            (Some(_), Some(_)) => c.error("schedule", "give `period_secs` or `schedule`, not both"),
            (Some(p), None) => {
                if !(p.0.is_finite() && p.0 >= 1.0 && p.0 <= MAX_SECS) {
                    c.error(
                        "period_secs",
                        format!("must be between 1 second and a year, got {}", p.0),
                    );
                }
            }
            (None, Some(s)) => {
                if let Err(e) = Cron::parse(s) {
                    c.error("schedule", e);
                }
            }
        }
        if let Some(g) = self.grace_secs
            && !(g.0.is_finite() && g.0 >= 0.0 && g.0 <= MAX_SECS)
        {
            c.error(
                "grace_secs",
                format!("must be between 0 and a year of seconds, got {}", g.0),
            );
        }
    }
}
