//! How Talon writes times and durations for people: one duration formatter and one date
//! formatter, used by every message, table and log line.

use std::time::Duration;

/// "12 ms", "2 s", "2.5 s".
pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_millis(12)), "12 ms");
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2 s");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2.5 s");
    }
}
