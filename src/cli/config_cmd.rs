//! `talon config`: the effective config with every default filled in.

use super::{Exit, Out, load_options, print_diagnostics};
use crate::config;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Print JSON instead of TOML.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cfg: &Option<PathBuf>, args: Args, out: &mut Out) -> anyhow::Result<Exit> {
    let loaded = config::load(&load_options(cfg, false));
    let Some(c) = loaded.config else {
        print_diagnostics(&loaded.diags);
        return Ok(Exit::Error);
    };
    if loaded.main_path.is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "talon: no config file found; showing the embedded default config"
        );
    }
    if args.json {
        out.json(&c)?;
    } else {
        let value = strip_nulls(serde_json::to_value(&c)?);
        let text = toml::to_string_pretty(&value)
            .map_err(|e| anyhow::anyhow!("rendering config as TOML: {e}"))?;
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(Exit::Ok)
}

/// TOML has no null: unset optional keys are left out.
fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}
