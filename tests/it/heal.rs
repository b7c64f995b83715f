//! Tier 1 heals as real processes: the env contract, fixes / does not fix, a hang past the
//! timeout (grandchild included), a missing program, the platform restart through a stand-in
//! `launchctl`, and a split-brain choice run end to end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use talon::config::path::SearchPath;
use talon::core::outcome::{ProbeResult, Status};
use talon::core::{Action, Core, CoreConfig, Event};
use talon::escalate::heal::{
    HealAction, HealConfig, HealReport, HealRequest, HealSource, PlannedHeal, plan, run_heal,
};
use talon::proc::End;
use talon::redact::Redactor;

pub fn result(name: &str, output: &str) -> ProbeResult {
    ProbeResult {
        name: name.into(),
        kind: "script".into(),
        passed: false,
        status: Status::Fail,
        output: output.into(),
        detail: String::new(),
        duration_ms: 3,
        started_at: 1_700_000_000_000,
    }
}

pub fn sp(extra: &[&Path]) -> SearchPath {
    let mut dirs: Vec<PathBuf> = extra.iter().map(|p| p.to_path_buf()).collect();
    dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
    SearchPath { dirs }
}

pub fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); read its state instead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub async fn wait_dead(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn request(state: &Path, command: &str, timeout: Duration) -> HealRequest {
    HealRequest {
        incident_id: "inc-42".into(),
        tier: 1,
        heal: PlannedHeal {
            source: HealSource::Global,
            action: HealAction::Command {
                command: command.into(),
            },
            for_probes: vec!["api".into(), "db".into()],
        },
        failing: vec![
            result("api", "HTTP 503 token=tok-SECRET-9876"),
            result("db", "connection refused"),
        ],
        timeout,
        grace: Duration::from_millis(300),
        search_path: sp(&[]),
        state_dir: state.to_path_buf(),
        limits: Default::default(),
    }
}

async fn run(req: HealRequest) -> HealReport {
    let red = Redactor::new(["tok-SECRET-9876"], &[]).unwrap();
    run_heal(req, &red).await
}

#[tokio::test]
async fn heal_that_fixes_gets_the_env_contract_and_a_private_context_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen");
    let fixed = dir.path().join("fixed");
    let cmd = format!(
        "printf '%s|%s|%s|%s\\n' \"$TALON_INCIDENT_ID\" \"$TALON_TIER\" \"$TALON_FAILING_PROBES\" \"$TALON_HEAL_SOURCE\" > {o}; \
         stat -c %a \"$TALON_CONTEXT_FILE\" >> {o}; cat \"$TALON_CONTEXT_FILE\" >> {o}; echo \"$TALON_CONTEXT_FILE\" > {o}.path; \
         touch {f}; echo healed tok-SECRET-9876",
        o = out.display(),
        f = fixed.display()
    );
    let r = run(request(dir.path(), &cmd, Duration::from_secs(20))).await;
    assert_eq!(r.end, Some(End::Exited(0)), "{r:?}");
    assert!(r.error.is_none(), "{r:?}");
    assert!(fixed.exists(), "the heal ran");
    assert_eq!(r.output, "healed [REDACTED]\n");
    let seen = std::fs::read_to_string(&out).unwrap();
    let mut lines = seen.lines();
    assert_eq!(lines.next(), Some("inc-42|1|api,db|global"));
    assert_eq!(lines.next(), Some("600"));
    let ctx: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(ctx["incident_id"], "inc-42");
    assert_eq!(ctx["failing_probes"][0]["name"], "api");
    assert_eq!(
        ctx["failing_probes"][0]["output"],
        "HTTP 503 token=[REDACTED]"
    );
    assert_eq!(ctx["failing_probes"][1]["output"], "connection refused");
    assert!(!seen.contains("tok-SECRET-9876"));
    let ctx_path = std::fs::read_to_string(format!("{}.path", out.display())).unwrap();
    assert!(
        ctx_path
            .trim()
            .starts_with(&dir.path().join("tmp").display().to_string())
    );
    assert!(
        !Path::new(ctx_path.trim()).exists(),
        "context file removed after the heal"
    );
}

#[tokio::test]
async fn heal_that_does_not_fix_reports_its_exit_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(request(
        dir.path(),
        "echo trying; echo 'restart failed: unit masked' >&2; exit 4",
        Duration::from_secs(20),
    ))
    .await;
    assert_eq!(r.end, Some(End::Exited(4)));
    assert!(!r.exited_ok());
    assert_eq!(r.output, "trying\nrestart failed: unit masked\n");
    assert_eq!(
        r.summary(),
        "heal global `echo trying; echo 'restart failed: unit masked' >&2; exit 4`: exit 4"
    );
}

#[tokio::test]
async fn heal_hanging_past_its_timeout_is_killed_with_its_grandchild() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let cmd = format!(
        "sleep 300 & echo $! > {}; trap '' TERM; sleep 300",
        pidfile.display()
    );
    let started = Instant::now();
    let r = run(request(dir.path(), &cmd, Duration::from_millis(700))).await;
    assert_eq!(r.end, Some(End::TimedOut), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(60), "bounded");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_dead(pid).await, "grandchild {pid} left running");
    assert!(r.summary().ends_with("timed out"), "{}", r.summary());
}

#[tokio::test]
async fn missing_program_is_an_error_never_silent() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(request(
        dir.path(),
        "talon-no-such-heal-tool --fix",
        Duration::from_secs(5),
    ))
    .await;
    assert_eq!(r.end, None);
    let e = r.error.clone().expect("an error is recorded");
    assert!(
        e.contains("talon-no-such-heal-tool") && e.contains("not found"),
        "{e}"
    );
    assert!(r.summary().contains("could not run"), "{}", r.summary());
    // Hidden behind shell syntax, the shell's exit 127 is still reported as an error.
    let r = run(request(
        dir.path(),
        "cd / && talon-no-such-heal-tool",
        Duration::from_secs(5),
    ))
    .await;
    assert_eq!(r.end, Some(End::Exited(127)));
    assert!(
        r.error.as_deref().unwrap_or("").contains("exit 127"),
        "{r:?}"
    );
}

#[tokio::test]
async fn launchd_restart_kickstarts_in_the_domain_where_the_job_lives() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("launchctl.log");
    let uid = nix::unistd::getuid().as_raw();
    // A stand-in: the job is loaded in gui/<uid> only.
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> {log}\ncase \"$1 $2\" in\n  \"print gui/{uid}/com.example.job\") exit 0;;\n  print*) echo 'Could not find service' >&2; exit 113;;\n  kickstart*) echo kicked; exit 0;;\nesac\nexit 64\n",
        log = log.display()
    );
    let stand_in = bin.join("launchctl");
    std::fs::write(&stand_in, script).unwrap();
    std::fs::set_permissions(
        &stand_in,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut req = request(dir.path(), "unused", Duration::from_secs(20));
    req.heal = PlannedHeal {
        source: HealSource::Probe("job".into()),
        action: HealAction::LaunchdRestart {
            label: "com.example.job".into(),
        },
        for_probes: vec!["job".into()],
    };
    req.search_path = sp(&[&bin]);
    let r = run(req).await;
    assert_eq!(r.end, Some(End::Exited(0)), "{r:?}");
    assert_eq!(
        r.command,
        format!("launchctl kickstart -k gui/{uid}/com.example.job")
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls,
        format!(
            "print system/com.example.job\nprint gui/{uid}/com.example.job\nkickstart -k gui/{uid}/com.example.job\n"
        )
    );

    // A job loaded nowhere is an error naming both domains, and nothing is kickstarted.
    std::fs::remove_file(&log).unwrap();
    let mut req = request(dir.path(), "unused", Duration::from_secs(20));
    req.heal.action = HealAction::LaunchdRestart {
        label: "com.example.gone".into(),
    };
    req.search_path = sp(&[&bin]);
    let r = run(req).await;
    let e = r.error.unwrap();
    assert!(
        e.contains("not loaded") && e.contains(&format!("gui/{uid}/com.example.gone")),
        "{e}"
    );
    assert!(!std::fs::read_to_string(&log).unwrap().contains("kickstart"));
}

#[tokio::test]
async fn split_brain_runs_the_bridge_heal_and_both_down_runs_the_full_heal() {
    let dir = tempfile::tempdir().unwrap();
    let probes_toml = format!(
        "state_dir = \"{state}\"\nheal_script = \"echo full > {state}/which\"\nbridge_heal = \"echo bridge > {state}/which\"\n\
         [script.host-svc]\ncommand = \"false\"\ncritical = true\nwitness = \"vm-svc\"\n\
         [script.vm-svc]\ncommand = \"true\"\n",
        state = dir.path().display()
    );
    let cfg_path = dir.path().join("talon.toml");
    std::fs::write(&cfg_path, probes_toml).unwrap();
    let loaded = talon::config::load(&talon::config::LoadOptions {
        config: Some(cfg_path),
        home: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    let cfg = loaded
        .config
        .unwrap_or_else(|| panic!("{:?}", loaded.diags));
    let red = Redactor::default();
    // The state machine classifies (witness up: split-brain → bridge; both down: the full heal);
    // `plan` turns its step into the command, and the heal runs for real.
    for (witness_up, expect) in [(true, "bridge"), (false, "full")] {
        let mut core = Core::new(CoreConfig::from_config(&cfg));
        let mut steps = Vec::new();
        for n in 0..5 {
            let at = 1_700_000_000_000 + n * 60_000;
            let mut vm = result("vm-svc", if witness_up { "up" } else { "down" });
            vm.passed = witness_up;
            vm.status = if witness_up {
                Status::Pass
            } else {
                Status::Fail
            };
            let results = vec![result("host-svc", "down"), vm];
            for a in core.step(Event::ProbeResults { at, results }) {
                if let Action::RunHeal { steps: s, .. } = a {
                    steps = s;
                }
            }
            if !steps.is_empty() {
                break;
            }
        }
        assert_eq!(
            steps.len(),
            1,
            "one heal step, witness up = {witness_up}: {steps:?}"
        );
        let heal = plan(&HealConfig::from(&cfg), &steps[0]).expect("a command for the step");
        let req = HealRequest::new(&cfg, "inc-1", heal, vec![result("host-svc", "down")]);
        let r = run_heal(req, &red).await;
        assert_eq!(r.end, Some(End::Exited(0)), "{r:?}");
        let which = std::fs::read_to_string(dir.path().join("which")).unwrap();
        assert_eq!(which.trim(), expect);
    }
}

#[tokio::test]
async fn an_aborted_heal_leaves_nothing_running() {
    // What shutdown does to an in-flight heal: the task is aborted; its group must die with it.
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let cmd = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
    let req = request(dir.path(), &cmd, Duration::from_secs(300));
    let task = tokio::spawn(async move { run(req).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid: i32 = loop {
        if let Some(p) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "the heal did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(alive(pid));
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(wait_dead(pid).await, "heal child {pid} survived the abort");
}
