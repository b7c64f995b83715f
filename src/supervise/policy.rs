//! The restart policy, as pure arithmetic over the instants it is given (no clock reads):
//! a worker that ran at least `min_uptime` is restarted at once (s6's rule); quicker deaths back
//! off from 1 s, doubling up to `restart_backoff_max`; the backoff resets after `backoff_reset`
//! of healthy uptime; `max_restarts` deaths inside `restart_window` is a crash loop, retried at
//! the maximum backoff and reported so the escalation ladder takes over.

use crate::clock::Instant;
use crate::config::WorkerConfig;
use std::collections::VecDeque;
use std::time::Duration;

/// The first backoff after a quick death.
pub const BACKOFF_START: Duration = Duration::from_secs(1);

/// What to do after one death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Wait this long before the next start (zero: at once).
    pub delay: Duration,
    /// Deaths counted inside the window, this one included.
    pub deaths_in_window: u32,
    /// The tally reached `max_restarts`.
    pub crash_loop: bool,
}

/// Restart bookkeeping for one worker.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    min_uptime: Duration,
    backoff_max: Duration,
    backoff_reset: Duration,
    max_restarts: u32,
    window: Duration,
    next_backoff: Duration,
    deaths: VecDeque<Instant>,
}

impl RestartPolicy {
    pub fn new(cfg: &WorkerConfig) -> Self {
        Self {
            min_uptime: cfg.min_uptime,
            backoff_max: cfg.restart_backoff_max.max(BACKOFF_START),
            backoff_reset: cfg.backoff_reset,
            max_restarts: cfg.max_restarts.get(),
            window: cfg.restart_window,
            next_backoff: BACKOFF_START,
            deaths: VecDeque::new(),
        }
    }

    /// Take new limits (a reload), keeping nothing of the old history: a fixed config gets a
    /// fresh start.
    pub fn reconfigure(&mut self, cfg: &WorkerConfig) {
        *self = Self::new(cfg);
    }

    /// The backoff the next quick death would wait.
    pub fn next_backoff(&self) -> Duration {
        self.next_backoff
    }

    /// Deaths inside the window as of `now`.
    pub fn deaths_in_window(&self, now: Instant) -> u32 {
        self.deaths
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < self.window)
            .count() as u32
    }

    /// Record a death at `now` (an exit, a health restart or a failed start) of a worker that ran
    /// for `uptime`, of which the last `healthy_for` were healthy.
    pub fn on_death(&mut self, now: Instant, uptime: Duration, healthy_for: Duration) -> Decision {
        self.deaths.push_back(now);
        while let Some(t) = self.deaths.front() {
            if now.saturating_duration_since(*t) >= self.window {
                self.deaths.pop_front();
            } else {
                break;
            }
        }
        if healthy_for >= self.backoff_reset {
            self.next_backoff = BACKOFF_START;
        }
        let deaths_in_window = self.deaths.len() as u32;
        let crash_loop = deaths_in_window >= self.max_restarts;
        let delay = if crash_loop {
            self.backoff_max
        } else if uptime >= self.min_uptime {
            Duration::ZERO
        } else {
            let d = self.next_backoff;
            self.next_backoff = (d * 2).min(self.backoff_max);
            d
        };
        Decision {
            delay,
            deaths_in_window,
            crash_loop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn policy(max_restarts: u32) -> RestartPolicy {
        RestartPolicy {
            min_uptime: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            backoff_reset: Duration::from_secs(60),
            max_restarts: NonZeroU32::new(max_restarts).unwrap().get(),
            window: Duration::from_secs(300),
            next_backoff: BACKOFF_START,
            deaths: VecDeque::new(),
        }
    }
    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn quick_deaths_back_off_doubling_to_the_max() {
        let mut p = policy(100);
        let t0 = Instant::now();
        let delays: Vec<u64> = (0..6)
            .map(|i| {
                p.on_death(t0 + S(i * 10), Duration::ZERO, Duration::ZERO)
                    .delay
                    .as_secs()
            })
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn a_worker_that_ran_min_uptime_restarts_at_once() {
        let mut p = policy(100);
        let t0 = Instant::now();
        p.on_death(t0, Duration::ZERO, Duration::ZERO);
        let d = p.on_death(t0 + S(5), S(2), S(2));
        assert_eq!(d.delay, Duration::ZERO);
        // The backoff was not reset by a short healthy run: the next quick death waits 2 s.
        assert_eq!(
            p.on_death(t0 + S(6), Duration::ZERO, Duration::ZERO).delay,
            S(2)
        );
    }

    #[test]
    fn healthy_uptime_resets_the_backoff() {
        let mut p = policy(100);
        let t0 = Instant::now();
        for i in 0..4 {
            p.on_death(t0 + S(i), Duration::ZERO, Duration::ZERO);
        }
        assert_eq!(p.next_backoff(), S(8));
        // Ran 90 s, healthy 61 s: restarted at once, and the backoff starts over.
        assert_eq!(p.on_death(t0 + S(100), S(90), S(61)).delay, Duration::ZERO);
        assert_eq!(
            p.on_death(t0 + S(101), Duration::ZERO, Duration::ZERO)
                .delay,
            S(1)
        );
    }

    #[test]
    fn the_death_tally_makes_a_crash_loop_and_slides_out_of_the_window() {
        let mut p = policy(3);
        let t0 = Instant::now();
        let a = p.on_death(t0, S(5), S(5));
        let b = p.on_death(t0 + S(10), S(5), S(5));
        assert!(!a.crash_loop && !b.crash_loop);
        assert_eq!(b.delay, Duration::ZERO);
        let c = p.on_death(t0 + S(20), S(5), S(5));
        assert!(c.crash_loop);
        assert_eq!(c.deaths_in_window, 3);
        assert_eq!(c.delay, S(8), "a crash loop retries at the maximum backoff");
        // 301 s after the first two deaths they no longer count.
        let d = p.on_death(t0 + S(311), S(5), S(5));
        assert!(!d.crash_loop);
        assert_eq!(d.deaths_in_window, 2);
        assert_eq!(p.deaths_in_window(t0 + S(1000)), 0);
    }
}
