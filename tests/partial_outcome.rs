//! A backup that writes a snapshot but cannot read some files ends `partial` everywhere it is reported: the task and schedule in the API, `/metrics`, the viewer, and the `post` hook's `KLOSETD_STATUS`; the next clean backup is `succeeded` again.

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, wait_value, write_like_ansible};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);
const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The newest finished run of schedule `name` newer than `after`.
fn finished_after(d: &Daemon, name: &str, after: u64) -> Value {
    wait_value(&format!("a finished run of {name}"), LIMIT, || {
        d.tasks(&format!("schedule={name}&limit=1"))
            .into_iter()
            .find(|t| t["status"] != "running" && t["id"].as_u64().is_some_and(|id| id > after))
    })
}

#[test]
fn a_backup_missing_files_is_partial_in_the_api_metrics_viewer_and_hook() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    chmod(root, 0o755);
    let src = root.join("src");
    std::fs::create_dir(&src).expect("src");
    std::fs::write(src.join("readable.txt"), b"fine").expect("write");
    std::fs::write(src.join("secret.txt"), b"hidden").expect("write");
    chmod(&src.join("secret.txt"), 0o000);
    let conf = root.join("conf");
    std::fs::create_dir(&conf).expect("conf");
    std::fs::write(conf.join("pass"), "partial-outcome-pass\n").expect("pass");
    let hook_log = root.join("hook.log");
    write_like_ansible(
        &conf,
        "00-base.toml",
        &format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"../state\"\n\n\
             [store.main]\nlocation = \"../store\"\npassphrase_file = \"pass\"\n\n\
             [source.src]\nlocation = \"../src\"\n\
             post = [\"/bin/sh\", \"-c\", \"echo $KLOSETD_STATUS >> {}\"]\n\n\
             [schedule.often]\ntask = \"backup\"\nsource = \"src\"\nstore = \"main\"\n\
             cron = \"*/2 * * * * *\"\n",
            hook_log.display()
        ),
    );
    // Root reads every file, so the daemon runs as nobody here.
    let cmd = if is_root() {
        let bin = root.join("klosetd");
        std::fs::copy(env!("CARGO_BIN_EXE_klosetd"), &bin).expect("copy klosetd");
        let chown = Command::new("chown")
            .arg("-R")
            .arg(format!("{NOBODY}:{NOBODY}"))
            .arg(root)
            .status()
            .expect("chown");
        assert!(chown.success());
        // Still unreadable to its new owner.
        chmod(&src.join("secret.txt"), 0o000);
        let mut c = Command::new("setpriv");
        c.args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".to_owned(),
        ])
        .arg(bin);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_klosetd"))
    };
    let mut d = Daemon::start_with(cmd, &conf, &root.join("log"), &[("HOME", "/nonexistent")]);

    let run = finished_after(&d, "often", 0);
    assert_eq!(run["status"], "partial", "{run}");
    assert!(
        run["snapshot_id"].is_string(),
        "a snapshot was written: {run}"
    );
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("secret.txt"),
        "the error names the file: {run}"
    );
    let id = run["id"].as_u64().expect("id");

    let schedule = d.json("/api/v1/schedules/often");
    assert_eq!(schedule["last_status"], "partial", "{schedule}");
    assert!(
        !schedule["last_success"].is_null(),
        "a partial backup counts as the last success: {schedule}"
    );
    let partial = d.tasks("status=partial");
    assert!(partial.iter().any(|t| t["id"] == id), "filter by status");
    let (_, metrics) = d.get("/metrics");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("klosetd_tasks_total{kind=\"backup\",status=\"partial\"}"))
        .unwrap_or_else(|| panic!("no partial series:\n{metrics}"));
    let count: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("value");
    assert!(count >= 1.0, "{line}");
    common::promtool::check_metrics(&metrics);
    let series = |name: &str| {
        metrics
            .lines()
            .any(|l| l.starts_with(&format!("{name}{{schedule=\"often\"}} ")))
    };
    assert!(series("klosetd_schedule_last_success_timestamp_seconds"));
    assert!(series("klosetd_schedule_last_run_timestamp_seconds"));
    assert!(
        !series("klosetd_schedule_last_failure_timestamp_seconds"),
        "nothing failed"
    );
    let (code, page) = d.get("/ui/schedules/often");
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("partial"), "the viewer shows it:\n{page}");
    let hooks = std::fs::read_to_string(&hook_log).expect("hook ran");
    assert_eq!(hooks.lines().next(), Some("partial"), "{hooks}");

    // The file becomes readable: the next backup is a full success.
    chmod(&src.join("secret.txt"), 0o644);
    let clean = wait_value("a clean backup", LIMIT, || {
        d.tasks("schedule=often&status=succeeded&limit=1")
            .into_iter()
            .next()
    });
    assert!(clean["id"].as_u64() > Some(id), "{clean}");
    assert!(clean["error"].is_null(), "{clean}");
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
}
