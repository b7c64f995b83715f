//! The ladder's automation: tier 1 heal (planned per root), tiers 2/3 agent (cloud, falling back
//! to local), one at a time, each verified by a re-probe after the settle delay.

use super::*;

impl Core {
    pub(super) fn on_reprobe(&mut self, results: Vec<ProbeResult>, cx: &mut Cx) {
        let Some(mut inc) = self.s.incident.take() else {
            return;
        };
        if let Some(v) = inc.verify.clone() {
            let relevant: Vec<&ProbeResult> = results
                .iter()
                .filter(|r| v.probes.contains(&r.name))
                .collect();
            if !relevant.is_empty() {
                let fixed = v
                    .probes
                    .iter()
                    .all(|p| relevant.iter().any(|r| &r.name == p && r.status.passed()));
                inc.verify = None;
                if fixed {
                    cx.record(Record::ActionVerdict {
                        action: v.action,
                        at: cx.at,
                        verdict: format!("fixed? re-probe passed: {}", v.probes.join(", ")),
                    });
                    inc.hold = Some(v.probes.clone());
                    inc.held_action = Some(v.action);
                } else {
                    let failing: Vec<String> = relevant
                        .iter()
                        .filter(|r| !r.status.passed())
                        .map(|r| format!("{} {}: {}", r.name, r.status.as_str(), r.output))
                        .collect();
                    let verdict = if failing.is_empty() {
                        "not fixed: re-probe incomplete".to_string()
                    } else {
                        format!("not fixed: {}", failing.join("; "))
                    };
                    cx.record(Record::ActionVerdict {
                        action: v.action,
                        at: cx.at,
                        verdict: verdict.clone(),
                    });
                    self.advance(
                        &mut inc,
                        &format!("{} #{} {verdict}", v.kind.as_str(), v.action),
                        cx,
                    );
                }
            }
        }
        self.s.incident = Some(inc);
    }

    pub(super) fn on_finished(
        &mut self,
        id: ActionId,
        outcome: RunOutcome,
        output: String,
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
        if inc.running.as_ref().is_some_and(|r| r.id == id) {
            let r = inc.running.take().expect("checked above");
            self.finish(&mut inc, r, outcome, cx);
        }
        self.s.incident = Some(inc);
    }

    /// A heal/agent ended: fall back to tier 3, or verify by re-probe after the settle delay.
    fn finish(&mut self, inc: &mut Incident, r: Running, outcome: RunOutcome, cx: &mut Cx) {
        let label = match r.tier {
            Some(t) => format!("agent #{} (tier {} {})", r.id, t.number(), t.as_str()),
            None => format!("heal #{}", r.id),
        };
        let line = format!("{label}: {}", outcome.describe());
        inc.tried.push(line.clone());
        if inc.tried.len() > TRIED_KEEP {
            inc.tried.remove(0);
        }
        inc.last_action = Some(line);
        if r.kind == ActionKind::Agent
            && r.tier == Some(AgentTier::Cloud)
            && self.cfg.agent_local
            && !outcome.succeeded()
        {
            cx.record(Record::ActionVerdict {
                action: r.id,
                at: cx.at,
                verdict: format!("failed ({}): falling back to tier 3", outcome.describe()),
            });
            self.start_agent(inc, AgentTier::Local, r.probes, cx);
            return;
        }
        if let RunOutcome::SpawnFailed { error } = &outcome {
            let verdict = format!("not fixed: could not start: {error}");
            cx.record(Record::ActionVerdict {
                action: r.id,
                at: cx.at,
                verdict: verdict.clone(),
            });
            self.advance(inc, &format!("{label} {verdict}"), cx);
            return;
        }
        let due = if outcome == RunOutcome::Lost {
            cx.at
        } else {
            cx.at.saturating_add(self.cfg.heal_settle)
        };
        inc.verify = Some(Verify {
            action: r.id,
            kind: r.kind,
            probes: r.probes,
            due,
            requested: false,
        });
    }

    /// Move the open incident's ladder as far as the event time allows.
    /// Work the ladder for `roots`; page only when `pages` (a probe escalates outside any
    /// maintenance window).
    pub(super) fn drive(&mut self, inc: &mut Incident, roots: &[String], pages: bool, cx: &mut Cx) {
        self.ladder(inc, roots, cx);
        if pages {
            self.sos_clock(inc, cx);
        }
    }

    fn ladder(&mut self, inc: &mut Incident, roots: &[String], cx: &mut Cx) {
        let at = cx.at;
        if inc.running.as_ref().is_some_and(|r| r.lost) {
            let r = inc.running.take().expect("checked");
            cx.record(Record::ActionFinished {
                action: r.id,
                at,
                outcome: RunOutcome::Lost,
                output: String::new(),
            });
            self.finish(inc, r, RunOutcome::Lost, cx);
        }
        // A held fix whose probes all left the escalating set (recovered) while other probes
        // keep the incident open: those were never worked on, so the ladder resumes where it is.
        if inc
            .hold
            .as_ref()
            .is_some_and(|h| !h.iter().any(|p| roots.contains(p)))
        {
            inc.hold = None;
            inc.held_action = None;
        }
        if inc.hold.is_some()
            && let Some(p) = cx.hold_broken.take()
        {
            inc.hold = None;
            inc.held_action = None;
            let reason = format!("re-probe had passed, but the next scheduled run of {p} failed");
            self.advance(inc, &reason, cx);
        }
        if inc.running.is_some() || self.s.orphan.is_some() {
            return;
        }
        if let Some(v) = &mut inc.verify {
            if !v.requested {
                v.requested = true;
                cx.out.push(Action::Reprobe {
                    incident: inc.id,
                    probes: v.probes.clone(),
                    at: v.due,
                });
            }
            let deadline = v.due.saturating_add(VERIFY_GRACE);
            if at >= deadline {
                let v = inc.verify.take().expect("checked");
                let verdict = "not fixed: no re-probe result arrived".to_string();
                cx.record(Record::ActionVerdict {
                    action: v.action,
                    at,
                    verdict: verdict.clone(),
                });
                self.advance(
                    inc,
                    &format!("{} #{} {verdict}", v.kind.as_str(), v.action),
                    cx,
                );
            } else {
                cx.wake(deadline);
                return;
            }
        }
        if inc.hold.is_some() {
            return;
        }
        let max = self.cfg.max_heals_per_incident;
        for _ in 0..3 {
            let plan = self.heal_plan(roots);
            let heal_due = self.heal_due();
            let agent_due = self.agent_due();
            match inc.stage {
                SystemState::Failed => {
                    if plan.is_empty() {
                        let reason = format!("no heal configured for {}", roots.join(", "));
                        self.set_stage(inc, SystemState::Investigating, &reason, cx);
                        continue;
                    }
                    if inc.heals >= max {
                        let reason = format!("heal budget spent ({} of {max})", inc.heals);
                        self.set_stage(inc, SystemState::Investigating, &reason, cx);
                        continue;
                    }
                    if heal_due <= at {
                        self.start_heal(inc, plan, roots, cx);
                    } else {
                        cx.wake(heal_due);
                    }
                    return;
                }
                SystemState::Investigating => {
                    if !self.agents_configured() {
                        self.set_stage(inc, SystemState::Critical, "no agent configured", cx);
                        continue;
                    }
                    if agent_due <= at {
                        let tier = self.first_tier();
                        self.start_agent(inc, tier, roots.to_vec(), cx);
                    } else {
                        cx.wake(agent_due);
                    }
                    return;
                }
                SystemState::Critical | SystemState::Sos => {
                    let heal = (!plan.is_empty() && inc.heals < max).then_some(heal_due);
                    let agent = self.agents_configured().then_some(agent_due);
                    match (heal, agent) {
                        (Some(h), a) if h <= at && a.is_none_or(|a| h <= a) => {
                            self.start_heal(inc, plan, roots, cx)
                        }
                        (_, Some(a)) if a <= at => {
                            let tier = self.first_tier();
                            self.start_agent(inc, tier, roots.to_vec(), cx)
                        }
                        (h, a) => {
                            for t in [h, a].into_iter().flatten() {
                                cx.wake(t);
                            }
                        }
                    }
                    return;
                }
                SystemState::Healthy | SystemState::Degraded => return,
            }
        }
    }

    /// Tier 1's plan for these failing roots. A witness that passes while its target fails marks
    /// a split-brain, which takes the bridge heal (not the target's full heal); otherwise the
    /// probe's own heal; otherwise the global `heal_script`.
    pub(super) fn heal_plan(&self, roots: &[String]) -> Vec<HealStep> {
        let mut steps = Vec::new();
        let mut bridge = Vec::new();
        let mut global = Vec::new();
        for r in roots {
            let Some(rule) = self.cfg.probes.get(r) else {
                continue;
            };
            let split = rule.witness.as_ref().is_some_and(|w| {
                self.s.probes.get(w).is_some_and(|t| {
                    self.probe_state(t) == ProbeState::Passing
                        && t.last.as_ref().is_some_and(|l| l.status == Status::Pass)
                })
            });
            if split && self.cfg.bridge_heal {
                bridge.push(r.clone());
                continue;
            }
            match rule.heal {
                Some(OwnHeal::RestartWorker) => steps.push(HealStep::RestartWorker),
                Some(OwnHeal::Command | OwnHeal::Restart) => {
                    steps.push(HealStep::Probe { probe: r.clone() })
                }
                None if self.cfg.global_heal => global.push(r.clone()),
                None => {}
            }
        }
        if !bridge.is_empty() {
            steps.push(HealStep::Bridge { probes: bridge });
        }
        if !global.is_empty() {
            steps.push(HealStep::Global { probes: global });
        }
        steps
    }

    pub(super) fn agents_configured(&self) -> bool {
        self.cfg.agent_cloud || self.cfg.agent_local
    }

    pub(super) fn first_tier(&self) -> AgentTier {
        if self.cfg.agent_cloud {
            AgentTier::Cloud
        } else {
            AgentTier::Local
        }
    }

    fn start_heal(
        &mut self,
        inc: &mut Incident,
        steps: Vec<HealStep>,
        roots: &[String],
        cx: &mut Cx,
    ) {
        self.s.last_action += 1;
        let id = self.s.last_action;
        inc.heals += 1;
        self.s.last_heal_at = Some(cx.at);
        inc.running = Some(Running {
            id,
            kind: ActionKind::Heal,
            tier: None,
            started_at: cx.at,
            probes: roots.to_vec(),
            lost: false,
        });
        let detail = steps
            .iter()
            .map(|s| match s {
                HealStep::Probe { probe } => format!("{probe}'s heal"),
                HealStep::RestartWorker => "worker restart".to_string(),
                HealStep::Bridge { probes } => format!("bridge_heal for {}", probes.join(", ")),
                HealStep::Global { probes } => format!("heal_script for {}", probes.join(", ")),
            })
            .collect::<Vec<_>>()
            .join("; ");
        cx.record(Record::ActionStarted {
            incident: inc.id,
            action: id,
            kind: ActionKind::Heal,
            tier: None,
            at: cx.at,
            detail: format!(
                "heal {} of {}: {detail}",
                inc.heals, self.cfg.max_heals_per_incident
            ),
        });
        cx.out.push(Action::RunHeal {
            id,
            incident: inc.id,
            steps,
            probes: roots.to_vec(),
        });
    }

    fn start_agent(
        &mut self,
        inc: &mut Incident,
        tier: AgentTier,
        roots: Vec<String>,
        cx: &mut Cx,
    ) {
        self.s.last_action += 1;
        let id = self.s.last_action;
        inc.agents += 1;
        self.s.last_agent_at = Some(cx.at);
        inc.running = Some(Running {
            id,
            kind: ActionKind::Agent,
            tier: Some(tier),
            started_at: cx.at,
            probes: roots.clone(),
            lost: false,
        });
        cx.record(Record::ActionStarted {
            incident: inc.id,
            action: id,
            kind: ActionKind::Agent,
            tier: Some(tier),
            at: cx.at,
            detail: format!(
                "tier {} ({}) agent for {}",
                tier.number(),
                tier.as_str(),
                roots.join(", ")
            ),
        });
        cx.out.push(Action::RunAgent {
            id,
            incident: inc.id,
            tier,
            probes: roots,
        });
    }
}
