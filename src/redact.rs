//! Redaction: every secret value Talon knows is replaced by `[REDACTED]` before text is handed to
//! a heal, an agent, a notifier, the log or the store.
//!
//! A [`Redactor`] holds literal secrets (notifier tokens, secret env values, Redis passwords) and
//! the operator's `redact` regular expressions. Secrets resolved at run time (a token fetched by a
//! `token_command`, a worker secret) are added with [`Redactor::learn`]; it is shared behind an
//! `Arc` and safe to use from many tasks.

use regex::Regex;
use std::borrow::Cow;
use std::sync::RwLock;

/// What a redacted secret becomes.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not redacted as literals: redacting every `a` or `42` would
/// destroy the text and protect nothing. Use a `redact` pattern for short values.
pub const MIN_SECRET_LEN: usize = 4;

/// Replaces known secrets and configured patterns with [`REDACTED`].
#[derive(Debug, Default)]
pub struct Redactor {
    patterns: Vec<Regex>,
    literals: RwLock<Literals>,
}

#[derive(Debug, Default)]
struct Literals {
    values: Vec<String>,
    /// One alternation of every literal, longest first (so a secret that contains another
    /// is replaced whole).
    matcher: Option<Regex>,
}

impl Redactor {
    /// A redactor for these secrets and these (already validated) regular expressions.
    pub fn new<I, S>(secrets: I, patterns: &[String]) -> Result<Self, regex::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let patterns = patterns
            .iter()
            .map(|p| Regex::new(p))
            .collect::<Result<Vec<_>, _>>()?;
        let r = Self {
            patterns,
            literals: RwLock::new(Literals::default()),
        };
        for s in secrets {
            r.learn(s);
        }
        Ok(r)
    }

    /// Add a secret discovered at run time. Surrounding whitespace is ignored; values shorter
    /// than [`MIN_SECRET_LEN`] are ignored.
    pub fn learn(&self, secret: impl Into<String>) {
        let s = secret.into();
        let s = s.trim();
        if s.len() < MIN_SECRET_LEN {
            return;
        }
        let mut lit = self.literals.write().unwrap_or_else(|e| e.into_inner());
        if lit.values.iter().any(|v| v == s) {
            return;
        }
        lit.values.push(s.to_string());
        lit.values
            .sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        let alt = lit
            .values
            .iter()
            .map(|v| regex::escape(v))
            .collect::<Vec<_>>()
            .join("|");
        // Escaped literals always compile; the size limit is the only way this fails, and
        // then the previous matcher stays (redacting the rest) rather than none.
        if let Ok(m) = regex::RegexBuilder::new(&alt).size_limit(64 << 20).build() {
            lit.matcher = Some(m);
        }
    }

    /// How many literal secrets are known.
    pub fn secret_count(&self) -> usize {
        self.literals
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values
            .len()
    }

    /// The text with every known secret and every pattern match replaced by [`REDACTED`].
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out: Cow<'t, str> = Cow::Borrowed(text);
        {
            let lit = self.literals.read().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = &lit.matcher
                && m.is_match(&out)
            {
                out = Cow::Owned(m.replace_all(&out, REDACTED).into_owned());
            }
        }
        for p in &self.patterns {
            if p.is_match(&out) {
                out = Cow::Owned(p.replace_all(&out, REDACTED).into_owned());
            }
        }
        out
    }

    /// [`Redactor::redact`] into an owned string.
    pub fn clean(&self, text: &str) -> String {
        self.redact(text).into_owned()
    }

    /// Redact every string inside a JSON value (keys are left alone).
    pub fn redact_json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let Cow::Owned(o) = self.redact(s) {
                    *s = o;
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| self.redact_json(x)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|x| self.redact_json(x)),
            _ => {}
        }
    }
}

/// Whether a name (an HTTP header, an environment variable, a URL query parameter) says its
/// value is a credential: `Authorization`, `Cookie`, `X-Api-Key`, `DB_PASSWORD`, `access_token`…
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "auth",
        "cookie",
        "token",
        "secret",
        "pass",
        "key",
        "credential",
        "signature",
        "session",
        "private",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// A URL with the password of its user info and the values of secret-named query parameters
/// replaced by [`REDACTED`]; with `whole_path`, the path and query too (for URLs that are
/// themselves the credential: a Slack webhook, a heartbeat ping URL). Text that is not a URL is
/// returned unchanged.
pub fn redact_url(url: &str, whole_path: bool) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let after = scheme_end + 3;
    let rest = &url[after..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:{REDACTED}@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = if whole_path {
        if tail.is_empty() || tail == "/" {
            tail.to_string()
        } else {
            format!("/{REDACTED}")
        }
    } else {
        match tail.split_once('?') {
            Some((path, query)) => {
                let (query, fragment) = match query.split_once('#') {
                    Some((q, f)) => (q, Some(f)),
                    None => (query, None),
                };
                let query = query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) if is_secret_name(k) => format!("{k}={REDACTED}"),
                        _ => kv.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("&");
                match fragment {
                    Some(f) => format!("{path}?{query}#{f}"),
                    None => format!("{path}?{query}"),
                }
            }
            None => tail.to_string(),
        }
    };
    format!("{}{authority}{tail}", &url[..after])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urls_lose_passwords_and_secret_parameters() {
        assert_eq!(
            redact_url("redis://app:hunter2@127.0.0.1:6379/1", false),
            "redis://app:[REDACTED]@127.0.0.1:6379/1"
        );
        assert_eq!(
            redact_url("https://h.example/x?a=1&token=abc&api_key=z#f", false),
            "https://h.example/x?a=1&token=[REDACTED]&api_key=[REDACTED]#f"
        );
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/XYZ", true),
            "https://hooks.slack.com/[REDACTED]"
        );
        assert_eq!(redact_url("http://u@h/p", false), "http://u@h/p");
        assert_eq!(redact_url("not a url", true), "not a url");
        assert!(is_secret_name("Authorization") && is_secret_name("DB_PASSWORD"));
        assert!(!is_secret_name("PORT") && !is_secret_name("Accept"));
    }

    #[test]
    fn literals_and_patterns_are_replaced() {
        let r = Redactor::new(
            ["s3cret-pass", "123456:ABCdef_ghi"],
            &["sk-[A-Za-z0-9]{8,}".into()],
        )
        .unwrap();
        let t = "auth s3cret-pass failed; token 123456:ABCdef_ghi; key sk-abcdefgh1234 ok";
        assert_eq!(
            r.redact(t),
            "auth [REDACTED] failed; token [REDACTED]; key [REDACTED] ok"
        );
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn longer_secret_containing_a_shorter_one_is_replaced_whole() {
        let r = Redactor::new(["abcd", "abcdefgh"], &[]).unwrap();
        assert_eq!(r.redact("x abcdefgh y abcd"), "x [REDACTED] y [REDACTED]");
    }

    #[test]
    fn short_values_and_whitespace_are_ignored_and_learning_is_idempotent() {
        let r = Redactor::new(["ab", "  tok3n-value\n"], &[]).unwrap();
        assert_eq!(r.secret_count(), 1);
        r.learn("tok3n-value");
        assert_eq!(r.secret_count(), 1);
        assert_eq!(r.redact("ab tok3n-value"), "ab [REDACTED]");
    }

    #[test]
    fn regex_metacharacters_in_secrets_are_literal() {
        let r = Redactor::new(["p.a*s+s(1)"], &[]).unwrap();
        assert_eq!(r.redact("p.a*s+s(1) pXaas"), "[REDACTED] pXaas");
    }

    #[test]
    fn json_strings_are_redacted_in_place() {
        let r = Redactor::new(["hunter22"], &[]).unwrap();
        let mut v = serde_json::json!({"a": ["x hunter22", {"b": "hunter22"}], "n": 1});
        r.redact_json(&mut v);
        assert!(!v.to_string().contains("hunter22"));
        assert_eq!(v["a"][1]["b"], "[REDACTED]");
    }

    proptest! {
        #[test]
        fn a_known_secret_never_survives(
            secret in "[A-Za-z0-9]{4,40}",
            before in ".{0,200}",
            after in ".{0,200}",
            repeat in 1usize..4,
        ) {
            let r = Redactor::new([secret.clone()], &[]).unwrap();
            let text = format!("{before}{}{after}", secret.repeat(repeat));
            let out = r.redact(&text);
            prop_assert!(!out.contains(&secret), "{out}");
        }

        #[test]
        fn text_without_secrets_is_unchanged(text in "[a-z ]{0,200}") {
            let r = Redactor::new(["ZZZZ9999"], &["Q{5}".to_string()]).unwrap();
            prop_assert_eq!(r.redact(&text).into_owned(), text);
        }
    }
}
