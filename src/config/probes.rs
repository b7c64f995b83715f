//! `[probes]` and the probe set: the defaults every probe starts from, the `[KIND.NAME]`
//! sections of both files parsed into drafts, and the drafts built into [`ProbeConfig`]s —
//! defaults filled, names made unique, references (`depends_on`, `witness`) resolved and
//! dependency cycles rejected.

use super::builder::Builder;
use super::defaults;
use super::diag::{Diagnostics, Source, suggest};
use super::policy::{ProbeRoute, RouteDraft, Severity};
use super::probe::{COMMON_KEYS, Check, Heal, ProbeConfig, ProbeKind, RawCommon, parse_kind};
use super::raw::{RawProbeDefaults, Secs};
use super::ser_secs;
use super::tomlx::{self, Value};
use serde::Serialize;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// `[probes]`: defaults for every probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeDefaults {
    #[serde(serialize_with = "ser_secs", rename = "service_timeout_secs")]
    pub service_timeout: Duration,
    pub critical_after_consecutive_failures: NonZeroU32,
    pub consecutive_failures_before_escalate: NonZeroU32,
    #[serde(serialize_with = "ser_secs", rename = "k8s_timeout_secs")]
    pub k8s_timeout: Duration,
    /// Probes run at once at most.
    pub concurrency: NonZeroU32,
    /// How much of a failing run's output (or what it was judged from) its result keeps, in
    /// bytes; 0 keeps none.
    pub detail_bytes: u32,
}

/// A probe as parsed, before defaults and cross-probe checks.
pub(super) struct ProbeDraft {
    name: String,
    kind_name: String,
    common: RawCommon,
    kind: ProbeKind,
    src: Arc<Source>,
    span: Range<usize>,
    /// Where each key of the section is, for positions in later checks.
    section_text_spans: BTreeMap<String, Range<usize>>,
}

impl ProbeDraft {
    fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.section_text_spans
            .get(key)
            .cloned()
            .or(Some(self.span.clone()))
    }
    /// `KIND.NAME`.
    fn path(&self) -> String {
        format!("{}.{}", self.kind_name, self.name)
    }
}

/// The probes of one `[KIND]` table (`[KIND.NAME]` sections), parsed and checked on their own.
pub(super) fn parse_probe_kind(
    src: &Arc<Source>,
    kind: &str,
    v: &Value<'_>,
    out: &mut Vec<ProbeDraft>,
    diags: &mut Diagnostics,
) {
    let toml::de::DeValue::Table(t) = v.get_ref() else {
        diags.error(
            src,
            Some(v.span()),
            kind,
            format!("`{kind}` must be a table of probes, e.g. [{kind}.NAME]"),
        );
        return;
    };
    for (name, section) in t.iter() {
        let name_s: &str = name.get_ref();
        let path = format!("{kind}.{name_s}");
        let toml::de::DeValue::Table(st) = section.get_ref() else {
            diags.error(
                src,
                Some(section.span()),
                &path,
                format!("must be a table: [{path}]"),
            );
            continue;
        };
        if name_s.is_empty()
            || !name_s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            diags.error(
                src,
                Some(name.span()),
                &path,
                "probe names use letters, digits, `_`, `-` and `.` only",
            );
            continue;
        }
        let (common_v, rest_v) = tomlx::split_table(section, COMMON_KEYS);
        let common: Option<RawCommon> = tomlx::section(src, &path, &common_v, &[], diags);
        let kind_spec = parse_kind(kind, src, &path, &rest_v, diags);
        let spans = st
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), v.span()))
            .collect();
        if let (Some(common), Some(kind_spec)) = (common, kind_spec) {
            let mut check = Check {
                src,
                path: path.clone(),
                value: section,
                diags,
            };
            kind_spec.validate(&mut check);
            out.push(ProbeDraft {
                name: name_s.to_string(),
                kind_name: kind.to_string(),
                common,
                kind: kind_spec,
                src: src.clone(),
                span: name.span(),
                section_text_spans: spans,
            });
        }
    }
}

/// Problems of one probe, as (key inside the probe's section, message).
type Errs = Vec<(String, String)>;

/// The probe set's names. The same NAME may be used by several kinds (the seed has
/// [launchd.voice_agent] and [http.voice_agent]); such probes are called KIND.NAME, others just
/// NAME. References may always use KIND.NAME, and NAME when it is unambiguous.
struct Names {
    /// NAME → how many drafts use it.
    kinds_of: BTreeMap<String, usize>,
    /// KIND.NAME → the index of the draft that defines it (a later one is a duplicate).
    by_name: BTreeMap<String, usize>,
    /// Every name a reference may use → the canonical name (`None` when ambiguous).
    refs: BTreeMap<String, Option<String>>,
}

impl Names {
    fn canonical(&self, p: &ProbeDraft) -> String {
        if self.kinds_of.get(p.name.as_str()).copied().unwrap_or(0) > 1 {
            p.path()
        } else {
            p.name.clone()
        }
    }

    /// The canonical name a reference `r` (at `key`) means.
    fn resolve(&self, r: &str, errs: &mut Errs, key: &str) -> Option<String> {
        match self.refs.get(r) {
            Some(Some(c)) => Some(c.clone()),
            Some(None) => {
                let options: Vec<String> = self
                    .refs
                    .keys()
                    .filter(|k| k.ends_with(&format!(".{r}")))
                    .map(|s| format!("`{s}`"))
                    .collect();
                errs.push((
                    key.into(),
                    format!("`{r}` is ambiguous: say {}", options.join(" or ")),
                ));
                None
            }
            None => {
                let hint = suggest(r, self.refs.keys().map(String::as_str))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                errs.push((key.into(), format!("no probe named `{r}`{hint}")));
                None
            }
        }
    }
}

impl Builder<'_, '_> {
    pub(super) fn probe_defaults(&mut self, p: RawProbeDefaults) -> ProbeDefaults {
        use defaults::probes as dp;
        if p.colima_timeout_secs.is_some() {
            self.warn(
                "probes.colima_timeout_secs",
                "deprecated: use k8s_timeout_secs or a probe's own timeout_secs",
            );
        }
        ProbeDefaults {
            service_timeout: self.secs(
                "probes.service_timeout_secs",
                p.service_timeout_secs,
                dp::SERVICE_TIMEOUT,
            ),
            critical_after_consecutive_failures: self.count(
                "probes.critical_after_consecutive_failures",
                p.critical_after_consecutive_failures,
                dp::CRITICAL_AFTER_CONSECUTIVE_FAILURES,
            ),
            consecutive_failures_before_escalate: self.count(
                "probes.consecutive_failures_before_escalate",
                p.consecutive_failures_before_escalate,
                dp::CONSECUTIVE_FAILURES_BEFORE_ESCALATE,
            ),
            k8s_timeout: self.secs(
                "probes.k8s_timeout_secs",
                p.k8s_timeout_secs.or(p.colima_timeout_secs),
                dp::K8S_TIMEOUT,
            ),
            concurrency: self.count("probes.concurrency", p.concurrency, dp::CONCURRENCY),
            detail_bytes: match p.detail_bytes {
                None => dp::DETAIL_BYTES,
                Some(n) if (0..=i64::from(dp::MAX_DETAIL_BYTES)).contains(&n) => n as u32,
                Some(n) => {
                    self.err(
                        "probes.detail_bytes",
                        format!(
                            "must be between 0 (keep no detail) and {} bytes, got {n}",
                            dp::MAX_DETAIL_BYTES
                        ),
                    );
                    dp::DETAIL_BYTES
                }
            },
        }
    }

    /// Every probe of both files, built; problems are reported at the probe's own section.
    pub(super) fn probes(
        &mut self,
        drafts: Vec<ProbeDraft>,
        d: &ProbeDefaults,
        check_interval: Duration,
    ) -> (Vec<ProbeConfig>, Vec<RouteDraft>) {
        let names = self.names(&drafts);
        let out: Vec<ProbeConfig> = drafts
            .iter()
            .enumerate()
            .filter(|(i, p)| names.by_name.get(&p.path()) == Some(i))
            .map(|(_, p)| self.probe(p, &names, d, check_interval))
            .collect();
        if let Some(cycle) = find_cycle(&out)
            && let Some(p) = out.iter().find(|p| p.name == cycle[0])
            && let Some(d) = drafts.iter().find(|d| names.canonical(d) == p.name)
        {
            self.diags.error(
                &d.src,
                d.key_span("depends_on"),
                &format!("{}.depends_on", d.path()),
                format!("dependency cycle: {}", cycle.join(" → ")),
            );
        }
        let routes = drafts
            .iter()
            .enumerate()
            .filter(|(i, p)| names.by_name.get(&p.path()) == Some(i))
            .filter_map(|(_, p)| self.route(p, &names))
            .collect();
        (out, routes)
    }

    /// The probe's `policy` / `severity`, when it sets either (checked against the policies in
    /// the build).
    fn route(&mut self, p: &ProbeDraft, names: &Names) -> Option<RouteDraft> {
        let (policy, severity) = (&p.common.policy, &p.common.severity);
        if policy.is_none() && severity.is_none() {
            return None;
        }
        let severity = match severity.as_deref() {
            None | Some("page") => Severity::Page,
            Some("ticket") => Severity::Ticket,
            Some(other) => {
                self.diags.error(
                    &p.src,
                    p.key_span("severity"),
                    &format!("{}.severity", p.path()),
                    format!("must be \"page\" or \"ticket\", got {other:?}"),
                );
                Severity::Page
            }
        };
        let key = if policy.is_some() {
            "policy"
        } else {
            "severity"
        };
        Some(RouteDraft {
            probe: names.canonical(p),
            route: ProbeRoute {
                policy: policy.clone(),
                severity,
            },
            src: p.src.clone(),
            span: p.key_span(key),
            key: format!("{}.{key}", p.path()),
        })
    }

    /// Canonical names and references; a KIND.NAME defined twice is an error at the second.
    fn names(&mut self, drafts: &[ProbeDraft]) -> Names {
        let mut kinds_of: BTreeMap<String, usize> = BTreeMap::new();
        for p in drafts {
            *kinds_of.entry(p.name.clone()).or_default() += 1;
        }
        let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
        for (i, p) in drafts.iter().enumerate() {
            if let Some(&j) = by_name.get(&p.path()) {
                let other = &drafts[j];
                let (l, _) = other.src.line_col(other.span.start);
                self.diags.error(
                    &p.src,
                    Some(p.span.clone()),
                    &p.path(),
                    format!(
                        "duplicate probe name `{}`: already defined as [{}] at {}:{l}",
                        p.name,
                        other.path(),
                        other.src.name
                    ),
                );
                continue;
            }
            by_name.insert(p.path(), i);
        }
        let mut names = Names {
            kinds_of,
            by_name,
            refs: BTreeMap::new(),
        };
        for &i in names.by_name.values() {
            let p = &drafts[i];
            let canonical = names.canonical(p);
            names.refs.insert(p.path(), Some(canonical.clone()));
            names
                .refs
                .entry(p.name.clone())
                .and_modify(|v| *v = None)
                .or_insert(Some(canonical));
        }
        names
    }

    /// One probe: defaults filled in, references resolved, its own heal checked.
    fn probe(
        &mut self,
        p: &ProbeDraft,
        names: &Names,
        d: &ProbeDefaults,
        check_interval: Duration,
    ) -> ProbeConfig {
        let name = names.canonical(p);
        let path = p.path();
        let mut errs = Errs::new();
        let (timeout, interval) = timing(p, d, check_interval, &mut errs);
        let critical = p.common.critical.unwrap_or(defaults::probes::CRITICAL);
        let (critical_after, recover_after) = debounce(p, critical, d, &mut errs);
        let (depends_on, witness) = links(p, &name, names, &mut errs);
        let heal = own_heal(p, &mut errs);
        for (key, msg) in errs {
            self.diags
                .error(&p.src, p.key_span(&key), &format!("{path}.{key}"), msg);
        }
        let (line, _) = p.src.line_col(p.span.start);
        ProbeConfig {
            name,
            kind: p.kind.clone(),
            critical,
            timeout,
            interval,
            critical_after,
            recover_after,
            depends_on,
            runbook: p.common.runbook.clone(),
            heal,
            witness,
            defined_at: format!("{}:{line}", p.src.name),
        }
    }
}

/// A positive number of seconds, or the default.
fn positive_secs(key: &str, v: Option<Secs>, default: Duration, errs: &mut Errs) -> Duration {
    match v {
        None => default,
        Some(Secs(s)) if s.is_finite() && s > 0.0 && s < 1e9 => Duration::from_secs_f64(s),
        Some(Secs(s)) => {
            errs.push((
                key.to_string(),
                format!("must be a positive number of seconds, got {s}"),
            ));
            default
        }
    }
}

/// A count of at least 1, or the default.
fn at_least_one(key: &str, v: Option<i64>, default: NonZeroU32, errs: &mut Errs) -> NonZeroU32 {
    match v {
        None => default,
        Some(n) if n >= 1 && n <= u32::MAX as i64 => NonZeroU32::new(n as u32).unwrap_or(default),
        Some(n) => {
            errs.push((key.to_string(), format!("must be at least 1, got {n}")));
            default
        }
    }
}

/// `(timeout, interval)`; a timeout longer than the interval is an error when either is set.
fn timing(
    p: &ProbeDraft,
    d: &ProbeDefaults,
    check_interval: Duration,
    errs: &mut Errs,
) -> (Duration, Duration) {
    let default_timeout = if p.kind_name == "k8s" {
        d.k8s_timeout
    } else {
        d.service_timeout
    };
    let timeout = positive_secs("timeout_secs", p.common.timeout_secs, default_timeout, errs);
    let interval = positive_secs(
        "interval_secs",
        p.common.interval_secs,
        check_interval,
        errs,
    );
    if timeout > interval && (p.common.timeout_secs.is_some() || p.common.interval_secs.is_some()) {
        errs.push((
            "timeout_secs".to_string(),
            format!(
                "timeout ({}s) is longer than the probe's interval ({}s)",
                timeout.as_secs_f64(),
                interval.as_secs_f64()
            ),
        ));
    }
    (timeout, interval)
}

/// `(critical_after_consecutive_failures, recover_after)`.
fn debounce(
    p: &ProbeDraft,
    critical: bool,
    d: &ProbeDefaults,
    errs: &mut Errs,
) -> (NonZeroU32, NonZeroU32) {
    let default_after = if critical {
        d.critical_after_consecutive_failures
    } else {
        d.consecutive_failures_before_escalate
    };
    let fail_after = at_least_one(
        "critical_after_consecutive_failures",
        p.common.critical_after_consecutive_failures,
        default_after,
        errs,
    );
    let recover_after = at_least_one(
        "recover_after",
        p.common.recover_after,
        defaults::probes::RECOVER_AFTER,
        errs,
    );
    (fail_after, recover_after)
}

/// `(depends_on, witness)`, as canonical names; a probe naming itself is an error.
fn links(
    p: &ProbeDraft,
    name: &str,
    names: &Names,
    errs: &mut Errs,
) -> (Vec<String>, Option<String>) {
    let mut depends_on = Vec::new();
    for dep in p.common.depends_on.iter().flatten() {
        if let Some(d) = names.resolve(dep, errs, "depends_on") {
            if d == name {
                errs.push((
                    "depends_on".into(),
                    "a probe cannot depend on itself".into(),
                ));
            } else {
                depends_on.push(d);
            }
        }
    }
    let mut witness = None;
    if let Some(w) = &p.common.witness
        && let Some(w) = names.resolve(w, errs, "witness")
    {
        if w == name {
            errs.push(("witness".into(), "a probe cannot witness itself".into()));
        } else {
            witness = Some(w);
        }
    }
    (depends_on, witness)
}

/// The probe's own `heal`: a command, or `restart` for launchd/systemd probes.
fn own_heal(p: &ProbeDraft, errs: &mut Errs) -> Option<Heal> {
    match p.common.heal.as_deref() {
        None => None,
        Some(h) if h.trim().is_empty() => {
            errs.push(("heal".into(), "must not be empty".into()));
            None
        }
        Some("restart") if matches!(p.kind_name.as_str(), "launchd" | "systemd") => {
            Some(Heal::Restart)
        }
        Some("restart") => {
            errs.push((
                "heal".into(),
                "`restart` is only for launchd and systemd probes; give a command instead".into(),
            ));
            None
        }
        Some(cmd) => Some(Heal::Command(cmd.to_string())),
    }
}

/// A cycle in `depends_on`, as the list of names around it (first repeated at the end).
pub fn find_cycle(probes: &[ProbeConfig]) -> Option<Vec<String>> {
    let idx: BTreeMap<&str, &ProbeConfig> = probes.iter().map(|p| (p.name.as_str(), p)).collect();
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        n: &'a str,
        idx: &BTreeMap<&'a str, &'a ProbeConfig>,
        mark: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match mark.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut c: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        mark.insert(n, 1);
        stack.push(n);
        if let Some(p) = idx.get(n) {
            for d in &p.depends_on {
                if idx.contains_key(d.as_str())
                    && let Some(c) = visit(d.as_str(), idx, mark, stack)
                {
                    return Some(c);
                }
            }
        }
        stack.pop();
        mark.insert(n, 2);
        None
    }
    for p in probes {
        let mut stack = Vec::new();
        if let Some(c) = visit(p.name.as_str(), &idx, &mut mark, &mut stack) {
            return Some(c);
        }
    }
    None
}
