//! Redaction: every secret value Talon knows is replaced by `[REDACTED]`, and every string shaped
//! like a well-known kind of secret by `[REDACTED:<kind>]`, before text is handed to a heal, an
//! agent, a notifier, the log or the store.
//!
//! A [`Redactor`] holds literal secrets (notifier tokens, secret env values, Redis passwords), the
//! operator's `redact` regular expressions and — unless `redact_builtin = false` — the
//! [built-in patterns](BUILTIN_KINDS) (bot tokens, cloud keys, `Authorization` values,
//! `password=` assignments, private keys, JWTs, URL passwords), which catch secrets Talon was
//! never told about: the ones a probe, a heal or an agent prints. Secrets resolved at run time (a
//! token fetched by a `token_command`, a worker secret) are added with [`Redactor::learn`]; it is
//! shared behind an `Arc` and safe to use from many tasks.
//!
//! **Cost.** Every pattern is a `regex` (finite automata, no backtracking: a search is linear in
//! the text) and is applied in exactly one left-to-right pass; a pass never rescans text it has
//! already passed. Redacting is therefore linear in the text for a fixed set of patterns — the
//! test `every_builtin_is_linear_on_adversarial_input` holds each one to that on 1 MiB inputs
//! built to defeat it, and `cargo bench --bench redact` measures the cost per MiB.
//!
//! **Pre-check.** Every built-in pattern names what each of its matches contains (a literal such
//! as `password` or `eyJ`, or five digits and a colon); one Aho-Corasick pass finds which of those
//! a text has, and only those patterns run (again after a replacement, on the new text). A
//! pattern is compiled the first time a text needs it. Most text Talon sees has none, so most
//! texts cost one pass, and an idle daemon never builds the automata it does not need (they and
//! their caches were about half of the heap of a daemon with one worker). A property test holds
//! the result identical to running every pattern.

use aho_corasick::AhoCorasick;
use regex::Regex;
use std::borrow::Cow;
use std::sync::{LazyLock, OnceLock, RwLock};

/// What a redacted secret becomes.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not redacted as literals: redacting every `a` or `42` would
/// destroy the text and protect nothing. Use a `redact` pattern for short values.
pub const MIN_SECRET_LEN: usize = 4;

/// Replaces known secrets, configured patterns and (unless turned off) the built-in secret
/// shapes.
#[derive(Debug)]
pub struct Redactor {
    patterns: Vec<Regex>,
    literals: RwLock<Literals>,
    /// Whether the built-in patterns apply (`redact_builtin`, default on).
    builtin: bool,
}

impl Default for Redactor {
    /// No literal secrets and no `redact` patterns, built-in patterns on.
    fn default() -> Self {
        Self {
            patterns: Vec::new(),
            literals: RwLock::new(Literals::default()),
            builtin: true,
        }
    }
}

#[derive(Debug, Default)]
struct Literals {
    values: Vec<String>,
    /// One alternation of every literal, longest first (so a secret that contains another
    /// is replaced whole).
    matcher: Option<Regex>,
}

/// The kind of a built-in pattern whose kind is named after the key in the match.
const FROM_KEY: &str = "";

/// The built-in secret shapes, applied in this order, each in one pass (a pattern whose
/// [`Needs`] the text lacks is skipped: it could not match).
///
/// A pattern's first capture group that takes part in a match is the secret; the rest of the
/// match is context that stays (`password=`, `Authorization: Bearer `, `redis://user:` … `@`),
/// so the reader still sees what was there. A pattern without a capture group is a secret whole.
/// Specific shapes come before the generic `key = value` one, and a secret span that already
/// starts with `[REDACTED` (an earlier pattern or a literal got there first) is left alone, so the
/// most precise kind wins. Word boundaries are ASCII (`(?-u:\b)`): it keeps the fast automaton
/// on any input and a token is ASCII anyway. No pattern has an optional tail that could make a
/// search run far past the match it reports (that is how an iterator over matches goes
/// quadratic); see the adversarial test.
const BUILTINS: &[Builtin] = &[
    // A PEM private key: the whole block. The body is base64 and header lines, never `--`.
    Builtin {
        kind: "private-key",
        pattern: r"-----BEGIN[ A-Z0-9]*PRIVATE KEY-----[\s\S]*?-----END[ A-Z0-9]*PRIVATE KEY-----",
        needs: Needs::Any(&["PRIVATE KEY-----"]),
    },
    // A block cut at the front (the newest part of an output is kept): base64 lines up to the end line.
    Builtin {
        kind: "private-key",
        pattern: r"(?:[A-Za-z0-9+/=]+(?:\r?\n|\\n))+-----END[ A-Z0-9]*PRIVATE KEY-----",
        needs: Needs::Any(&["PRIVATE KEY-----"]),
    },
    // A block cut at the end: everything from the begin line to the next `--` or the end.
    Builtin {
        kind: "private-key",
        pattern: r"-----BEGIN[ A-Z0-9]*PRIVATE KEY-----(?:[^-]|-[^-])*",
        needs: Needs::Any(&["PRIVATE KEY-----"]),
    },
    // A JSON Web Token: base64url header `{"…`, payload `{"…`, signature (empty when unsigned).
    Builtin {
        kind: "jwt",
        pattern: r"(?-u:\b)eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
        needs: Needs::Any(&["eyJ"]),
    },
    // A Telegram bot token `123456789:AA…`, also inside `https://api.telegram.org/bot<token>/`.
    Builtin {
        kind: "telegram-bot-token",
        pattern: r"(?-u:\b)(?:bot)?([0-9]{5,16}:[A-Za-z0-9_-]{30,})",
        needs: Needs::DigitsColon,
    },
    Builtin {
        kind: "aws-access-key-id",
        pattern: r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA)[A-Z0-9]{16}(?-u:\b)",
        needs: Needs::Any(&[
            "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA",
        ]),
    },
    // An AWS secret access key is 40 base64 characters: only its name makes it one.
    Builtin {
        kind: "aws-secret-key",
        pattern: r#"(?i)(?-u:\b)[a-z0-9_.-]*secret[_-]?access[_-]?key(?:\\?["'])?[ \t]*[:=]=?[ \t]*(?:\\?["'])?([A-Za-z0-9/+]{40})"#,
        needs: Needs::Any(&["secret"]),
    },
    Builtin {
        kind: "github-token",
        pattern: r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
        needs: Needs::Any(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
    },
    Builtin {
        kind: "gitlab-token",
        pattern: r"(?-u:\b)gl(?:pat|ptt|dt|rt|cbt|soat|ft|imt|agent|oas|ffct)-[A-Za-z0-9_.-]{20,}",
        needs: Needs::Any(&[
            "glpat-", "glptt-", "gldt-", "glrt-", "glcbt-", "glsoat-", "glft-", "glimt-",
            "glagent-", "gloas-", "glffct-",
        ]),
    },
    Builtin {
        kind: "slack-token",
        pattern: r"(?-u:\b)(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-[0-9]+-[A-Za-z0-9-]{10,})",
        needs: Needs::Any(&["xox", "xapp-"]),
    },
    Builtin {
        kind: "slack-webhook",
        pattern: r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+",
        needs: Needs::Any(&["hooks.slack.com/"]),
    },
    // `scheme://user:password@host`: the password.
    Builtin {
        kind: "url-password",
        pattern: r#"(?i)(?-u:\b)[a-z][a-z0-9+.-]*://[^\s:@/?#"'<>]*:([^\s@/?#"'<>]+)@"#,
        needs: Needs::Any(&["://"]),
    },
    // `Authorization: <scheme> <credentials>` (and `Proxy-Authorization`, `authorization=`):
    // the credentials; the scheme stays.
    Builtin {
        kind: "authorization",
        pattern: r#"(?i)(?-u:\b)(?:proxy-)?authorization(?:\\?["'])?[ \t]*[:=][ \t]*(?:\\?["'])?(?:[a-z][a-z0-9_-]*[ \t]+)?([^\s"',;\\]+)"#,
        needs: Needs::Any(&["authorization"]),
    },
    // A bearer token outside a header (`curl … Bearer <token>`, a log line): 16 or more
    // token characters, so prose about "bearer tokens" is left alone.
    Builtin {
        kind: "bearer-token",
        pattern: r"(?i)(?-u:\b)bearer[ \t]+([A-Za-z0-9._~+/-]{16,}=*)",
        needs: Needs::Any(&["bearer"]),
    },
    // `password=…`, `DB_PASSWORD: …`, `"api_key": "…"`, `--client-secret=…`: the value. The kind
    // is named after the key (see `assignment_kind`).
    Builtin {
        kind: FROM_KEY,
        pattern: r#"(?i)(?-u:\b)[a-z0-9_.-]*?(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key)(?-u:\b)(?:\\?["'])?[ \t]*[:=][=>]?[ \t]*(?:"([^"\r\n]+)"|'([^'\r\n]+)'|(?:\\?["'])?([^\s"',;&\\]+))"#,
        needs: Needs::Any(&[
            "password",
            "passwd",
            "passphrase",
            "secret",
            "token",
            "apikey",
            "api_key",
            "api-key",
            "accesskey",
            "access_key",
            "access-key",
            "privatekey",
            "private_key",
            "private-key",
        ]),
    },
];

/// The kinds the built-in patterns report, as in `[REDACTED:<kind>]`.
pub const BUILTIN_KINDS: &[&str] = &[
    "private-key",
    "jwt",
    "telegram-bot-token",
    "aws-access-key-id",
    "aws-secret-key",
    "github-token",
    "gitlab-token",
    "slack-token",
    "slack-webhook",
    "url-password",
    "authorization",
    "bearer-token",
    "password",
    "secret",
    "token",
    "api-key",
];

/// A built-in secret shape.
struct Builtin {
    /// As in `[REDACTED:<kind>]`; [`FROM_KEY`] for the generic assignment.
    kind: &'static str,
    pattern: &'static str,
    /// What every match contains: a text without it cannot match and skips the pattern.
    needs: Needs,
}

/// A necessary condition for a built-in pattern to match, cheap to test on any text.
enum Needs {
    /// One of these literals, ASCII case ignored (matching more texts than the pattern needs
    /// costs a search, never a secret).
    Any(&'static [&'static str]),
    /// A `:` right after five ASCII digits (a Telegram bot token's `<bot id>:`).
    DigitsColon,
}

/// The characters outside ASCII that `(?i)` folds to an ASCII letter (`ſ` → s, Kelvin `K` → k):
/// a text with one of them may match a case-insensitive pattern without containing its literal
/// in ASCII, so it runs every pattern. `the_only_non_ascii_folds_to_ascii_letters_are_known`
/// checks the list against the regex engine's own folding.
const ASCII_FOLDS: [char; 2] = ['\u{17f}', '\u{212a}'];

/// Each built-in pattern, compiled on first need: a host whose texts never look like a secret
/// never builds (or keeps the caches of) the automata, which were about half of an idle
/// daemon's heap.
static COMPILED: [OnceLock<Regex>; BUILTINS.len()] = [const { OnceLock::new() }; BUILTINS.len()];

fn compiled(i: usize) -> &'static Regex {
    COMPILED[i].get_or_init(|| {
        Regex::new(BUILTINS[i].pattern).expect("built-in redaction pattern compiles")
    })
}

/// One automaton over every [`Needs::Any`] literal and the [`ASCII_FOLDS`], and for each the
/// patterns it may start.
static TRIGGERS: LazyLock<(AhoCorasick, Vec<u32>)> = LazyLock::new(|| {
    let mut literals = Vec::new();
    let mut owners = Vec::new();
    for (i, b) in BUILTINS.iter().enumerate() {
        if let Needs::Any(l) = b.needs {
            for lit in l {
                literals.push(lit.to_string());
                owners.push(1u32 << i);
            }
        }
    }
    for c in ASCII_FOLDS {
        literals.push(c.to_string());
        owners.push(ALL_BUILTINS);
    }
    let ac = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(&literals)
        .expect("the literals build an automaton");
    (ac, owners)
});

/// Texts up to this long get the pre-check; longer ones run every pattern. A long text almost
/// always contains some literal (`token`, `://`), and then the pre-check is one more pass over it
/// (an ASCII-case-insensitive automaton runs at ~500 MiB/s here, about a fifth of what the
/// patterns cost; `cargo bench --bench redact`), while a log line or a probe's output usually
/// contains none and is done after that one pass.
const PRE_CHECK_MAX: usize = 64 << 10;

const ALL_BUILTINS: u32 = (1u32 << BUILTINS.len()) - 1;
const _: () = assert!(BUILTINS.len() <= 32, "one bit per built-in pattern");

/// The built-in patterns (one bit each, in [`BUILTINS`] order) that may match `text`.
fn needed(text: &str) -> u32 {
    let (ac, owners) = &*TRIGGERS;
    let mut need = 0;
    for m in ac.find_overlapping_iter(text) {
        need |= owners[m.pattern().as_usize()];
    }
    if digits_colon(text) {
        for (i, b) in BUILTINS.iter().enumerate() {
            if matches!(b.needs, Needs::DigitsColon) {
                need |= 1 << i;
            }
        }
    }
    need
}

/// The patterns a replacement's text (`[REDACTED:<kind>]`, any kind) may need. A pass changes a
/// text only by putting such a replacement where a secret was; a literal of [`Needs`] never
/// contains `[` or `]`, nor does five digits and a colon, so none can start in the old text and
/// end in a replacement: what a later pattern needs is what the old text needed plus this.
static REPLACEMENT_NEEDS: LazyLock<u32> = LazyLock::new(|| {
    let all: Vec<String> = BUILTIN_KINDS
        .iter()
        .map(|k| format!("[REDACTED:{k}]"))
        .collect();
    needed(&all.join(" "))
});

/// Whether a `:` follows five ASCII digits somewhere in `text`.
fn digits_colon(text: &str) -> bool {
    let b = text.as_bytes();
    (5..b.len()).any(|i| b[i] == b':' && b[i - 5..i].iter().all(u8::is_ascii_digit))
}

/// The kind for a generic `key = value` match, from the end of its key.
fn assignment_kind(key: &str) -> &'static str {
    let k = key
        .trim_end_matches(['"', '\'', '\\', ':', '=', '>', ' ', '\t'])
        .to_ascii_lowercase();
    if k.ends_with("password") || k.ends_with("passwd") || k.ends_with("passphrase") {
        "password"
    } else if k.ends_with("token") {
        "token"
    } else if k.ends_with("secret") {
        "secret"
    } else if k.contains("private") {
        "private-key"
    } else if k.contains("secret") {
        "secret"
    } else {
        "api-key"
    }
}

/// One pass of one built-in pattern over `text`.
fn apply_builtin<'t>(kind: &'static str, re: &Regex, text: Cow<'t, str>) -> (Cow<'t, str>, bool) {
    let mut out = String::new();
    let mut last = 0;
    let mut changed = false;
    for caps in re.captures_iter(&text) {
        let whole = caps.get(0).expect("group 0 takes part in every match");
        let secret = caps.iter().skip(1).flatten().next().unwrap_or(whole);
        if text[secret.start()..].starts_with("[REDACTED") {
            continue;
        }
        let kind = if kind == FROM_KEY {
            assignment_kind(&text[whole.start()..secret.start()])
        } else {
            kind
        };
        out.push_str(&text[last..secret.start()]);
        out.push_str("[REDACTED:");
        out.push_str(kind);
        out.push(']');
        last = secret.end();
        changed = true;
    }
    if !changed {
        return (text, false);
    }
    out.push_str(&text[last..]);
    (Cow::Owned(out), true)
}

impl Redactor {
    /// A redactor for these secrets and these (already validated) regular expressions, with the
    /// built-in patterns on.
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
            ..Self::default()
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

    /// Learn every literal secret `other` knows: a reload builds a new redactor from the new
    /// config, and what was learned at run time (a worker's `[worker.secrets]` values, a fetched
    /// bot token) must stay redacted — the worker keeps running with those values. A secret once
    /// known stays redacted for the life of the process; redacting too much never leaks.
    pub fn learn_all_from(&self, other: &Redactor) {
        let values = other
            .literals
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values
            .clone();
        for v in values {
            self.learn(v);
        }
    }

    /// The same redactor with the built-in patterns on or off (`redact_builtin`).
    pub fn with_builtin(mut self, on: bool) -> Self {
        self.builtin = on;
        self
    }

    /// Whether the built-in patterns apply.
    pub fn builtin(&self) -> bool {
        self.builtin
    }

    /// How many literal secrets are known.
    pub fn secret_count(&self) -> usize {
        self.literals
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values
            .len()
    }

    /// The text with every known secret and every `redact` pattern match replaced by
    /// [`REDACTED`], then every built-in shape by `[REDACTED:<kind>]`.
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
        if self.builtin {
            // Only the patterns whose literal the text contains run. A replacement can bring a
            // literal in (`[REDACTED:token]` contains `token`), so after one the later patterns
            // that a replacement text needs run too (see `REPLACEMENT_NEEDS`).
            let mut need = if out.len() <= PRE_CHECK_MAX {
                needed(&out)
            } else {
                ALL_BUILTINS
            };
            for (i, b) in BUILTINS.iter().enumerate() {
                if need & (1 << i) == 0 {
                    continue;
                }
                let (next, changed) = apply_builtin(b.kind, compiled(i), out);
                out = next;
                if changed {
                    need |= *REPLACEMENT_NEEDS;
                }
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

    #[test]
    fn learned_secrets_survive_into_a_new_redactor() {
        let old = Redactor::default();
        old.learn("worker-secret-1234");
        let new = Redactor::new(["config-secret-5678"], &[]).unwrap();
        new.learn_all_from(&old);
        assert_eq!(
            new.clean("a worker-secret-1234 b config-secret-5678"),
            "a [REDACTED] b [REDACTED]"
        );
    }
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

    /// `text` through the built-in patterns only.
    fn builtin(text: &str) -> String {
        Redactor::default().clean(text)
    }

    /// Every kind, as a probe, a heal or an agent might print it: (text, expected).
    pub(crate) const SECRET_SAMPLES: &[(&str, &str)] = &[
        (
            "token=123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
            "token=[REDACTED:telegram-bot-token]",
        ),
        (
            "POST https://api.telegram.org/bot110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage",
            "POST https://api.telegram.org/bot[REDACTED:telegram-bot-token]/sendMessage",
        ),
        (
            "using key AKIAIOSFODNN7EXAMPLE for s3",
            "using key [REDACTED:aws-access-key-id] for s3",
        ),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = [REDACTED:aws-secret-key]",
        ),
        (
            r#"{"AccessKeyId": "ASIAY34FZKBOKMUTVV7A", "SecretAccessKey": "9drTJvcXLB89EXAMPLELB8923FB892xMFI/abcde"}"#,
            r#"{"AccessKeyId": "[REDACTED:aws-access-key-id]", "SecretAccessKey": "[REDACTED:aws-secret-key]"}"#,
        ),
        (
            "remote: ghp_16C7e42F292c6912E7710c838347Ae178B4a rejected",
            "remote: [REDACTED:github-token] rejected",
        ),
        (
            "GH=github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
            "GH=[REDACTED:github-token]",
        ),
        (
            "git clone with glpat-xxxxxxxxxxxxxxxxxxxx failed",
            "git clone with [REDACTED:gitlab-token] failed",
        ),
        (
            "slack said invalid_auth for xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
            "slack said invalid_auth for [REDACTED:slack-token]",
        ),
        (
            "posting to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX: 404",
            "posting to [REDACTED:slack-webhook]: 404",
        ),
        (
            "curl -H 'Authorization: Bearer 0b79bab50daca910b000d4f1a2b675d604257e42' http://h/",
            "curl -H 'Authorization: Bearer [REDACTED:authorization]' http://h/",
        ),
        (
            "> Authorization: Basic dXNlcjpodW50ZXIy\n< HTTP/1.1 401",
            "> Authorization: Basic [REDACTED:authorization]\n< HTTP/1.1 401",
        ),
        (
            "retrying with bearer 7Fjfp0ZBr1KtDRbnfVdmIw.abc in 5s",
            "retrying with bearer [REDACTED:bearer-token] in 5s",
        ),
        (
            "connect: password=hunter2 user=app",
            "connect: password=[REDACTED:password] user=app",
        ),
        (
            "DB_PASSWD: 'correct horse battery'",
            "DB_PASSWD: '[REDACTED:password]'",
        ),
        (
            "--client-secret=s3cr3t-v4lue --verbose",
            "--client-secret=[REDACTED:secret] --verbose",
        ),
        (
            r#"{"api_key": "k-8f14e45fceea167a", "access_token":"tok_abc123"}"#,
            r#"{"api_key": "[REDACTED:api-key]", "access_token":"[REDACTED:token]"}"#,
        ),
        (
            "key file:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhp\n-----END RSA PRIVATE KEY-----\ndone",
            "key file:\n[REDACTED:private-key]\ndone",
        ),
        (
            "sent eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
            "sent [REDACTED:jwt] ok",
        ),
        (
            "dial redis://default:s3cretPass@10.0.0.5:6379/0: refused",
            "dial redis://default:[REDACTED:url-password]@10.0.0.5:6379/0: refused",
        ),
    ];

    #[test]
    fn every_builtin_kind_is_replaced_by_its_kind() {
        for (text, want) in SECRET_SAMPLES {
            assert_eq!(&builtin(text), want, "input: {text}");
        }
        let mut seen: Vec<&str> = SECRET_SAMPLES
            .iter()
            .flat_map(|(_, w)| w.split("[REDACTED:").skip(1))
            .map(|rest| &rest[..rest.find(']').unwrap()])
            .collect();
        seen.sort_unstable();
        seen.dedup();
        let mut kinds = BUILTIN_KINDS.to_vec();
        kinds.sort_unstable();
        assert_eq!(
            seen, kinds,
            "every kind has a sample and no sample has an unknown kind"
        );
    }

    #[test]
    fn private_keys_cut_at_either_end_are_still_redacted() {
        // Front cut (an output's newest part is kept): base64 lines then the end line.
        assert_eq!(
            builtin("Ul0MBZhp\nMIIEowIBAAKCAQEA0Z3VS5JJ\n-----END PRIVATE KEY-----\nok"),
            "[REDACTED:private-key]\nok"
        );
        // The same with JSON-escaped newlines.
        assert_eq!(
            builtin(r#"{"k":"MIIEowIBAAKC\nQEA0Z3VS5JJ\n-----END PRIVATE KEY-----\n"}"#),
            r#"{"k":"[REDACTED:private-key]\n"}"#
        );
        // Tail cut: from the begin line to the end of the text.
        assert_eq!(
            builtin(
                "x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nProc-Type: 4"
            ),
            "x\n[REDACTED:private-key]"
        );
    }

    #[test]
    fn look_alikes_are_left_alone() {
        for text in [
            // git shas, full and short, and a sha256 digest
            "HEAD is now at 3f786850e387550fdab836ed7e6dc881de23001b fix",
            "commit 3f78685 (HEAD -> main)",
            "image sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            // UUIDs
            "request 123e4567-e89b-12d3-a456-426614174000 failed",
            "pod uid: 0f8fad5b-d9cb-469f-a165-70867728950e",
            // timestamps
            "2026-11-28T02:16:00Z probe failed",
            "at 2026-11-28T02:16:00.123456+01:00 and 2026-11-28 02:16:00",
            "Nov 28 02:16:00 host talon[1234]: started",
            // base64 of non-secrets in prose
            "the payload was aGVsbG8gd29ybGQsIHRoaXMgaXMgYSB0ZXN0Cg== as expected",
            "etag W/\"5e15153d-120f\" cached",
            // prose around the keywords
            "FATAL: password authentication failed for user \"postgres\"",
            "bearer tokens are checked by the gateway; Basic authentication is off",
            "the secret to a long life is sleep",
            "max_tokens=1000 token_count=5 secretName: tls-cert password_hash_algo",
            "PWD=/home/app key: value passphrase",
            // URLs without a password, ports, IPv6
            "GET https://user@example.com/x http://127.0.0.1:8080/health [::1]:6379 fe80::1%eth0",
            "ssh://git@github.com:22/org/repo.git",
            // numbers with colons
            "pid 12345: exit 1; 1700000000:ok; 10:30:00",
            "AKIA is a prefix; AKIAshort",
        ] {
            assert_eq!(builtin(text), text);
        }
    }

    #[test]
    fn an_earlier_redaction_is_not_redacted_again() {
        let r = Redactor::new(["hunter22-pass"], &[]).unwrap();
        assert_eq!(
            r.redact("password=hunter22-pass redis://u:hunter22-pass@h"),
            "password=[REDACTED] redis://u:[REDACTED]@h"
        );
        // The precise kind wins over the generic `key = value` one.
        assert_eq!(
            builtin("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"),
            "Authorization: Bearer [REDACTED:jwt]"
        );
        assert_eq!(
            builtin("token=ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
            "token=[REDACTED:github-token]"
        );
    }

    /// `text` through every built-in pattern, with no pre-check: what [`Redactor::redact`] did
    /// before the pre-check, and must still do.
    fn every_pattern(text: &str) -> String {
        let mut out = Cow::Borrowed(text);
        for (i, b) in BUILTINS.iter().enumerate() {
            out = apply_builtin(b.kind, compiled(i), out).0;
        }
        out.into_owned()
    }

    #[test]
    fn the_only_non_ascii_folds_to_ascii_letters_are_known() {
        let letter = Regex::new("(?i)^[a-z]$").unwrap();
        let folds: Vec<char> = (0..=0x10ffff_u32)
            .filter_map(char::from_u32)
            .filter(|c| !c.is_ascii() && letter.is_match(c.encode_utf8(&mut [0; 4])))
            .collect();
        assert_eq!(folds, ASCII_FOLDS);
    }

    #[test]
    fn each_sample_needs_its_own_pattern_and_plain_text_needs_none() {
        for (text, want) in SECRET_SAMPLES {
            assert_ne!(needed(text), 0, "{text}");
            assert_eq!(builtin(text), every_pattern(text), "{text}");
            assert_eq!(builtin(text), *want);
        }
        for plain in [
            "GET /health 200 in 3 ms",
            "worker listening on 127.0.0.1:8080, pid 4242",
            "disk / 71% used (12.3 GiB free); passed 3 of 3 checks",
            "2026-12-03T06:12:55Z probe api ok",
        ] {
            assert_eq!(needed(plain), 0, "{plain}");
        }
        // What `REPLACEMENT_NEEDS` rests on: no literal can span a replacement's edge.
        for b in BUILTINS {
            if let Needs::Any(lits) = b.needs {
                assert!(lits.iter().all(|l| !l.contains(['[', ']'])), "{lits:?}");
            }
        }
        assert_ne!(
            *REPLACEMENT_NEEDS & (1 << (BUILTINS.len() - 1)),
            0,
            "`token` is in one"
        );
        // Case does not matter to the pre-check, as it does not to `(?i)` patterns.
        assert_ne!(needed("DB_PASSWORD: x"), 0);
        assert_ne!(needed("Authorization: Basic x"), 0);
        // Digits then a colon (a bot id), and the folding characters, always run the patterns.
        assert_ne!(needed("123456:abc"), 0);
        assert_eq!(needed("1234:abc and 12:34:56"), 0);
        assert_eq!(needed("db_\u{17f}ecret=hunter22"), ALL_BUILTINS);
        assert_eq!(
            builtin("db_\u{17f}ecret=hunter22"),
            "db_\u{17f}ecret=[REDACTED:api-key]"
        );
    }

    /// Pieces that make every pattern match, almost match, or overlap another.
    const PIECES: &[&str] = &[
        "password",
        "PassWord",
        "passwd",
        "passphrase",
        "secret",
        "SECRET_ACCESS_KEY",
        "token",
        "api_key",
        "api-key",
        "ApiKey",
        "access_key",
        "private-key",
        "authorization",
        "Proxy-Authorization",
        "bearer ",
        "Bearer\t",
        "://",
        "https://",
        "redis://u",
        "@",
        ":",
        "=",
        "==",
        "=>",
        " ",
        "\t",
        "\n",
        "\\n",
        "\"",
        "'",
        "\\\"",
        ",",
        ";",
        "&",
        "[REDACTED",
        "[REDACTED:token]",
        "bot",
        "123456",
        "12345:",
        "99999999:",
        "eyJ",
        "eyJhbGciOi.",
        "AKIA",
        "ASIA",
        "ghp_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xapp-1-",
        "hooks.slack.com/",
        "https://hooks.slack.com/services/",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        "--",
        "-",
        "\u{17f}",
        "\u{212a}",
        "é",
        "K",
        "k",
        "s",
    ];

    proptest! {
        #[test]
        fn the_pre_check_never_changes_what_is_redacted(
            parts in proptest::collection::vec(
                prop_oneof![
                    3 => proptest::sample::select(PIECES).prop_map(str::to_string),
                    2 => "[A-Za-z0-9_./+-]{1,45}",
                    1 => proptest::sample::select(SECRET_SAMPLES).prop_map(|s| s.0.to_string()),
                ],
                0..14,
            )
        ) {
            let text = parts.concat();
            prop_assert_eq!(builtin(&text), every_pattern(&text), "{:?}", text);
        }
    }

    #[test]
    fn builtins_can_be_turned_off_and_the_rest_still_applies() {
        let r = Redactor::new(["lit-secret"], &["sk-[a-z]{4}".into()])
            .unwrap()
            .with_builtin(false);
        assert!(!r.builtin());
        let text = "password=hunter2 lit-secret sk-abcd AKIAIOSFODNN7EXAMPLE";
        assert_eq!(
            r.redact(text),
            "password=hunter2 [REDACTED] [REDACTED] AKIAIOSFODNN7EXAMPLE"
        );
        assert!(Redactor::default().builtin());
    }

    /// Inputs built to make a pattern rescan: each pattern's opening repeated without its end,
    /// near misses, long runs of a value's characters, no line breaks at all.
    fn adversarial(len: usize) -> Vec<(String, String)> {
        let fragments = [
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n",
            "-----END PRIVATE KEY-----",
            "AAAA\n",
            "AAAA\\n",
            "-",
            "eyJhbGciOi.",
            "eyJhbGciOi.eyJzdWIiOi",
            "bot12345:",
            "123456:",
            "1234567",
            "AKIA",
            "AKIAIOSFODNN7EXAMPL",
            "secret_access_key=",
            "secret_access_key = \"",
            "ghp_",
            "github_pat_",
            "glpat-",
            "xoxb-",
            "https://hooks.slack.com/services/",
            "a://",
            "a://b:",
            "a://b:c",
            "Authorization: ",
            "Authorization: Bearer ",
            "authorization",
            "bearer ",
            "password",
            "password=",
            "password=\"",
            "password='",
            "password: \\\"",
            "a_password",
            "x",
            "0",
            " ",
            "=",
            "\"",
        ];
        let mut out: Vec<(String, String)> = fragments
            .iter()
            .map(|f| (format!("{f:?} repeated"), f.repeat(len / f.len() + 1)))
            .collect();
        // One opening, then a run of what could follow it, never closed.
        for (open, run) in [
            ("-----BEGIN PRIVATE KEY-----", "A"),
            ("password=\"", "a"),
            ("password=", "a"),
            ("Authorization: Bearer ", "a"),
            ("bot123456:", "a"),
            ("eyJhbGciOi.eyJ", "a"),
            ("http://", "a"),
            ("http://a:", "b"),
        ] {
            out.push((
                format!("{open:?} then {run:?}"),
                format!("{open}{}", run.repeat(len)),
            ));
        }
        out
    }

    /// No input makes redaction super-linear. Each adversarial input is redacted at 64 KiB,
    /// 256 KiB and 1 MiB; each step may take 4× the one before (linear), and fails only when it
    /// takes more than 10× *and* more than 2 s — the machine is shared, so the bound is loose,
    /// but a quadratic pattern (one that rescans to the end of the text for every match) takes
    /// seconds at 64 KiB already and fails there, long before it would take minutes at 1 MiB.
    #[test]
    fn every_builtin_is_linear_on_adversarial_input() {
        let r = Redactor::default();
        let limit = std::time::Duration::from_secs(2);
        let sizes = [64 << 10, 256 << 10, 1 << 20];
        let inputs: Vec<_> = sizes.iter().map(|&n| adversarial(n)).collect();
        for i in 0..inputs[0].len() {
            let mut before: Option<std::time::Duration> = None;
            for (n, input) in sizes.iter().zip(&inputs) {
                let (name, text) = &input[i];
                assert!(text.len() >= *n);
                let t = std::time::Instant::now();
                std::hint::black_box(r.redact(text));
                let took = t.elapsed();
                assert!(
                    took < limit || before.is_some_and(|b| took < b * 10),
                    "{name}: {n} bytes took {took:?} (the step before: {before:?})"
                );
                before = Some(took);
            }
        }
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
        fn every_builtin_kind_is_found_inside_other_text(
            i in 0..SECRET_SAMPLES.len(),
            before in "[a-z ,.]{0,80}",
            after in "[a-z ,.]{0,80}",
        ) {
            let (text, want) = SECRET_SAMPLES[i];
            let out = builtin(&format!("{before}\n{text}\n{after}"));
            prop_assert!(out.contains(&format!("\n{want}\n")), "{out}");
        }

        #[test]
        fn text_without_secrets_is_unchanged(text in "[a-z ]{0,200}") {
            let r = Redactor::new(["ZZZZ9999"], &["Q{5}".to_string()]).unwrap();
            prop_assert_eq!(r.redact(&text).into_owned(), text);
        }
    }
}
