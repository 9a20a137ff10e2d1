//! `klosetd run` end to end, driven only through files and signals: a
//! one-shot backup cancelled by SIGTERM (exit 0, recorded as cancelled, no
//! partial snapshot), then a restart where a schedule fires every two
//! seconds on its cron and the one-shot never runs again.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cli::Kloset;
use common::rng::SplitMix64;

const PASS: &str = "daemon test passphrase";

fn start(conf: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .args(["run", "--config"])
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start klosetd")
}

fn sigterm_and_wait(child: &mut Child, within: Duration) -> i32 {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "klosetd did not stop within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn snapshots(store: &Path) -> Vec<serde_json::Value> {
    let out =
        Kloset::new()
            .passphrase(PASS)
            .run(["--json", "at", store.to_str().expect("utf8"), "ls"]);
    if !out.success() {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v["snapshots"].as_array().cloned().unwrap_or_default()
}

fn tagged(snaps: &[serde_json::Value], tag: &str) -> usize {
    snaps
        .iter()
        .filter(|s| {
            s["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x == tag))
        })
        .count()
}

#[test]
fn schedules_one_shots_sigterm_and_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let (conf, small, big, store) = (
        root.join("conf"),
        root.join("small"),
        root.join("big"),
        root.join("store"),
    );
    for d in [&conf, &small, &big] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(small.join("a.txt"), b"hello").expect("write");
    // Big enough that a backup is still running when SIGTERM arrives.
    let mut rng = SplitMix64::new(3);
    for i in 0..6 {
        std::fs::write(big.join(format!("blob{i}")), rng.bytes(32 << 20)).expect("write");
    }
    std::fs::write(conf.join("pass"), format!("{PASS}\n")).expect("write");
    std::fs::write(
        conf.join("10.toml"),
        r#"[daemon]
state_dir = "../state"
listen = "127.0.0.1:0"
max_concurrent_tasks = 2

[store.main]
location = "../store"
passphrase_file = "pass"

[source.small]
location = "../small"

[source.big]
location = "../big"

[schedule.often]
task = "backup"
source = "small"
store = "main"
cron = "*/2 * * * * *"
tags = ["scheduled"]

[task.once]
task = "backup"
source = "big"
store = "main"
tags = ["once"]
"#,
    )
    .expect("write");

    // First run: SIGTERM while the one-shot backs up the big source. The
    // backup is cancelled cleanly: exit 0, recorded as cancelled, no snapshot.
    let log = root.join("run1.log");
    let mut daemon = start(&conf, &log);
    wait_for(
        "the one-shot backup to start",
        Duration::from_secs(60),
        || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("task started origin=once")),
    );
    let code = sigterm_and_wait(&mut daemon, Duration::from_secs(40));
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(code, 0, "clean exit on SIGTERM; log:\n{log_text}");
    // Its task id depends on whether `often` fired first.
    assert!(
        log_text
            .lines()
            .any(|l| l.contains("task finished origin=once task=")
                && l.contains("status=\"cancelled\"")),
        "{log_text}"
    );
    let snaps = snapshots(&store);
    assert_eq!(
        tagged(&snaps, "once"),
        0,
        "a cancelled backup leaves no snapshot"
    );
    let check = Kloset::new().passphrase(PASS).run([
        "at",
        store.to_str().expect("utf8"),
        "check",
        "--read-data",
    ]);
    assert!(
        check.success() && check.stdout_str().starts_with("ok:"),
        "{}",
        check.describe()
    );

    // Second run: the schedule fires on its cron every two seconds; the
    // one-shot, already handled, never runs again.
    let once_before = tagged(&snaps, "once");
    let db = rusqlite::Connection::open(root.join("state/state.db")).expect("state db");
    let last_id: i64 = db
        .query_row("SELECT coalesce(max(id), 0) FROM task_runs", [], |r| {
            r.get(0)
        })
        .expect("last run id");
    // The second daemon's runs of `often`: (cron time, status, reason).
    let runs = || -> Vec<(i64, String, String)> {
        let mut stmt = db
            .prepare(
                "SELECT scheduled_for, status, coalesce(reason, '') FROM task_runs \
                 WHERE origin_name = 'often' AND id > ?1 ORDER BY id",
            )
            .expect("query");
        stmt.query_map([last_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("rows")
        .map(|row| {
            let (t, status, reason) = row.expect("row");
            let t = chrono::DateTime::parse_from_rfc3339(&t).expect("time");
            (t.timestamp(), status, reason)
        })
        .collect()
    };
    let log2 = root.join("run2.log");
    let mut daemon = start(&conf, &log2);
    wait_for("three more scheduled runs", Duration::from_secs(60), || {
        runs().iter().filter(|r| r.1 == "succeeded").count() >= 3
    });
    // The state database accounts for every cron time while the daemon ran
    // exactly once: fired, or skipped because the previous run (slow on a
    // loaded machine) was still going; never two runs at once, never a
    // cron time lost. The runs missed while it was down (catch_up = false)
    // are one `skipped` record at start.
    let all = runs();
    let ran: Vec<&(i64, String, String)> = all
        .iter()
        .filter(|r| !r.2.contains("missed while the daemon was not running"))
        .collect();
    let times: Vec<i64> = ran.iter().map(|r| r.0).collect();
    assert!(
        times.len() >= 3 && times.iter().all(|t| t % 2 == 0),
        "{all:?}"
    );
    assert!(
        times.windows(2).all(|w| w[1] - w[0] == 2),
        "one record per cron time: {all:?}"
    );
    assert!(
        ran.iter()
            .all(|r| r.1 == "succeeded" || r.1 == "running" || r.2.contains("still running")),
        "every cron time ran, or was skipped because its previous run still ran: {all:?}"
    );
    assert_eq!(sigterm_and_wait(&mut daemon, Duration::from_secs(40)), 0);
    assert_eq!(
        tagged(&snapshots(&store), "once"),
        once_before,
        "the one-shot task never runs twice"
    );
    let log2_text = std::fs::read_to_string(&log2).expect("log");
    assert!(log2_text.contains("already handled"), "{log2_text}");
}
