//! Config diagnostics: every problem names its file, line, column and key path.

use serde::Serialize;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a problem is: errors make a config invalid, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    #[serde(skip)]
    pub severity: Severity,
    /// The file the problem is in (`<embedded default>` for the built-in config).
    pub file: String,
    /// 1-based line, 0 when the problem has no position (an unreadable file).
    pub line: usize,
    /// 1-based column, 0 when the problem has no position.
    pub column: usize,
    /// Dotted key path, e.g. `http.api.timeout_secs`; empty for whole-file problems.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {sev}")?;
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A source file being checked: its name and text, so byte spans become line:column.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: Option<PathBuf>,
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn file(path: &Path, text: String) -> Self {
        Self {
            path: Some(path.to_path_buf()),
            name: path.display().to_string(),
            text,
        }
    }

    pub fn embedded(name: &str, text: &str) -> Self {
        Self {
            path: None,
            name: name.to_string(),
            text: text.to_string(),
        }
    }

    /// 1-based (line, column) of a byte offset; column counts characters.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Collects every problem of one load; nothing stops at the first error.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(
        &mut self,
        severity: Severity,
        src: &Source,
        span: Option<Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) {
        let (line, column) = span.map(|s| src.line_col(s.start)).unwrap_or((0, 0));
        self.items.push(Diagnostic {
            severity,
            file: src.name.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub fn error(
        &mut self,
        src: &Source,
        span: Option<Range<usize>>,
        key: &str,
        msg: impl Into<String>,
    ) {
        self.push(Severity::Error, src, span, key, msg)
    }

    pub fn warning(
        &mut self,
        src: &Source,
        span: Option<Range<usize>>,
        key: &str,
        msg: impl Into<String>,
    ) {
        self.push(Severity::Warning, src, span, key, msg)
    }

    /// A problem that concerns a whole file or no file at all.
    pub fn file_error(&mut self, file: &str, msg: impl Into<String>) {
        self.items.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            line: 0,
            column: 0,
            key: String::new(),
            message: msg.into(),
        });
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// Sorted by file, then position, so output is stable.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            (&a.file, a.line, a.column, &a.key).cmp(&(&b.file, b.line, b.column, &b.key))
        });
        self.items.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Levenshtein distance, for "did you mean" on unknown keys.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate within a small distance, if any.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d > 0)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let s = Source::embedded("x", "a = 1\nbé = 2\n");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(6), (2, 1));
        assert_eq!(s.line_col(9), (2, 3));
    }

    #[test]
    fn suggestion_finds_near_miss() {
        assert_eq!(
            suggest("critcal", ["critical", "timeout_secs"]),
            Some("critical")
        );
        assert_eq!(suggest("zzz", ["critical", "timeout_secs"]), None);
    }
}
