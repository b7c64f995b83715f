//! `[digest]`: one message a day with the last 24 hours (incidents, time to recover, heals and
//! agent runs, flapping probes, silences in force). Composed and sent by the runtime.

use super::builder::Builder;
use super::channel::ChannelConfig;
use super::defaults;
use super::raw::RawDigest;
use serde::Serialize;

/// `[digest]` (no section: no digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestConfig {
    /// Local time of day, `HH:MM`.
    pub at: String,
    /// Minutes after local midnight (from `at`).
    #[serde(skip)]
    pub minute_of_day: u32,
    /// `[notify.NAME]` channels to send it to (empty: every channel).
    pub channels: Vec<String>,
    /// Send it even when there is nothing to say.
    pub always: bool,
}

/// `HH:MM` (24-hour) as minutes after midnight.
pub fn parse_time_of_day(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

impl Builder<'_, '_> {
    pub(super) fn digest(&mut self, d: RawDigest, notify: &[ChannelConfig]) -> DigestConfig {
        let minute_of_day = match parse_time_of_day(&d.at) {
            Some(m) => m,
            None => {
                self.err(
                    "digest.at",
                    format!(
                        "`{}` is not a local time of day like \"08:00\" (HH:MM, 24-hour)",
                        d.at
                    ),
                );
                0
            }
        };
        let channels = d.channels.unwrap_or_default();
        for c in &channels {
            // A channel that is in the file but invalid has its own error already.
            let in_file = super::tomlx::path_span(self.root, &format!("notify.{c}")).is_some();
            if !in_file && !notify.iter().any(|n| &n.name == c) {
                let known: Vec<&str> = notify.iter().map(|n| n.name.as_str()).collect();
                self.err(
                    "digest.channels",
                    format!(
                        "no channel `[notify.{c}]` (channels: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
        DigestConfig {
            at: d.at,
            minute_of_day,
            channels,
            always: d.always.unwrap_or(defaults::digest::ALWAYS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day() {
        assert_eq!(parse_time_of_day("08:00"), Some(480));
        assert_eq!(parse_time_of_day("8:05"), Some(485));
        assert_eq!(parse_time_of_day("23:59"), Some(1439));
        assert_eq!(parse_time_of_day("00:00"), Some(0));
        for bad in [
            "24:00", "12:60", "8", "8:5", "", "ab:cd", "-1:00", "08:00:00",
        ] {
            assert_eq!(parse_time_of_day(bad), None, "{bad}");
        }
    }
}
