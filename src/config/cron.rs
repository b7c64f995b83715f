//! Five-field cron schedules (`minute hour day-of-month month day-of-week`), evaluated in UTC,
//! for the `push` probe's `schedule`. Pure: no clock, no I/O.
//!
//! Each field takes `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, and comma lists of
//! those; months and weekdays also take names (`jan`, `mon`); weekday 0 and 7 are Sunday. As in
//! Vixie cron, when both day-of-month and day-of-week are restricted, a day matching either one
//! matches. The shorthands `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly`
//! (`@annually`) are accepted.

use crate::format::Civil;

/// A parsed schedule. Each field is a bit set of the values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How far ahead [`Cron::next_after`] looks (a schedule that matches nothing in 5 years, such as
/// February 30th, never matches).
const HORIZON_DAYS: i64 = 366 * 5;

impl Cron {
    /// Parse a schedule; the error says which field is wrong and why.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let t = text.trim();
        let expanded = match t {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => {
                return Err(format!(
                    "`{other}` is not a known shorthand (@hourly, @daily, @weekly, @monthly, @yearly)"
                ));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "`{t}` has {} fields; a schedule has 5: minute hour day-of-month month day-of-week",
                fields.len()
            ));
        }
        let minutes = field(fields[0], "minute", 0, 59, &[])?;
        let hours = field(fields[1], "hour", 0, 23, &[])?;
        let days = field(fields[2], "day-of-month", 1, 31, &[])?;
        let months = field(fields[3], "month", 1, 12, &MONTHS)?;
        let mut weekdays = field(fields[4], "day-of-week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        let cron = Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            days_restricted: fields[2] != "*",
            weekdays_restricted: fields[4] != "*",
        };
        if cron.next_after(0).is_none() {
            return Err(format!("`{t}` never matches a real date"));
        }
        Ok(cron)
    }

    fn day_matches(&self, c: &Civil, weekday: u32) -> bool {
        if self.months & (1 << c.month) == 0 {
            return false;
        }
        let dom = self.days & (1 << c.day) != 0;
        let dow = self.weekdays & (1 << weekday) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first matching minute strictly after `ms` (unix milliseconds, UTC), as unix
    /// milliseconds; `None` if nothing matches within five years.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let first_minute = ms.div_euclid(60_000) + 1;
        let first_day = first_minute.div_euclid(1440);
        let first_minute_of_day = first_minute.rem_euclid(1440);
        for i in 0..HORIZON_DAYS {
            let day = first_day + i;
            let civil = Civil::from_unix_ms(day * 86_400_000);
            // 1970-01-01 was a Thursday (4).
            let weekday = (day + 4).rem_euclid(7) as u32;
            if !self.day_matches(&civil, weekday) {
                continue;
            }
            let from = if i == 0 { first_minute_of_day } else { 0 };
            for minute_of_day in from..1440 {
                let (h, m) = (minute_of_day / 60, minute_of_day % 60);
                if self.hours & (1 << h) != 0 && self.minutes & (1 << m) != 0 {
                    return Some((day * 1440 + minute_of_day) * 60_000);
                }
            }
        }
        None
    }
}

/// One field as a bit set over `lo..=hi`.
fn field(text: &str, what: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let bad = |why: String| Err(format!("{what} field `{text}`: {why}"));
    let mut set = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(n) if n > 0 => (r, n),
                _ => return bad(format!("`{s}` is not a step (a whole number above 0)")),
            },
            None => (item, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            match (value(a, lo, hi, names), value(b, lo, hi, names)) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => return bad(e),
            }
        } else {
            let v = match value(range, lo, hi, names) {
                Ok(v) => v,
                Err(e) => return bad(e),
            };
            // `5/15` means from 5 to the end, every 15 (as Vixie cron reads it).
            (v, if item.contains('/') { hi } else { v })
        };
        if a > b {
            return bad(format!("the range {a}-{b} runs backwards"));
        }
        let mut v = a;
        while v <= b {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

fn value(text: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u32, String> {
    let t = text.trim().to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == t) {
        // Months count from 1, weekdays from 0.
        return Ok(i as u32 + lo);
    }
    match t.parse::<u32>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is outside {lo}-{hi}")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC civil time.
    fn at(y: i64, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        // Count days by stepping Civil (tests only): find the day whose civil date matches.
        let mut day = (y - 1970) * 365 + (y - 1969) / 4;
        loop {
            let c = Civil::from_unix_ms(day * 86_400_000);
            if (c.year, c.month, c.day) == (y, mo, d) {
                return (day * 1440 + i64::from(h * 60 + mi)) * 60_000;
            }
            day += 1;
        }
    }

    fn next(s: &str, from: i64) -> i64 {
        Cron::parse(s).unwrap().next_after(from).unwrap()
    }

    #[test]
    fn every_minute_and_hourly() {
        let t = at(2026, 12, 2, 10, 30) + 15_000;
        assert_eq!(next("* * * * *", t), at(2026, 12, 2, 10, 31));
        assert_eq!(next("@hourly", t), at(2026, 12, 2, 11, 0));
        // Exactly on a match: the next one, not the same minute.
        assert_eq!(
            next("0 * * * *", at(2026, 12, 2, 11, 0)),
            at(2026, 12, 2, 12, 0)
        );
    }

    #[test]
    fn daily_weekly_monthly() {
        let t = at(2026, 12, 2, 10, 30); // a Wednesday
        assert_eq!(next("15 3 * * *", t), at(2026, 12, 3, 3, 15));
        assert_eq!(next("0 2 * * sun", t), at(2026, 12, 6, 2, 0));
        assert_eq!(next("0 2 * * 7", t), at(2026, 12, 6, 2, 0));
        assert_eq!(next("0 0 1 * *", t), at(2027, 1, 1, 0, 0));
        assert_eq!(next("30 4 29 feb *", t), at(2028, 2, 29, 4, 30));
    }

    #[test]
    fn lists_ranges_steps() {
        let t = at(2026, 12, 2, 10, 31);
        assert_eq!(next("*/15 * * * *", t), at(2026, 12, 2, 10, 45));
        assert_eq!(next("0,20,40 9-17 * * mon-fri", t), at(2026, 12, 2, 10, 40));
        assert_eq!(next("5/30 * * * *", t), at(2026, 12, 2, 10, 35));
        assert_eq!(next("0 9-17/4 * * *", t), at(2026, 12, 2, 13, 0));
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Vixie: both restricted = either matches. 2026-12-04 is a Friday.
        let t = at(2026, 12, 2, 10, 31);
        assert_eq!(next("0 0 15 * fri", t), at(2026, 12, 4, 0, 0));
        assert_eq!(next("0 0 3 * fri", t), at(2026, 12, 3, 0, 0));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let e = |s: &str| Cron::parse(s).unwrap_err();
        assert!(e("* * * *").contains("has 4 fields"), "{}", e("* * * *"));
        assert!(e("60 * * * *").contains("minute field `60`: 60 is outside 0-59"));
        assert!(e("* 24 * * *").contains("hour field"));
        assert!(e("* * 0 * *").contains("day-of-month"));
        assert!(e("* * * 13 *").contains("month field"));
        assert!(e("* * * * 8").contains("day-of-week"));
        assert!(e("*/0 * * * *").contains("not a step"));
        assert!(e("5-1 * * * *").contains("backwards"));
        assert!(e("x * * * *").contains("not a number"));
        assert!(e("@often").contains("shorthand"));
        assert!(e("0 0 30 feb *").contains("never matches"));
    }
}
