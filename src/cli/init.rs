//! `talon init`: write the commented default config and probes file, never overwriting.

use super::{Exit, Out};
use crate::config::{DEFAULT_CONFIG, DEFAULT_SERVICES, default_config_path};
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Directory to write config.toml and services.toml into (default: ~/.config/talon).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(args: Args, out: &mut Out) -> anyhow::Result<Exit> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let dir = match args.dir {
        Some(d) => d,
        None => default_config_path(home.as_deref())
            .and_then(|p| p.parent().map(|p| p.to_path_buf()))
            .context("no --dir given and no home directory to default to")?,
    };
    let config = dir.join("config.toml");
    let services = dir.join("services.toml");
    for p in [&config, &services] {
        if std::fs::symlink_metadata(p).is_ok() {
            let _ = writeln!(
                std::io::stderr(),
                "talon: {} already exists; not overwriting anything",
                p.display()
            );
            return Ok(Exit::Error);
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // The written config points at the probes file written beside it.
    let text = DEFAULT_CONFIG.replace(
        "# services_file = \"~/.config/talon/services.toml\"",
        &format!(
            "services_file = {}",
            toml_string(&services.display().to_string())
        ),
    );
    write_new(&config, &text)?;
    write_new(&services, DEFAULT_SERVICES)?;
    writeln!(out, "wrote {}", config.display())?;
    writeln!(out, "wrote {}", services.display())?;
    writeln!(
        out,
        "next: edit them, then `talon validate --config {}`",
        config.display()
    )?;
    out.flush()?;
    Ok(Exit::Ok)
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn write_new(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
