//! The top level of the main config, and a [`Config`] assembled from every section's builder
//! (in the order their problems have always been reported).

use super::builder::Builder;
use super::channel::{self, ChannelConfig};
use super::path::SearchPath;
use super::probes::ProbeDraft;
use super::raw::RawMain;
use super::{Config, Sources, defaults};
use std::path::PathBuf;

impl Builder<'_, '_> {
    /// The whole config: the top-level keys here, then every section.
    pub(super) fn build(
        &mut self,
        raw: RawMain,
        drafts: Vec<ProbeDraft>,
        notify: Vec<ChannelConfig>,
        sources: Sources,
        inherited_path: Option<&str>,
    ) -> Config {
        let host = raw.host.and_then(|h| self.host(h));
        let check_interval = self.secs(
            "check_interval_secs",
            raw.check_interval_secs,
            defaults::CHECK_INTERVAL,
        );
        let heal_timeout = self.secs(
            "heal_timeout_secs",
            raw.heal_timeout_secs,
            defaults::HEAL_TIMEOUT,
        );
        for (key, v) in [
            ("heal_script", &raw.heal_script),
            ("bridge_heal", &raw.bridge_heal),
        ] {
            if v.as_ref().is_some_and(|s| s.trim().is_empty()) {
                self.err(key, "must not be empty (leave the key out instead)");
            }
        }
        let extra: Vec<PathBuf> = raw.path.iter().flatten().map(|p| self.path(p)).collect();
        let search_path = SearchPath::compile(&extra, self.home, inherited_path);
        let redact = self.redact(raw.redact.unwrap_or_default());
        let redact_builtin = self.redact_builtin(raw.redact_builtin);
        let state_dir = raw
            .state_dir
            .as_deref()
            .map(|p| self.path(p))
            .unwrap_or_else(|| defaults::state_dir(self.home));

        let probe_defaults = self.probe_defaults(raw.probes.unwrap_or_default());
        let escalation = self.escalation(raw.escalation.unwrap_or_default());
        let agent = self.agent(raw.agent.unwrap_or_default());
        let health = self.health(raw.health.unwrap_or_default());
        let log = self.log(raw.log.unwrap_or_default(), &state_dir);
        let store = self.store(raw.store.unwrap_or_default());
        let heartbeat = raw.heartbeat.map(|hb| self.heartbeat(hb));
        let limits = self.limits(raw.limits.unwrap_or_default());
        let worker = raw.worker.map(|w| self.worker(w));
        let (probes, routes) = self.probes(drafts, &probe_defaults, check_interval);
        let actions = self.actions(raw.actions.unwrap_or_default(), &probes);
        self.agent_mode_warning(&agent);
        // The original's `[escalation]` SOS keys become channels.
        let notify = channel::with_legacy(notify, &escalation);
        let channel_names: Vec<String> = notify.iter().map(|c| c.name.clone()).collect();
        let probe_names: Vec<String> = probes.iter().map(|p| p.name.clone()).collect();
        let policy = self.policy(
            raw.policy,
            raw.maintenance,
            routes,
            &channel_names,
            &probe_names,
        );
        let digest = raw.digest.map(|d| self.digest(d, &notify));

        Config {
            sources,
            host,
            check_interval,
            heal_script: raw.heal_script,
            heal_timeout,
            bridge_heal: raw.bridge_heal,
            state_dir,
            search_path,
            redact,
            redact_builtin,
            worker,
            escalation,
            agent,
            probe_defaults,
            health,
            log,
            store,
            heartbeat,
            limits,
            digest,
            notify,
            actions,
            probes,
            policy,
        }
    }

    /// `host = "name"`: 1–253 letters, digits, `.`, `_`, `-` (it becomes an Alertmanager label
    /// value and a line of `talon status --remote`), or `"${VAR}"`: the name read from that
    /// environment variable at run time (a DaemonSet's `NODE_NAME`).
    fn host(&mut self, h: String) -> Option<String> {
        if let Some(var) = super::envfile::env_ref(&h) {
            let b = var.as_bytes();
            let ok = !b.is_empty()
                && (b[0].is_ascii_alphabetic() || b[0] == b'_')
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
            if ok {
                return Some(h);
            }
        }
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Some(h)
        } else {
            self.err(
                "host",
                format!(
                    "`{}` is not a host name: use 1 to 253 letters, digits, `.`, `_` or `-`, or an environment reference like \"${{NODE_NAME}}\" (leave the key out to use the system's host name)",
                    h.escape_debug()
                ),
            );
            None
        }
    }

    /// `redact = [...]`: the patterns that compile.
    fn redact(&mut self, patterns: Vec<String>) -> Vec<String> {
        let mut redact = Vec::new();
        for r in patterns {
            match regex::Regex::new(&r) {
                Ok(_) => redact.push(r),
                Err(e) => self.err("redact", format!("invalid regular expression `{r}`: {e}")),
            }
        }
        redact
    }

    /// `redact_builtin`: on unless turned off, and off is worth a warning.
    fn redact_builtin(&mut self, on: Option<bool>) -> bool {
        let on = on.unwrap_or(defaults::REDACT_BUILTIN);
        if !on {
            self.warn(
                "redact_builtin",
                "built-in secret patterns are off: bot tokens, cloud keys, passwords and private keys \
                 that probes, heals and agents print reach the agent's prompt, notifications, the \
                 log and the store unmasked unless a `redact` pattern covers them",
            );
        }
        on
    }
}
