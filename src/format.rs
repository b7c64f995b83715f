//! How Talon writes times and durations, in one place, used by every message, table, page and
//! log line. Pure: no clock reads and no I/O, so `core` may use it.
//!
//! - Dates: one civil-date conversion ([`Civil`], UTC, no time-zone database), rendered as
//!   [`utc`] (`2026-11-28 01:02:03Z`, for people: tables, the status page, the CLI) or
//!   [`rfc3339`] (`2026-11-28T01:02:03.250Z`, for machines: webhooks, Alertmanager, messages and
//!   prompts that quote an instant).
//! - Durations: [`duration`] for people (`45s`, `12m 3s`, `1h`, `2d 5h`: how long ago, for how
//!   long, how long until), and [`latency`] for what was measured or bounded to sub-second
//!   precision (`12 ms`, `2.5 s`: a probe's run time or timeout).
//!
//! - Excerpts of long text: [`newest_excerpt`] (the end: output, logs) and [`head_excerpt`] (the
//!   start: an HTTP body), each cut at a line or word boundary when one is near, so a cut
//!   rarely leaves half a word (half a secret that redaction could no longer recognise), and
//!   marked when cut.
//!
//! Why two duration formats: a latency is a measurement whose tenths matter (a probe answering in
//! 0.4 s and one answering in 1.4 s are different facts, and "1s" would hide it), while an age or
//! a window is read at a glance, where "1h 5m" is the whole story and "3905.2 s" is noise. Each
//! has one function; nothing else formats a duration.

use std::time::Duration;

/// A UTC instant as calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub milli: u32,
}

impl Civil {
    /// The calendar fields of a unix time in milliseconds (proleptic Gregorian, UTC). Negative
    /// times (before 1970) work too.
    pub fn from_unix_ms(ms: i64) -> Self {
        let secs = ms.div_euclid(1000);
        let milli = ms.rem_euclid(1000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        // Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            milli,
        }
    }
}

/// `2026-11-28 01:02:03Z`: an instant (unix milliseconds) for people, to the second.
pub fn utc(ms: i64) -> String {
    let c = Civil::from_unix_ms(ms);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `2026-11-28T01:02:03.250Z`: an instant (unix milliseconds) as an RFC 3339 UTC timestamp.
pub fn rfc3339(ms: i64) -> String {
    let c = Civil::from_unix_ms(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli
    )
}

/// A duration for people: the two most significant units, the lower one left out when it is
/// zero — `45s`, `1m`, `12m 3s`, `1h`, `3h 4m`, `2d 5h`. Whole seconds (rounded to the nearest);
/// under a second it is `850ms`, and nothing at all is `0s`.
pub fn duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    let (big, unit, small, small_unit) = match s {
        0..60 => return format!("{s}s"),
        60..3600 => (s / 60, "m", s % 60, "s"),
        3600..86_400 => (s / 3600, "h", s % 3600 / 60, "m"),
        _ => (s / 86_400, "d", s % 86_400 / 3600, "h"),
    };
    if small == 0 {
        format!("{big}{unit}")
    } else {
        format!("{big}{unit} {small}{small_unit}")
    }
}

/// [`duration`] of a difference of unix milliseconds (a negative one counts as zero).
pub fn duration_ms(ms: i64) -> String {
    duration(Duration::from_millis(ms.max(0) as u64))
}

/// A measured run time or a timeout, with sub-second precision: `12 ms`, `2 s`, `2.5 s`.
pub fn latency(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A round trip, which on a LAN or loopback is well under a millisecond: `0.04 ms`, `1.3 ms`,
/// then as [`latency`] from 10 ms on.
pub fn rtt(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        latency(d)
    }
}

/// How far from a cut a line or word boundary is looked for.
const BOUNDARY_NEAR: usize = 200;

/// The newest `max` bytes of `text` (the end), cut at a line start when one is near, else at a
/// word start, marked `[… N earlier bytes omitted]` when cut.
pub fn newest_excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    let near = |i: usize| i < BOUNDARY_NEAR && i + 1 < tail.len();
    let tail = match (tail.find('\n'), tail.find([' ', '\t'])) {
        (Some(i), _) if near(i) => &tail[i + 1..],
        (_, Some(i)) if near(i) => &tail[i + 1..],
        _ => tail,
    };
    format!(
        "[… {} earlier bytes omitted]\n{tail}",
        text.len() - tail.len()
    )
}

/// The first `max` bytes of `text` (the start), cut at a line end when one is near, else at a
/// word end, marked `[… N more bytes omitted]` when cut.
pub fn head_excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    let near = |i: usize| head.len() - i < BOUNDARY_NEAR && i > 0;
    let head = match (head.rfind('\n'), head.rfind([' ', '\t'])) {
        (Some(i), _) if near(i) => &head[..i],
        (_, Some(i)) if near(i) => &head[..i],
        _ => head,
    };
    format!("{head}\n[… {} more bytes omitted]", text.len() - head.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_keep_their_tenths() {
        assert_eq!(latency(Duration::from_millis(12)), "12 ms");
        assert_eq!(latency(Duration::from_secs(2)), "2 s");
        assert_eq!(latency(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(rtt(Duration::from_micros(42)), "0.04 ms");
        assert_eq!(rtt(Duration::from_micros(1340)), "1.3 ms");
        assert_eq!(rtt(Duration::from_millis(25)), "25 ms");
    }

    #[test]
    fn civil_dates_of_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(utc(1_795_000_000_000), "2026-11-18 11:06:40Z");
        assert_eq!(utc(-1000), "1969-12-31 23:59:59Z");
        assert_eq!(utc(-1), "1969-12-31 23:59:59Z", "rounds toward the past");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_825_923_250), "2026-11-28T00:32:03.250Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        // Century rules: 1900 is not a leap year, 2000 is, 2100 is not.
        assert_eq!(utc(-2_203_891_200_000), "1900-03-01 00:00:00Z");
        assert_eq!(utc(4_107_542_400_000), "2100-03-01 00:00:00Z");
    }

    #[test]
    fn civil_dates_agree_with_day_counting() {
        // Walk day by day across four centuries and check the fields against a naive count.
        let mut want = (1970i64, 1u32, 1u32);
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for day in 0..146_097i64 {
            let c = Civil::from_unix_ms(day * 86_400_000 + 3_723_004);
            assert_eq!((c.year, c.month, c.day), want, "day {day}");
            assert_eq!((c.hour, c.minute, c.second, c.milli), (1, 2, 3, 4));
            let len = match want.1 {
                2 if leap(want.0) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            want = if want.2 < len {
                (want.0, want.1, want.2 + 1)
            } else if want.1 < 12 {
                (want.0, want.1 + 1, 1)
            } else {
                (want.0 + 1, 1, 1)
            };
        }
    }

    #[test]
    fn durations_read_naturally() {
        let s = Duration::from_secs;
        assert_eq!(duration(Duration::ZERO), "0s");
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(1499)), "1s");
        assert_eq!(duration(Duration::from_millis(1500)), "2s");
        assert_eq!(duration(Duration::from_millis(59_600)), "1m");
        assert_eq!(duration(s(45)), "45s");
        assert_eq!(duration(s(60)), "1m");
        assert_eq!(duration(s(125)), "2m 5s");
        assert_eq!(duration(s(192)), "3m 12s");
        assert_eq!(duration(s(3600)), "1h");
        assert_eq!(
            duration(s(3601)),
            "1h",
            "two adjacent units: 1h 0m 1s is 1h"
        );
        assert_eq!(duration(s(3725)), "1h 2m");
        assert_eq!(duration(s(7500)), "2h 5m");
        assert_eq!(duration(s(86_400)), "1d");
        assert_eq!(duration(s(90_000)), "1d 1h");
        assert_eq!(duration(s(3 * 86_400 + 4 * 3600 + 59)), "3d 4h");
        assert_eq!(duration(s(400 * 86_400)), "400d");
        assert_eq!(duration_ms(-5), "0s");
        assert_eq!(duration_ms(3_900_000), "1h 5m");
    }

    #[test]
    fn excerpts_keep_their_end_cut_at_a_boundary_and_say_so() {
        assert_eq!(newest_excerpt("short", 10), "short");
        assert_eq!(head_excerpt("short", 10), "short");
        let text = "line one\nline two\nline three";
        assert_eq!(
            newest_excerpt(text, 14),
            "[… 18 earlier bytes omitted]\nline three"
        );
        assert_eq!(
            head_excerpt(text, 14),
            "line one\n[… 20 more bytes omitted]"
        );
        // No line break near: a word boundary, so no half token is left over.
        let words = "token ghp_16C7e42F292c6912E7710c838347Ae178B4a end";
        assert_eq!(
            newest_excerpt(words, 30),
            "[… 47 earlier bytes omitted]\nend"
        );
        assert_eq!(head_excerpt(words, 30), "token\n[… 45 more bytes omitted]");
        // Never inside a character.
        let wide = "é".repeat(10);
        assert!(newest_excerpt(&wide, 5).ends_with("éé"));
        assert!(head_excerpt(&wide, 5).starts_with("éé\n"));
    }
}
