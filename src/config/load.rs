//! Finding, reading and splitting the config files, and the top-level flow of [`load`]: the
//! main config → its probe sections, notify channels and the rest; the probes file → its probe
//! sections; then the build, and (for `talon validate`) program resolution.

use super::builder::Builder;
use super::channel::{self, ChannelConfig};
use super::diag::{Diagnostics, Source, suggest};
use super::probe::KINDS;
use super::probes::{ProbeDraft, parse_probe_kind};
use super::programs::resolve_programs;
use super::raw::RawMain;
use super::tomlx::{self, Value};
use super::{
    DEFAULT_CONFIG, EMBEDDED_NAME, LoadOptions, Loaded, Sources, default_config_path, defaults,
    expand_path,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Find, read, parse and validate both config files.
pub fn load(opts: &LoadOptions) -> Loaded {
    let home = opts
        .home
        .clone()
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from));
    let home = home.as_deref();
    let inherited = opts
        .inherited_path
        .clone()
        .or_else(|| std::env::var("PATH").ok());
    let mut diags = Diagnostics::default();
    let mut loaded = Loaded {
        config: None,
        diags: Diagnostics::default(),
        main_path: None,
        services_path: None,
        programs: Vec::new(),
    };

    // 1. The main config.
    let Some(main_src) = main_source(opts, home, &mut loaded, &mut diags) else {
        loaded.diags = diags;
        return loaded;
    };
    // Shared, not copied, by every probe defined in the file.
    let main_src = Arc::new(main_src);
    let Some(main_doc) = tomlx::parse(&main_src, &mut diags) else {
        loaded.diags = diags;
        return loaded;
    };
    let main_base = main_src
        .path
        .as_ref()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf);

    // 2. Split the main doc into probe sections, notify channels and the rest.
    let MainParts {
        mut probes,
        channels,
        raw,
    } = split_main(&main_src, &main_doc, &mut diags);

    // 3. The probes file.
    let (services_path, services_exists, services_src) = services_source(
        raw.services_file.as_deref(),
        home,
        main_base.as_deref(),
        (&main_src, &main_doc),
        &mut diags,
    );
    loaded.services_path = Some(services_path.clone());
    if let Some(src) = &services_src {
        parse_services(src, &mut probes, &mut diags);
    }

    // 4. Build and validate.
    let mut b = Builder {
        src: &main_src,
        root: &main_doc,
        diags: &mut diags,
        home,
        base: main_base.as_deref(),
    };
    let config = b.build(
        raw,
        probes,
        channels,
        Sources {
            main: loaded.main_path.clone(),
            services: services_path,
            services_exists,
        },
        inherited.as_deref(),
    );
    if opts.resolve {
        loaded.programs = resolve_programs(
            &config,
            &main_src,
            &main_doc,
            services_src.as_deref(),
            &mut diags,
        );
    }
    diags.sort();
    loaded.config = (!diags.has_errors()).then_some(config);
    loaded.diags = diags;
    loaded
}

/// The main config: explicit (must exist), else the default path if present, else embedded.
fn main_source(
    opts: &LoadOptions,
    home: Option<&Path>,
    loaded: &mut Loaded,
    diags: &mut Diagnostics,
) -> Option<Source> {
    match &opts.config {
        Some(p) => {
            loaded.main_path = Some(p.clone());
            if !p.exists() && std::fs::symlink_metadata(p).is_err() {
                diags.file_error(
                    &p.display().to_string(),
                    "config file does not exist (create one with `talon init`, or drop --config/$TALON_CONFIG to use the embedded default)",
                );
                None
            } else {
                read_source(p, diags)
            }
        }
        None => match default_config_path(home).filter(|p| p.exists()) {
            Some(p) => {
                loaded.main_path = Some(p.clone());
                read_source(&p, diags)
            }
            None => Some(Source::embedded(EMBEDDED_NAME, DEFAULT_CONFIG)),
        },
    }
}

/// The main config, taken apart.
struct MainParts {
    probes: Vec<ProbeDraft>,
    channels: Vec<ChannelConfig>,
    /// Everything else (the top-level keys and the other sections).
    raw: RawMain,
}

fn split_main(src: &Arc<Source>, doc: &Value<'_>, diags: &mut Diagnostics) -> MainParts {
    let mut probes: Vec<ProbeDraft> = Vec::new();
    let mut channels: Vec<ChannelConfig> = Vec::new();
    let mut rest_entries = Vec::new();
    if let toml::de::DeValue::Table(t) = doc.get_ref() {
        for (k, v) in t.iter() {
            let key: &str = k.get_ref();
            if KINDS.contains(&key) {
                parse_probe_kind(src, key, v, &mut probes, diags);
            } else if key == "notify" {
                parse_notify(src, v, &mut channels, diags);
            } else {
                // Deserialize each top-level entry alone so one bad section does not hide another.
                let one = tomlx::table_of(v.span(), vec![(k.clone(), v.clone())]);
                if tomlx::section::<RawMain>(src, "", &one, KINDS, diags).is_some() {
                    rest_entries.push((k.clone(), v.clone()));
                }
            }
        }
    }
    let rest = tomlx::table_of(doc.span(), rest_entries);
    let raw: RawMain = tomlx::section(src, "", &rest, &[], diags).unwrap_or_default();
    MainParts {
        probes,
        channels,
        raw,
    }
}

/// The probes file: its path (`services_file`, else the default), whether it exists, and its
/// text. A `services_file` that names a missing file is a warning at that key of `main`.
fn services_source(
    services_file: Option<&str>,
    home: Option<&Path>,
    main_base: Option<&Path>,
    main: (&Source, &Value<'_>),
    diags: &mut Diagnostics,
) -> (PathBuf, bool, Option<Arc<Source>>) {
    let services_path = match services_file {
        Some(s) => expand_path(s, home, main_base),
        None => defaults::services_file(home),
    };
    let services_exists = services_path.exists();
    let services_src = if services_exists {
        read_source(&services_path, diags).map(Arc::new)
    } else {
        if services_file.is_some() {
            let span = tomlx::path_span(main.1, "services_file");
            diags.warning(
                main.0,
                span,
                "services_file",
                format!(
                    "{} does not exist yet; no probes are loaded from it until it does",
                    services_path.display()
                ),
            );
        }
        None
    };
    (services_path, services_exists, services_src)
}

/// The probes file's sections: probe kinds only.
fn parse_services(src: &Arc<Source>, probes: &mut Vec<ProbeDraft>, diags: &mut Diagnostics) {
    let Some(doc) = tomlx::parse(src, diags) else {
        return;
    };
    let toml::de::DeValue::Table(t) = doc.get_ref() else {
        return;
    };
    for (k, v) in t.iter() {
        let key: &str = k.get_ref();
        if KINDS.contains(&key) {
            parse_probe_kind(src, key, v, probes, diags);
        } else {
            let mut msg = format!(
                "unknown section `{key}`: a probes file holds only probe kinds ({})",
                KINDS.join(", ")
            );
            if let Some(s) = suggest(key, KINDS.iter().copied()) {
                msg = format!("unknown probe kind `{key}` (did you mean `{s}`?)");
            }
            diags.error(src, Some(k.span()), key, msg);
        }
    }
}

/// The `[notify.NAME]` channels of the main config.
fn parse_notify(
    src: &Source,
    v: &Value<'_>,
    out: &mut Vec<ChannelConfig>,
    diags: &mut Diagnostics,
) {
    let toml::de::DeValue::Table(t) = v.get_ref() else {
        diags.error(
            src,
            Some(v.span()),
            "notify",
            "`notify` must be a table of channels, e.g. [notify.NAME]",
        );
        return;
    };
    for (name, section) in t.iter() {
        let path = format!("notify.{}", name.get_ref());
        if let Some(c) = channel::parse_channel(src, &path, name.get_ref(), section, diags) {
            out.push(c);
        }
    }
}

/// Read a config file, turning every way it can be unreadable into one diagnostic.
fn read_source(path: &Path, diags: &mut Diagnostics) -> Option<Source> {
    let name = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            diags.file_error(&name, "is a directory, not a config file");
            return None;
        }
        Ok(_) => {}
        Err(e) => {
            diags.file_error(&name, format!("cannot read: {}", io_reason(&e)));
            return None;
        }
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(Source::file(path, text)),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let text = String::from_utf8_lossy(&e.into_bytes()[..at]).into_owned();
                let src = Source::file(path, text);
                let end = src.text.len();
                diags.error(&src, Some(end..end), "", "file is not valid UTF-8 text");
                None
            }
        },
        Err(e) => {
            diags.file_error(&name, format!("cannot read: {}", io_reason(&e)));
            None
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}
