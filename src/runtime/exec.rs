//! The real executors behind [`super::effects`]: heal steps, agent runs, deliveries. Each runs
//! as a task off the loop and answers with one message. The work itself is done by [`crate::escalate`]
//! (heal runner with the env contract and context file, agent runner, prompt, redaction) and
//! [`crate::notify`] (every channel kind, fan-out).

use super::effects::{AgentJob, HealJob};
use crate::config::Config;
use crate::core::ProbeResult;
use crate::core::{AgentTier, ChannelResult, HealStep, Notification, NotifyKind, RunOutcome};
use crate::escalate::agent::{AgentRequest, run_agent as run_agent_commands};
use crate::escalate::heal::{HealReport, HealRequest, run_heal as run_one_heal};
use crate::escalate::prompt::{self, FailingProbe, HostFacts, PromptInput, TimelineEntry};
use crate::notify::{self, FailingLine, Notice};
use crate::proc::End;
use crate::redact::Redactor;
use std::sync::Arc;

fn end_outcome(end: End) -> RunOutcome {
    match end {
        End::Exited(code) => RunOutcome::Exited { code },
        End::Signaled(s) => RunOutcome::Exited { code: 128 + s },
        End::TimedOut => RunOutcome::TimedOut,
    }
}

fn heal_outcome(r: &HealReport) -> RunOutcome {
    match (r.end, &r.error) {
        (Some(end), _) => end_outcome(end),
        (None, Some(e)) => RunOutcome::SpawnFailed { error: e.clone() },
        (None, None) => RunOutcome::SpawnFailed {
            error: "did not run".into(),
        },
    }
}

/// Run the heal steps in order; the worst outcome wins, outputs are concatenated (redacted).
pub async fn run_heal(job: HealJob) -> (RunOutcome, String) {
    let redactor = job.redactor.clone();
    let failing: Vec<ProbeResult> = job
        .probes
        .iter()
        .filter_map(|p| job.last.get(p).cloned())
        .collect();
    let mut worst = RunOutcome::Exited { code: 0 };
    let mut output = String::new();
    for step in &job.steps {
        if let HealStep::RestartWorker = step {
            match &job.worker {
                Some(h) => {
                    h.restart().await;
                    output.push_str("worker: graceful restart requested\n");
                }
                None => output.push_str("worker: no worker is supervised\n"),
            }
            continue;
        }
        let Some(heal) = crate::escalate::heal::plan(&(&*job.cfg).into(), step) else {
            continue;
        };
        let req = HealRequest::new(&job.cfg, job.incident.to_string(), heal, failing.clone());
        let r = run_one_heal(req, &redactor).await;
        output.push_str(&format!("$ {}\n{}", r.command, r.output));
        if let Some(e) = &r.error {
            output.push_str(&format!("error: {e}\n"));
        }
        let o = heal_outcome(&r);
        if !o.succeeded() {
            worst = o;
        }
    }
    let _ = job.id;
    (worst, output)
}

/// The detail of a probe's newest result while it fails (a pass keeps none).
fn failing_detail(job: &AgentJob, probe: &str) -> String {
    job.last
        .get(probe)
        .filter(|r| r.status.is_failure())
        .map(|r| r.detail.clone())
        .unwrap_or_default()
}

/// Build the agent's prompt from what the core knows now.
fn build_prompt(job: &AgentJob, redactor: &Redactor) -> String {
    let cfg = &job.cfg;
    let failing: Vec<FailingProbe> = job
        .outlook
        .failing
        .iter()
        .map(|f| {
            let pc = cfg.probes.iter().find(|p| p.name == f.name);
            FailingProbe {
                name: f.name.clone(),
                kind: pc.map(|p| p.kind.name().to_string()).unwrap_or_default(),
                status: f.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
                output: f.output.clone(),
                detail: failing_detail(job, &f.name),
                runbook: pc.and_then(|p| p.runbook.clone()),
                witness: pc.and_then(|p| p.witness.clone()),
            }
        })
        .collect();
    let mut timeline = Vec::new();
    if let Some(i) = &job.outlook.incident {
        timeline.push(TimelineEntry {
            at_ms: i.opened_at,
            what: format!("incident {} opened", i.id),
        });
        timeline.push(TimelineEntry {
            at_ms: i.stage_since,
            what: format!(
                "state {} ({} heal(s), {} agent run(s) so far)",
                i.stage, i.heals, i.agents
            ),
        });
        if let Some(a) = &i.last_action {
            timeline.push(TimelineEntry {
                at_ms: i.stage_since,
                what: format!("newest action: {a}"),
            });
        }
    }
    let incident = job.incident.to_string();
    let state = job.outlook.state.to_string();
    prompt::build_prompt(
        &PromptInput {
            incident_id: &incident,
            state: &state,
            host: HostFacts {
                hostname: cfg.host_name(),
                ..HostFacts::gather()
            },
            timeline: &timeline,
            failing: &failing,
            heals: &[],
            talon_log: Some(&cfg.log.file),
            worker_log: cfg.worker.as_ref().and_then(|w| w.log_stderr.as_deref()),
            log_tail_lines: cfg.agent.log_tail_lines as usize,
            guardrails: cfg.agent.guardrails.as_deref(),
            max_bytes: cfg.agent.max_prompt_bytes as usize,
        },
        redactor,
    )
}

/// Run one agent tier (the core decides the cloud → local fallback) with the prompt on stdin.
pub async fn run_agent(job: AgentJob) -> (RunOutcome, String) {
    let redactor = job.redactor.clone();
    let prompt = build_prompt(&job, &redactor);
    // The failing probes' newest results, for TALON_FAILING_PROBES and the context file.
    let failing: Vec<ProbeResult> = job
        .outlook
        .failing
        .iter()
        .filter(|f| job.probes.is_empty() || job.probes.contains(&f.name))
        .map(|f| ProbeResult {
            name: f.name.clone(),
            kind: job
                .cfg
                .probes
                .iter()
                .find(|p| p.name == f.name)
                .map(|p| p.kind.name().to_string())
                .unwrap_or_default(),
            passed: false,
            status: f.status.unwrap_or(crate::core::Status::Fail),
            output: f.output.clone(),
            detail: failing_detail(&job, &f.name),
            duration_ms: 0,
            started_at: f.since.unwrap_or(0),
        })
        .collect();
    let mut req = AgentRequest::new(&job.cfg, job.incident.to_string(), prompt, failing);
    match job.tier {
        AgentTier::Cloud => req.local_command = None,
        AgentTier::Local => req.cloud_command = None,
    }
    let report = run_agent_commands(req, &redactor).await;
    let Some(a) = report.attempts.last() else {
        return (
            RunOutcome::SpawnFailed {
                error: format!("no {} agent command configured", job.tier.as_str()),
            },
            String::new(),
        );
    };
    let outcome = match (a.end, &a.error) {
        (Some(end), _) => end_outcome(end),
        (None, e) => RunOutcome::SpawnFailed {
            error: e.clone().unwrap_or_else(|| "did not run".into()),
        },
    };
    let mut text = a.transcript.clone();
    if !a.stderr.is_empty() {
        text.push_str(&a.stderr);
    }
    (outcome, text)
}

/// The message model for a core notification, from `host` (the config's
/// [`Config::host_name`]).
pub fn notice(n: &Notification, host: &str) -> Notice {
    let kind = match n.kind {
        NotifyKind::Sos => notify::NoticeKind::Sos,
        NotifyKind::Reminder => notify::NoticeKind::Reminder,
        NotifyKind::Resolved => notify::NoticeKind::Resolved,
    };
    Notice {
        kind,
        host: host.to_string(),
        state: n.state.to_string(),
        incident_id: Some(n.incident.to_string()),
        failing: n
            .failing
            .iter()
            .map(|f| FailingLine {
                probe: f.name.clone(),
                reason: f.output.clone(),
            })
            .collect(),
        // Older records (from before `tried` existed) only know the newest action.
        tried: if n.tried.is_empty() {
            n.last_action.iter().cloned().collect()
        } else {
            n.tried.clone()
        },
        since_ms: Some(n.incident_opened_at),
        at_ms: n.created_at,
        duration_secs: (kind == notify::NoticeKind::Resolved)
            .then(|| ((n.created_at - n.incident_opened_at).max(0) / 1000) as u64),
        ack_hint: Some(format!("talon ack {}", n.incident)),
    }
}

/// Deliver on every channel, concurrently, each under its own timeout.
pub async fn deliver(
    cfg: &Config,
    n: &Notification,
    redactor: Arc<Redactor>,
) -> Vec<ChannelResult> {
    // An escalation policy's step names its channels; otherwise every channel.
    let wanted = |name: &str| {
        n.channels
            .as_ref()
            .is_none_or(|w| w.iter().any(|c| c == name))
    };
    let channels = match notify::Channels::from_config(cfg, redactor) {
        Ok(c) => c,
        Err(e) => {
            return cfg
                .notify
                .iter()
                .filter(|ch| wanted(&ch.name))
                .map(|ch| ChannelResult {
                    channel: ch.name.clone(),
                    delivered: false,
                    detail: e.to_string(),
                })
                .collect();
        }
    };
    let msg = notice(n, &cfg.host_name());
    let targets: Vec<_> = channels
        .channels
        .iter()
        .filter(|ch| wanted(&ch.name))
        .cloned()
        .collect();
    notify::deliver(&msg, &targets, &channels.ctx)
        .await
        .into_iter()
        .map(|d| ChannelResult {
            channel: d.channel.clone(),
            delivered: d.result.is_ok(),
            detail: match &d.result {
                Ok(()) => format!("delivered in {} ms", d.duration_ms),
                Err(e) => e.to_string(),
            },
        })
        .collect()
}
