//! Operators, wherever they are: who acknowledged or silenced what (kept in the store's `kv`
//! table, shown by `/status`, recorded in the incident's timeline), and commands from chat
//! ([`Msg::Chat`](super::Msg::Chat)) answered by the same `ack`/`silence` handlers as
//! `talon ack` and `POST /ack`, with the reply going back to the chat.

use super::Runtime;
use super::chat::{self, ChatCommand, ChatMsg, STALE_AFTER_SECS, Who, keys};
use super::inbox::Msg;
use crate::config::channel::ChannelKind;
use crate::config::channel::telegram::TelegramSpec;
use crate::core::{IncidentId, Millis, Record, Transition};
use crate::notify::NotifyCtx;
use crate::notify::telegram::{self, ThreadKey};
use crate::server::control::{ControlReply, ControlRequest};
use crate::server::snapshot::TimelineEntry;
use crate::store::{Batch, Store};
use std::time::Duration;
use tokio::sync::oneshot;

/// Time limit for one reply or edit.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

impl Runtime {
    /// Write one `kv` key through the store writer (`None` deletes it).
    fn kv(&self, key: String, value: Option<String>) {
        if let Some(h) = &self.history {
            h.write(Batch::kv(self.clock.wall_ms(), key, value));
        }
    }

    /// Load what the store's `kv` table keeps for this runtime: chat offsets, incident messages,
    /// who acknowledged and silenced. Called once before the loop.
    pub(super) fn load_chat_state(&mut self) {
        if std::mem::replace(&mut self.chat.loaded, true) {
            return;
        }
        let store = match Store::open_existing(&self.cfg.state_dir) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read chat offsets and operator notes");
                return;
            }
        };
        self.chat.digest_last = store
            .kv_get(super::digest::LAST_KEY)
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok());
        let rows = |p: &str| store.kv_prefix(p).unwrap_or_default();
        for (k, v) in rows(keys::OFFSET) {
            if let Ok(o) = v.parse::<i64>() {
                self.chat
                    .offsets
                    .insert(k[keys::OFFSET.len()..].to_string(), o);
            }
        }
        for (k, v) in rows(keys::THREAD) {
            let rest = &k[keys::THREAD.len()..];
            if let (Some((channel, incident)), Ok(t)) =
                (rest.rsplit_once('.'), serde_json::from_str(&v))
            {
                self.chat
                    .threads
                    .restore(ThreadKey::new(channel, incident), t);
            }
        }
        for (k, v) in rows(keys::ACK) {
            if let (Ok(id), Ok(w)) = (
                k[keys::ACK.len()..].parse::<IncidentId>(),
                serde_json::from_str::<Who>(&v),
            ) {
                self.chat.acked.insert(id, w);
            }
        }
        for (k, v) in rows(keys::SILENCE) {
            if let Ok(w) = serde_json::from_str::<Who>(&v) {
                self.chat
                    .silences
                    .insert(k[keys::SILENCE.len()..].to_string(), w);
            }
        }
        // Notes about incidents that are no longer open are not needed any more.
        let open = self.core.incident().map(|i| i.id);
        let stale: Vec<IncidentId> = self
            .chat
            .acked
            .keys()
            .copied()
            .filter(|id| Some(*id) != open)
            .collect();
        for id in stale {
            self.chat.acked.remove(&id);
            self.kv(format!("{}{id}", keys::ACK), None);
        }
    }

    /// Persist the incident messages the deliveries created, edited or finished.
    pub(super) fn persist_threads(&mut self) {
        for (k, t) in self.chat.threads.take_changes() {
            let key = format!("{}{}.{}", keys::THREAD, k.channel, k.incident);
            self.kv(key, t.and_then(|t| serde_json::to_string(&t).ok()));
        }
    }

    /// An acknowledgement went through: keep who and when, record it, and say so in the
    /// incident's Telegram messages.
    pub(super) fn noted_ack(&mut self, incident: IncidentId, by: &str, at: Millis) {
        let who = Who {
            by: by.to_string(),
            at,
            reason: None,
        };
        self.kv(
            format!("{}{incident}", keys::ACK),
            serde_json::to_string(&who).ok(),
        );
        self.chat.acked.retain(|id, _| *id == incident);
        self.chat.acked.insert(incident, who);
        self.note_operator("ack", &format!("acknowledged by {by}"));
        let line = format!("Acknowledged by {by} at {}", crate::format::utc(at));
        self.annotate_threads(incident, &line);
    }

    /// Append a line to the incident's message in every Telegram channel that has one.
    fn annotate_threads(&mut self, incident: IncidentId, line: &str) {
        let inc = incident.to_string();
        for (name, spec) in self.telegram_channels() {
            if !self.chat.threads.incidents(&name).contains(&inc) {
                continue;
            }
            let ctx = self.notify_ctx();
            let (line, inc) = (line.to_string(), inc.clone());
            self.tasks.spawn(async move {
                let deadline = crate::clock::Instant::now() + REPLY_TIMEOUT;
                if let Err(e) =
                    telegram::annotate(&name, &spec, &ctx, &inc, &line, deadline).await
                {
                    tracing::warn!(channel = %name, error = %e, "telegram: cannot update the incident's message");
                }
            });
        }
    }

    /// A heal or agent run of an incident that already has a message ended: say so in it
    /// ("Tried: heal …: not fixed").
    pub(super) fn note_for_threads(&mut self, r: &Record) {
        match r {
            Record::ActionStarted {
                incident,
                action,
                kind,
                detail,
                ..
            } => {
                self.chat
                    .actions
                    .insert(*action, (*incident, format!("{} {detail}", kind.as_str())));
                let excess = self.chat.actions.len().saturating_sub(64);
                for _ in 0..excess {
                    self.chat.actions.pop_first();
                }
            }
            Record::ActionVerdict {
                action, verdict, ..
            } => {
                if let Some((incident, what)) = self.chat.actions.remove(action) {
                    let line = format!(
                        "Tried: {}: {}",
                        one_line(&what, 120),
                        one_line(verdict, 120)
                    );
                    self.annotate_threads(incident, &line);
                }
            }
            _ => {}
        }
    }

    /// A silence was set or lifted: keep who, when and why, and record it.
    pub(super) fn noted_silence(
        &mut self,
        probe: &str,
        duration: Duration,
        reason: Option<&str>,
        by: &str,
        at: Millis,
    ) {
        let key = format!("{}{probe}", keys::SILENCE);
        if duration.is_zero() {
            self.chat.silences.remove(probe);
            self.kv(key, None);
            self.note_operator("unsilence", &format!("{probe}: silence lifted by {by}"));
            return;
        }
        let who = Who {
            by: by.to_string(),
            at,
            reason: reason.map(str::to_string),
        };
        self.kv(key, serde_json::to_string(&who).ok());
        self.chat.silences.insert(probe.to_string(), who);
        self.note_operator(
            "silence",
            &format!(
                "{probe} silenced for {} by {by}",
                crate::format::duration(duration)
            ),
        );
    }

    /// An operator's command in the history (and in the open incident's timeline).
    pub(super) fn note_operator(&mut self, what: &str, text: &str) {
        let at = self.clock.wall_ms();
        let incident = self.core.incident().map(|i| i.id);
        if incident.is_some() {
            self.surfaces.timeline.push(TimelineEntry {
                at_unix: at.div_euclid(1000),
                kind: "operator".into(),
                text: text.to_string(),
            });
        }
        if let Some(h) = &self.history {
            h.write(Batch {
                at,
                records: vec![Record::Transition(Transition {
                    at,
                    subject: "operator".into(),
                    from: String::new(),
                    to: what.to_string(),
                    reason: text.to_string(),
                    incident,
                })],
                ..Batch::default()
            });
        }
    }

    /// The open incident in one line: `#3 open 12m: api: HTTP 503`.
    pub(super) fn incident_summary(&self) -> String {
        let now = self.clock.wall_ms();
        let Some(i) = self.core.incident() else {
            return String::new();
        };
        let probes: Vec<String> = i
            .probes
            .iter()
            .map(|p| match self.last.get(p) {
                Some(r) if !r.passed => format!("{p}: {}", one_line(&r.output, 80)),
                _ => p.clone(),
            })
            .collect();
        format!(
            "#{} open {}: {}",
            i.id,
            crate::format::duration_ms(now - i.opened_at),
            probes.join("; ")
        )
    }

    /// The Telegram channels of the running config.
    fn telegram_channels(&self) -> Vec<(String, TelegramSpec)> {
        self.cfg
            .notify
            .iter()
            .filter_map(|c| match &c.kind {
                ChannelKind::Telegram(t) => Some((c.name.clone(), t.clone())),
                _ => None,
            })
            .collect()
    }

    fn notify_ctx(&self) -> NotifyCtx {
        let mut ctx = match NotifyCtx::new(self.cfg.search_path.clone(), self.redactor.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no HTTP client for telegram");
                NotifyCtx {
                    http: reqwest::Client::new(),
                    search_path: self.cfg.search_path.clone(),
                    redactor: self.redactor.clone(),
                    timeout: REPLY_TIMEOUT,
                    threads: None,
                }
            }
        };
        ctx.threads = Some(self.chat.threads.clone());
        ctx
    }

    /// (Re)start one long-poll task per `commands = true` Telegram channel, from the offsets
    /// handled so far. Called at start and after a reload.
    pub(super) fn start_pollers(&mut self) {
        for p in self.chat.pollers.drain(..) {
            p.abort();
        }
        for (name, spec) in self.telegram_channels() {
            if !spec.commands {
                continue;
            }
            let inbox = self.inbox.clone();
            let offset = self.chat.offsets.get(&name).copied();
            tracing::info!(channel = %name, offset = ?offset, "telegram commands: polling getUpdates");
            let ctx = self.notify_ctx();
            self.chat.pollers.push(tokio::spawn(chat::poll(
                name,
                spec,
                ctx,
                offset,
                move |m| inbox.send(Msg::Chat(m)),
            )));
        }
    }

    /// One update from a chat channel's poller.
    pub(super) fn on_chat(&mut self, m: ChatMsg) {
        if self
            .chat
            .offsets
            .get(&m.channel)
            .is_some_and(|next| m.update_id < *next)
        {
            return; // already handled (a poller restarted by a reload asked again)
        }
        let next = m.update_id.saturating_add(1);
        self.chat.offsets.insert(m.channel.clone(), next);
        self.kv(
            format!("{}{}", keys::OFFSET, m.channel),
            Some(next.to_string()),
        );
        let Some(msg) = m.message else {
            return;
        };
        let Some((_, spec)) = self
            .telegram_channels()
            .into_iter()
            .find(|(n, s)| *n == m.channel && s.commands)
        else {
            return;
        };
        if !spec.command_chats().contains(&msg.chat_id) {
            // Never its text: whoever wrote it is not one of ours.
            tracing::warn!(channel = %m.channel, chat_id = msg.chat_id, username = ?msg.username, "telegram: message from a chat that may not command Talon; ignored");
            return;
        }
        let now_secs = self.clock.wall_ms().div_euclid(1000);
        if msg.date > 0 && now_secs - msg.date > STALE_AFTER_SECS {
            tracing::warn!(channel = %m.channel, chat_id = msg.chat_id, age_secs = now_secs - msg.date, "telegram: command too old to apply (sent while Talon was down); ignored");
            return;
        }
        let Some(cmd) = chat::parse(&msg.text, m.bot.as_deref()) else {
            return; // for another bot
        };
        let by = chat::sender(&msg);
        tracing::info!(channel = %m.channel, by = %by, command = command_name(&cmd), "telegram command");
        let reply_to = Some(msg.message_id);
        let chat_id = msg.chat_id;
        let rx = match cmd {
            ChatCommand::Ack(incident) => {
                let (tx, rx) = oneshot::channel();
                self.on_control(ControlRequest::Ack {
                    incident,
                    by,
                    reply: tx,
                });
                rx
            }
            ChatCommand::Silence { probe, duration } => {
                let (tx, rx) = oneshot::channel();
                self.on_control(ControlRequest::Silence {
                    probe,
                    duration,
                    reason: None,
                    by,
                    reply: tx,
                });
                rx
            }
            ChatCommand::Unsilence(probe) => {
                let (tx, rx) = oneshot::channel();
                self.on_control(ControlRequest::Silence {
                    probe,
                    duration: Duration::ZERO,
                    reason: None,
                    by,
                    reply: tx,
                });
                rx
            }
            ChatCommand::Approve(approval) => {
                let (tx, rx) = oneshot::channel();
                self.note_operator("approve", &format!("/approve {approval} by {by}"));
                self.on_control(ControlRequest::Approve {
                    approval,
                    by,
                    reply: tx,
                });
                rx
            }
            ChatCommand::Deny(approval) => {
                let (tx, rx) = oneshot::channel();
                self.note_operator("deny", &format!("/deny {approval} by {by}"));
                self.on_control(ControlRequest::Deny {
                    approval,
                    by,
                    reply: tx,
                });
                rx
            }
            ChatCommand::Status => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(ControlReply::Done(self.status_text()));
                rx
            }
            ChatCommand::Help => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(ControlReply::Done(chat::HELP.into()));
                rx
            }
            ChatCommand::Bad(why) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(ControlReply::Rejected(format!("{why}\n\n{}", chat::HELP)));
                rx
            }
        };
        let ctx = self.notify_ctx();
        let channel = m.channel;
        self.tasks.spawn(async move {
            let text = match tokio::time::timeout(Duration::from_secs(60), rx).await {
                Ok(Ok(ControlReply::Done(t))) => t,
                Ok(Ok(ControlReply::NotFound(t) | ControlReply::Rejected(t))) => {
                    format!("Not done: {t}")
                }
                _ => "Not done: Talon did not answer in time".into(),
            };
            let deadline = crate::clock::Instant::now() + REPLY_TIMEOUT;
            let sent = match spec.token(&ctx).await {
                Ok(token) => {
                    telegram::send_text(
                        &spec,
                        &ctx,
                        &token,
                        serde_json::json!(chat_id),
                        &ctx.redactor.clean(&text),
                        reply_to,
                        deadline,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                tracing::warn!(channel = %channel, error = %e, "telegram: cannot reply to a command");
            }
        });
    }

    /// `/status` for a phone screen: the same facts as `talon status`.
    pub(super) fn status_text(&self) -> String {
        let now = self.clock.wall_ms();
        let o = self.core.outlook(now);
        let host = crate::escalate::prompt::HostFacts::gather().hostname;
        let mut t = format!(
            "{host}: {} for {}\n",
            o.state,
            crate::format::duration_ms(now - o.since)
        );
        if let Some(i) = &o.incident {
            t.push_str(&format!(
                "Incident #{} open {} ({})\n",
                i.id,
                crate::format::duration_ms(now - i.opened_at),
                i.probes.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
            match (self.chat.acked.get(&i.id), i.acked_at) {
                (Some(w), _) => t.push_str(&format!(
                    "Acknowledged by {} at {}\n",
                    w.by,
                    crate::format::utc(w.at)
                )),
                (None, Some(at)) => {
                    t.push_str(&format!("Acknowledged at {}\n", crate::format::utc(at)))
                }
                (None, None) => t.push_str(&format!("Not acknowledged: /ack {}\n", i.id)),
            }
        }
        if !o.failing.is_empty() {
            t.push_str("Failing:\n");
            for f in &o.failing {
                t.push_str(&format!("- {}: {}\n", f.name, one_line(&f.output, 100)));
            }
        }
        let silenced: Vec<_> = o
            .probes
            .iter()
            .filter_map(|p| p.silenced_until.map(|u| (p.name.clone(), u)))
            .collect();
        if !silenced.is_empty() {
            t.push_str("Silenced:\n");
            for (p, until) in silenced {
                let by = self
                    .chat
                    .silences
                    .get(&p)
                    .map(|w| format!(" by {}", w.by))
                    .unwrap_or_default();
                t.push_str(&format!("- {p} until {}{by}\n", crate::format::utc(until)));
            }
        }
        let passing = o.probes.iter().filter(|p| p.fail_streak == 0).count();
        t.push_str(&format!("Probes: {passing}/{} passing\n", o.probes.len()));
        if let Some(n) = &o.next {
            match n.due {
                Some(d) => t.push_str(&format!("Next: {} at {}\n", n.what, crate::format::utc(d))),
                None => t.push_str(&format!("Next: {}\n", n.what)),
            }
        }
        t.trim_end().to_string()
    }
}

fn command_name(c: &ChatCommand) -> &'static str {
    match c {
        ChatCommand::Ack(_) => "ack",
        ChatCommand::Silence { .. } => "silence",
        ChatCommand::Unsilence(_) => "unsilence",
        ChatCommand::Status => "status",
        ChatCommand::Approve(_) => "approve",
        ChatCommand::Deny(_) => "deny",
        ChatCommand::Help => "help",
        ChatCommand::Bad(_) => "unknown",
    }
}

fn one_line(s: &str, max: usize) -> String {
    let first = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut out: String = first.chars().take(max).collect();
    if first.chars().count() > max {
        out.push('…');
    }
    out
}
