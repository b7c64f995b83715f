//! Executors for the core's actions: heal steps, agent runs, deliveries. Each runs as a task
//! off the loop and answers with one event.

use crate::config::Config;
use crate::core::{
    AgentTier, ChannelResult, HealStep, IncidentId, Notification, Outlook, RunOutcome,
};
use crate::probe::{Heal, ProbeResult};
use crate::proc::{Cmd, End, Finished, SpawnError};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct HealJob {
    pub id: u64,
    pub incident: IncidentId,
    pub steps: Vec<HealStep>,
    pub probes: Vec<String>,
    pub cfg: Arc<Config>,
    pub last: BTreeMap<String, ProbeResult>,
    pub worker: Option<Arc<crate::supervise::SupervisorHandle>>,
}

pub struct AgentJob {
    pub incident: IncidentId,
    pub tier: AgentTier,
    pub probes: Vec<String>,
    pub cfg: Arc<Config>,
    pub outlook: Outlook,
}

fn outcome(r: &Result<Finished, SpawnError>) -> RunOutcome {
    match r {
        Ok(f) => match f.end {
            End::Exited(code) => RunOutcome::Exited { code },
            End::Signaled(s) => RunOutcome::Exited { code: 128 + s },
            End::TimedOut => RunOutcome::TimedOut,
        },
        Err(e) => RunOutcome::SpawnFailed {
            error: e.to_string(),
        },
    }
}

fn text(r: &Result<Finished, SpawnError>) -> String {
    match r {
        Ok(f) => format!("{}{}", f.stdout.text(), f.stderr.text()),
        Err(e) => e.to_string(),
    }
}

/// Run the heal steps in order; the worst outcome wins, outputs are concatenated.
pub async fn run_heal(job: HealJob) -> (RunOutcome, String) {
    let mut worst = RunOutcome::Exited { code: 0 };
    let mut output = String::new();
    for step in &job.steps {
        let line = match step {
            HealStep::Probe { probe } => match job
                .cfg
                .probes
                .iter()
                .find(|p| &p.name == probe)
                .and_then(|p| p.heal.clone())
            {
                Some(Heal::Command(c)) => Some(c),
                Some(Heal::Restart) | None => None,
            },
            HealStep::Bridge { .. } => job.cfg.bridge_heal.clone(),
            HealStep::Global { .. } => job.cfg.heal_script.clone(),
            HealStep::RestartWorker => {
                match &job.worker {
                    Some(h) => {
                        h.restart().await;
                        output.push_str("worker restart requested\n");
                    }
                    None => output.push_str("no worker is supervised\n"),
                }
                None
            }
        };
        let Some(line) = line else { continue };
        let r = Cmd::shell(&line)
            .search_path(&job.cfg.search_path)
            .env("TALON_INCIDENT_ID", job.incident.to_string())
            .env("TALON_TIER", "1")
            .env("TALON_FAILING_PROBES", job.probes.join(","))
            .timeout(job.cfg.heal_timeout)
            .keep_background(true)
            .run()
            .await;
        output.push_str(&text(&r));
        let o = outcome(&r);
        if !o.succeeded() {
            worst = o;
        }
    }
    let _ = (job.id, &job.last);
    (worst, output)
}

/// Run one agent tier with a prompt on stdin.
pub async fn run_agent(job: AgentJob) -> (RunOutcome, String) {
    let cmd = match job.tier {
        AgentTier::Cloud => job.cfg.agent.cloud_command.clone(),
        AgentTier::Local => job.cfg.agent.local_command.clone(),
    };
    let Some(cmd) = cmd else {
        return (
            RunOutcome::SpawnFailed {
                error: format!("no {} agent command configured", job.tier.as_str()),
            },
            String::new(),
        );
    };
    let prompt = serde_json::to_string_pretty(&job.outlook).unwrap_or_default();
    let r = Cmd::shell(&cmd)
        .search_path(&job.cfg.search_path)
        .env("TALON_INCIDENT_ID", job.incident.to_string())
        .env("TALON_TIER", job.tier.number().to_string())
        .env("TALON_FAILING_PROBES", job.probes.join(","))
        .stdin_bytes(prompt)
        .timeout(job.cfg.agent.timeout)
        .run()
        .await;
    (outcome(&r), text(&r))
}

/// Deliver on every channel.
pub async fn deliver(cfg: &Config, n: &Notification) -> Vec<ChannelResult> {
    let mut out = Vec::new();
    for ch in &cfg.notify {
        let crate::notify::ChannelKind::Command { command } = &ch.kind;
        let r = Cmd::shell(command)
            .search_path(&cfg.search_path)
            .env("TALON_NOTIFY_KIND", n.kind.as_str())
            .env("TALON_INCIDENT_ID", n.incident.to_string())
            .stdin_bytes(n.text.clone())
            .timeout(std::time::Duration::from_secs(30))
            .run()
            .await;
        out.push(ChannelResult {
            channel: ch.name.clone(),
            delivered: matches!(&r, Ok(f) if f.end.success()),
            detail: match &r {
                Ok(f) => f.end.to_string(),
                Err(e) => e.to_string(),
            },
        });
    }
    out
}
