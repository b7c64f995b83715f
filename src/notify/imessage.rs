//! `imessage` (macOS): sends through Messages with `osascript`. The AppleScript is a fixed
//! `on run argv` handler; the recipient and the message are passed as ARGUMENTS, never
//! interpolated into script source, so no message text can change what the script does.

use super::{DeliveryError, Notice, NotifyCtx};
use crate::config::channel::imessage::ImessageSpec;
use crate::config::path::SearchPath;
use crate::proc::Cmd;
use std::time::Duration;

/// The script, one `-e` statement per line. It reads `item 1 of argv` (recipient) and
/// `item 2 of argv` (message).
pub const SCRIPT: &[&str] = &[
    "on run argv",
    "set theRecipient to item 1 of argv",
    "set theMessage to item 2 of argv",
    "tell application \"Messages\"",
    "set theService to 1st account whose service type = iMessage",
    "set theBuddy to participant theRecipient of theService",
    "send theMessage to theBuddy",
    "end tell",
    "end run",
];

/// `osascript`'s arguments: `-e LINE` for each script line, then the recipient and the message
/// as the two run-handler arguments.
pub fn osascript_args(recipient: &str, message: &str) -> Vec<String> {
    let mut a = Vec::with_capacity(SCRIPT.len() * 2 + 2);
    for line in SCRIPT {
        a.push("-e".to_string());
        a.push((*line).to_string());
    }
    a.push(recipient.to_string());
    a.push(message.to_string());
    a
}

/// Run `osascript` (found on `sp`) to send `message`. Available everywhere so the argv contract
/// is testable with a stand-in; [`send`] uses it only on macOS.
pub async fn send_with_osascript(
    sp: &SearchPath,
    recipient: &str,
    message: &str,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let f = Cmd::new("osascript")
        .args(osascript_args(recipient, message))
        .search_path(sp)
        .timeout(timeout)
        .run()
        .await
        .map_err(|e| DeliveryError::Command(e.to_string()))?;
    if f.end.success() {
        Ok(())
    } else {
        Err(DeliveryError::Command(format!(
            "osascript {}: {}",
            f.end,
            f.last_line()
        )))
    }
}

/// Send a notice (already redacted).
pub async fn send(
    spec: &ImessageSpec,
    notice: &Notice,
    ctx: &NotifyCtx,
) -> Result<(), DeliveryError> {
    if cfg!(target_os = "macos") {
        send_with_osascript(
            &ctx.search_path,
            spec.recipient.trim(),
            &notice.text(),
            ctx.timeout,
        )
        .await
        .map_err(|e| match e {
            DeliveryError::Command(m) => DeliveryError::Command(ctx.redactor.clean(&m)),
            other => other,
        })
    } else {
        Err(DeliveryError::Unsupported(
            "iMessage sends only on macOS (Messages and osascript)".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_is_an_argument_never_script_source() {
        let evil = "hi\"; do shell script \"rm -rf ~\" --\n\\ end";
        let a = osascript_args("+15550001", evil);
        assert_eq!(a.len(), SCRIPT.len() * 2 + 2);
        assert_eq!(a[a.len() - 1], evil);
        assert_eq!(a[a.len() - 2], "+15550001");
        // The script lines are exactly the constant ones.
        let script: Vec<&str> = a[..SCRIPT.len() * 2]
            .chunks(2)
            .map(|c| {
                assert_eq!(c[0], "-e");
                c[1].as_str()
            })
            .collect();
        assert_eq!(script, SCRIPT);
        assert!(script.iter().all(|l| !l.contains("rm -rf")));
        assert_eq!(script[0], "on run argv");
    }
}
