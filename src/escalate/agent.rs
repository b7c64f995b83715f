//! Tiers 2/3: the AI agent. [`run_agent`] runs `agent.cloud_command`, and `agent.local_command`
//! when the cloud one is not configured, cannot start, exits non-zero, is killed or times out.
//!
//! Both are shell strings run through [`crate::proc`] in their own process group, with the
//! prompt on stdin AND in `TALON_CONTEXT_FILE` (JSON: `prompt`, `failing_probes`, ...). Their
//! whole output (capped at [`TRANSCRIPT_LIMIT`], newest kept) comes back redacted in the
//! report, success or not, for the incident record. "Exited 0" is not "fixed": only the
//! re-probe says so.

use super::ContextFile;
use super::heal::context_json;
use crate::clock::{self, Instant};
use crate::config::path::SearchPath;
use crate::core::outcome::ProbeResult;
use crate::proc::{Cmd, End};
use crate::redact::Redactor;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Bytes of agent stdout kept (newest), and of stderr.
pub const TRANSCRIPT_LIMIT: usize = 1024 * 1024;

/// Which agent command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentTier {
    /// Tier 2: `agent.cloud_command`.
    Cloud,
    /// Tier 3: `agent.local_command`.
    Local,
}

impl AgentTier {
    /// The tier number (`TALON_TIER`).
    pub fn number(self) -> u8 {
        match self {
            AgentTier::Cloud => 2,
            AgentTier::Local => 3,
        }
    }
}

/// One agent run to perform.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub incident_id: String,
    /// Built by [`super::prompt::build_prompt`] (it is redacted again before it is handed over).
    pub prompt: String,
    pub failing: Vec<ProbeResult>,
    pub cloud_command: Option<String>,
    pub local_command: Option<String>,
    /// Per command; the whole group is stopped when it passes.
    pub timeout: Duration,
    pub grace: Duration,
    pub search_path: SearchPath,
    pub state_dir: PathBuf,
    /// rlimits for each agent command (`[limits.agent]`).
    pub limits: crate::proc::limits::Limits,
}

impl AgentRequest {
    /// A request with the config's commands, timeout, PATH and state dir.
    pub fn new(
        cfg: &crate::config::Config,
        incident_id: impl Into<String>,
        prompt: String,
        failing: Vec<ProbeResult>,
    ) -> Self {
        Self {
            incident_id: incident_id.into(),
            prompt,
            failing,
            cloud_command: cfg.agent.cloud_command.clone(),
            local_command: cfg.agent.local_command.clone(),
            timeout: cfg.agent.timeout,
            grace: crate::proc::DEFAULT_GRACE,
            search_path: cfg.search_path.clone(),
            state_dir: cfg.state_dir.clone(),
            limits: cfg.limits.agent.into(),
        }
    }
}

/// One agent command's run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentAttempt {
    pub tier: AgentTier,
    pub command: String,
    pub started_at_ms: i64,
    pub duration_ms: u64,
    /// How it ended; `None` when it could not start (see `error`).
    pub end: Option<End>,
    /// Its stdout, redacted: the agent's answer.
    pub transcript: String,
    /// Its stderr, redacted.
    pub stderr: String,
    /// Output beyond the cap was dropped (the oldest part).
    pub truncated: bool,
    pub error: Option<String>,
}

impl AgentAttempt {
    /// Started and exited 0.
    pub fn exited_ok(&self) -> bool {
        self.end.is_some_and(End::success)
    }
    /// One line: "agent cloud `claude -p`: exit 0".
    pub fn summary(&self) -> String {
        let how = match (&self.end, &self.error) {
            (_, Some(e)) => format!("could not run: {e}"),
            (Some(end), None) => end.to_string(),
            (None, None) => "did not run".into(),
        };
        let tier = match self.tier {
            AgentTier::Cloud => "cloud",
            AgentTier::Local => "local",
        };
        format!("agent {tier} `{}`: {how}", self.command)
    }
}

/// Every agent command that ran for one escalation step, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentReport {
    pub attempts: Vec<AgentAttempt>,
}

impl AgentReport {
    /// No agent command is configured.
    pub fn nothing_configured(&self) -> bool {
        self.attempts.is_empty()
    }
    /// The attempt that exited 0, if any (still not "fixed").
    pub fn exited_ok(&self) -> Option<&AgentAttempt> {
        self.attempts.iter().find(|a| a.exited_ok())
    }
    pub fn summary(&self) -> String {
        if self.attempts.is_empty() {
            return "agent: none configured".into();
        }
        self.attempts
            .iter()
            .map(AgentAttempt::summary)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Run the agent ladder: cloud, then local when cloud fails. Never returns an error.
pub async fn run_agent(req: AgentRequest, redactor: &Redactor) -> AgentReport {
    let mut report = AgentReport::default();
    let prompt = redactor.clean(&req.prompt);
    for (tier, command) in [
        (AgentTier::Cloud, req.cloud_command.as_deref()),
        (AgentTier::Local, req.local_command.as_deref()),
    ] {
        let Some(command) = command.filter(|c| !c.trim().is_empty()) else {
            continue;
        };
        let attempt = run_one(&req, tier, command, &prompt, redactor).await;
        tracing::info!(
            incident = %req.incident_id,
            tier = tier.number(),
            end = ?attempt.end,
            error = ?attempt.error,
            duration_ms = attempt.duration_ms,
            "agent finished"
        );
        let ok = attempt.exited_ok();
        report.attempts.push(attempt);
        if ok {
            break;
        }
    }
    report
}

async fn run_one(
    req: &AgentRequest,
    tier: AgentTier,
    command: &str,
    prompt: &str,
    redactor: &Redactor,
) -> AgentAttempt {
    let started = Instant::now();
    let mut a = AgentAttempt {
        tier,
        command: redactor.clean(command),
        started_at_ms: clock::wall_ms(),
        duration_ms: 0,
        end: None,
        transcript: String::new(),
        stderr: String::new(),
        truncated: false,
        error: None,
    };
    let ctx = context_json(
        &req.incident_id,
        tier.number(),
        &req.failing,
        serde_json::json!({ "prompt": prompt }),
        redactor,
    );
    let ctx_file = match ContextFile::write(&req.state_dir, ctx.to_string().as_bytes()) {
        Ok(f) => f,
        Err(e) => {
            a.error = Some(format!("cannot write the context file: {e}"));
            return a;
        }
    };
    if let Some(e) = super::heal::missing_program(command, &req.search_path) {
        a.error = Some(e);
        return a;
    }
    let names: Vec<&str> = req.failing.iter().map(|r| r.name.as_str()).collect();
    let run = Cmd::shell(command)
        .search_path(&req.search_path)
        .limits(req.limits)
        .env("TALON_INCIDENT_ID", &req.incident_id)
        .env("TALON_TIER", tier.number().to_string())
        .env("TALON_FAILING_PROBES", names.join(","))
        .env("TALON_CONTEXT_FILE", ctx_file.path())
        .stdin_bytes(prompt.as_bytes().to_vec())
        .timeout(req.timeout)
        .grace(req.grace)
        .capture_limit(TRANSCRIPT_LIMIT)
        .run()
        .await;
    drop(ctx_file);
    a.duration_ms = started.elapsed().as_millis() as u64;
    match run {
        Ok(f) => {
            a.end = Some(f.end);
            a.truncated = f.stdout.truncated() || f.stderr.truncated();
            a.transcript = redactor.clean(&f.stdout.text());
            a.stderr = redactor.clean(&f.stderr.text());
            a.error = super::heal::not_found_exit(&f).map(|e| redactor.clean(&e));
        }
        Err(e) => a.error = Some(redactor.clean(&e.to_string())),
    }
    a
}
