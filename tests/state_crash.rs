//! kill -9 durability of the daemon's state database: a killed writer loses no commit it reported, and the file stays intact.
//!
//! The test binary re-executes itself as the writer: `writer_child` does
//! nothing unless `KLOSETD_STATE_CRASH_DB` is set. The writer prints a line
//! after each commit; the parent reads those lines (its only synchronization),
//! kills the writer with SIGKILL mid-stream, reopens the database and checks
//! it. Several rounds run on the same file, each resuming after a crash.

use chrono::Utc;
use klosetd::state::{
    INTERRUPTED_ERROR, NewTask, Origin, Outcome, StateDb, TaskFilter, TaskId, TaskKind, TaskStatus,
};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ENV_DB: &str = "KLOSETD_STATE_CRASH_DB";
/// Commits the parent waits for before each kill.
const COMMITS_BEFORE_KILL: usize = 300;
const ROUNDS: usize = 3;

/// The writer, when run as the child; a no-op otherwise.
#[test]
fn writer_child() {
    let Some(path) = std::env::var_os(ENV_DB) else {
        return;
    };
    let mut db = StateDb::open(Path::new(&path)).expect("writer: open");
    let mut out = std::io::stdout().lock();
    // A safety net if the parent vanished without killing us; writing to a
    // closed pipe also fails and ends the loop.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut i: u64 = 0;
    while Instant::now() < deadline {
        let task = NewTask {
            kind: TaskKind::Backup,
            origin: Origin::Schedule("nightly".into()),
            store: Some("main".into()),
            scheduled_for: Some(Utc::now()),
            started_at: Utc::now(),
            revision: Some("r1".into()),
        };
        let id = db.start_task(&task).expect("writer: start");
        writeln!(out, "committed {id}").expect("writer: stdout");
        out.flush().expect("writer: flush");
        if i.is_multiple_of(2) {
            let outcome = Outcome {
                status: TaskStatus::Succeeded,
                finished_at: Utc::now(),
                stats: Some(serde_json::json!({ "i": i, "bytes_added": i * 1000 })),
                error: None,
                snapshot_id: Some(format!("snap{i}")),
            };
            db.finish_task(id, &outcome).expect("writer: finish");
            db.record_schedule_finished("nightly", TaskStatus::Succeeded, Utc::now(), 1, Some(i))
                .expect("writer: schedule");
            writeln!(out, "finished {id}").expect("writer: stdout");
            out.flush().expect("writer: flush");
        }
        i += 1;
    }
}

/// The libtest name of [`writer_child`] in the binary that includes this file:
/// its module path less the crate name (`state_crash::writer_child` in e2e).
fn writer_child_name() -> String {
    match module_path!().split_once("::") {
        Some((_crate, module)) => format!("{module}::writer_child"),
        None => "writer_child".to_owned(),
    }
}

#[test]
fn a_killed_writer_loses_no_reported_commit() {
    if std::env::var_os(ENV_DB).is_some() {
        return; // We are the child; only writer_child runs here.
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state").join("state.db");
    let exe = std::env::current_exe().expect("current exe");
    let mut committed = BTreeSet::new();
    let mut finished = BTreeSet::new();

    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .arg(writer_child_name())
            .args(["--exact", "--nocapture", "--test-threads=1"])
            .env(ENV_DB, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("child stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < COMMITS_BEFORE_KILL {
            let Some(line) = lines.next() else {
                let status = child.wait().expect("wait");
                panic!("round {round}: writer ended early ({status}) after {seen} commits");
            };
            let line = line.expect("read writer output");
            if let Some(id) = line.strip_prefix("committed ") {
                committed.insert(id.parse::<i64>().expect("id"));
                seen += 1;
            } else if let Some(id) = line.strip_prefix("finished ") {
                finished.insert(id.parse::<i64>().expect("id"));
            }
        }
        child.kill().expect("SIGKILL writer");
        let status = child.wait().expect("wait writer");
        assert!(!status.success(), "round {round}: the writer was killed");
        // Lines already in the pipe were committed before the kill too.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("committed ") {
                committed.insert(id.parse::<i64>().expect("id"));
            } else if let Some(id) = line.strip_prefix("finished ") {
                finished.insert(id.parse::<i64>().expect("id"));
            }
        }

        let mut db = StateDb::open(&path).expect("reopen after kill -9");
        assert_eq!(
            db.integrity_check().expect("integrity check"),
            "ok",
            "round {round}"
        );
        for &id in &committed {
            let task = db
                .get_task(TaskId(id))
                .expect("read task")
                .unwrap_or_else(|| panic!("round {round}: reported commit {id} is missing"));
            if finished.contains(&id) {
                assert_eq!(
                    task.status,
                    TaskStatus::Succeeded,
                    "round {round}: task {id}"
                );
                assert!(task.stats.is_some() && task.snapshot_id.is_some());
            }
        }
        // The daemon's start-up step: runs left `running` become failed.
        db.mark_interrupted_running(INTERRUPTED_ERROR, Utc::now())
            .expect("mark interrupted");
        let running = db
            .list_tasks(&TaskFilter {
                status: Some(TaskStatus::Running),
                ..TaskFilter::default()
            })
            .expect("list");
        assert!(running.is_empty(), "round {round}: {running:?}");
        let state = db
            .schedule_state("nightly")
            .expect("schedule")
            .expect("recorded");
        assert_eq!(state.last_status, Some(TaskStatus::Succeeded));
    }
    assert!(committed.len() >= ROUNDS * COMMITS_BEFORE_KILL);
}
