//! `[policy.NAME]` escalation policies (`[[policy.NAME.step]]`: `after_secs`, `channels`), the
//! probe keys `policy` and `severity`, and `[[maintenance]]` windows (one-off `start`/`end` in
//! RFC 3339, or recurring `schedule = "sun 02:00-04:00"` in local time).
//!
//! Also the pure evaluation of a window at a given instant ([`MaintenanceWindow::active_at`],
//! [`MaintenanceWindow::next_change`]): the core calls it with the event's time and the zone
//! resolved when the config was loaded, so nothing here reads a clock.
//!
//! **Local time and DST** (`docs/notify.md`): a recurring window's start and end are civil
//! times in the zone of `TZ` (else `/etc/localtime`), turned into instants with the
//! "compatible" rule (RFC 5545): a time that does not exist (spring forward) is moved forward by
//! the length of the gap; a time that occurs twice (fall back) is its first occurrence. So
//! `sun 02:00-04:00` lasts 1 h on the day clocks go 02:00 → 03:00 and 3 h on the day they go
//! 03:00 → 02:00: it always covers the wall-clock span written.

use super::builder::Builder;
use super::raw::{OneOrMany, RawMaintenance, RawPolicy, Secs};
use super::ser_secs;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Milliseconds since the Unix epoch (the core's unit).
pub type Millis = i64;

/// A window longer than this is suspicious (a warning, not an error).
pub const LONG_WINDOW: Duration = Duration::from_secs(7 * 86_400);

/// How a probe's failure reaches humans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Pages through the probe's policy (the default).
    #[default]
    Page,
    /// Never pages: goes only to the channels of `[policy.ticket]`.
    Ticket,
}

/// The name of the policy `severity = "ticket"` probes follow.
pub const TICKET_POLICY: &str = "ticket";
/// The policy of every probe that names none.
pub const DEFAULT_POLICY: &str = "default";

/// One rung of a policy: `after` the SOS, page these channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyStep {
    #[serde(serialize_with = "ser_secs", rename = "after_secs")]
    pub after: Duration,
    pub channels: Vec<String>,
}

/// `[policy.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    #[serde(rename = "step")]
    pub steps: Vec<PolicyStep>,
}

/// A probe's own `policy` / `severity` (only probes that set either are listed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProbeRoute {
    pub policy: Option<String>,
    pub severity: Severity,
}

/// Days of the week (bit 0 = Monday) and a civil time span, in minutes from midnight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub text: String,
    pub days: u8,
    pub start_min: u16,
    /// `<= start_min`: the window ends the next day.
    pub end_min: u16,
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Schedule {
    /// `"sun 02:00-04:00"`, `"sat,sun 23:00-01:00"`, `"mon-fri 12:00-12:30"`, `"daily 03:00-03:15"`.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let bad = |why: &str| {
            format!(
                "{text:?}: {why} (expected e.g. \"sun 02:00-04:00\", \"mon-fri 12:00-12:30\", \"daily 03:00-03:15\")"
            )
        };
        let mut parts = text.split_whitespace();
        let (Some(days_s), Some(span), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("needs days and a time span"));
        };
        let day = |d: &str| DAYS.iter().position(|x| x.eq_ignore_ascii_case(d));
        let mut days = 0u8;
        if days_s.eq_ignore_ascii_case("daily") || days_s == "*" {
            days = 0x7f;
        } else {
            for item in days_s.split(',') {
                match item.split_once('-') {
                    Some((a, b)) => {
                        let (Some(a), Some(b)) = (day(a), day(b)) else {
                            return Err(bad(&format!("unknown day in `{item}`")));
                        };
                        let mut i = a;
                        loop {
                            days |= 1 << i;
                            if i == b {
                                break;
                            }
                            i = (i + 1) % 7;
                        }
                    }
                    None => {
                        let Some(a) = day(item) else {
                            return Err(bad(&format!("unknown day `{item}`")));
                        };
                        days |= 1 << a;
                    }
                }
            }
        }
        let Some((a, b)) = span.split_once('-') else {
            return Err(bad("the time span needs a start and an end: HH:MM-HH:MM"));
        };
        let hm = |t: &str| -> Option<u16> {
            let (h, m) = t.split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
        };
        let (Some(start_min), Some(end_min)) = (hm(a), hm(b)) else {
            return Err(bad("times are HH:MM, 00:00 to 24:00"));
        };
        if start_min == 1440 {
            return Err(bad("a window cannot start at 24:00"));
        }
        if start_min == end_min {
            return Err(bad(
                "start and end are the same time: this schedule never matches",
            ));
        }
        Ok(Schedule {
            text: text.to_string(),
            days,
            start_min,
            end_min,
        })
    }

    /// The occurrences that start on local dates from the day before `at` to a week after it.
    fn occurrences(&self, at: Millis, zone: &jiff::tz::TimeZone) -> Vec<(Millis, Millis)> {
        let Ok(ts) = jiff::Timestamp::from_millisecond(at) else {
            return Vec::new();
        };
        let Ok(mut date) = ts.to_zoned(zone.clone()).date().yesterday() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for _ in 0..9 {
            let wd = date.weekday().to_monday_zero_offset() as u8;
            if self.days & (1 << wd) != 0
                && let Some(start) = civil_ms(date, self.start_min, zone)
            {
                let end_date = if self.end_min <= self.start_min {
                    date.tomorrow().ok()
                } else {
                    Some(date)
                };
                if let Some(end) = end_date.and_then(|d| civil_ms(d, self.end_min, zone))
                    && end > start
                {
                    out.push((start, end));
                }
            }
            match date.tomorrow() {
                Ok(d) => date = d,
                Err(_) => break,
            }
        }
        out
    }
}

/// A civil date and minute of the day in `zone` → unix ms, by the "compatible" rule.
fn civil_ms(date: jiff::civil::Date, min: u16, zone: &jiff::tz::TimeZone) -> Option<Millis> {
    let (date, min) = if min >= 1440 {
        (date.tomorrow().ok()?, min - 1440)
    } else {
        (date, min)
    };
    let dt = date.at((min / 60) as i8, (min % 60) as i8, 0, 0);
    let z = dt.to_zoned(zone.clone()).ok()?;
    Some(z.timestamp().as_millisecond())
}

/// When a window is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum WindowTime {
    /// `start`/`end` (RFC 3339), as unix ms.
    Once {
        #[serde(serialize_with = "ser_rfc3339")]
        start: Millis,
        #[serde(serialize_with = "ser_rfc3339")]
        end: Millis,
    },
    /// `schedule`: one or more recurring spans in local time.
    Recurring { schedule: Vec<Schedule> },
}

/// A time in `talon config` as it is written in the file.
fn ser_rfc3339<S: serde::Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::format::rfc3339(*ms))
}

/// `[[maintenance]]`, or one started at run time with `talon maintenance start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaintenanceWindow {
    /// Shown in `talon maintenance list`; `talon maintenance start NAME` starts it now.
    pub name: String,
    /// Probe names or globs (`*`, `?`).
    pub probes: Vec<String>,
    #[serde(flatten)]
    pub when: WindowTime,
    /// Heal and run agents inside the window (never page).
    pub heal: bool,
}

impl MaintenanceWindow {
    /// Does the window cover this probe?
    pub fn covers(&self, probe: &str) -> bool {
        self.probes.iter().any(|p| glob_match(p, probe))
    }

    /// The occurrence `[start, end)` that contains `at`, if any.
    pub fn active_at(&self, at: Millis, zone: &jiff::tz::TimeZone) -> Option<(Millis, Millis)> {
        match &self.when {
            WindowTime::Once { start, end } => {
                (*start <= at && at < *end).then_some((*start, *end))
            }
            WindowTime::Recurring { schedule } => schedule
                .iter()
                .flat_map(|s| s.occurrences(at, zone))
                .filter(|(s, e)| *s <= at && at < *e)
                .max_by_key(|(_, e)| *e),
        }
    }

    /// The next time after `at` the window opens or closes (within about a week).
    pub fn next_change(&self, at: Millis, zone: &jiff::tz::TimeZone) -> Option<Millis> {
        let spans: Vec<(Millis, Millis)> = match &self.when {
            WindowTime::Once { start, end } => vec![(*start, *end)],
            WindowTime::Recurring { schedule } => schedule
                .iter()
                .flat_map(|s| s.occurrences(at, zone))
                .collect(),
        };
        spans
            .into_iter()
            .flat_map(|(s, e)| [s, e])
            .filter(|t| *t > at)
            .min()
    }
}

/// `*` (any run) and `?` (any one character); everything else literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// Everything about who is paged when, and when nobody is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyConfig {
    #[serde(rename = "policy", skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, Policy>,
    /// Probes that name a policy or a severity.
    #[serde(rename = "probe_routes", skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, ProbeRoute>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<MaintenanceWindow>,
    /// The local zone recurring windows are evaluated in (`TZ`, else `/etc/localtime`).
    #[serde(skip)]
    pub zone: jiff::tz::TimeZone,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            policies: BTreeMap::new(),
            routes: BTreeMap::new(),
            maintenance: Vec::new(),
            zone: jiff::tz::TimeZone::UTC,
        }
    }
}

impl PolicyConfig {
    /// No policy, route or window: today's behaviour (every channel at once).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.routes.is_empty() && self.maintenance.is_empty()
    }
}

/// A probe's `policy`/`severity` as written, with where, for the cross-checks in the build.
pub(super) struct RouteDraft {
    pub probe: String,
    pub route: ProbeRoute,
    pub src: std::sync::Arc<super::diag::Source>,
    pub span: Option<std::ops::Range<usize>>,
    pub key: String,
}

impl Builder<'_, '_> {
    /// `[policy.*]`, `[[maintenance]]` and the probes' routes, checked against the channels
    /// and probes that exist.
    pub(super) fn policy(
        &mut self,
        raw: Option<BTreeMap<String, RawPolicy>>,
        maintenance: Option<Vec<RawMaintenance>>,
        routes: Vec<RouteDraft>,
        channels: &[String],
        probes: &[String],
    ) -> PolicyConfig {
        let mut policies = BTreeMap::new();
        for (name, p) in raw.unwrap_or_default() {
            let base = format!("policy.{name}");
            let raw_steps = p.step.unwrap_or_default();
            if raw_steps.is_empty() {
                self.err(
                    &base,
                    "a policy needs at least one [[policy.NAME.step]] with `after_secs` and `channels`",
                );
                continue;
            }
            let mut steps: Vec<PolicyStep> = Vec::new();
            for (i, s) in raw_steps.into_iter().enumerate() {
                let key = format!("{base}.step[{i}]");
                let after = match s.after_secs {
                    None => Duration::ZERO,
                    Some(Secs(v)) if v.is_finite() && (0.0..1e9).contains(&v) => {
                        Duration::from_secs_f64(v)
                    }
                    Some(Secs(v)) => {
                        self.err(
                            &format!("{key}.after_secs"),
                            format!("must be 0 or a positive number of seconds, got {v}"),
                        );
                        Duration::ZERO
                    }
                };
                let chans = s.channels.unwrap_or_default();
                if chans.is_empty() {
                    self.err(
                        &format!("{key}.channels"),
                        "a step needs at least one channel",
                    );
                }
                for c in &chans {
                    if !channels.contains(c) {
                        let known = if channels.is_empty() {
                            "no [notify.NAME] channel is configured".to_string()
                        } else {
                            format!("channels: {}", channels.join(", "))
                        };
                        self.err(
                            &format!("{key}.channels"),
                            format!("unknown channel `{c}` ({known})"),
                        );
                    }
                }
                if let Some((j, prev)) = steps.iter().enumerate().find(|(_, p)| p.after == after) {
                    self.err(
                        &format!("{key}.after_secs"),
                        format!(
                            "overlapping steps: step[{j}] already runs at {} s after the SOS",
                            prev.after.as_secs_f64()
                        ),
                    );
                } else if let Some(prev) = steps.last()
                    && prev.after > after
                {
                    self.err(
                        &format!("{key}.after_secs"),
                        format!(
                            "steps must be in order: this one runs at {} s, before step[{}] at {} s",
                            after.as_secs_f64(),
                            steps.len() - 1,
                            prev.after.as_secs_f64()
                        ),
                    );
                }
                steps.push(PolicyStep {
                    after,
                    channels: chans,
                });
            }
            policies.insert(name, Policy { steps });
        }
        let mut out_routes = BTreeMap::new();
        for r in routes {
            if let Some(p) = &r.route.policy
                && !policies.contains_key(p)
            {
                let known: Vec<&str> = policies.keys().map(String::as_str).collect();
                self.diags.error(
                    &r.src,
                    r.span.clone(),
                    &r.key,
                    format!(
                        "unknown policy `{p}` ({})",
                        if known.is_empty() {
                            "no [policy.NAME] is configured".to_string()
                        } else {
                            format!("policies: {}", known.join(", "))
                        }
                    ),
                );
            }
            if r.route.severity == Severity::Ticket {
                if !policies.contains_key(TICKET_POLICY) {
                    self.diags.error(
                        &r.src,
                        r.span.clone(),
                        &r.key,
                        "severity = \"ticket\" needs a [policy.ticket] route (its steps' channels get the tickets)",
                    );
                } else if r
                    .route
                    .policy
                    .as_deref()
                    .is_some_and(|p| p != TICKET_POLICY)
                {
                    self.diags.error(
                        &r.src,
                        r.span.clone(),
                        &r.key,
                        "a `ticket` probe follows [policy.ticket]; drop `policy` or set severity = \"page\"",
                    );
                }
            }
            out_routes.insert(r.probe, r.route);
        }
        let mut windows = Vec::new();
        let mut names = BTreeSet::new();
        for (i, m) in maintenance.unwrap_or_default().into_iter().enumerate() {
            let key = format!("maintenance[{i}]");
            let name = m
                .name
                .clone()
                .unwrap_or_else(|| format!("maintenance-{}", i + 1));
            if !names.insert(name.clone()) {
                self.err(
                    &format!("{key}.name"),
                    format!("duplicate window name `{name}`"),
                );
            }
            let pats = m.probes.unwrap_or_default();
            if pats.is_empty() {
                self.err(
                    &format!("{key}.probes"),
                    "a window needs `probes` (names or globs such as \"db*\")",
                );
            }
            for p in &pats {
                if !probes.iter().any(|n| glob_match(p, n)) {
                    self.warn(&format!("{key}.probes"), format!("`{p}` matches no probe"));
                }
            }
            let when = match (m.start, m.end, m.schedule) {
                (Some(s), Some(e), None) => {
                    let ts = |k: &str, v: &str, b: &mut Self| match v.parse::<jiff::Timestamp>() {
                        Ok(t) => Some(t.as_millisecond()),
                        Err(err) => {
                            b.err(
                                &format!("{key}.{k}"),
                                format!("`{v}` is not an RFC 3339 time (e.g. 2026-12-06T02:00:00+01:00): {err}"),
                            );
                            None
                        }
                    };
                    let (s, e) = (ts("start", &s, self), ts("end", &e, self));
                    match (s, e) {
                        (Some(s), Some(e)) if e <= s => {
                            self.err(
                                &format!("{key}.end"),
                                "the window ends before it starts: it never matches",
                            );
                            None
                        }
                        (Some(s), Some(e)) => {
                            if (e - s) as u128 > LONG_WINDOW.as_millis() {
                                self.warn(
                                    &format!("{key}.end"),
                                    format!(
                                        "the window lasts {}, longer than a week: alerting for {} is off all that time",
                                        crate::format::duration_ms(e - s),
                                        pats.join(", ")
                                    ),
                                );
                            }
                            Some(WindowTime::Once { start: s, end: e })
                        }
                        _ => None,
                    }
                }
                (None, None, Some(sched)) => {
                    let list = match sched {
                        OneOrMany::One(s) => vec![s],
                        OneOrMany::Many(v) => v,
                    };
                    if list.is_empty() {
                        self.err(
                            &format!("{key}.schedule"),
                            "an empty schedule never matches",
                        );
                    }
                    let mut out = Vec::new();
                    for s in list {
                        match Schedule::parse(&s) {
                            Ok(s) => out.push(s),
                            Err(e) => self.err(&format!("{key}.schedule"), e),
                        }
                    }
                    (!out.is_empty()).then_some(WindowTime::Recurring { schedule: out })
                }
                (_, _, Some(_)) => {
                    self.err(
                        &format!("{key}.schedule"),
                        "use either `schedule` or `start` and `end`, not both",
                    );
                    None
                }
                _ => {
                    self.err(
                        &key,
                        "a window needs `start` and `end` (RFC 3339) or a recurring `schedule`",
                    );
                    None
                }
            };
            if let Some(when) = when {
                windows.push(MaintenanceWindow {
                    name,
                    probes: pats,
                    when,
                    heal: m.heal.unwrap_or(false),
                });
            }
        }
        // The local zone is read only when a recurring window needs it.
        let zone = if windows
            .iter()
            .any(|w| matches!(w.when, WindowTime::Recurring { .. }))
        {
            jiff::tz::TimeZone::system()
        } else {
            jiff::tz::TimeZone::UTC
        };
        PolicyConfig {
            policies,
            routes: out_routes,
            maintenance: windows,
            zone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Millis = 3_600_000;

    fn berlin() -> jiff::tz::TimeZone {
        // A fixed rule, independent of the host's zone files.
        jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    fn ms(s: &str) -> Millis {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    fn weekly(s: &str) -> MaintenanceWindow {
        MaintenanceWindow {
            name: "w".into(),
            probes: vec!["db*".into()],
            when: WindowTime::Recurring {
                schedule: vec![Schedule::parse(s).unwrap()],
            },
            heal: false,
        }
    }

    #[test]
    fn schedules_parse_and_reject() {
        let s = Schedule::parse("sun 02:00-04:00").unwrap();
        assert_eq!((s.days, s.start_min, s.end_min), (1 << 6, 120, 240));
        assert_eq!(
            Schedule::parse("mon-fri 12:00-12:30").unwrap().days,
            0b11111
        );
        assert_eq!(
            Schedule::parse("sat-mon 23:00-01:00").unwrap().days,
            0b1100001
        );
        assert_eq!(Schedule::parse("daily 00:00-24:00").unwrap().end_min, 1440);
        for bad in [
            "sun",
            "sun 02:00",
            "sunday 02:00-04:00",
            "sun 25:00-26:00",
            "sun 02:00-02:00",
            "sun 24:00-01:00",
            "sun 2-4",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Schedule::parse("sun 02:00-02:00")
                .unwrap_err()
                .contains("never matches")
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("db*", "db-primary"));
        assert!(glob_match("db*", "db"));
        assert!(!glob_match("db*", "api"));
        assert!(glob_match("?pi", "api"));
        assert!(glob_match("api", "api"));
        assert!(!glob_match("api", "api2"));
        assert!(glob_match("*", "anything"));
    }

    /// An ordinary Sunday: 02:00-04:00 CET is 01:00-03:00 UTC.
    #[test]
    fn weekly_window_in_local_time() {
        let w = weekly("sun 02:00-04:00");
        let z = berlin();
        let start = ms("2026-12-06T01:00:00Z");
        assert_eq!(w.active_at(start - 1, &z), None);
        assert_eq!(w.active_at(start, &z), Some((start, start + 2 * H)));
        assert_eq!(
            w.active_at(start + 2 * H - 1, &z),
            Some((start, start + 2 * H))
        );
        assert_eq!(w.active_at(start + 2 * H, &z), None);
        assert_eq!(w.next_change(start - H, &z), Some(start));
        assert_eq!(w.next_change(start, &z), Some(start + 2 * H));
        // The next one is a week later.
        assert_eq!(w.next_change(start + 2 * H, &z), Some(start + 7 * 24 * H));
    }

    /// Spring forward (2027-03-28: 02:00 CET → 03:00 CEST): 02:00 does not exist and is moved
    /// forward by the gap, so the window runs 03:00-04:00 CEST = 01:00-02:00 UTC, one hour.
    #[test]
    fn dst_spring_forward_shortens_the_window() {
        let w = weekly("sun 02:00-04:00");
        let z = berlin();
        let start = ms("2027-03-28T01:00:00Z");
        let end = ms("2027-03-28T02:00:00Z");
        assert_eq!(w.active_at(start, &z), Some((start, end)));
        assert_eq!(w.active_at(start - 1, &z), None);
        assert_eq!(w.active_at(end, &z), None);
    }

    /// Fall back (2026-10-25: 03:00 CEST → 02:00 CET): 02:00 is its first occurrence (CEST,
    /// 00:00 UTC), 04:00 CET is 03:00 UTC: the window lasts three hours.
    #[test]
    fn dst_fall_back_lengthens_the_window() {
        let w = weekly("sun 02:00-04:00");
        let z = berlin();
        let start = ms("2026-10-25T00:00:00Z");
        let end = ms("2026-10-25T03:00:00Z");
        assert_eq!(w.active_at(start, &z), Some((start, end)));
        assert_eq!(w.active_at(end - 1, &z), Some((start, end)));
        assert_eq!(w.active_at(end, &z), None);
    }

    /// A window across midnight belongs to the day it starts.
    #[test]
    fn window_across_midnight() {
        let w = weekly("sat 23:00-01:00");
        let z = berlin();
        // Saturday 2026-12-05 23:00 CET = 22:00 UTC, to Sunday 00:00 UTC.
        let start = ms("2026-12-05T22:00:00Z");
        assert_eq!(
            w.active_at(start + H + 30 * 60_000, &z),
            Some((start, start + 2 * H))
        );
        assert_eq!(w.active_at(start + 2 * H, &z), None);
    }
}
