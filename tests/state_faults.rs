//! The state database on its worst days, with the real daemon: corrupt at start (moved aside, reported until acknowledged, a fresh one used), locked by another process, and on a full disk (faults on `/readyz` that clear by themselves once the cause is gone).

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::daemon::{Daemon, wait_for, write_like_ansible};
use common::small_disk::SmallDisk;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);
const PASS: &str = "state-faults-passphrase-5c2a";

/// A config whose schedule backs up a small directory every two seconds,
/// with the state in `state_dir`.
fn config(root: &Path, state_dir: &Path) -> PathBuf {
    let conf = root.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(conf.join("pass"), format!("{PASS}\n")).expect("pass");
    std::fs::create_dir_all(root.join("data")).expect("data");
    std::fs::write(root.join("data/file"), b"some data").expect("file");
    write_like_ansible(
        &conf,
        "00-base.toml",
        &format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\n\
             [store.main]\nlocation = \"../store\"\npassphrase_file = \"pass\"\n\n\
             [source.data]\nlocation = \"../data\"\n\n\
             [schedule.often]\ntask = \"backup\"\nsource = \"data\"\nstore = \"main\"\n\
             cron = \"*/2 * * * * *\"\n",
            state_dir.display()
        ),
    );
    conf
}

/// The id of the newest successful backup (0 with none).
fn succeeded(d: &Daemon) -> u64 {
    d.tasks("status=succeeded&kind=backup&limit=1")
        .first()
        .and_then(|t| t["id"].as_u64())
        .unwrap_or(0)
}

/// Waits for `/readyz` to be 503 with a body containing `needle`.
fn wait_problem(d: &Daemon, needle: &str) -> String {
    let mut seen = String::new();
    wait_for(&format!("/readyz to report {needle:?}"), LIMIT, || {
        let (code, body) = d.get("/readyz");
        seen = body.clone();
        (code == 503 && body.contains(needle))
            .then_some(())
            .ok_or(format!("{code}: {body}"))
    });
    seen
}

/// Waits for a backup newer than the last one recorded, then for `/readyz`
/// to be 200 again.
fn recovers(d: &Daemon) {
    let before = succeeded(d);
    wait_for("backups recorded again", LIMIT, || {
        (succeeded(d) > before)
            .then_some(())
            .ok_or_else(|| format!("{}\nlog:\n{}", d.get("/readyz").1, d.log_text()))
    });
    wait_ready(d);
}

fn wait_ready(d: &Daemon) {
    wait_for("/readyz to be 200", LIMIT, || {
        let (code, body) = d.get("/readyz");
        (code == 200).then_some(()).ok_or(body)
    });
}

#[test]
fn a_corrupt_state_database_is_moved_aside_reported_and_replaced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let garbage = b"a state database garbled by a failed disk ".repeat(300);
    std::fs::write(state.join("state.db"), &garbage).expect("garbage");
    let conf = config(tmp.path(), &state);
    let mut d = Daemon::start(&conf, &tmp.path().join("log"), &[]);

    let body = wait_problem(&d, "moved aside");
    let moved: Vec<PathBuf> = std::fs::read_dir(&state)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("state.db.corrupt-"))
        })
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(
        body.contains(&moved[0].display().to_string()),
        "the problem names the moved copy: {body}"
    );
    assert_eq!(
        std::fs::read(moved[0].join("state.db")).expect("kept"),
        garbage,
        "the damaged file is kept as it was"
    );
    assert!(
        d.log_text().contains("moved aside"),
        "the log says so: {}",
        d.log_text()
    );
    // The fresh database records runs.
    wait_for("a backup recorded in the new database", LIMIT, || {
        (succeeded(&d) >= 1)
            .then_some(())
            .ok_or(d.json("/api/v1/tasks").to_string())
    });
    let status: Value = d.json("/api/v1/status");
    assert!(
        status["problems"].to_string().contains("moved aside"),
        "{status}"
    );

    // Acknowledged by archiving the copy: the next reload clears it.
    std::fs::remove_dir_all(&moved[0]).expect("archive");
    d.signal("HUP");
    wait_ready(&d);
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
}

/// A Python process holding an exclusive SQLite lock on `db` until dropped.
struct Locker {
    child: Child,
}

impl Locker {
    fn hold(db: &Path) -> Locker {
        let script = "import sqlite3, sys\n\
            c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)\n\
            c.execute('BEGIN EXCLUSIVE')\n\
            print('locked', flush=True)\n\
            sys.stdin.read()\n\
            c.execute('ROLLBACK')\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line.trim(), "locked");
        Locker { child }
    }

    fn release(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "{status}");
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_locked_state_database_is_a_fault_until_the_lock_is_released() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let conf = config(tmp.path(), &state);
    let mut d = Daemon::start(&conf, &tmp.path().join("log"), &[]);
    wait_for("a first backup", LIMIT, || {
        (succeeded(&d) >= 1).then_some(()).ok_or(String::new())
    });
    wait_ready(&d);

    let lock = Locker::hold(&state.join("state.db"));
    // Writes wait out the busy timeout (10 s), then fail and say why; the
    // endpoint keeps answering (readers are not blocked in WAL mode).
    wait_problem(&d, "database is locked");
    assert_eq!(d.get("/healthz").0, 200);
    lock.release();
    recovers(&d);
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

#[test]
fn a_full_state_disk_is_a_fault_until_space_is_freed() {
    if !is_root() {
        if std::env::var_os("KLOSET_SKIP_ROOT_TESTS").is_some() {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return;
        }
        panic!("this test needs root (or KLOSET_SKIP_ROOT_TESTS=1 to skip it)");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let disk = SmallDisk::mount(&state, "4m");
    let conf = config(tmp.path(), &state);
    let mut d = Daemon::start(&conf, &tmp.path().join("log"), &[]);
    wait_for("a first backup", LIMIT, || {
        (succeeded(&d) >= 1).then_some(()).ok_or(String::new())
    });
    wait_ready(&d);

    let filler = state.join("filler");
    disk.fill(&filler);
    wait_problem(&d, "full");
    assert_eq!(d.get("/healthz").0, 200);
    let status = d.json("/api/v1/status");
    assert!(status["problems"].to_string().contains("full"), "{status}");

    std::fs::remove_file(&filler).expect("free space");
    recovers(&d);
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
    // Nothing was lost from the history: the database is sound.
    let check = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])",
        ])
        .arg(state.join("state.db"))
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "ok");
    drop(disk);
}
