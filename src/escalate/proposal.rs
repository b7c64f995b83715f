//! The agent's proposal (`propose` mode): the LAST fenced block tagged `talon-actions` in its
//! transcript, holding `{"diagnosis": "...", "actions": [{"name": "...", "reason": "..."}]}`.
//! None, or malformed JSON, means "no action" (and is recorded as such). [`review`] checks each
//! proposed action against the catalogue and the failing probes; budgets are the core's.

use super::catalogue::Catalogue;
use crate::config::Approval;
use crate::core::{Reviewed, Verdict};
use serde::{Deserialize, Serialize};

/// The fence tag.
pub const TAG: &str = "talon-actions";

/// One proposed action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposed {
    pub name: String,
    #[serde(default)]
    pub reason: String,
}

/// A parsed proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    #[serde(default)]
    pub diagnosis: String,
    #[serde(default)]
    pub actions: Vec<Proposed>,
}

/// What the transcript held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Ok(Proposal),
    /// No `talon-actions` block at all.
    Missing,
    /// The last block is not the JSON asked for.
    Malformed(String),
}

impl Parsed {
    /// One line for the record ("no talon-actions block: no action").
    pub fn note(&self) -> String {
        match self {
            Parsed::Ok(p) if p.actions.is_empty() => "proposal: no action".into(),
            Parsed::Ok(p) => format!("proposal: {} action(s)", p.actions.len()),
            Parsed::Missing => "no talon-actions block in the transcript: no action".into(),
            Parsed::Malformed(e) => format!("malformed talon-actions block ({e}): no action"),
        }
    }
}

/// The last ```talon-actions block of `transcript`.
pub fn parse(transcript: &str) -> Parsed {
    let mut last: Option<String> = None;
    let mut lines = transcript.lines();
    while let Some(line) = lines.next() {
        let t = line.trim();
        let Some(rest) = t.strip_prefix("```") else {
            continue;
        };
        if rest.trim() != TAG {
            continue;
        }
        let mut body = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if l.trim() == "```" {
                closed = true;
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        last = Some(if closed { body } else { format!("\u{0}{body}") });
    }
    let Some(body) = last else {
        return Parsed::Missing;
    };
    if body.starts_with('\u{0}') {
        return Parsed::Malformed("the block is not closed with ```".into());
    }
    match serde_json::from_str::<Proposal>(&body) {
        Ok(p) => Parsed::Ok(p),
        Err(e) => Parsed::Malformed(e.to_string()),
    }
}

/// Check each proposed action: in the catalogue, allowed for one of the failing probes
/// (`(name, kind)`), proposed once. Budgets (`max_per_day`) are checked by the core when it
/// would run.
pub fn review(p: &Proposal, catalogue: &Catalogue, failing: &[(String, String)]) -> Vec<Reviewed> {
    let mut out: Vec<Reviewed> = Vec::new();
    for a in &p.actions {
        let verdict = match catalogue.get(&a.name) {
            _ if out.iter().any(|r| r.name == a.name) => {
                Verdict::Refused("proposed twice in one answer".into())
            }
            None => Verdict::Refused("not in the catalogue".into()),
            Some(e) if !failing.iter().any(|(n, k)| e.covers(n, k)) => Verdict::Refused(format!(
                "not allowed for the failing probes ({}); it is for {}",
                failing
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                e.for_.join(", ")
            )),
            Some(e) => match e.approval {
                Approval::Auto => Verdict::Auto,
                Approval::Human => Verdict::Human,
            },
        };
        let max_per_day = catalogue.get(&a.name).map(|e| e.max_per_day).unwrap_or(0);
        out.push(Reviewed {
            name: a.name.clone(),
            reason: a.reason.clone(),
            verdict,
            max_per_day,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_block_counts() {
        let t = "thinking\n```talon-actions\n{\"diagnosis\":\"a\",\"actions\":[{\"name\":\"x\",\"reason\":\"r\"}]}\n```\nmore\n```talon-actions\n{\"diagnosis\":\"b\",\"actions\":[]}\n```\n";
        assert_eq!(
            parse(t),
            Parsed::Ok(Proposal {
                diagnosis: "b".into(),
                actions: vec![]
            })
        );
    }

    #[test]
    fn missing_and_malformed() {
        assert_eq!(parse("no block here\n```json\n{}\n```"), Parsed::Missing);
        assert!(matches!(
            parse("```talon-actions\n{not json\n```"),
            Parsed::Malformed(_)
        ));
        assert!(matches!(
            parse("```talon-actions\n{\"actions\": 3}\n```"),
            Parsed::Malformed(_)
        ));
        assert!(matches!(
            parse("```talon-actions\n{\"actions\": []}\n"),
            Parsed::Malformed(e) if e.contains("not closed")
        ));
        assert!(
            parse("```talon-actions\n{\"actions\": 3}\n```")
                .note()
                .contains("no action")
        );
    }
}
