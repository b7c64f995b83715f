//! Escalation policies: which channels a page goes to and when the next step is due. Only used
//! when at least one `[policy.NAME]` exists; without one every page goes to every channel at
//! once (`page.rs`), exactly as before policies existed.
//!
//! Steps count from the SOS (`Incident::sos_at`). Each policy of the incident's probes runs its
//! own chain (a probe without a policy, when there is no `policy.default`, is the route `*`:
//! every channel at once). A step is reached when its page is created; the count per policy is
//! persisted in the incident, so a restart neither repeats nor skips a step (steps that fell due
//! while Talon was down are sent at once). Nothing is sent after an ack; reminders go to the
//! last step reached of each policy; the resolved notice goes to every channel that was paged.

use super::*;
use crate::config::policy::TICKET_POLICY;

/// The route of probes without a policy: every channel at once.
pub const ALL_CHANNELS: &str = "*";

impl Core {
    /// Escalation policies are configured.
    pub(super) fn chained(&self) -> bool {
        !self.cfg.routing.policies.is_empty()
    }

    /// The routes (policy names, or [`ALL_CHANNELS`]) of the incident's probes, leaving out
    /// probes inside a maintenance window at `at` (nobody is paged for them).
    pub(super) fn routes_of(&self, inc: &Incident, at: Millis) -> BTreeSet<String> {
        inc.probes
            .iter()
            .filter(|p| self.window_of(p, at).is_none())
            .map(|p| {
                self.cfg
                    .routing
                    .probe_policy
                    .get(p)
                    .cloned()
                    .unwrap_or_else(|| ALL_CHANNELS.to_string())
            })
            .collect()
    }

    fn steps_of(&self, route: &str) -> Vec<Step> {
        self.cfg
            .routing
            .policies
            .get(route)
            .cloned()
            .unwrap_or_else(|| {
                vec![Step {
                    after: 0,
                    channels: Vec::new(),
                }]
            })
    }

    /// Channels of these steps (`None`: every channel, when the `*` route is among them).
    fn channels_of(&self, steps: &[(String, Step)]) -> Option<Vec<String>> {
        if steps.iter().any(|(r, _)| r == ALL_CHANNELS) {
            return None;
        }
        let set: BTreeSet<String> = steps
            .iter()
            .flat_map(|(_, s)| s.channels.iter().cloned())
            .collect();
        Some(set.into_iter().collect())
    }

    /// In `sos` with policies: send every step that is due, else the reminder, and wake for the
    /// next step.
    pub(super) fn chain(&mut self, inc: &mut Incident, cx: &mut Cx) {
        let at = cx.at;
        let sos_at = *inc.sos_at.get_or_insert(at);
        let mut due: Vec<(String, Step)> = Vec::new();
        let mut labels = Vec::new();
        for route in self.routes_of(inc, at) {
            let steps = self.steps_of(&route);
            let reached = inc.steps.entry(route.clone()).or_insert(0);
            while let Some(s) = steps.get(*reached as usize) {
                if sos_at.saturating_add(s.after) > at {
                    cx.wake(sos_at.saturating_add(s.after));
                    break;
                }
                *reached += 1;
                due.push((route.clone(), s.clone()));
                if route != ALL_CHANNELS {
                    labels.push(format!("{route} step {} of {}", *reached, steps.len()));
                }
            }
        }
        if !due.is_empty() {
            let channels = self.channels_of(&due);
            let label = (!labels.is_empty()).then(|| labels.join(", "));
            self.page_to(inc, NotifyKind::Sos, channels, label, cx);
            return;
        }
        // Reminders: to the last step reached of each policy, none while a page is undelivered.
        if inc.last_page_at.is_none()
            || self.s.pending.iter().any(|p| {
                p.notification.incident == inc.id && p.notification.kind != NotifyKind::Resolved
            })
        {
            return;
        }
        let due_at = self.reminder_due(inc, at);
        if at < due_at {
            cx.wake(due_at);
            return;
        }
        // A ticket is filed once per step, never re-sent as a reminder.
        let last: Vec<(String, Step)> = inc
            .steps
            .iter()
            .filter(|(r, n)| **n > 0 && r.as_str() != TICKET_POLICY)
            .filter_map(|(r, n)| {
                self.steps_of(r)
                    .get(*n as usize - 1)
                    .map(|s| (r.clone(), s.clone()))
            })
            .collect();
        if last.is_empty() {
            return;
        }
        let channels = self.channels_of(&last);
        self.page_to(inc, NotifyKind::Reminder, channels, None, cx);
    }

    /// Every channel the incident's reached steps paged (`None`: every channel).
    /// An incident no step has paged yet resolves to every channel, as without policies.
    pub(super) fn paged_channels(&self, inc: &Incident) -> Option<Vec<String>> {
        self.pages_went_to(inc).filter(|c| !c.is_empty())
    }

    /// The channels the incident's pages have gone to so far, for what keeps their alerts alive
    /// (the Alertmanager re-poster): `None` for every channel (no policies, or the `*` route
    /// reached), else the reached steps' channels — empty before the first step.
    pub(super) fn pages_went_to(&self, inc: &Incident) -> Option<Vec<String>> {
        if !self.chained() {
            return None;
        }
        let reached: Vec<(String, Step)> = inc
            .steps
            .iter()
            .flat_map(|(r, n)| {
                self.steps_of(r)
                    .into_iter()
                    .take(*n as usize)
                    .map(|s| (r.clone(), s))
                    .collect::<Vec<_>>()
            })
            .collect();
        self.channels_of(&reached)
    }

    /// The step reached and the next one, for `talon status`: ("db step 1 of 3", Some((what, due))).
    pub(super) fn chain_outlook(
        &self,
        inc: &Incident,
        at: Millis,
    ) -> (Vec<String>, Option<(String, Millis)>) {
        let sos_at = inc.sos_at.unwrap_or(at);
        let mut reached = Vec::new();
        let mut next: Option<(String, Millis)> = None;
        for route in self.routes_of(inc, at) {
            let steps = self.steps_of(&route);
            let n = inc.steps.get(&route).copied().unwrap_or(0) as usize;
            if route != ALL_CHANNELS && n > 0 {
                reached.push(format!("{route} step {n} of {}", steps.len()));
            }
            if let Some(s) = steps.get(n) {
                let due = sos_at.saturating_add(s.after);
                let what = if route == ALL_CHANNELS {
                    "SOS to every channel".to_string()
                } else {
                    format!(
                        "{route} step {} of {}: {}",
                        n + 1,
                        steps.len(),
                        s.channels.join(", ")
                    )
                };
                if next.as_ref().is_none_or(|(_, d)| due < *d) {
                    next = Some((what, due));
                }
            }
        }
        (reached, next)
    }
}
