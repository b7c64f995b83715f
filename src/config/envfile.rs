//! The worker's env file: `KEY=VALUE` lines, an optional `export ` prefix, single or double
//! quotes, `#` comments and blank lines. A malformed line is an error naming its line number, so
//! `talon validate` can point at it before the worker ever starts.

use std::path::Path;

/// One problem in an env file: its 1-based line number and what is wrong.
pub type LineError = (usize, String);

/// Why an env file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("env file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("env file {path}: {}", .errors.iter().map(|(l, m)| format!("line {l}: {m}")).collect::<Vec<_>>().join("; "))]
    Invalid {
        path: String,
        errors: Vec<LineError>,
    },
}

/// Read and parse an env file.
pub fn load(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| EnvFileError::Read {
        path: path.display().to_string(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            std::io::ErrorKind::InvalidData => "not UTF-8 text".to_string(),
            _ => e.to_string(),
        },
    })?;
    parse(&text).map_err(|errors| EnvFileError::Invalid {
        path: path.display().to_string(),
        errors,
    })
}

/// Parse env file text into ordered `(key, value)` pairs (a later duplicate wins when applied).
/// Every malformed line is reported, not only the first.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, Vec<LineError>> {
    let mut vars = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        match parse_line(raw) {
            Ok(Some(kv)) => vars.push(kv),
            Ok(None) => {}
            Err(e) => errors.push((n, e)),
        }
    }
    if errors.is_empty() {
        Ok(vars)
    } else {
        Err(errors)
    }
}

fn parse_line(raw: &str) -> Result<Option<(String, String)>, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = line
        .strip_prefix("export")
        .filter(|rest| rest.starts_with([' ', '\t']))
        .map(str::trim_start)
        .unwrap_or(line);
    let Some((key, rest)) = line.split_once('=') else {
        return Err(format!("expected KEY=VALUE, got `{}`", shorten(line)));
    };
    let key = key.trim_end();
    let valid_key = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_key {
        return Err(format!(
            "`{}` is not a valid variable name (letters, digits, `_`; not starting with a digit)",
            shorten(key)
        ));
    }
    let value = parse_value(rest.trim_start())?;
    Ok(Some((key.to_string(), value)))
}

fn parse_value(v: &str) -> Result<String, String> {
    let Some(q) = v.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        // Unquoted: a ` #` starts a comment; surrounding space is dropped.
        let v = match v.find(" #").or_else(|| v.find("\t#")) {
            Some(i) => &v[..i],
            None => v,
        };
        let v = v.trim_end();
        if v.contains(['"', '\'']) {
            return Err(format!(
                "unbalanced quote in unquoted value `{}`",
                shorten(v)
            ));
        }
        return Ok(v.to_string());
    };
    let body = &v[1..];
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == q {
            let after = body[i + 1..].trim_start();
            if !(after.is_empty() || after.starts_with('#')) {
                return Err(format!(
                    "unexpected text after the closing quote: `{}`",
                    shorten(after)
                ));
            }
            return Ok(out);
        }
        if q == '"' && c == '\\' {
            match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, e @ ('"' | '\\' | '$' | '`'))) => out.push(e),
                Some((_, e)) => {
                    out.push('\\');
                    out.push(e);
                }
                None => break,
            }
            continue;
        }
        out.push(c);
    }
    Err(format!("missing closing {q} quote"))
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// `Some("NODE_NAME")` for `"${NODE_NAME}"`: a value that names an environment variable whole
/// (`host = "${NODE_NAME}"`, a k8s probe's `node`).
pub fn env_ref(s: &str) -> Option<&str> {
    s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_supported_forms() {
        let text = "# a comment\n\nA=1\nexport B=two words  # trailing comment\nC='single # kept $X'\nD=\"dq \\\"esc\\\" \\n\"\n  E = spaced \nF=\nG=x#y\nexport_H=3\n";
        assert_eq!(
            parse(text).unwrap(),
            kv(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "single # kept $X"),
                ("D", "dq \"esc\" \n"),
                ("E", "spaced"),
                ("F", ""),
                ("G", "x#y"),
                ("export_H", "3"),
            ])
        );
    }

    #[test]
    fn malformed_lines_are_reported_with_their_numbers() {
        let text = "OK=1\nno equals here\n1BAD=x\nQ=\"open\nR='a' b\nS=it's\nexport =1\n";
        let errs = parse(text).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7], "{errs:?}");
        assert!(errs[0].1.contains("KEY=VALUE"), "{}", errs[0].1);
        assert!(errs[2].1.contains("closing \" quote"), "{}", errs[2].1);
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.env");
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("w.env") && e.contains("no such file"), "{e}");
        std::fs::write(&p, "A=1\nB\n").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        std::fs::write(&p, "A=1\n").unwrap();
        assert_eq!(load(&p).unwrap(), kv(&[("A", "1")]));
    }
}
