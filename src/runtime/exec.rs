//! The real executors behind [`super::effects`]: heal steps, agent runs, deliveries. Each runs
//! as a task off the loop and answers with one message. The work itself is done by [`crate::escalate`]
//! (heal runner with the env contract and context file, agent runner, prompt, redaction) and
//! [`crate::notify`] (every channel kind, fan-out).

use super::effects::{ActionJob, AgentJob, HealJob};
use crate::config::Config;
use crate::core::ProbeResult;
use crate::core::{AgentTier, ChannelResult, HealStep, Notification, NotifyKind, RunOutcome};
use crate::escalate::agent::{AgentRequest, run_agent as run_agent_commands};
use crate::escalate::catalogue::{self, Catalogue, Runs};
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
    let cat = Catalogue::from_config(cfg);
    let offered: Vec<prompt::OfferedAction> = cat
        .for_probes(&catalogue::probe_kinds(cfg, &job.probes))
        .into_iter()
        .map(prompt::OfferedAction::from)
        .collect();
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
            mode: cfg.agent.effective_mode(),
            offered: &offered,
            logs: &[],
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

/// Run one catalogue action and write its receipt: what ran, who cleared it, how it ended, its
/// output (redacted) and how long it took.
pub async fn run_action(job: ActionJob) -> (RunOutcome, String) {
    let redactor = job.redactor.clone();
    let cat = Catalogue::from_config(&job.cfg);
    let Some(entry) = cat.get(&job.name) else {
        return (
            RunOutcome::SpawnFailed {
                error: format!(
                    "`{}` is no longer in the action catalogue (config reloaded?)",
                    job.name
                ),
            },
            String::new(),
        );
    };
    let started = crate::clock::Instant::now();
    let command = redactor.clean(&entry.command());
    let (outcome, output) = match &entry.runs {
        Runs::RestartWorker => match &job.worker {
            Some(h) => {
                h.restart().await;
                (
                    RunOutcome::Exited { code: 0 },
                    "worker: graceful restart requested\n".to_string(),
                )
            }
            None => (
                RunOutcome::SpawnFailed {
                    error: "no worker is supervised".into(),
                },
                String::new(),
            ),
        },
        Runs::Heal { heal } => {
            let failing: Vec<ProbeResult> = job
                .probes
                .iter()
                .filter_map(|p| job.last.get(p).cloned())
                .collect();
            let mut req =
                HealRequest::new(&job.cfg, job.incident.to_string(), heal.clone(), failing);
            req.timeout = entry.timeout;
            req.limits = job.cfg.limits.action.into();
            let r = run_one_heal(req, &redactor).await;
            let mut out = r.output.clone();
            if let Some(e) = &r.error {
                out.push_str(&format!("error: {e}\n"));
            }
            (heal_outcome(&r), out)
        }
        Runs::Command { command } => {
            if let Some(e) = crate::escalate::heal::missing_program(command, &job.cfg.search_path) {
                (RunOutcome::SpawnFailed { error: e }, String::new())
            } else {
                let run = crate::proc::Cmd::shell(command)
                    .search_path(&job.cfg.search_path)
                    .limits(job.cfg.limits.action.into())
                    .env("TALON_INCIDENT_ID", job.incident.to_string())
                    .env("TALON_ACTION", &job.name)
                    .env("TALON_APPROVED_BY", &job.approved_by)
                    .env("TALON_FAILING_PROBES", job.probes.join(","))
                    .timeout(entry.timeout)
                    .grace(crate::proc::DEFAULT_GRACE)
                    .capture_limit(crate::escalate::heal::OUTPUT_EXCERPT)
                    .run()
                    .await;
                match run {
                    Ok(f) => {
                        let mut out = f.stdout.text();
                        out.push_str(&f.stderr.text());
                        (end_outcome(f.end), redactor.clean(&out))
                    }
                    Err(e) => (
                        RunOutcome::SpawnFailed {
                            error: redactor.clean(&e.to_string()),
                        },
                        String::new(),
                    ),
                }
            }
        }
    };
    let receipt = format!(
        "action `{}` (approved by {})\n$ {command}\n{}{}result: {} in {}\n",
        job.name,
        job.approved_by,
        output,
        if output.is_empty() || output.ends_with('\n') {
            ""
        } else {
            "\n"
        },
        outcome.describe(),
        crate::format::latency(started.elapsed()),
    );
    tracing::info!(action = %job.name, approved_by = %job.approved_by, outcome = %outcome.describe(), "catalogue action finished");
    (outcome, receipt)
}

/// Review an agent's transcript (propose/diagnose mode): its last `talon-actions` block, each
/// action checked against the catalogue for the failing probes.
pub fn review_transcript(
    cfg: &Config,
    probes: &[String],
    transcript: &str,
) -> (Option<String>, String, Vec<crate::core::Reviewed>) {
    use crate::escalate::proposal::{self, Parsed};
    let parsed = proposal::parse(transcript);
    let note = parsed.note();
    match parsed {
        Parsed::Ok(p) => {
            let cat = Catalogue::from_config(cfg);
            let failing = catalogue::probe_kinds(cfg, probes);
            let items = proposal::review(&p, &cat, &failing);
            (Some(p.diagnosis), note, items)
        }
        Parsed::Missing | Parsed::Malformed(_) => (None, note, Vec::new()),
    }
}

/// The message model for a core notification, from `host` (the config's
/// [`Config::host_name`]).
pub fn notice(n: &Notification, host: &str) -> Notice {
    let kind = match n.kind {
        NotifyKind::Sos => notify::NoticeKind::Sos,
        NotifyKind::Reminder => notify::NoticeKind::Reminder,
        NotifyKind::Resolved => notify::NoticeKind::Resolved,
        // A human is needed: it pages like an SOS, the request in its "tried" lines.
        NotifyKind::Approval => notify::NoticeKind::Sos,
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
    threads: Option<notify::telegram::ThreadBook>,
) -> Vec<ChannelResult> {
    // An escalation policy's step names its channels; otherwise every channel.
    let wanted = |name: &str| {
        n.channels
            .as_ref()
            .is_none_or(|w| w.iter().any(|c| c == name))
    };
    let mut channels = match notify::Channels::from_config(cfg, redactor) {
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
    channels.ctx.threads = threads;
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
