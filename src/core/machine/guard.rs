//! The guarded agent's rules: a reviewed proposal becomes queued actions and pending approvals
//! (with an expiry); cleared actions run one at a time, each verified by a re-probe; budgets
//! (per incident, per rolling day) and the circuit breaker are comparisons against event times.
//! Cooldowns are stamped when a run starts (`start_agent`), never when it ends.

use super::*;
use crate::config::AgentMode;
use crate::core::guard::DAY;

impl Core {
    /// Why the agent tier may not start now (and whether it is the breaker), if it may not.
    pub(super) fn agent_blocked(&self, inc: &Incident, at: Millis) -> Option<(String, bool)> {
        let g = &self.cfg.guard;
        if self.s.breaker_open {
            return Some((
                format!(
                    "agent skipped: circuit breaker open ({} agent runs in a row fixed nothing; \
                     `talon agent reset` closes it)",
                    self.s.agent_misses
                ),
                true,
            ));
        }
        if inc.agent_attempts >= g.max_runs_per_incident {
            return Some((
                format!(
                    "agent budget spent ({} of {} runs this incident)",
                    inc.agent_attempts, g.max_runs_per_incident
                ),
                false,
            ));
        }
        let today = self.runs_today(at);
        if today >= g.max_runs_per_day as usize {
            return Some((
                format!(
                    "daily agent budget spent ({today} of {} runs in the last 24h)",
                    g.max_runs_per_day
                ),
                false,
            ));
        }
        None
    }

    fn runs_today(&self, at: Millis) -> usize {
        self.s
            .agent_runs
            .iter()
            .filter(|t| **t > at.saturating_sub(DAY))
            .count()
    }

    /// An agent attempt started now (the budgets count attempts; a tier-3 fallback is part of
    /// the attempt whose tier 2 failed).
    pub(super) fn count_agent_run(&mut self, inc: &mut Incident, at: Millis) {
        inc.agent_attempts += 1;
        let cut = at.saturating_sub(DAY);
        self.s.agent_runs.retain(|t| *t > cut);
        self.s.agent_runs.push(at);
    }

    /// An agent run (with the actions it proposed) fixed nothing.
    pub(super) fn agent_missed(&mut self, cx: &mut Cx) {
        self.s.agent_misses = self.s.agent_misses.saturating_add(1);
        let n = self.cfg.guard.breaker_after;
        if !self.s.breaker_open && self.s.agent_misses >= n {
            self.s.breaker_open = true;
            cx.record(Record::Breaker {
                at: cx.at,
                open: true,
                reason: format!(
                    "{} agent runs in a row fixed nothing: the agent tier is skipped until a run \
                     succeeds or `talon agent reset`",
                    self.s.agent_misses
                ),
            });
        }
    }

    /// An agent run (or an action it proposed) fixed it.
    pub(super) fn agent_fixed(&mut self, cx: &mut Cx) {
        self.s.agent_misses = 0;
        if self.s.breaker_open {
            self.s.breaker_open = false;
            cx.record(Record::Breaker {
                at: cx.at,
                open: false,
                reason: "an agent run fixed it".into(),
            });
        }
    }

    pub(super) fn on_agent_reset(&mut self, by: String, cx: &mut Cx) {
        let was = self.s.breaker_open;
        self.s.agent_misses = 0;
        self.s.breaker_open = false;
        cx.record(Record::Breaker {
            at: cx.at,
            open: false,
            reason: if was {
                format!("reset by {by}")
            } else {
                format!("reset by {by} (it was closed)")
            },
        });
    }

    /// Runs of `name` in the last day.
    fn action_runs_today(&self, name: &str, at: Millis) -> usize {
        self.s
            .action_runs
            .iter()
            .filter(|r| r.name == name && r.at > at.saturating_sub(DAY))
            .count()
    }

    /// A propose/diagnose agent run ended with its reviewed proposal.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_proposed(
        &mut self,
        id: ActionId,
        outcome: RunOutcome,
        output: String,
        diagnosis: Option<String>,
        note: String,
        mut items: Vec<Reviewed>,
        cx: &mut Cx,
    ) {
        cx.record(Record::ActionFinished {
            action: id,
            at: cx.at,
            outcome: outcome.clone(),
            output: excerpt(&output),
        });
        if self.s.orphan.as_ref().is_some_and(|r| r.id == id) {
            self.s.orphan = None;
        }
        let Some(mut inc) = self.s.incident.take() else {
            return;
        };
        if inc.running.as_ref().is_none_or(|r| r.id != id) {
            self.s.incident = Some(inc);
            return;
        }
        let r = inc.running.take().expect("checked above");
        let diagnosis = diagnosis.filter(|d| !d.trim().is_empty());
        if let Some(d) = &diagnosis {
            inc.diagnosis = Some(d.clone());
        }
        let propose = self.cfg.guard.mode == AgentMode::Propose && outcome.succeeded();
        if !propose {
            items.clear();
        }
        // Budgets: an action over its max_per_day is refused (runs already queued count).
        let mut planned: Vec<String> = inc.queue.iter().map(|q| q.name.clone()).collect();
        for it in &mut items {
            if matches!(it.verdict, Verdict::Refused(_)) {
                continue;
            }
            let used = self.action_runs_today(&it.name, cx.at)
                + planned.iter().filter(|n| **n == it.name).count();
            if used >= it.max_per_day as usize {
                it.verdict = Verdict::Refused(format!(
                    "over budget: {used} of {} runs in the last 24h",
                    it.max_per_day
                ));
            } else {
                planned.push(it.name.clone());
            }
        }
        cx.record(Record::Proposal {
            incident: inc.id,
            agent: id,
            at: cx.at,
            diagnosis: diagnosis.clone(),
            note: note.clone(),
            items: items.clone(),
        });
        if !propose {
            // diagnose mode, or a run that failed: the ladder goes on as for any agent run.
            self.finish(&mut inc, r, outcome, cx);
            if let (Some(d), Some(last)) = (&diagnosis, inc.tried.last_mut()) {
                last.push_str(&format!("; diagnosis: {}", one_line(d)));
                inc.last_action = Some(last.clone());
            }
            self.s.incident = Some(inc);
            return;
        }
        let mut parts = Vec::new();
        for it in items {
            match it.verdict {
                Verdict::Refused(why) => parts.push(format!("`{}` refused ({why})", it.name)),
                Verdict::Auto => {
                    parts.push(format!("`{}` runs (auto)", it.name));
                    inc.queue.push(Queued {
                        name: it.name,
                        reason: it.reason,
                        approved_by: "auto".into(),
                    });
                }
                Verdict::Human => {
                    self.s.last_approval += 1;
                    let a = PendingApproval {
                        id: self.s.last_approval,
                        incident: inc.id,
                        agent: id,
                        name: it.name,
                        reason: it.reason,
                        created_at: cx.at,
                        expires_at: cx.at.saturating_add(self.cfg.guard.approval_timeout),
                    };
                    parts.push(format!("`{}` awaits approval #{}", a.name, a.id));
                    self.request_approval(&mut inc, &a, cx);
                    inc.approvals.push(a);
                }
            }
        }
        let mut line = format!(
            "agent #{id} (tier {} {}): {}",
            r.tier.map_or(2, |t| t.number()),
            r.tier.map_or("cloud", |t| t.as_str()),
            if parts.is_empty() {
                note
            } else {
                format!("proposed {}", parts.join(", "))
            }
        );
        if let Some(d) = &diagnosis {
            line.push_str(&format!("; diagnosis: {}", one_line(d)));
        }
        push_tried(&mut inc, line);
        inc.episode = Some(id);
        self.s.incident = Some(inc);
    }

    fn request_approval(&mut self, inc: &mut Incident, a: &PendingApproval, cx: &mut Cx) {
        cx.record(Record::ApprovalRequested {
            approval: a.clone(),
        });
        let probes = self.failing_critical();
        let failing = self.failing_view(&probes);
        let text = format!(
            "Approval needed #{n}: incident #{inc} — the agent proposes `{name}`: {reason}. \
             Reply `talon approve {n}` or `talon deny {n}` (/approve {n}, /deny {n}) within {ttl}; \
             unanswered, it is not run.",
            n = a.id,
            inc = inc.id,
            name = a.name,
            reason = one_line(&a.reason),
            ttl = fmt_duration(a.expires_at - a.created_at),
        );
        let mut tried = inc.tried.clone();
        tried.push(text.clone());
        let n = self.notification(
            NotifyKind::Approval,
            inc.id,
            inc.opened_at,
            inc.stage,
            failing,
            inc.last_action.clone(),
            tried,
            text,
            cx,
        );
        self.queue(n);
    }

    /// A human's answer. Unknown ids change nothing (the runtime answers "not found").
    pub(super) fn on_decision(&mut self, approval: u64, by: String, approved: bool, cx: &mut Cx) {
        let Some(inc) = self.s.incident.as_mut() else {
            return;
        };
        let Some(i) = inc.approvals.iter().position(|a| a.id == approval) else {
            return;
        };
        let a = inc.approvals.remove(i);
        cx.record(Record::ApprovalDecided {
            approval,
            incident: inc.id,
            at: cx.at,
            approved,
            by: by.clone(),
        });
        if approved {
            push_tried(
                inc,
                format!("approval #{approval} (`{}`) approved by {by}", a.name),
            );
            inc.queue.push(Queued {
                name: a.name,
                reason: a.reason,
                approved_by: by,
            });
        } else {
            push_tried(
                inc,
                format!("approval #{approval} (`{}`) denied by {by}", a.name),
            );
        }
    }

    /// Work through the open proposal: expire approvals, run the next cleared action, wait for
    /// humans. Returns true while the proposal holds the ladder. When it is worked through
    /// without a fix, the agent run counts as a miss and the ladder moves up.
    pub(super) fn work_proposal(
        &mut self,
        inc: &mut Incident,
        roots: &[String],
        cx: &mut Cx,
    ) -> bool {
        let at = cx.at;
        let (expired, left): (Vec<_>, Vec<_>) = std::mem::take(&mut inc.approvals)
            .into_iter()
            .partition(|a| a.expires_at <= at);
        inc.approvals = left;
        for a in expired {
            cx.record(Record::ApprovalDecided {
                approval: a.id,
                incident: inc.id,
                at,
                approved: false,
                by: "expiry".into(),
            });
            push_tried(
                inc,
                format!("approval #{} (`{}`) expired unanswered", a.id, a.name),
            );
        }
        if !inc.queue.is_empty() {
            let q = inc.queue.remove(0);
            self.start_catalogued(inc, q, roots, cx);
            return true;
        }
        if let Some(t) = inc.approvals.iter().map(|a| a.expires_at).min() {
            cx.wake(t);
            return true;
        }
        if let Some(agent) = inc.episode.take() {
            self.agent_missed(cx);
            let reason = format!("agent #{agent}'s proposal fixed nothing");
            self.advance(inc, &reason, cx);
        }
        false
    }

    /// A verified fix ends the proposal: what is still queued or pending is not needed.
    pub(super) fn proposal_fixed(&mut self, inc: &mut Incident, cx: &mut Cx) {
        inc.queue.clear();
        for a in std::mem::take(&mut inc.approvals) {
            cx.record(Record::ApprovalDecided {
                approval: a.id,
                incident: inc.id,
                at: cx.at,
                approved: false,
                by: "not needed (fixed)".into(),
            });
        }
        inc.episode = None;
    }

    fn start_catalogued(&mut self, inc: &mut Incident, q: Queued, roots: &[String], cx: &mut Cx) {
        self.s.last_action += 1;
        let id = self.s.last_action;
        let cut = cx.at.saturating_sub(DAY);
        self.s.action_runs.retain(|r| r.at > cut);
        self.s.action_runs.push(ActionRun {
            name: q.name.clone(),
            at: cx.at,
        });
        inc.running = Some(Running {
            id,
            kind: ActionKind::Action,
            tier: None,
            started_at: cx.at,
            probes: roots.to_vec(),
            lost: false,
            name: Some(q.name.clone()),
        });
        cx.record(Record::ActionStarted {
            incident: inc.id,
            action: id,
            kind: ActionKind::Action,
            tier: None,
            at: cx.at,
            detail: format!(
                "action `{}` (approved by {}) for {}: {}",
                q.name,
                q.approved_by,
                roots.join(", "),
                one_line(&q.reason)
            ),
        });
        cx.out.push(Action::RunCatalogued {
            id,
            incident: inc.id,
            name: q.name,
            approved_by: q.approved_by,
            probes: roots.to_vec(),
        });
    }
}

pub(super) fn push_tried(inc: &mut Incident, line: String) {
    inc.tried.push(line.clone());
    if inc.tried.len() > TRIED_KEEP {
        inc.tried.remove(0);
    }
    inc.last_action = Some(line);
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentMode;

    const T: Millis = 1_700_000_000_000;

    fn core(mode: AgentMode) -> Core {
        let mut cfg = CoreConfig {
            agent_cloud: true,
            ..CoreConfig::default()
        };
        cfg.guard.mode = mode;
        cfg.probes.insert(
            "target".into(),
            ProbeRule {
                critical: true,
                fail_after: 1,
                recover_after: 1,
                depends_on: Vec::new(),
                witness: None,
                heal: None,
            },
        );
        Core::new(cfg)
    }

    fn fail(at: Millis) -> Event {
        Event::ProbeResults {
            at,
            results: vec![ProbeResult {
                name: "target".into(),
                kind: "script".into(),
                passed: false,
                status: Status::Fail,
                output: "down".into(),
                detail: String::new(),
                duration_ms: 1,
                started_at: at,
            }],
        }
    }

    fn item(name: &str, verdict: Verdict, max: u32) -> Reviewed {
        Reviewed {
            name: name.into(),
            reason: "because".into(),
            verdict,
            max_per_day: max,
        }
    }

    fn agent_id(out: &[Action]) -> ActionId {
        out.iter()
            .find_map(|a| match a {
                Action::RunAgent { id, .. } => Some(*id),
                _ => None,
            })
            .expect("an agent run")
    }

    #[test]
    fn max_per_day_refuses_the_run_over_budget_and_records_why() {
        let mut c = core(AgentMode::Propose);
        let id = agent_id(&c.step(fail(T)));
        let out = c.step(Event::AgentProposed {
            at: T + 1000,
            id,
            outcome: RunOutcome::Exited { code: 0 },
            output: String::new(),
            diagnosis: Some("it is down".into()),
            note: "proposal: 2 action(s)".into(),
            items: vec![
                item("fix", Verdict::Auto, 1),
                item("again", Verdict::Auto, 1),
                item("fix", Verdict::Auto, 1),
                item("nope", Verdict::Refused("not in the catalogue".into()), 0),
            ],
        });
        let ran: Vec<&str> = out
            .iter()
            .filter_map(|a| match a {
                Action::RunCatalogued { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(ran, ["fix"], "one at a time, the first cleared one first");
        let items = out
            .iter()
            .find_map(|a| match a {
                Action::Record(Record::Proposal { items, .. }) => Some(items.clone()),
                _ => None,
            })
            .expect("the proposal is recorded");
        assert_eq!(items[0].verdict, Verdict::Auto);
        assert_eq!(items[1].verdict, Verdict::Auto);
        assert!(
            matches!(&items[2].verdict, Verdict::Refused(w) if w.contains("over budget")),
            "{items:?}"
        );
        assert_eq!(
            c.incident().unwrap().queue.len(),
            1,
            "`again` waits its turn"
        );
        assert_eq!(c.persisted().action_runs.len(), 1);
    }

    #[test]
    fn diagnose_mode_runs_nothing_and_keeps_the_diagnosis() {
        let mut c = core(AgentMode::Diagnose);
        let id = agent_id(&c.step(fail(T)));
        let out = c.step(Event::AgentProposed {
            at: T + 1000,
            id,
            outcome: RunOutcome::Exited { code: 0 },
            output: String::new(),
            diagnosis: Some("disk full".into()),
            note: "proposal: 1 action(s)".into(),
            items: vec![item("fix", Verdict::Auto, 5)],
        });
        assert!(
            !out.iter()
                .any(|a| matches!(a, Action::RunCatalogued { .. }))
        );
        let inc = c.incident().unwrap();
        assert_eq!(inc.diagnosis.as_deref(), Some("disk full"));
        assert!(
            inc.last_action
                .as_deref()
                .unwrap()
                .contains("diagnosis: disk full"),
            "{inc:?}"
        );
        // The run is verified like any agent run.
        assert!(inc.verify.is_some());
    }

    #[test]
    fn state_saved_before_the_guard_still_loads() {
        let mut v = serde_json::to_value(PersistedState::default()).unwrap();
        let m = v.as_object_mut().unwrap();
        for k in [
            "agent_runs",
            "action_runs",
            "agent_misses",
            "breaker_open",
            "last_approval",
        ] {
            assert!(m.remove(k).is_some(), "{k}");
        }
        let s: PersistedState = serde_json::from_value(v).unwrap();
        assert!(!s.breaker_open && s.agent_runs.is_empty());
        let cfg: CoreConfig = serde_json::from_value({
            let mut v = serde_json::to_value(CoreConfig::default()).unwrap();
            v.as_object_mut().unwrap().remove("guard");
            v
        })
        .unwrap();
        assert_eq!(cfg.guard, GuardConfig::default());
    }
}
