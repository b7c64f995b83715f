//! Answering Talon from the phone, end to end: the real `talon run` against a local server that
//! speaks the Telegram Bot API (`getMe`, `getUpdates` long polls holding until an update comes
//! or `timeout` passes and confirming by `offset`, `sendMessage`, `editMessageText`, scripted
//! `429` with `retry_after` and `ok:false` answers).
//!
//! - a `/ack` from the allowed chat stops the reminders; one from another chat changes nothing
//!   and its text is never logged; bad input gets a clear reply and changes nothing;
//! - the incident is one message: reminders and the resolution edit it and reply to it;
//! - an edit that fails falls back to a new message;
//! - a restart between two updates replays neither (the offset is in the store).

use crate::daemon::Daemon;
use crate::notify::TOKEN;
use crate::scenario::wait_for;
use crate::support::{free_port, write};
use axum::http::{StatusCode, Uri};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
const CHAT: i64 = 4242;
const BOT: &str = "talon_test_bot";

/// One Bot API call the server answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    /// The `message_id` the answer gave (sendMessage).
    pub message_id: Option<i64>,
}

#[derive(Default)]
struct St {
    /// Updates not yet confirmed by an `offset` past them.
    updates: Vec<Value>,
    next_update: i64,
    next_message: i64,
    calls: Vec<Call>,
    /// Per method, answers to give before the normal ones: (status, body).
    script: Vec<(String, VecDeque<(u16, String)>)>,
    fail_edits: bool,
}

/// A loopback server speaking the Bot API for one bot (token [`TOKEN`]).
#[derive(Clone)]
pub struct BotApi {
    st: Arc<Mutex<St>>,
    pub url: String,
}

fn ok(result: Value) -> (u16, String) {
    (200, json!({"ok": true, "result": result}).to_string())
}

impl BotApi {
    pub async fn start() -> BotApi {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let st: Arc<Mutex<St>> = Arc::new(Mutex::new(St {
            next_update: 100,
            next_message: 1,
            ..St::default()
        }));
        let s = st.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let (code, text) = answer(&s, uri.path(), body).await;
                (
                    StatusCode::from_u16(code).unwrap(),
                    [("content-type", "application/json")],
                    text,
                )
            }
        });
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        BotApi { st, url }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, St> {
        self.st.lock().unwrap()
    }

    /// A text message from `chat` (`username` when given) arrives: its update id and message id.
    pub fn message(&self, chat: i64, username: Option<&str>, text: &str) -> (i64, i64) {
        let mut s = self.lock();
        let (id, mid) = (s.next_update, s.next_message);
        s.next_update += 1;
        s.next_message += 1;
        let mut from = json!({"id": chat, "is_bot": false, "first_name": "Op"});
        if let Some(u) = username {
            from["username"] = json!(u);
        }
        s.updates.push(json!({
            "update_id": id,
            "message": {
                "message_id": mid,
                "from": from,
                "chat": {"id": chat, "type": "private"},
                "date": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
                "text": text,
            }
        }));
        (id, mid)
    }

    pub fn script(&self, method: &str, code: u16, body: &str) {
        let mut s = self.lock();
        match s.script.iter_mut().find(|(m, _)| m == method) {
            Some((_, q)) => q.push_back((code, body.to_string())),
            None => s.script.push((
                method.to_string(),
                VecDeque::from([(code, body.to_string())]),
            )),
        }
    }

    pub fn fail_edits(&self, yes: bool) {
        self.lock().fail_edits = yes;
    }

    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// sendMessage texts that answer (reply to) message `id`.
    pub fn replies_to(&self, id: i64) -> Vec<String> {
        self.calls("sendMessage")
            .iter()
            .filter(|c| c.body["reply_parameters"]["message_id"] == id)
            .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Wait for the reply to message `mid` (its text).
    pub fn reply(&self, mid: i64) -> String {
        wait_for(&format!("a reply to message {mid}"), LIMIT, || {
            self.replies_to(mid).into_iter().next()
        })
    }

    /// The newest offset a getUpdates asked with.
    pub fn last_offset(&self) -> Option<i64> {
        self.calls("getUpdates")
            .iter()
            .rev()
            .find_map(|c| c.body["offset"].as_i64())
    }
}

async fn answer(st: &Arc<Mutex<St>>, path: &str, body: Value) -> (u16, String) {
    let Some(method) = path.strip_prefix(&format!("/bot{TOKEN}/")) else {
        return (
            401,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"}).to_string(),
        );
    };
    let method = method.to_string();
    let scripted = {
        let mut s = st.lock().unwrap();
        s.calls.push(Call {
            method: method.clone(),
            body: body.clone(),
            message_id: None,
        });
        s.script
            .iter_mut()
            .find(|(m, _)| *m == method)
            .and_then(|(_, q)| q.pop_front())
    };
    if let Some(a) = scripted {
        return a;
    }
    match method.as_str() {
        "getMe" => ok(json!({"id": 1, "is_bot": true, "first_name": "Talon", "username": BOT})),
        "getUpdates" => {
            let offset = body["offset"].as_i64();
            let wait = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0).min(50));
            let until = Instant::now() + wait;
            loop {
                {
                    let mut s = st.lock().unwrap();
                    if let Some(o) = offset {
                        s.updates.retain(|u| u["update_id"].as_i64() >= Some(o));
                    }
                    if !s.updates.is_empty() || Instant::now() >= until {
                        return ok(Value::Array(s.updates.clone()));
                    }
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        "sendMessage" => {
            let mut s = st.lock().unwrap();
            let id = s.next_message;
            s.next_message += 1;
            if let Some(c) = s.calls.last_mut() {
                c.message_id = Some(id);
            }
            ok(
                json!({"message_id": id, "chat": {"id": body["chat_id"]}, "date": 0, "text": body["text"]}),
            )
        }
        "editMessageText" => {
            if st.lock().unwrap().fail_edits {
                return (
                    400,
                    json!({"ok": false, "error_code": 400,
                           "description": "Bad Request: message to edit not found"})
                    .to_string(),
                );
            }
            ok(json!({"message_id": body["message_id"], "text": body["text"]}))
        }
        _ => (
            404,
            json!({"ok": false, "error_code": 404, "description": "Not Found"}).to_string(),
        ),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

struct Fx {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    fault: PathBuf,
}

impl Fx {
    fn new() -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("tg-token"), format!("{TOKEN}\n")).unwrap();
        Fx {
            fault: dir.join("fault"),
            dir,
            _tmp: tmp,
        }
    }

    /// A probe that fails while the fault flag exists and goes straight to SOS, reminders every
    /// `cooldown` seconds; the Telegram channel takes commands from [`CHAT`].
    fn config(&self, api: &str, cooldown: f64) -> PathBuf {
        write(
            &self.dir,
            "config.toml",
            &format!(
                r#"state_dir = "state"
check_interval_secs = 0.3
[health]
bind = "127.0.0.1:{health}"
[escalation]
critical_threshold_secs = 0.3
sos_cooldown_secs = {cooldown}
heal_settle_secs = 0.2
heal_cooldown_secs = 1
max_heals_per_incident = 1000
[script.target]
command = "test ! -e {fault}"
critical = true
critical_after_consecutive_failures = 2
heal = "echo 'restarting target'; exit 1"
[notify.tg]
kind = "telegram"
chat_id = {CHAT}
token_file = "{token}"
api_base = "{api}"
commands = true
"#,
                health = free_port(),
                fault = self.fault.display(),
                token = self.dir.join("tg-token").display(),
            ),
        )
    }

    fn break_target(&self) {
        std::fs::write(&self.fault, "").unwrap();
    }

    fn fix_target(&self) {
        std::fs::remove_file(&self.fault).unwrap();
    }
}

fn texts(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The SOS message (its id), once sent (a 429'd attempt has no id).
fn sos_message(tg: &BotApi) -> i64 {
    wait_for("the SOS on Telegram", LIMIT, || {
        tg.calls("sendMessage").iter().find_map(|c| {
            let t = c.body["text"].as_str()?;
            (t.starts_with("SOS:") && c.body["chat_id"] == CHAT)
                .then_some(c.message_id)
                .flatten()
        })
    })
}

fn reminders(tg: &BotApi, sos: i64) -> usize {
    tg.replies_to(sos)
        .iter()
        .filter(|t| t.starts_with("Reminder:"))
        .count()
}

/// Send a command from `chat` and wait until Talon took the update (its offset moved past it).
fn command(tg: &BotApi, chat: i64, user: Option<&str>, text: &str) -> i64 {
    let (id, mid) = tg.message(chat, user, text);
    wait_for(&format!("update {id} ({text:?}) taken"), LIMIT, || {
        tg.last_offset().filter(|o| *o > id)
    });
    mid
}

#[test]
fn ack_from_the_allowed_chat_stops_reminders_and_another_chat_changes_nothing() {
    let rt = runtime();
    let tg = rt.block_on(BotApi::start());
    let fx = Fx::new();
    let cfg = fx.config(&tg.url, 1.0);
    let d = Daemon::start(&fx.dir, &cfg);
    // The bot answers commands before any incident, too.
    let (_, mid) = tg.message(CHAT, Some("alice"), "/status@talon_test_bot");
    let status = tg.reply(mid);
    assert!(status.contains("Probes:"), "{status}");

    fx.break_target();
    let sos = sos_message(&tg);
    // Reminders edit the SOS message in place and reply to it (so the phone notifies).
    wait_for("two reminders as replies to the SOS", LIMIT, || {
        (reminders(&tg, sos) >= 2).then_some(())
    });
    let edits = tg.calls("editMessageText");
    assert!(
        edits.iter().any(|e| e.body["message_id"] == sos
            && e.body["text"].as_str().unwrap().starts_with("Reminder:")),
        "the SOS message is edited: {edits:#?}"
    );
    assert_eq!(
        texts(&tg.calls("sendMessage"))
            .iter()
            .filter(|t| t.starts_with("SOS:"))
            .count(),
        1,
        "one SOS message"
    );

    // A heal tried after the SOS is added to the incident's message.
    wait_for("a heal noted in the SOS message", LIMIT, || {
        tg.calls("editMessageText")
            .iter()
            .any(|e| {
                e.body["message_id"] == sos
                    && e.body["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("Tried: heal"))
            })
            .then_some(())
    });

    // Another chat: ignored, logged without its text, nothing changes.
    command(&tg, 999, Some("mallory"), "/ack SECRET-WORD-77");
    let before = reminders(&tg, sos);
    wait_for("reminders go on after a stranger's /ack", LIMIT, || {
        (reminders(&tg, sos) > before).then_some(())
    });
    let v = d.json(&["status"]);
    assert_eq!(v["incident"]["acknowledged"], false, "{v:#}");
    let log = d.log();
    assert!(log.contains("may not command Talon"), "{log}");
    assert!(
        !log.contains("SECRET-WORD-77"),
        "a stranger's text is never logged"
    );
    assert!(
        tg.calls("sendMessage")
            .iter()
            .all(|c| c.body["chat_id"] != 999),
        "no reply to a stranger"
    );

    // Bad input: a clear reply, nothing changes.
    let m = command(&tg, CHAT, Some("alice"), "/silence nosuch 30m");
    assert!(tg.reply(m).contains("no probe named `nosuch`"));
    let m = command(&tg, CHAT, Some("alice"), "/silence target soon");
    assert!(tg.reply(m).contains("not a duration"));
    let m = command(&tg, CHAT, Some("alice"), "/ack 99");
    assert!(tg.reply(m).contains("incident 99 is not open"));
    let m = command(&tg, CHAT, Some("alice"), "/reboot");
    let r = tg.reply(m);
    assert!(
        r.contains("unknown command") && r.contains("/ack [N]"),
        "{r}"
    );
    // Answered by the guarded agent's own handler (the same as `talon approve 3`).
    let m = command(&tg, CHAT, Some("alice"), "/approve 3");
    let r = tg.reply(m);
    assert!(r.contains("no pending approval #3"), "{r}");
    let v = d.json(&["status"]);
    assert_eq!(v["incident"]["acknowledged"], false, "{v:#}");

    // The ack from the allowed chat.
    let m = command(&tg, CHAT, Some("alice"), "/ack");
    let r = tg.reply(m);
    assert!(
        r.contains("acknowledged by telegram:4242 (alice)") && r.contains("target"),
        "{r}"
    );
    let v = d.json(&["status"]);
    assert_eq!(v["incident"]["acknowledged"], true, "{v:#}");
    assert_eq!(v["incident"]["acked_by"], "telegram:4242 (alice)", "{v:#}");
    wait_for("the SOS message marked acknowledged", LIMIT, || {
        tg.calls("editMessageText")
            .iter()
            .any(|e| {
                e.body["message_id"] == sos
                    && e.body["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("Acknowledged by telegram:4242 (alice)"))
            })
            .then_some(())
    });
    // Reminders stop: none in four cooldowns.
    let after = reminders(&tg, sos);
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(reminders(&tg, sos), after, "no reminder after the ack");
    let m = command(&tg, CHAT, None, "/status");
    let s = tg.reply(m);
    assert!(
        s.contains("Incident #1") && s.contains("Acknowledged by telegram:4242 (alice)"),
        "{s}"
    );
    // Silence from the phone, shown with who in /status.
    let m = command(&tg, CHAT, Some("alice"), "/silence target 2h");
    assert!(tg.reply(m).contains("target silenced for 2h"));
    let v = d.json(&["status"]);
    let p = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "target")
        .unwrap()
        .clone();
    assert_eq!(p["silenced"]["by"], "telegram:4242 (alice)", "{v:#}");

    // Recorded in the incident's timeline with who.
    let inc = d.json(&["incident", "1"]);
    let ops: Vec<String> = inc["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["subject"] == "operator")
        .map(|t| t["reason"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ops.iter()
            .any(|r| r == "acknowledged by telegram:4242 (alice)"),
        "{ops:?}"
    );

    // Resolved: the message is edited and answered once more.
    fx.fix_target();
    wait_for("the resolution as a reply to the SOS", LIMIT, || {
        tg.replies_to(sos)
            .iter()
            .any(|t| t.starts_with("Resolved:"))
            .then_some(())
    });
    assert!(
        tg.calls("editMessageText")
            .iter()
            .any(|e| e.body["message_id"] == sos
                && e.body["text"].as_str().unwrap().starts_with("Resolved:")),
    );
    assert!(!d.log().contains(TOKEN), "the token is never logged");
}

#[test]
fn an_edit_failure_falls_back_to_a_new_message_and_429_is_waited_out() {
    let rt = runtime();
    let tg = rt.block_on(BotApi::start());
    tg.script(
        "sendMessage",
        429,
        r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#,
    );
    tg.fail_edits(true);
    let fx = Fx::new();
    let cfg = fx.config(&tg.url, 1.0);
    let d = Daemon::start(&fx.dir, &cfg);
    fx.break_target();
    let sos = sos_message(&tg);
    let tries = texts(&tg.calls("sendMessage"))
        .iter()
        .filter(|t| t.starts_with("SOS:"))
        .count();
    assert_eq!(tries, 2, "the 429 was waited out and the SOS sent again");
    // The reminder cannot edit the SOS: it comes as a new, whole message.
    let reminder = wait_for("a reminder as a new message", LIMIT, || {
        tg.calls("sendMessage").into_iter().find(|c| {
            c.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Reminder:"))
                && c.body.get("reply_parameters").is_none()
        })
    });
    assert!(
        reminder.body["text"].as_str().unwrap().contains("Failing:"),
        "{reminder:?}"
    );
    assert!(
        tg.calls("editMessageText")
            .iter()
            .any(|e| e.body["message_id"] == sos),
        "an edit was tried first"
    );
    let v = d.json(&["incident", "1"]);
    let reminders: Vec<&Value> = v["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "reminder")
        .collect();
    assert!(
        reminders.iter().any(|n| n["delivered_at"].is_i64()),
        "the reminder counts as delivered: {v:#}"
    );
    // Once edits work again, the newest message is the one edited.
    let newest = reminder.message_id.unwrap();
    tg.fail_edits(false);
    wait_for(
        "the fallback message edited by a later reminder",
        LIMIT,
        || {
            tg.calls("editMessageText")
                .iter()
                .any(|e| e.body["message_id"] == newest)
                .then_some(())
        },
    );
}

#[test]
fn a_restart_between_two_updates_replays_neither() {
    let rt = runtime();
    let tg = rt.block_on(BotApi::start());
    // The first poll is refused (another poller holds the bot): Talon waits and polls again.
    tg.script(
        "getUpdates",
        409,
        r#"{"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request"}"#,
    );
    let fx = Fx::new();
    let cfg = fx.config(&tg.url, 3600.0);
    let mut d = Daemon::start(&fx.dir, &cfg);
    let (first, m1) = tg.message(CHAT, Some("alice"), "/silence target 30m");
    assert!(tg.reply(m1).contains("target silenced for 30m"));
    let v = d.json(&["status"]);
    assert!(v["probes"][0]["silenced"]["until_unix"].is_i64(), "{v:#}");
    assert_eq!(d.terminate(), Some(0));

    let (second, m2) = tg.message(CHAT, Some("alice"), "/unsilence target");
    let polls_before = tg.calls("getUpdates").len();
    let d2 = Daemon::start(&fx.dir, &cfg);
    assert!(tg.reply(m2).contains("silence lifted"));
    // The first poll after the restart started at the stored offset: past the first update.
    let after: Vec<Call> = tg.calls("getUpdates")[polls_before..].to_vec();
    assert_eq!(after[0].body["offset"], first + 1, "{after:#?}");
    assert_eq!(
        tg.replies_to(m1).len(),
        1,
        "the first command was not replayed"
    );
    // …and the second is not replayed either by a later poll.
    wait_for("a poll past the second update", LIMIT, || {
        tg.last_offset().filter(|o| *o > second)
    });
    assert_eq!(tg.replies_to(m2).len(), 1);
    let v = d2.json(&["status"]);
    assert!(v["probes"][0]["silenced"].is_null(), "{v:#}");
}
