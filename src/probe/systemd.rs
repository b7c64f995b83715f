//! `systemd` probe (Linux): a unit that must be active, system-wide or in the user's manager
//! (`user = true` → `systemctl --user`). Asks
//! `systemctl show -p Id,LoadState,ActiveState,SubState,Result,MainPID,ExecMainStatus <unit>`;
//! passes when `ActiveState=active`, and reports SubState/Result either way. A failure's detail
//! is the `systemctl show` answer the verdict was computed from (or, when `systemctl` itself
//! failed, what it printed).

use super::ProbeCtx;
use crate::config::probe::systemd::SystemdSpec;
use crate::core::outcome::Outcome;
use crate::proc::{Cmd, End};
use std::collections::BTreeMap;

/// Properties asked for.
pub const PROPERTIES: &str = "Id,LoadState,ActiveState,SubState,Result,MainPID,ExecMainStatus";

/// `systemctl show` output (`Key=Value` lines) as a map.
pub fn parse_show(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Judge parsed properties.
pub fn judge(unit: &str, p: &BTreeMap<String, String>) -> Outcome {
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let id = Some(get("Id")).filter(|s| !s.is_empty()).unwrap_or(unit);
    if get("LoadState") == "not-found" {
        return Outcome::fail(format!("unit {id} not found (LoadState=not-found)"));
    }
    let active = get("ActiveState");
    if active.is_empty() {
        return Outcome::error(format!("systemctl did not report ActiveState for {id}"));
    }
    let mut out = format!("{id} {active} ({})", get("SubState"));
    let result = get("Result");
    if !result.is_empty() && result != "success" {
        out.push_str(&format!(", result {result}"));
    }
    match get("MainPID") {
        "" | "0" => {}
        pid => out.push_str(&format!(", pid {pid}")),
    }
    if active == "active" {
        return Outcome::pass(out);
    }
    match get("ExecMainStatus") {
        "" | "0" => {}
        s => out.push_str(&format!(", last exit status {s}")),
    }
    Outcome::fail(out)
}

/// Ask systemctl and judge.
pub async fn check(spec: &SystemdSpec, ctx: &ProbeCtx) -> Outcome {
    let mut cmd = Cmd::new("systemctl");
    if spec.user {
        cmd = cmd.arg("--user");
    }
    let run = cmd
        .args(["show", "--no-pager", "-p", PROPERTIES, "--"])
        .arg(spec.unit.trim())
        .search_path(ctx.search_path())
        .timeout(ctx.timeout)
        .grace(ctx.grace())
        .run()
        .await;
    let f = match run {
        Ok(f) => f,
        Err(e) => return Outcome::error(e.to_string()),
    };
    let printed = || {
        let mut t = f.stdout.text();
        t.push_str(&f.stderr.text());
        crate::format::newest_excerpt(t.trim_end(), ctx.detail_bytes)
    };
    match f.end {
        End::Exited(0) => {
            judge(spec.unit.trim(), &parse_show(&f.stdout.text())).with_detail(printed())
        }
        End::TimedOut => Outcome::timeout(format!("systemctl show {} timed out", spec.unit))
            .with_detail(printed()),
        end => {
            let why = f.last_line();
            Outcome::error(format!(
                "systemctl show {} failed ({end}){}",
                spec.unit,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ))
            .with_detail(printed())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Status;

    // Captured from `systemctl show -p ... <unit>` on Debian 12 (systemd 252).
    const ACTIVE: &str = "Id=nginx.service\nLoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nMainPID=812\nExecMainStatus=0\n";
    const FAILED: &str = "Id=worker.service\nLoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nMainPID=0\nExecMainStatus=1\n";
    const MISSING: &str = "Id=nope.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nResult=success\nMainPID=0\nExecMainStatus=0\n";
    const ONESHOT_DONE: &str = "Id=backup.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nResult=success\nMainPID=0\nExecMainStatus=0\n";
    const ACTIVATING: &str = "Id=db.service\nLoadState=loaded\nActiveState=activating\nSubState=auto-restart\nResult=exit-code\nMainPID=0\nExecMainStatus=2\n";

    #[test]
    fn active_passes_with_substate_and_pid() {
        let o = judge("nginx", &parse_show(ACTIVE));
        assert_eq!(o, Outcome::pass("nginx.service active (running), pid 812"));
    }

    #[test]
    fn failed_unit_reports_result_and_exit_status() {
        let o = judge("worker.service", &parse_show(FAILED));
        assert_eq!(
            o,
            Outcome::fail("worker.service failed (failed), result exit-code, last exit status 1")
        );
        let o = judge("db.service", &parse_show(ACTIVATING));
        assert_eq!(o.status, Status::Fail);
        assert!(
            o.output.contains("activating (auto-restart)"),
            "{}",
            o.output
        );
    }

    #[test]
    fn missing_and_inactive_units_fail() {
        assert_eq!(
            judge("nope.service", &parse_show(MISSING)).output,
            "unit nope.service not found (LoadState=not-found)"
        );
        assert_eq!(
            judge("backup.service", &parse_show(ONESHOT_DONE)),
            Outcome::fail("backup.service inactive (dead)")
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(judge("x", &parse_show("nonsense")).status, Status::Error);
    }
}
