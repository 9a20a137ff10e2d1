//! One-shot tasks end to end with the real daemon:
//!
//! - declared next to a brand-new store (an empty directory), a one-shot
//!   backup `a-backup` and a one-shot restore `b-restore` of `latest` both
//!   succeed: the backup waits for the store's readiness test to initialise
//!   it, and the restore (same store, declared after) runs after the backup,
//!   although two task slots would let them run at once;
//! - a one-shot whose destination is not ready stays pending (not claimed,
//!   no run, its reason in `/api/v1/status`) and runs once it is ready;
//! - with `max_concurrent_tasks = 1`, a run waiting for the slot has its
//!   `queued_at` when it was claimed and its `started_at` when the slot came,
//!   not before the other run finished; durations count from `started_at`.

use crate::common;

use std::fs;
use std::path::Path;

use common::daemon::{Daemon, LIMIT, lit, time, wait_for, write_like_ansible};
use common::rng::SplitMix64;
use serde_json::Value;

const PASS: &str = "oneshot-order-passphrase-Lw3p";

fn daemon_toml(root: &Path, slots: u32) -> String {
    fs::write(root.join("pass"), format!("{PASS}\n")).expect("pass");
    format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\nmax_concurrent_tasks = {slots}\n\n",
        lit(&root.join("state")),
    )
}

fn store(root: &Path, name: &str) -> String {
    let dir = root.join(format!("store-{name}"));
    fs::create_dir_all(&dir).expect("empty store dir");
    format!(
        "[store.{name}]\nlocation = {}\npassphrase_file = {}\n\n",
        lit(&dir),
        lit(&root.join("pass"))
    )
}

/// The run of one-shot `name`, if recorded.
fn run_of(d: &Daemon, name: &str) -> Option<Value> {
    let v = d.try_json(&format!("/api/v1/tasks?task={name}&limit=10"))?;
    let list = common::daemon::tasks(&v);
    assert!(list.len() <= 1, "one-shot {name} ran more than once: {v}");
    list.into_iter().next()
}

/// `/api/v1/status`'s entry for one-shot `name`.
fn oneshot(d: &Daemon, name: &str) -> Value {
    d.status()["oneshots"]
        .as_array()
        .and_then(|l| l.iter().find(|o| o["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

fn t(v: &Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    time(&v[field]).unwrap_or_else(|| panic!("{field} of {v}"))
}

#[test]
fn a_backup_and_a_restore_declared_with_a_new_store_run_in_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    let src = root.join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    let content = SplitMix64::new(11).bytes(3 * 1024 * 1024 + 5);
    fs::write(src.join("sub/data.bin"), &content).expect("write");
    fs::write(src.join("hello.txt"), b"hello\n").expect("write");
    fs::create_dir_all(root.join("out")).expect("mkdir out");
    fs::create_dir_all(root.join("conf")).expect("mkdir conf");
    // Two slots: only readiness and the declaration order (a-backup, then
    // b-restore, on one store) keep the restore after the backup.
    let toml = format!(
        "{}{}[source.src]\nlocation = {}\n\n[destination.out]\nlocation = {}\n\n\
         [task.a-backup]\ntask = \"backup\"\nsource = \"src\"\nstore = \"fresh\"\n\n\
         [task.b-restore]\ntask = \"restore\"\nstore = \"fresh\"\nsnapshot = \"latest\"\n\
         destination = \"out\"\n",
        daemon_toml(&root, 2),
        store(&root, "fresh"),
        lit(&src),
        lit(&root.join("out")),
    );
    write_like_ansible(&root.join("conf"), "00-all.toml", &toml);
    let d = Daemon::start(&root.join("conf"), &root.join("log"), &[]);
    let backup = d.wait_task("a-backup");
    let restore = d.wait_task("b-restore");
    assert!(
        t(&restore, "started_at") >= t(&backup, "finished_at"),
        "the restore started before the backup ended: {backup} {restore}"
    );
    assert_eq!(restore["snapshot_id"], backup["snapshot_id"], "{restore}");
    // A one-shot restore is a real restore: into the destination itself.
    let restored = root.join("out");
    assert!(
        fs::read(restored.join("sub/data.bin")).expect("restored file") == content,
        "restored bytes"
    );
    assert_eq!(
        fs::read(restored.join("hello.txt")).expect("restored"),
        b"hello\n"
    );
    // Both shown in declaration order, handled.
    wait_for("both one-shots done", LIMIT, || {
        let s = d.status();
        let names: Vec<&str> = s["oneshots"]
            .as_array()
            .map(|l| l.iter().filter_map(|o| o["name"].as_str()).collect())
            .unwrap_or_default();
        let done = s["oneshots"]
            .as_array()
            .is_some_and(|l| l.iter().all(|o| o["condition"]["reason"] == "Done"));
        (names == ["a-backup", "b-restore"] && done)
            .then_some(())
            .ok_or(s.to_string())
    });
    let log = d.log_text();
    assert!(!log.contains(PASS), "the log shows the passphrase");
}

#[test]
fn a_oneshot_waits_for_a_destination_that_is_not_ready_then_runs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    let src = root.join("src");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("f.txt"), b"restore me\n").expect("write");
    // Not a directory: the destination's test fails.
    fs::write(root.join("out"), b"in the way").expect("write");
    fs::create_dir_all(root.join("conf")).expect("mkdir conf");
    let toml = format!(
        "{}{}[source.src]\nlocation = {}\n\n[destination.out]\nlocation = {}\n\n\
         [task.a-backup]\ntask = \"backup\"\nsource = \"src\"\nstore = \"main\"\n\n\
         [task.b-restore]\ntask = \"restore\"\nstore = \"main\"\ndestination = \"out\"\n",
        daemon_toml(&root, 2),
        store(&root, "main"),
        lit(&src),
        lit(&root.join("out")),
    );
    write_like_ansible(&root.join("conf"), "00.toml", &toml);
    let d = Daemon::start(&root.join("conf"), &root.join("log"), &[]);
    let backup = d.wait_task("a-backup");
    wait_for("b-restore pending on its destination", LIMIT, || {
        let o = oneshot(&d, "b-restore");
        let c = &o["condition"];
        (c["ready"] == false
            && c["reason"] == "DependencyNotReady"
            && c["message"]
                .as_str()
                .is_some_and(|m| m.contains("destination.out")))
        .then_some(())
        .ok_or(o.to_string())
    });
    assert!(run_of(&d, "b-restore").is_none(), "a pending one-shot ran");
    let problems = d.status()["problems"].to_string();
    assert!(problems.contains("task.b-restore"), "{problems}");
    // Fixed: the destination's retry (now, on SIGHUP) makes it ready.
    fs::remove_file(root.join("out")).expect("rm");
    fs::create_dir(root.join("out")).expect("mkdir out");
    d.signal("HUP");
    let restore = d.wait_task("b-restore");
    assert!(t(&restore, "started_at") >= t(&backup, "finished_at"));
    assert_eq!(restore["snapshot_id"], backup["snapshot_id"], "{restore}");
    assert_eq!(
        fs::read(root.join("out").join("f.txt")).expect("restored"),
        b"restore me\n"
    );
    assert_eq!(oneshot(&d, "b-restore")["condition"]["reason"], "Done");
}

#[test]
fn a_run_waiting_for_the_only_slot_is_queued_not_started() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    // A backup long enough to be seen running: many files and some data.
    let big = root.join("big");
    let mut rng = SplitMix64::new(5);
    for i in 0..40 {
        let dir = big.join(format!("d{i:02}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for j in 0..250 {
            fs::write(dir.join(format!("f{j:03}")), rng.bytes(64)).expect("write");
        }
    }
    fs::write(big.join("blob.bin"), rng.bytes(64 * 1024 * 1024)).expect("write");
    fs::create_dir_all(root.join("small")).expect("mkdir");
    fs::write(root.join("small/s.txt"), b"small\n").expect("write");
    fs::create_dir_all(root.join("conf")).expect("mkdir conf");
    let toml = format!(
        "{}{}{}[source.big]\nlocation = {}\n\n[source.small]\nlocation = {}\n\n\
         [task.first]\ntask = \"backup\"\nsource = \"big\"\nstore = \"one\"\n",
        daemon_toml(&root, 1),
        store(&root, "one"),
        store(&root, "two"),
        lit(&big),
        lit(&root.join("small")),
    );
    write_like_ansible(&root.join("conf"), "00.toml", &toml);
    let d = Daemon::start(&root.join("conf"), &root.join("log"), &[]);
    d.wait_ready();
    // Once `first` holds the only slot, `second` (another store, ready)
    // is declared: it is claimed at once and waits for the slot.
    wait_for("first holding the slot", LIMIT, || {
        let s = d.status();
        let holds = s["running"].as_array().is_some_and(|l| {
            l.iter()
                .any(|r| r["task"] == "first" && r["waiting_for_slot"] == false)
        });
        if !holds && run_of(&d, "first").is_some_and(|r| r["status"] != "running") {
            panic!("first ended before it was seen running: make its source bigger");
        }
        holds.then_some(()).ok_or(s.to_string())
    });
    write_like_ansible(
        &root.join("conf"),
        "10-second.toml",
        "[task.second]\ntask = \"backup\"\nsource = \"small\"\nstore = \"two\"\n",
    );
    let first = d.wait_task("first");
    let second = d.wait_task("second");
    assert!(
        t(&second, "queued_at") < t(&first, "finished_at"),
        "second was claimed while first ran (first too quick?): {first} {second}"
    );
    assert!(
        t(&second, "started_at") >= t(&first, "finished_at"),
        "second started before first finished: {first} {second}"
    );
    assert!(
        t(&second, "queued_at") < t(&second, "started_at"),
        "{second}"
    );
    assert!(t(&first, "queued_at") <= t(&first, "started_at"), "{first}");
    let duration = second["duration_ms"].as_i64().expect("duration");
    let run = (t(&second, "finished_at") - t(&second, "started_at")).num_milliseconds();
    assert_eq!(
        duration, run,
        "the duration counts from started_at: {second}"
    );
    let one = d.json(&format!("/api/v1/tasks/{}", second["id"]));
    assert_eq!(one["queued_at"], second["queued_at"], "{one}");
}
