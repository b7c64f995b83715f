//! Tier 1: heal. The state machine decides which heal steps fit the failing root probes; [`plan`]
//! turns a step into a command;
//! [`run_heal`] runs one of them with Talon's env contract and returns a [`HealReport`].
//!
//! A heal is never judged by its exit code alone: the report carries how it ended, and the core
//! decides "fixed" only by re-probing after the settle delay.
//!
//! Env contract (see `docs/agent.md`): `TALON_INCIDENT_ID`, `TALON_TIER` (`1`),
//! `TALON_HEAL_SOURCE` (`probe:NAME`, `bridge` or `global`), `TALON_FAILING_PROBES` (comma
//! list) and `TALON_CONTEXT_FILE` (a private JSON file with the failing probes and their output,
//! removed when the heal ends).

use super::{ContextFile, newest_excerpt};
use crate::clock::{self, Instant};
use crate::config::Config;
use crate::config::path::SearchPath;
use crate::config::probe::{Heal, ProbeConfig, ProbeKind};
use crate::core::HealStep;
use crate::core::outcome::ProbeResult;
use crate::proc::{Cmd, End, Finished};
use crate::redact::Redactor;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Bytes of heal output kept in the report (newest).
pub const OUTPUT_EXCERPT: usize = 8 * 1024;
/// Time limit for each `launchctl print` used to find a job's domain.
const DOMAIN_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a heal came from, in the order of preference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "source", content = "probe")]
pub enum HealSource {
    /// A failing root probe's own `heal`.
    Probe(String),
    /// `bridge_heal`: the target fails while its witness passes (split-brain).
    Bridge,
    /// The global `heal_script`.
    Global,
}

impl std::fmt::Display for HealSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealSource::Probe(p) => write!(f, "probe:{p}"),
            HealSource::Bridge => f.write_str("bridge"),
            HealSource::Global => f.write_str("global"),
        }
    }
}

/// What a heal runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum HealAction {
    /// A shell command line (`sh -c`).
    Command { command: String },
    /// `launchctl kickstart -k <domain>/<label>`, in the domain where the job is loaded.
    LaunchdRestart { label: String },
    /// `systemctl [--user] restart <unit>`.
    SystemdRestart { unit: String, user: bool },
}

impl HealAction {
    /// A human description of what runs.
    pub fn describe(&self) -> String {
        match self {
            HealAction::Command { command } => command.clone(),
            HealAction::LaunchdRestart { label } => {
                format!("launchctl kickstart -k <domain>/{label}")
            }
            HealAction::SystemdRestart { unit, user } => format!(
                "systemctl {}restart {unit}",
                if *user { "--user " } else { "" }
            ),
        }
    }
}

/// One heal to run, and the failing probes it is meant to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedHeal {
    pub source: HealSource,
    pub action: HealAction,
    pub for_probes: Vec<String>,
}

/// What [`plan`] reads of the config: the probes (for their own `heal`), `bridge_heal` and
/// `heal_script`.
#[derive(Debug, Clone, Copy)]
pub struct HealConfig<'a> {
    pub probes: &'a [ProbeConfig],
    pub bridge_heal: Option<&'a str>,
    pub heal_script: Option<&'a str>,
}

impl<'a> From<&'a Config> for HealConfig<'a> {
    fn from(c: &'a Config) -> Self {
        Self {
            probes: &c.probes,
            bridge_heal: c.bridge_heal.as_deref(),
            heal_script: c.heal_script.as_deref(),
        }
    }
}

/// The heal a core step ([`HealStep`], decided by the state machine) stands for, if any: the
/// probe's own heal (a command, or the platform restart), `bridge_heal`, or `heal_script`.
/// `RestartWorker` is the supervisor's, not a command.
pub fn plan(cfg: &HealConfig<'_>, step: &HealStep) -> Option<PlannedHeal> {
    let command = |c: &str| HealAction::Command {
        command: c.to_string(),
    };
    match step {
        HealStep::Probe { probe } => {
            let p = cfg.probes.iter().find(|p| &p.name == probe)?;
            let action = match p.heal.as_ref()? {
                Heal::Command(c) => command(c),
                Heal::Restart => restart_action(&p.kind)?,
            };
            Some(PlannedHeal {
                source: HealSource::Probe(probe.clone()),
                action,
                for_probes: vec![probe.clone()],
            })
        }
        HealStep::Bridge { probes } => Some(PlannedHeal {
            source: HealSource::Bridge,
            action: command(cfg.bridge_heal?),
            for_probes: probes.clone(),
        }),
        HealStep::Global { probes } => Some(PlannedHeal {
            source: HealSource::Global,
            action: command(cfg.heal_script?),
            for_probes: probes.clone(),
        }),
        HealStep::RestartWorker => None,
    }
}

/// The platform restart for a probe that says `heal = "restart"`, when its kind has one.
pub fn restart_action(kind: &ProbeKind) -> Option<HealAction> {
    match kind {
        ProbeKind::Launchd(s) => Some(HealAction::LaunchdRestart {
            label: s.label.clone(),
        }),
        ProbeKind::Systemd(s) => Some(HealAction::SystemdRestart {
            unit: s.unit.clone(),
            user: s.user,
        }),
        _ => None,
    }
}

/// One heal to run.
#[derive(Debug, Clone)]
pub struct HealRequest {
    pub incident_id: String,
    /// Escalation tier number given to the heal as `TALON_TIER` (1 for heals).
    pub tier: u8,
    pub heal: PlannedHeal,
    /// The failing probes' newest results (their output goes into the context file, redacted).
    pub failing: Vec<ProbeResult>,
    /// `heal_timeout`: the whole process group is stopped when it passes.
    pub timeout: Duration,
    /// Time between TERM and KILL at the timeout.
    pub grace: Duration,
    pub search_path: SearchPath,
    /// Context files are written under `<state_dir>/tmp`.
    pub state_dir: PathBuf,
    /// rlimits for a `command` heal (`[limits.heal]`; a catalogue action sets `[limits.action]`).
    pub limits: crate::proc::limits::Limits,
}

impl HealRequest {
    /// A request with the config's timeout, PATH and state dir.
    pub fn new(
        cfg: &crate::config::Config,
        incident_id: impl Into<String>,
        heal: PlannedHeal,
        failing: Vec<ProbeResult>,
    ) -> Self {
        Self {
            incident_id: incident_id.into(),
            tier: 1,
            heal,
            failing,
            timeout: cfg.heal_timeout,
            grace: crate::proc::DEFAULT_GRACE,
            search_path: cfg.search_path.clone(),
            state_dir: cfg.state_dir.clone(),
            limits: cfg.limits.heal.into(),
        }
    }
}

/// How a heal ran. Not a verdict: only re-probing says whether it fixed anything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealReport {
    pub source: HealSource,
    pub action: HealAction,
    /// What ran, for people (the command line, or the resolved launchctl/systemctl call).
    pub command: String,
    pub for_probes: Vec<String>,
    pub started_at_ms: i64,
    pub duration_ms: u64,
    /// How it ended; `None` when it could not be started (see `error`).
    pub end: Option<End>,
    /// Newest output (stdout then stderr), redacted.
    pub output: String,
    /// Why it could not run (program missing, job not loaded, context file unwritable).
    pub error: Option<String>,
}

impl HealReport {
    /// Started and exited 0. (Still not "fixed": that is the re-probe's call.)
    pub fn exited_ok(&self) -> bool {
        self.end.is_some_and(End::success)
    }
    /// One line for messages and the incident: "heal probe:api `systemctl restart api`: exit 1".
    pub fn summary(&self) -> String {
        let how = match (&self.end, &self.error) {
            (_, Some(e)) => format!("could not run: {e}"),
            (Some(end), None) => end.to_string(),
            (None, None) => "did not run".to_string(),
        };
        format!("heal {} `{}`: {how}", self.source, self.command)
    }
}

/// The JSON handed to heals and agents in `TALON_CONTEXT_FILE`.
pub fn context_json(
    incident_id: &str,
    tier: u8,
    failing: &[ProbeResult],
    extra: serde_json::Value,
    redactor: &Redactor,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "incident_id": incident_id,
        "tier": tier,
        "failing_probes": failing,
        "extra": extra,
    });
    redactor.redact_json(&mut v);
    v
}

/// Run one heal. Never returns an error: a failure to run is recorded in the report.
pub async fn run_heal(req: HealRequest, redactor: &Redactor) -> HealReport {
    let started_at_ms = clock::wall_ms();
    let started = Instant::now();
    let mut report = HealReport {
        source: req.heal.source.clone(),
        action: req.heal.action.clone(),
        command: redactor.clean(&req.heal.action.describe()),
        for_probes: req.heal.for_probes.clone(),
        started_at_ms,
        duration_ms: 0,
        end: None,
        output: String::new(),
        error: None,
    };
    let names: Vec<&str> = req.failing.iter().map(|r| r.name.as_str()).collect();
    let ctx = context_json(
        &req.incident_id,
        req.tier,
        &req.failing,
        serde_json::json!({ "heal_source": req.heal.source.to_string(), "for_probes": req.heal.for_probes }),
        redactor,
    );
    let ctx_file = match ContextFile::write(&req.state_dir, ctx.to_string().as_bytes()) {
        Ok(f) => f,
        Err(e) => {
            report.error = Some(format!(
                "cannot write the context file under {}: {e}",
                req.state_dir.join(crate::store::layout::TMP_DIR).display()
            ));
            return report;
        }
    };
    let env: Vec<(&str, String)> = vec![
        ("TALON_INCIDENT_ID", req.incident_id.clone()),
        ("TALON_TIER", req.tier.to_string()),
        ("TALON_HEAL_SOURCE", req.heal.source.to_string()),
        ("TALON_FAILING_PROBES", names.join(",")),
        ("TALON_CONTEXT_FILE", ctx_file.path().display().to_string()),
    ];
    let deadline = started + req.timeout;
    let result: Result<(String, Finished), String> = match &req.heal.action {
        HealAction::Command { command } if missing_program(command, &req.search_path).is_some() => {
            Err(missing_program(command, &req.search_path).unwrap_or_default())
        }
        HealAction::Command { command } => Cmd::shell(command)
            .search_path(&req.search_path)
            .limits(req.limits)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .timeout(req.timeout)
            .grace(req.grace)
            .keep_background(true)
            .run()
            .await
            .map(|f| (command.clone(), f))
            .map_err(|e| e.to_string()),
        HealAction::SystemdRestart { unit, user } => {
            let mut args: Vec<&str> = Vec::new();
            if *user {
                args.push("--user");
            }
            args.extend(["restart", unit.as_str()]);
            Cmd::new("systemctl")
                .args(&args)
                .search_path(&req.search_path)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .timeout(req.timeout)
                .grace(req.grace)
                .run()
                .await
                .map(|f| (format!("systemctl {}", args.join(" ")), f))
                .map_err(|e| e.to_string())
        }
        HealAction::LaunchdRestart { label } => {
            match launchd_domain(label, &req.search_path, deadline).await {
                Ok(domain) => {
                    let target = format!("{domain}/{label}");
                    let left = deadline.saturating_duration_since(Instant::now());
                    Cmd::new("launchctl")
                        .args(["kickstart", "-k", target.as_str()])
                        .search_path(&req.search_path)
                        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                        .timeout(left.max(Duration::from_millis(1)))
                        .grace(req.grace)
                        .run()
                        .await
                        .map(|f| (format!("launchctl kickstart -k {target}"), f))
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e),
            }
        }
    };
    drop(ctx_file);
    report.duration_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok((command, f)) => {
            report.command = redactor.clean(&command);
            report.end = Some(f.end);
            report.output = excerpt_of(&f, redactor);
            report.error = not_found_exit(&f).map(|e| redactor.clean(&e));
        }
        Err(e) => report.error = Some(redactor.clean(&e)),
    }
    tracing::info!(
        incident = %req.incident_id,
        source = %report.source,
        command = %redactor.redact(&report.command),
        end = ?report.end,
        error = ?report.error,
        duration_ms = report.duration_ms,
        "heal finished"
    );
    report
}

/// `Some(error)` when a shell command's program is not on Talon's PATH: reported as an error
/// without running anything (a missing recovery tool must never look like a heal that ran).
pub(crate) fn missing_program(command: &str, sp: &SearchPath) -> Option<String> {
    let p = crate::config::path::program_of_shell(command)?;
    sp.resolve(&p)
        .is_none()
        .then(|| format!("program `{p}` not found on Talon's PATH ({})", sp.to_env()))
}

/// Exit 127 is the shell's "command not found": an error to record, not just an exit code.
pub(crate) fn not_found_exit(f: &Finished) -> Option<String> {
    (f.end == End::Exited(127))
        .then(|| format!("exit 127: a program was not found ({})", f.last_line()))
}

/// Stdout then stderr, redacted, newest bytes kept.
pub(crate) fn excerpt_of(f: &Finished, redactor: &Redactor) -> String {
    let mut text = f.stdout.text();
    let err = f.stderr.text();
    if !err.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&err);
    }
    newest_excerpt(&redactor.redact(&text), OUTPUT_EXCERPT)
}

/// Find the domain a launchd job is loaded in: `system`, else `gui/<uid>`.
async fn launchd_domain(label: &str, sp: &SearchPath, deadline: Instant) -> Result<String, String> {
    let uid = nix::unistd::getuid().as_raw();
    let mut tried = Vec::new();
    for domain in ["system".to_string(), format!("gui/{uid}")] {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("heal timed out while looking up the launchd domain".into());
        }
        let target = format!("{domain}/{label}");
        let f = Cmd::new("launchctl")
            .args(["print", target.as_str()])
            .search_path(sp)
            .timeout(left.min(DOMAIN_LOOKUP_TIMEOUT))
            .capture_limit(4096)
            .run()
            .await
            .map_err(|e| e.to_string())?;
        if f.end.success() {
            return Ok(domain);
        }
        tried.push(target);
    }
    Err(format!(
        "launchd job `{label}` is not loaded (tried {})",
        tried.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::probe::launchd::LaunchdSpec;
    use crate::config::probe::script::ScriptSpec;
    use std::num::NonZeroU32;

    fn probe(name: &str, heal: Option<Heal>, witness: Option<&str>) -> ProbeConfig {
        ProbeConfig {
            name: name.into(),
            kind: ProbeKind::Script(script_spec()),
            critical: true,
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            critical_after: NonZeroU32::MIN,
            recover_after: NonZeroU32::MIN,
            depends_on: vec![],
            runbook: None,
            heal,
            witness: witness.map(String::from),
            defined_at: "t:1".into(),
        }
    }

    fn script_spec() -> ScriptSpec {
        serde_json::from_value(serde_json::json!({"command": "true"})).unwrap()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn cmd(c: &str) -> HealAction {
        HealAction::Command { command: c.into() }
    }

    fn cfg(probes: &[ProbeConfig]) -> HealConfig<'_> {
        HealConfig {
            probes,
            bridge_heal: Some("heal-bridge"),
            heal_script: Some("heal-all"),
        }
    }

    #[test]
    fn each_step_maps_to_its_command() {
        let probes = vec![
            probe("a", Some(Heal::Command("fix-a".into())), None),
            probe("c", None, None),
        ];
        let own = plan(&cfg(&probes), &HealStep::Probe { probe: "a".into() }).unwrap();
        assert_eq!(own.source, HealSource::Probe("a".into()));
        assert_eq!(own.action, cmd("fix-a"));
        assert_eq!(own.for_probes, names(&["a"]));
        let bridge = HealStep::Bridge {
            probes: names(&["a", "c"]),
        };
        let b = plan(&cfg(&probes), &bridge).unwrap();
        assert_eq!(
            (b.source, b.action),
            (HealSource::Bridge, cmd("heal-bridge"))
        );
        assert_eq!(b.for_probes, names(&["a", "c"]));
        let global = HealStep::Global {
            probes: names(&["c"]),
        };
        let g = plan(&cfg(&probes), &global).unwrap();
        assert_eq!((g.source, g.action), (HealSource::Global, cmd("heal-all")));
    }

    #[test]
    fn a_step_without_its_command_plans_nothing() {
        let probes = vec![probe("c", None, None)];
        let none = HealConfig {
            probes: &probes,
            bridge_heal: None,
            heal_script: None,
        };
        assert_eq!(plan(&none, &HealStep::Probe { probe: "c".into() }), None);
        assert_eq!(
            plan(
                &none,
                &HealStep::Probe {
                    probe: "gone".into()
                }
            ),
            None
        );
        let global = HealStep::Global {
            probes: names(&["c"]),
        };
        assert_eq!(plan(&none, &global), None);
        assert_eq!(plan(&cfg(&probes), &HealStep::RestartWorker), None);
    }

    #[test]
    fn restart_heal_maps_to_the_platform_restart() {
        let mut p = probe("job", Some(Heal::Restart), None);
        p.kind = ProbeKind::Launchd(LaunchdSpec {
            label: "com.example.job".into(),
        });
        let probes = [p];
        let h = plan(
            &cfg(&probes),
            &HealStep::Probe {
                probe: "job".into(),
            },
        )
        .unwrap();
        assert_eq!(
            h.action,
            HealAction::LaunchdRestart {
                label: "com.example.job".into()
            }
        );
        assert_eq!(h.source, HealSource::Probe("job".into()));
        // A script probe has no platform restart.
        let mut s = probe("s", Some(Heal::Restart), None);
        s.kind = ProbeKind::Script(script_spec());
        assert_eq!(
            plan(&cfg(&[s]), &HealStep::Probe { probe: "s".into() }),
            None
        );
    }

    #[test]
    fn summary_names_source_command_and_end() {
        let r = HealReport {
            source: HealSource::Global,
            action: cmd("x"),
            command: "x".into(),
            for_probes: vec![],
            started_at_ms: 0,
            duration_ms: 1,
            end: Some(End::Exited(3)),
            output: String::new(),
            error: None,
        };
        assert_eq!(r.summary(), "heal global `x`: exit 3");
        assert!(!r.exited_ok());
    }
}
