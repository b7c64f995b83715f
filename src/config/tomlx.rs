//! Thin helpers over the `toml` crate's spanned document model, so that every serde error
//! becomes a [`Diagnostic`](super::diag::Diagnostic) with a line, column and key path, and
//! independent sections are checked independently (one bad section does not hide the next).

use super::diag::{Diagnostics, Source, suggest};
use serde::de::DeserializeOwned;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub type Table<'i> = DeTable<'i>;
pub type Value<'i> = Spanned<DeValue<'i>>;

/// Parse a document, turning every syntax error into a diagnostic.
pub fn parse<'i>(src: &'i Source, diags: &mut Diagnostics) -> Option<Value<'i>> {
    let (doc, errors) = DeTable::parse_recoverable(&src.text);
    if errors.is_empty() {
        let span = doc.span();
        return Some(Spanned::new(span, DeValue::Table(doc.into_inner())));
    }
    for e in errors {
        let msg = first_line(e.message());
        // The parser gives no position for some errors (its recursion limit on deeply nested
        // arrays and inline tables): point at the deepest nesting, where that limit is hit.
        let span = e.span().or_else(|| {
            let at = deepest_nesting(&src.text);
            Some(at..at)
        });
        diags.error(src, span, "", format!("TOML syntax: {msg}"));
    }
    None
}

/// Byte offset where `[`/`{` nesting (outside quoted strings and comments) first reaches its
/// greatest depth.
fn deepest_nesting(text: &str) -> usize {
    let (mut depth, mut max, mut at) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if comment {
            comment = c != '\n';
            continue;
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q || c == '\n' {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '#' => comment = true,
            '[' | '{' => {
                depth += 1;
                if depth > max {
                    (max, at) = (depth, i);
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    at
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Deserialize one value (usually a table) into `T`, reporting a failure as a diagnostic whose
/// key path is `path` plus the key inside the value where the error points.
/// `extra_keys` are keys accepted beside `T`'s own (for did-you-mean suggestions).
pub fn section<T: DeserializeOwned>(
    src: &Source,
    path: &str,
    value: &Value<'_>,
    extra_keys: &[&str],
    diags: &mut Diagnostics,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value.clone())) {
        Ok(v) => Some(v),
        Err(e) => {
            let span = e.span().or_else(|| Some(value.span()));
            let (key, message) = describe(e.message(), path, value, span.clone(), extra_keys);
            diags.error(src, span, &key, message);
            None
        }
    }
}

/// Turn serde's message into a short one and find the key path it concerns.
fn describe(
    raw: &str,
    path: &str,
    value: &Value<'_>,
    span: Option<Range<usize>>,
    extra_keys: &[&str],
) -> (String, String) {
    let raw = first_line(raw);
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("").to_string();
        let mut candidates: Vec<String> =
            backticked(rest.split_once("expected").map(|x| x.1).unwrap_or(""));
        candidates.extend(extra_keys.iter().map(|s| s.to_string()));
        let found = span.clone().map(|s| key_at(path, value, s.start));
        let key = match found {
            Some(k) if k.ends_with(&field) => k,
            _ => join(path, &field),
        };
        let mut msg = format!("unknown key `{field}`");
        if let Some(s) = suggest(&field, candidates.iter().map(String::as_str)) {
            msg.push_str(&format!(" (did you mean `{s}`?)"));
        }
        return (key, msg);
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let variant = rest.split('`').next().unwrap_or("");
        let candidates = backticked(rest.split_once("expected").map(|x| x.1).unwrap_or(""));
        let mut msg = format!(
            "unknown value `{variant}`, expected one of: {}",
            candidates.join(", ")
        );
        if let Some(s) = suggest(variant, candidates.iter().map(String::as_str)) {
            msg = format!("unknown value `{variant}` (did you mean `{s}`?)");
        }
        let key = span
            .map(|s| key_at(path, value, s.start))
            .unwrap_or_else(|| path.to_string());
        return (key, msg);
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        return (
            join(path, field),
            format!("required key `{field}` is missing"),
        );
    }
    let key = span
        .map(|s| key_at(path, value, s.start))
        .unwrap_or_else(|| path.to_string());
    (key, raw.replace("invalid type: ", "wrong type: "))
}

fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The dotted path of the innermost key whose key or value span contains `offset`. Tables
/// declared with a `[header]` have a span that covers only the header, so every child is searched.
pub fn key_at(path: &str, value: &Value<'_>, offset: usize) -> String {
    fn find(path: &str, value: &Value<'_>, offset: usize) -> Option<String> {
        let DeValue::Table(t) = value.get_ref() else {
            return None;
        };
        for (k, v) in t.iter() {
            let here = join(path, k.get_ref());
            if let Some(deeper) = find(&here, v, offset) {
                return Some(deeper);
            }
            let (ks, vs) = (k.span(), v.span());
            if (ks.start <= offset && offset < ks.end.max(ks.start + 1))
                || (vs.start <= offset && offset < vs.end)
            {
                return Some(here);
            }
        }
        None
    }
    find(path, value, offset).unwrap_or_else(|| path.to_string())
}

/// Span of `key` inside a table value, falling back to the table's own span.
pub fn key_span(value: &Value<'_>, key: &str) -> Range<usize> {
    if let DeValue::Table(t) = value.get_ref() {
        for (k, v) in t.iter() {
            if k.get_ref() == key {
                return v.span();
            }
        }
    }
    value.span()
}

/// Split a table into (entries whose key is in `keys`, the rest), keeping spans.
pub fn split_table<'i>(value: &Value<'i>, keys: &[&str]) -> (Value<'i>, Value<'i>) {
    let mut picked = DeTable::new();
    let mut rest = DeTable::new();
    if let DeValue::Table(t) = value.get_ref() {
        for (k, v) in t.iter() {
            if keys.contains(&k.get_ref().as_ref()) {
                picked.insert(k.clone(), v.clone());
            } else {
                rest.insert(k.clone(), v.clone());
            }
        }
    }
    let span = value.span();
    (
        Spanned::new(span.clone(), DeValue::Table(picked)),
        Spanned::new(span, DeValue::Table(rest)),
    )
}

/// A table value built from some entries of another, keeping spans.
pub fn table_of<'i>(
    span: Range<usize>,
    entries: Vec<(Spanned<toml::de::DeString<'i>>, Value<'i>)>,
) -> Value<'i> {
    let mut t = DeTable::new();
    for (k, v) in entries {
        t.insert(k, v);
    }
    Spanned::new(span, DeValue::Table(t))
}

/// Span of the value at a dotted key path, else of its nearest parent that is present (a
/// required key that is missing is reported at its table), else of the whole document.
pub fn nearest_span(root: &Value<'_>, dotted: &str) -> Option<Range<usize>> {
    let mut path = dotted;
    loop {
        if let Some(s) = path_span(root, path) {
            return Some(s);
        }
        match path.rsplit_once('.') {
            Some((parent, _)) => path = parent,
            None => return Some(root.span()),
        }
    }
}

/// Span of the value at a dotted key path below `root`, if present.
pub fn path_span(root: &Value<'_>, dotted: &str) -> Option<Range<usize>> {
    let mut cur = root;
    for part in dotted.split('.') {
        // `step[1]`: the second element of the array `step` (arrays of tables).
        let (part, index) = match part.strip_suffix(']').and_then(|p| p.split_once('[')) {
            Some((name, i)) => (name, i.parse::<usize>().ok()),
            None => (part, None),
        };
        let DeValue::Table(t) = cur.get_ref() else {
            return None;
        };
        cur = t
            .iter()
            .find(|(k, _)| k.get_ref() == part)
            .map(|(_, v)| v)?;
        if let Some(i) = index {
            let DeValue::Array(a) = cur.get_ref() else {
                return None;
            };
            cur = a.get(i)?;
        }
    }
    Some(cur.span())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by tests/it/fuzz.rs): the recursion-limit error had no position.
    #[test]
    fn a_too_deep_document_gets_a_position() {
        // (At a few thousand levels the parser reports a position itself; far deeper, not.)
        let text = format!("a = 1\nx = {}1{}\n", "[".repeat(50_000), "]".repeat(50_000));
        let src = Source::embedded("t", &text);
        let mut d = Diagnostics::default();
        assert!(parse(&src, &mut d).is_none());
        let e = d.errors().next().unwrap();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.column >= 5, "{e}");
        assert_eq!(deepest_nesting("s = \"[[[\" # {{{\nt = [[1]]"), 21);
    }
}
