//! `[escalation]` and `[agent]`: validated types and their builders.

use super::builder::Builder;
use super::defaults;
use super::raw::{RawAgent, RawEscalation};
use super::ser_secs;
use serde::Serialize;
use std::num::NonZeroU32;
use std::time::Duration;

/// `[escalation]`: the ladder's timings and budgets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationConfig {
    #[serde(serialize_with = "ser_secs", rename = "agent_cooldown_secs")]
    pub agent_cooldown: Duration,
    #[serde(serialize_with = "ser_secs", rename = "sos_cooldown_secs")]
    pub sos_cooldown: Duration,
    #[serde(serialize_with = "ser_secs", rename = "critical_threshold_secs")]
    pub critical_threshold: Duration,
    pub sos_recipient: Option<String>,
    pub sos_telegram_chat_id: Option<String>,
    pub sos_telegram_secret_name: Option<String>,
    #[serde(serialize_with = "ser_secs", rename = "heal_cooldown_secs")]
    pub heal_cooldown: Duration,
    pub max_heals_per_incident: NonZeroU32,
    #[serde(serialize_with = "ser_secs", rename = "heal_settle_secs")]
    pub heal_settle: Duration,
    /// State changes within `flap_window` that make a probe `flapping`.
    pub flap_threshold: NonZeroU32,
    #[serde(serialize_with = "ser_secs", rename = "flap_window_secs")]
    pub flap_window: Duration,
    /// First retry delay of an undelivered notification (doubles per attempt, capped).
    #[serde(serialize_with = "ser_secs", rename = "notify_retry_secs")]
    pub notify_retry: Duration,
}

/// `[agent]`: the tier-2 and tier-3 agent commands and what they are handed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentConfig {
    pub cloud_command: Option<String>,
    pub local_command: Option<String>,
    #[serde(serialize_with = "ser_secs", rename = "timeout_secs")]
    pub timeout: Duration,
    pub guardrails: Option<String>,
    pub log_tail_lines: u32,
    pub max_prompt_bytes: u32,
    /// What an agent run may do; `None` = the key is left out (autonomous, with a warning).
    pub mode: Option<super::AgentMode>,
    #[serde(serialize_with = "ser_secs", rename = "approval_timeout_secs")]
    pub approval_timeout: Duration,
    pub max_runs_per_incident: u32,
    pub max_runs_per_day: u32,
    pub breaker_after: u32,
}

impl AgentConfig {
    /// The mode in effect (`autonomous` when the key is left out).
    pub fn effective_mode(&self) -> super::AgentMode {
        self.mode.unwrap_or(defaults::agent::MODE)
    }
}

impl Builder<'_, '_> {
    pub(super) fn escalation(&mut self, e: RawEscalation) -> EscalationConfig {
        use defaults::escalation as de;
        EscalationConfig {
            agent_cooldown: self.secs(
                "escalation.agent_cooldown_secs",
                e.agent_cooldown_secs,
                de::AGENT_COOLDOWN,
            ),
            sos_cooldown: self.secs(
                "escalation.sos_cooldown_secs",
                e.sos_cooldown_secs,
                de::SOS_COOLDOWN,
            ),
            critical_threshold: self.secs(
                "escalation.critical_threshold_secs",
                e.critical_threshold_secs,
                de::CRITICAL_THRESHOLD,
            ),
            sos_recipient: e.sos_recipient,
            sos_telegram_chat_id: e.sos_telegram_chat_id,
            sos_telegram_secret_name: e.sos_telegram_secret_name,
            heal_cooldown: self.secs(
                "escalation.heal_cooldown_secs",
                e.heal_cooldown_secs,
                de::HEAL_COOLDOWN,
            ),
            max_heals_per_incident: self.count(
                "escalation.max_heals_per_incident",
                e.max_heals_per_incident,
                de::MAX_HEALS_PER_INCIDENT,
            ),
            heal_settle: self.secs(
                "escalation.heal_settle_secs",
                e.heal_settle_secs,
                de::HEAL_SETTLE,
            ),
            flap_threshold: self.count(
                "escalation.flap_threshold",
                e.flap_threshold,
                de::FLAP_THRESHOLD,
            ),
            flap_window: self.secs(
                "escalation.flap_window_secs",
                e.flap_window_secs,
                de::FLAP_WINDOW,
            ),
            notify_retry: self.secs(
                "escalation.notify_retry_secs",
                e.notify_retry_secs,
                de::NOTIFY_RETRY,
            ),
        }
    }

    pub(super) fn agent(&mut self, a: RawAgent) -> AgentConfig {
        use defaults::agent as da;
        AgentConfig {
            cloud_command: a.cloud_command,
            local_command: a.local_command,
            timeout: self.secs("agent.timeout_secs", a.timeout_secs, da::TIMEOUT),
            guardrails: a.guardrails,
            log_tail_lines: self
                .count("agent.log_tail_lines", a.log_tail_lines, da::LOG_TAIL_LINES)
                .get(),
            max_prompt_bytes: self
                .count(
                    "agent.max_prompt_bytes",
                    a.max_prompt_bytes,
                    da::MAX_PROMPT_BYTES,
                )
                .get(),
            mode: match a.mode.as_deref() {
                None => None,
                Some(m) => match super::AgentMode::parse(m) {
                    Some(m) => Some(m),
                    None => {
                        let hint = super::diag::suggest(m, super::AgentMode::NAMES)
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        self.err(
                            "agent.mode",
                            format!(
                                "`{m}` is not an agent mode: use \"diagnose\", \"propose\" or \"autonomous\"{hint}"
                            ),
                        );
                        None
                    }
                },
            },
            approval_timeout: self.secs(
                "agent.approval_timeout_secs",
                a.approval_timeout_secs,
                da::APPROVAL_TIMEOUT,
            ),
            max_runs_per_incident: self
                .count(
                    "agent.max_runs_per_incident",
                    a.max_runs_per_incident,
                    da::MAX_RUNS_PER_INCIDENT,
                )
                .get(),
            max_runs_per_day: self
                .count(
                    "agent.max_runs_per_day",
                    a.max_runs_per_day,
                    da::MAX_RUNS_PER_DAY,
                )
                .get(),
            breaker_after: self
                .count("agent.breaker_after", a.breaker_after, da::BREAKER_AFTER)
                .get(),
        }
    }

    /// An agent command without `mode` keeps today's behaviour, and says so.
    pub(super) fn agent_mode_warning(&mut self, a: &AgentConfig) {
        let has_command = a.cloud_command.is_some() || a.local_command.is_some();
        if a.mode.is_none() && has_command {
            self.warn(
                "agent",
                "agent.mode is not set: the agent runs in \"autonomous\" mode (it acts with its own \
                 tools, as before modes existed). Choose explicitly: \"diagnose\" (read-only), \
                 \"propose\" (actions from [actions.NAME], validated, budgeted, approved) or \
                 \"autonomous\"",
            );
        }
    }
}
