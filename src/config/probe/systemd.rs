//! `systemd` probe spec (Linux): a unit, system-wide or in the user's manager. The
//! `systemctl show` parser and the check live in `crate::probe::systemd`.

use super::{Check, Kind, KindSpec, ProbeKind};
use serde::{Deserialize, Serialize};

/// `[systemd.NAME]` sections.
pub const KIND: Kind = Kind {
    name: "systemd",
    parse: |src, path, rest, diags| super::section(src, path, rest, diags).map(ProbeKind::Systemd),
};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SystemdSpec {
    /// `nginx.service`, `backup.timer`, ... (no suffix means `.service`).
    pub unit: String,
    /// The user's manager (`systemctl --user`) instead of the system's.
    #[serde(default)]
    pub user: bool,
}

impl KindSpec for SystemdSpec {
    fn validate(&self, c: &mut Check<'_>) {
        let u = self.unit.trim();
        if u.is_empty() {
            c.error("unit", "must not be empty");
        } else if u.starts_with('-') || u.chars().any(|ch| ch.is_whitespace() || ch == '/') {
            c.error(
                "unit",
                format!("`{}` is not a unit name (e.g. nginx.service)", self.unit),
            );
        }
    }
    fn programs(&self) -> Vec<(String, &'static str)> {
        vec![("systemctl".to_string(), "unit")]
    }
    fn available(&self) -> Result<(), String> {
        if cfg!(target_os = "linux") {
            Ok(())
        } else {
            Err("systemd probes run only on Linux".to_string())
        }
    }
}
