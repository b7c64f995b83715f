//! The one source of "now": wall time (unix milliseconds, for events, records and messages) and
//! monotonic instants (for timers, deadlines and durations). Nothing else in Talon reads a clock.
//!
//! Monotonic time is always tokio's ([`Instant`] is `tokio::time::Instant`), so a test under
//! `#[tokio::test(start_paused = true)]` moves every timer, backoff and timeout with
//! `tokio::time::advance` or auto-advance. Wall time comes from a [`Clock`] value, which the
//! runtime is given by whoever builds it:
//!
//! - [`Clock::system`] (the daemon, wired by `cli/run.rs`): the host's clock, read each time.
//! - [`Clock::follow_tokio`] (paused-time tests): the host's clock read once, then advanced only
//!   by tokio's clock, so wall time and timers move together when the test's time is paused.
//!
//! **Why the daemon does not derive wall time from the monotonic clock.** Anchoring one
//! `SystemTime`/`Instant` pair at start and adding tokio's elapsed time would make wall time
//! immune to clock steps, but for a daemon that runs for weeks it drifts away from the host's
//! clock for good: an NTP step (a host without an RTC boots in the past and is stepped forward
//! minutes after Talon started), a manual correction, or a suspend (monotonic clocks do not count
//! sleep on macOS or Linux) would all leave every later record, notification and `/status` time
//! wrong by that amount until the next restart — and the persisted times (cooldowns, `paged_at`,
//! `last_page_at`), compared by the next process against a freshly anchored clock, would jump by
//! the accumulated drift at every restart. Those times are shown to humans, sent to Alertmanager
//! and chat, and compared across restarts, so they must be the host's time.
//!
//! **Clock steps.** The price is that the core's deadlines (cooldowns, thresholds, debounce
//! and flap windows, reminders, retries, approval expiries, silences, run-time maintenance
//! windows, `push` deadlines) are wall-clock times, so a step of the host's clock would look
//! like time passing: an hour forward would fire every timer due within the hour at once, an
//! hour back would hold them for up to an hour. So the runtime watches for steps
//! ([`StepWatch`], `runtime/clockstep.rs`): at every message it compares how far wall time
//! moved with how far monotonic time moved since the last one. A difference beyond
//! [`step_threshold_ms`] — 2 s plus 1000 ppm of the interval, so neither NTP slewing (at most
//! 500 ppm) nor two readings a moment apart ever count — is a step of that many milliseconds:
//! logged once (warn, `delta_ms`), counted (`talon_clock_steps_total`), and every pending
//! wall-clock deadline is moved by it (the core's, in one `Event::ClockStep`), so each keeps
//! the time it had left. Records keep being stamped with the host's time, before and after.
//! The daily digest is a local time of day, so it follows the new time instead.
//!
//! A suspend looks like a step forward: on Linux, as on macOS, the monotonic clock (and
//! tokio's timers) stop while the machine sleeps, the wall clock does not. Talon treats the
//! sleep as a step, so after a resume every cooldown and reminder continues with the time it
//! had left when the machine slept (a 4 h reminder interval does not count the night the
//! laptop was closed), just as probe cadences, timeouts and re-probe delays (tokio's timers)
//! continue where they stopped. A step that happens while Talon is not running cannot be seen; the core
//! then only pulls stored times that are in the future back to the present
//! (`docs/state-machine.md` § Time), so nothing waits longer than configured.
//!
//! Durations, timeouts and probe cadences never use wall time, so a step cannot cut a timeout
//! short or skip a probe run.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Monotonic time: tokio's, so paused-time tests control it.
pub use tokio::time::Instant;

/// Monotonic now (for timers, deadlines and measuring durations).
pub fn now() -> Instant {
    Instant::now()
}

/// The host's wall time now, unix milliseconds (code outside the runtime: probe results, heal
/// and agent reports, the CLI). The runtime uses its injected [`Clock`].
pub fn wall_ms() -> i64 {
    Clock::system().wall_ms()
}

/// The host's wall time now, as a `SystemTime` (for fields that keep one).
pub fn wall_time() -> SystemTime {
    SystemTime::now()
}

/// Where wall time comes from; see the module docs for the trade between the two.
#[derive(Debug, Clone)]
pub struct Clock {
    /// `None`: the host's clock. `Some((wall_ms, instant))`: wall time is `wall_ms` plus tokio's
    /// time elapsed since `instant`.
    anchor: Option<(i64, Instant)>,
    /// Added to the anchored wall time: a simulated clock step ([`Clock::shift`]). Shared by the
    /// clones of one clock, so a test shifts the clock the runtime holds.
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The host's clock, read at every call (the daemon).
    pub fn system() -> Self {
        Clock {
            anchor: None,
            offset: Arc::default(),
        }
    }

    /// The host's clock read once now, then advanced by tokio's clock only (paused-time tests,
    /// where `tokio::time::advance` must move wall time too). Not for a long-running daemon: it
    /// never sees a clock step or a suspend (tests simulate one with [`Clock::shift`]).
    pub fn follow_tokio() -> Self {
        Clock {
            anchor: Some((unix_ms(SystemTime::now()), Instant::now())),
            offset: Arc::default(),
        }
    }

    /// Step this clock's wall time by `ms` (negative: backwards) without moving monotonic time,
    /// as an NTP step or `date -s` does to the host's clock. For tests: it applies to a
    /// [`Clock::follow_tokio`] clock (and its clones) only; the host's clock is never changed.
    pub fn shift(&self, ms: i64) {
        self.offset.fetch_add(ms, Ordering::SeqCst);
    }

    /// Wall time now, unix milliseconds.
    pub fn wall_ms(&self) -> i64 {
        match self.anchor {
            None => unix_ms(SystemTime::now()),
            Some((wall, at)) => wall
                .saturating_add(i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX / 4))
                .saturating_add(self.offset.load(Ordering::SeqCst)),
        }
    }

    /// Monotonic now.
    pub fn now(&self) -> Instant {
        Instant::now()
    }

    /// The instant at which wall time reaches `at_ms` (now, when it already has).
    pub fn instant_at(&self, at_ms: i64) -> Instant {
        self.now() + self.until(at_ms)
    }

    /// Time from now until wall time reaches `at_ms` (zero when it already has).
    pub fn until(&self, at_ms: i64) -> Duration {
        Duration::from_millis(u64::try_from(at_ms.saturating_sub(self.wall_ms())).unwrap_or(0))
    }
}

/// A wall-clock difference from monotonic time smaller than this is never a step: NTP slews the
/// clock (at most 500 ppm on Linux) and two readings of the two clocks are not simultaneous.
pub const STEP_MIN_MS: i64 = 2_000;

/// Spots clock steps: between two observations, wall time should move as much as monotonic
/// time. A difference beyond [`step_threshold_ms`] is a step of that many milliseconds (see
/// the module docs, § Clock steps).
#[derive(Debug, Default, Clone)]
pub struct StepWatch {
    last: Option<(i64, Instant)>,
}

/// How far wall time may drift from monotonic time over `mono_ms` without being called a step:
/// [`STEP_MIN_MS`] plus 1000 ppm of the interval (twice the kernel's largest slew rate, so a
/// slewing NTP daemon is never mistaken for a step even across the loop's longest sleep).
pub fn step_threshold_ms(mono_ms: i64) -> i64 {
    STEP_MIN_MS.saturating_add(mono_ms / 1000)
}

impl StepWatch {
    /// Observe wall time `wall_ms` at monotonic `now`. Returns the step, in milliseconds
    /// (positive: the wall clock jumped forward), when one happened since the last observation.
    /// The first observation only sets the reference.
    pub fn observe(&mut self, wall_ms: i64, now: Instant) -> Option<i64> {
        let (w0, m0) = self.last.replace((wall_ms, now))?;
        let mono =
            i64::try_from(now.saturating_duration_since(m0).as_millis()).unwrap_or(i64::MAX / 4);
        let delta = wall_ms.saturating_sub(w0).saturating_sub(mono);
        (delta.abs() > step_threshold_ms(mono)).then_some(delta)
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4))
        .unwrap_or(0)
}

/// The host's offset from UTC at wall time `at_ms` (unix ms), in milliseconds (east positive):
/// what local time-of-day settings (`[digest] at`) are read in. `TZ` and the system zone apply,
/// daylight saving included; 0 when the C library cannot say.
pub fn local_offset_ms(at_ms: i64) -> i64 {
    let t: libc::time_t = at_ms.div_euclid(1000) as libc::time_t;
    // SAFETY: `localtime_r` writes only into `tm`, which outlives the call; `t` is a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok { tm.tm_gmtoff as i64 * 1000 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follow_tokio_moves_wall_time_with_paused_time() {
        let c = Clock::follow_tokio();
        let w0 = c.wall_ms();
        let t0 = c.now();
        tokio::time::advance(Duration::from_secs(4 * 3600)).await;
        assert_eq!(c.now() - t0, Duration::from_secs(4 * 3600));
        assert_eq!(c.wall_ms() - w0, 4 * 3600 * 1000);
        assert_eq!(
            c.until(w0 + 4 * 3600 * 1000 + 1500),
            Duration::from_millis(1500)
        );
        assert_eq!(c.until(w0), Duration::ZERO, "a past time is due now");
        assert_eq!(c.instant_at(w0), c.now());
    }

    #[tokio::test(start_paused = true)]
    async fn the_system_clock_ignores_paused_time() {
        let c = Clock::system();
        let w0 = c.wall_ms();
        tokio::time::advance(Duration::from_secs(3600)).await;
        // Real time passed is microseconds, not the hour tokio's clock moved.
        assert!(c.wall_ms() - w0 < 60_000, "{}", c.wall_ms() - w0);
        assert!((wall_ms() - c.wall_ms()).abs() < 60_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shift_steps_wall_time_of_every_clone_but_not_monotonic_time() {
        let c = Clock::follow_tokio();
        let held = c.clone();
        let (w0, t0) = (c.wall_ms(), c.now());
        c.shift(3_600_000);
        assert_eq!(held.wall_ms() - w0, 3_600_000);
        assert_eq!(held.now(), t0);
        tokio::time::advance(Duration::from_secs(10)).await;
        c.shift(-7_200_000);
        assert_eq!(held.wall_ms() - w0, 10_000 - 3_600_000);
        // The host's clock cannot be shifted.
        let sys = Clock::system();
        sys.shift(3_600_000);
        assert!((sys.wall_ms() - wall_ms()).abs() < 60_000);
    }

    #[tokio::test(start_paused = true)]
    async fn step_watch_reports_steps_and_ignores_slew_and_stalls() {
        let c = Clock::follow_tokio();
        let mut w = StepWatch::default();
        let look = |w: &mut StepWatch| w.observe(c.wall_ms(), c.now());
        assert_eq!(look(&mut w), None, "the first look only sets the reference");
        // Time passing on both clocks, however long (a stall, SIGSTOP), is no step.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(look(&mut w), None);
        c.shift(3_600_000);
        assert_eq!(look(&mut w), Some(3_600_000));
        assert_eq!(look(&mut w), None, "reported once");
        tokio::time::advance(Duration::from_secs(5)).await;
        c.shift(-3_600_000);
        assert_eq!(look(&mut w), Some(-3_600_000));
        // At the threshold: 2 s + 1000 ppm of the interval.
        tokio::time::advance(Duration::from_secs(1000)).await;
        c.shift(step_threshold_ms(1_000_000));
        assert_eq!(look(&mut w), None, "slew-sized drift");
        tokio::time::advance(Duration::from_secs(1000)).await;
        c.shift(-(step_threshold_ms(1_000_000) + 1));
        assert_eq!(look(&mut w), Some(-3_001));
    }
}
