//! Steps of the wall clock. The runtime reads the host's clock each time (see `crate::clock`),
//! and the core's deadlines are wall-clock times, so a step of the host's clock (an NTP step,
//! `date -s`, a VM restored from a snapshot, a resume from suspend) would otherwise look like
//! time passing: an hour forward would fire every timer due within the hour at once, an hour
//! back would hold them up to an hour. At every message the runtime compares how far wall time
//! moved with how far monotonic time moved ([`StepWatch`]); a difference beyond
//! [`crate::clock::step_threshold_ms`] is a step, and each wall-clock deadline is moved by it:
//! the core's (one [`Event::ClockStep`]), the core's pending wake-up, the `push` probes'
//! deadlines. The daily digest is a local time of day and is re-planned from the new time;
//! probe cadences, timeouts and re-probe delays are monotonic and never moved.
//!
//! [`StepWatch`]: crate::clock::StepWatch

use super::Runtime;
use crate::core::Event;

impl Runtime {
    /// Look for a clock step since the last message; when there was one, log it once, count
    /// it, and move every pending wall-clock deadline with it.
    pub(super) fn watch_clock(&mut self) {
        let now = self.clock.wall_ms();
        let Some(delta) = self.clock_watch.observe(now, self.clock.now()) else {
            return;
        };
        let dir = if delta > 0 { "forward" } else { "back" };
        tracing::warn!(
            delta_ms = delta,
            "the wall clock stepped {dir} by {}: pending deadlines (cooldowns, reminders, \
             windows, push deadlines) keep the time they had left",
            crate::format::duration_ms(delta.saturating_abs())
        );
        self.surfaces.metrics.clock_step();
        if let Some(w) = &mut self.timers.wake {
            *w = w.saturating_add(delta);
        }
        for batch in self.pushes.shift(delta, now) {
            if let Some(h) = &self.history {
                h.write(batch);
            }
        }
        self.step(Event::ClockStep { at: now, delta });
        self.digest_tick();
    }
}
