//! When each probe runs next. Each probe has its own interval; a probe still running is not
//! started again (a slow probe never piles up copies of itself).

use crate::clock::Instant;
use crate::config::probe::ProbeConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Schedule {
    next: BTreeMap<String, (Instant, Duration)>,
    running: BTreeSet<String>,
}

impl Schedule {
    /// Follow a (new) probe list: unchanged probes keep their times, new ones are due now,
    /// removed ones are dropped; a changed interval takes effect from the last run.
    pub fn sync(&mut self, probes: &[ProbeConfig], now: Instant) {
        let mut next = BTreeMap::new();
        for p in probes {
            let entry = match self.next.get(&p.name) {
                Some((due, old)) if *old == p.interval => (*due, p.interval),
                Some((due, old)) => (
                    due.checked_sub(*old).unwrap_or(now) + p.interval,
                    p.interval,
                ),
                None => (now, p.interval),
            };
            next.insert(p.name.clone(), entry);
        }
        self.next = next;
        self.running.retain(|n| self.next.contains_key(n));
    }

    /// The earliest time a probe that is not running is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next
            .iter()
            .filter(|(n, _)| !self.running.contains(*n))
            .map(|(_, (due, _))| *due)
            .min()
    }

    /// Probes due at `now` and not running; they are marked running and their next time set.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        for (name, (at, interval)) in self.next.iter_mut() {
            if *at <= now && !self.running.contains(name) {
                due.push(name.clone());
                // Keep the cadence, but never schedule in the past after a long stall.
                let mut n = *at + *interval;
                if n <= now {
                    n = now + *interval;
                }
                *at = n;
            }
        }
        self.running.extend(due.iter().cloned());
        due
    }

    /// A probe's run finished.
    pub fn finished(&mut self, name: &str) {
        self.running.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(name: &str, secs: u64) -> ProbeConfig {
        let text = format!(
            "[script.{name}]\ncommand = \"true\"\ninterval_secs = {secs}\ntimeout_secs = 1\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("c.toml");
        std::fs::write(&main, text).unwrap();
        let loaded = crate::config::load(&crate::config::LoadOptions {
            config: Some(main),
            ..Default::default()
        });
        loaded.config.expect("valid").probes.remove(0)
    }

    #[test]
    fn probes_run_at_their_own_interval_and_never_twice_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.sync(&[probe("a", 1), probe("b", 10)], t0);
        assert_eq!(s.take_due(t0), vec!["a".to_string(), "b".to_string()]);
        // Both running: nothing is due, even later.
        assert_eq!(s.next_deadline(), None);
        assert!(s.take_due(t0 + Duration::from_secs(5)).is_empty());
        s.finished("a");
        s.finished("b");
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            s.take_due(t0 + Duration::from_secs(1)),
            vec!["a".to_string()]
        );
        s.finished("a");
        // A long stall does not produce a burst of catch-up runs.
        let late = t0 + Duration::from_secs(30);
        assert_eq!(s.take_due(late), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(s.next.get("a").unwrap().0, late + Duration::from_secs(1));
    }

    #[test]
    fn sync_keeps_unchanged_and_adds_new() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.sync(&[probe("a", 10)], t0);
        s.take_due(t0);
        s.finished("a");
        let later = t0 + Duration::from_secs(3);
        s.sync(&[probe("a", 10), probe("c", 5)], later);
        assert_eq!(s.next.get("a").unwrap().0, t0 + Duration::from_secs(10));
        assert_eq!(s.next.get("c").unwrap().0, later);
        s.sync(&[probe("c", 5)], later);
        assert!(!s.next.contains_key("a"));
    }
}
