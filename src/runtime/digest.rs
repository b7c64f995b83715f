//! The daily digest (`[digest]`): once a day at a local time, one message with the last 24
//! hours — incidents opened and resolved, time to recover, heals and agent runs with their
//! outcomes, flapping probes, silences in force. Skipped when there is nothing to say unless
//! `always = true`. The time it was last sent for is kept in the store (`kv` `digest.last`), so
//! a restart near the hour neither skips it (a digest missed by less than [`GRACE_MS`] is sent
//! late) nor doubles it.

use super::Runtime;
use super::effects::NoticeJob;
use crate::config::channel::ChannelKind;
use crate::core::Millis;
use crate::notify::{Notice, NoticeKind};
use crate::store::{Batch, Store};

const DAY_MS: i64 = 86_400_000;
/// A digest missed by less than this (Talon was down at the hour) is sent late.
pub const GRACE_MS: i64 = 3_600_000;
/// `kv` key of the scheduled time the newest digest was sent for.
pub const LAST_KEY: &str = "digest.last";

/// The newest scheduled time at or before `now`: `minute` minutes after local midnight, local
/// time being `offset(at)` ms east of UTC.
pub fn latest_due(now: Millis, minute: u32, offset: impl Fn(Millis) -> i64) -> Millis {
    let local = now + offset(now);
    let mut due_local = local.div_euclid(DAY_MS) * DAY_MS + minute as i64 * 60_000;
    if due_local > local {
        due_local -= DAY_MS;
    }
    // The offset at the due time itself (it may differ across a daylight-saving change).
    let guess = due_local - offset(now);
    due_local - offset(guess)
}

/// What the last 24 hours held, from the store and the core.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Facts {
    /// `(id, probes, opened_at, closed_at)` of incidents open at some point in the window.
    pub incidents: Vec<(u64, Vec<String>, Millis, Option<Millis>)>,
    /// `(kind, one line)` of heals and agent runs started in the window.
    pub actions: Vec<(String, String)>,
    pub flapping: Vec<String>,
    /// One line per silence in force.
    pub silences: Vec<String>,
}

/// The digest's lines, or `None` when there is nothing to say (and `always` is off).
pub fn compose(f: &Facts, since: Millis, always: bool) -> Option<Vec<String>> {
    let empty = f.incidents.is_empty()
        && f.actions.is_empty()
        && f.flapping.is_empty()
        && f.silences.is_empty();
    if empty && !always {
        return None;
    }
    let mut out = Vec::new();
    if empty {
        out.push("Nothing happened: no incidents, heals, agent runs, flapping or silences.".into());
        return Some(out);
    }
    let opened = f.incidents.iter().filter(|i| i.2 >= since).count();
    let resolved: Vec<i64> = f
        .incidents
        .iter()
        .filter_map(|i| i.3.map(|c| c - i.2))
        .collect();
    let open = f.incidents.iter().filter(|i| i.3.is_none()).count();
    out.push(format!(
        "Incidents: {opened} opened, {} resolved, {open} open now",
        resolved.len()
    ));
    for (id, probes, at, closed) in &f.incidents {
        let what = match closed {
            Some(c) => format!("resolved in {}", crate::format::duration_ms(c - at)),
            None => format!("open since {}", crate::format::utc(*at)),
        };
        out.push(format!("- #{id} {}: {what}", probes.join(", ")));
    }
    if !resolved.is_empty() {
        let mut r = resolved.clone();
        r.sort_unstable();
        out.push(format!(
            "Time to recover: median {}, longest {}",
            crate::format::duration_ms(r[r.len() / 2]),
            crate::format::duration_ms(*r.last().unwrap_or(&0))
        ));
    }
    let heals = f.actions.iter().filter(|a| a.0 == "heal").count();
    let agents = f.actions.iter().filter(|a| a.0 == "agent").count();
    if !f.actions.is_empty() {
        out.push(format!("Heals: {heals}, agent runs: {agents}"));
        for (_, line) in f.actions.iter().take(20) {
            out.push(format!("- {line}"));
        }
    }
    if !f.flapping.is_empty() {
        out.push(format!("Flapping: {}", f.flapping.join(", ")));
    }
    if !f.silences.is_empty() {
        out.push("Silenced:".into());
        for s in &f.silences {
            out.push(format!("- {s}"));
        }
    }
    Some(out)
}

/// Read the window's incidents, actions and flapping probes from the store (blocking).
fn gather(store: &Store, since: Millis) -> Result<Facts, crate::store::StoreError> {
    let mut f = Facts::default();
    for i in store.incidents(false)? {
        if i.closed_at.is_some_and(|c| c < since) {
            continue;
        }
        if let Some(d) = store.incident(i.id)? {
            for a in d.actions.iter().filter(|a| a.started_at >= since) {
                let mut line = format!("#{} {} {}", i.id, a.kind, a.detail);
                if let Some(e) = &a.exit {
                    line.push_str(&format!(": {e}"));
                }
                if let Some(v) = &a.verdict {
                    line.push_str(&format!(", {v}"));
                }
                f.actions.push((a.kind.clone(), line));
            }
        }
        f.incidents
            .push((i.id, i.probes.clone(), i.opened_at, i.closed_at));
    }
    let mut flapping: Vec<String> = store
        .transitions(Some(since), None)?
        .into_iter()
        .filter(|t| t.to == "flapping")
        .map(|t| t.subject)
        .collect();
    flapping.sort();
    flapping.dedup();
    f.flapping = flapping;
    Ok(f)
}

impl Runtime {
    /// Set the digest's timer from the config (none without `[digest]`), and send one that is
    /// due now. Called at start, after a reload and when the timer fires.
    pub(super) fn digest_tick(&mut self) {
        let Some(d) = self.cfg.digest.clone() else {
            self.timers.digest = None;
            return;
        };
        let now = self.clock.wall_ms();
        let due = latest_due(now, d.minute_of_day, crate::clock::local_offset_ms);
        let last = self.chat.digest_last.unwrap_or(i64::MIN);
        if last < due && now - due <= GRACE_MS {
            self.chat.digest_last = Some(due);
            if let Some(h) = &self.history {
                h.write(Batch::kv(now, LAST_KEY, Some(due.to_string())));
            }
            self.send_digest(now, d.always, &d.channels);
        }
        let next = latest_due(now + DAY_MS, d.minute_of_day, crate::clock::local_offset_ms);
        self.timers.digest = Some(if next > now { next } else { now + DAY_MS });
    }

    fn send_digest(&mut self, now: Millis, always: bool, wanted: &[String]) {
        let since = now - DAY_MS;
        let o = self.core.outlook(now);
        let silences: Vec<String> = o
            .probes
            .iter()
            .filter_map(|p| {
                let until = p.silenced_until?;
                let by = self
                    .chat
                    .silences
                    .get(&p.name)
                    .map(|w| format!(" by {}", w.by))
                    .unwrap_or_default();
                Some(format!(
                    "{} until {}{by}",
                    p.name,
                    crate::format::utc(until)
                ))
            })
            .collect();
        // Every channel named, or every message channel (Alertmanager takes alerts, not text).
        let channels: Vec<_> = self
            .cfg
            .notify
            .iter()
            .filter(|c| {
                if wanted.is_empty() {
                    !matches!(c.kind, ChannelKind::Alertmanager(_))
                } else {
                    wanted.contains(&c.name)
                }
            })
            .cloned()
            .collect();
        let state_dir = self.cfg.state_dir.clone();
        let host = crate::escalate::prompt::HostFacts::gather().hostname;
        let notifier = self.effects.notifier.clone();
        let search_path = self.cfg.search_path.clone();
        let redactor = self.redactor.clone();
        // What the loop recorded up to now (an incident that just closed) is in the digest: the
        // reader waits until the writer thread has written it.
        let barrier = self.history.as_ref().and_then(|h| h.barrier());
        self.tasks.spawn(async move {
            let facts = tokio::task::spawn_blocking(move || {
                if let Some(b) = barrier {
                    let _ = b.wait();
                }
                match Store::open_existing(&state_dir) {
                    Ok(Some(s)) => gather(&s, since).map_err(|e| e.to_string()),
                    Ok(None) => Ok(Facts::default()),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            let mut facts = match facts {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "digest: cannot read the store; sent without history");
                    Facts::default()
                }
            };
            facts.silences = silences;
            let Some(lines) = compose(&facts, since, always) else {
                tracing::info!("digest skipped: nothing happened in the last 24 hours");
                return;
            };
            let mut notice = Notice::test(host, now);
            notice.kind = NoticeKind::Digest;
            notice.state = "digest".into();
            notice.tried = lines;
            let results = notifier
                .notice(NoticeJob {
                    notice,
                    channels,
                    search_path,
                    redactor,
                })
                .await;
            for r in results {
                tracing::info!(channel = %r.channel, delivered = r.delivered, "digest: {}", r.detail);
            }
        });
    }
}

impl Runtime {
    /// Once at start, when the store was set aside as unreadable ([`super::boot::Boot::
    /// store_notice`]): one `system` notice on every message channel (not Alertmanager, which
    /// takes alerts), so the loss of history is not found out only from the log.
    pub(super) fn send_store_notice(&mut self) {
        let Some(what) = self.surfaces.store_notice.clone() else {
            return;
        };
        let channels: Vec<_> = self
            .cfg
            .notify
            .iter()
            .filter(|c| !matches!(c.kind, ChannelKind::Alertmanager(_)))
            .cloned()
            .collect();
        if channels.is_empty() {
            return;
        }
        let host = crate::escalate::prompt::HostFacts::gather().hostname;
        let mut notice = Notice::test(host, self.clock.wall_ms());
        notice.kind = NoticeKind::System;
        notice.state = "unreadable state set aside at start".into();
        notice.tried = vec![
            what,
            "Probing goes on with a fresh store; earlier history is in the set-aside file.".into(),
        ];
        let job = NoticeJob {
            notice,
            channels,
            search_path: self.cfg.search_path.clone(),
            redactor: self.redactor.clone(),
        };
        let notifier = self.effects.notifier.clone();
        self.tasks.spawn(async move {
            for r in notifier.notice(job).await {
                tracing::info!(channel = %r.channel, delivered = r.delivered, "store notice: {}", r.detail);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn the_newest_due_time() {
        let utc = |_| 0;
        let day = 20_000 * DAY_MS; // a midnight UTC
        assert_eq!(latest_due(day + 9 * H, 8 * 60, utc), day + 8 * H);
        assert_eq!(latest_due(day + 8 * H, 8 * 60, utc), day + 8 * H);
        assert_eq!(latest_due(day + 7 * H, 8 * 60, utc), day - DAY_MS + 8 * H);
        // UTC+2: 08:00 local is 06:00 UTC.
        let plus2 = |_| 2 * H;
        assert_eq!(latest_due(day + 7 * H, 8 * 60, plus2), day + 6 * H);
        assert_eq!(latest_due(day + 5 * H, 8 * 60, plus2), day - DAY_MS + 6 * H);
        // UTC-5 near midnight: 23:30 local on the previous UTC day.
        let minus5 = |_| -5 * H;
        assert_eq!(
            latest_due(day + 5 * H, 23 * 60 + 30, minus5),
            day + 4 * H + 30 * 60_000
        );
    }

    #[test]
    fn nothing_to_say_is_skipped_unless_always() {
        assert_eq!(compose(&Facts::default(), 0, false), None);
        let always = compose(&Facts::default(), 0, true).unwrap();
        assert!(always[0].contains("Nothing happened"), "{always:?}");
        let f = Facts {
            incidents: vec![
                (3, vec!["api".into()], 1_000, Some(1_000 + 12 * 60_000)),
                (4, vec!["web".into()], 5_000, None),
            ],
            actions: vec![("heal".into(), "#3 heal restart api: exit 0, fixed".into())],
            flapping: vec!["dns".into()],
            silences: vec!["db until 2026-01-01 10:00 UTC by cli".into()],
        };
        let text = compose(&f, 0, false).unwrap().join("\n");
        for want in [
            "Incidents: 2 opened, 1 resolved, 1 open now",
            "- #3 api: resolved in 12m",
            "Time to recover: median 12m, longest 12m",
            "Heals: 1, agent runs: 0",
            "Flapping: dns",
            "- db until 2026-01-01 10:00 UTC by cli",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }
}
