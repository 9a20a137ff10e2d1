//! A damaged newest snapshot is never skipped silently: with the newest
//! object under `snapshots/` garbled, resolving `latest` fails and names the
//! object, in the `kloset` CLI (restore, cat, ls, diff, info, sync) and in
//! the daemon's restore task; only an explicit opt-in (`--newest-readable`,
//! `snapshot = "latest-readable"`) takes the newest readable snapshot, and
//! then it warns naming the object and ends partial (exit code 3).

use crate::common;

use std::fs;
use std::path::Path;

use common::daemon::{Daemon, lit, tasks, wait_value, write_like_ansible};
use common::store::StoreFixture;
use serde_json::Value;

/// A store with two snapshots of `src` (`old.txt`, then `new.txt` too), the
/// newer one garbled. Returns the older snapshot's id and the garbled
/// object's key (`snapshots/ID`).
fn two_snapshots_newest_garbled(fx: &StoreFixture, src: &Path) -> (String, String) {
    fs::create_dir_all(src).expect("mkdir src");
    fs::write(src.join("old.txt"), b"old\n").expect("write");
    let src_s = src.to_str().expect("utf8");
    fx.must(&["create", "--kdf-memory-mib", "8"]);
    fx.must(&["backup", src_s]);
    let snapshot_objects = || -> Vec<(std::path::PathBuf, String)> {
        fx.objects()
            .into_iter()
            .filter(|(_, key)| key.starts_with("snapshots/"))
            .collect()
    };
    let first = snapshot_objects();
    assert_eq!(first.len(), 1, "{first:?}");
    fs::write(src.join("new.txt"), b"new\n").expect("write");
    fx.must(&["backup", src_s]);
    let (path, newest) = snapshot_objects()
        .into_iter()
        .find(|o| !first.contains(o))
        .expect("the second snapshot's object");
    let older = first[0].1.trim_start_matches("snapshots/").to_string();
    let mut bytes = fs::read(&path).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    fs::write(&path, bytes).expect("garble");
    (older, newest)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn cli_refuses_latest_when_a_snapshot_is_unreadable_unless_asked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fx = StoreFixture::local(&tmp.path().join("store"));
    let (older, garbled) = two_snapshots_newest_garbled(&fx, &tmp.path().join("src"));

    let out_dir = tmp.path().join("out");
    fs::create_dir_all(&out_dir).expect("mkdir out");
    let out_s = out_dir.to_str().expect("utf8");
    let refused = fx.run(&["restore", "-to", out_s, "latest"]);
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(
        refused.stderr_str().contains(&garbled)
            && refused.stderr_str().contains("--newest-readable"),
        "the error names the object and the way out: {}",
        refused.describe()
    );
    assert!(
        entries(&out_dir).is_empty(),
        "written: {:?}",
        entries(&out_dir)
    );

    // Every command that resolves `latest` refuses the same way.
    for args in [
        vec!["cat", "latest:/old.txt"],
        vec!["ls", "latest"],
        vec!["info", "latest"],
        vec!["diff", &older[..12], "latest"],
    ] {
        let out = fx.run(&args);
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.describe());
        assert!(
            out.stderr_str().contains(&garbled),
            "{args:?}: {}",
            out.describe()
        );
    }
    // An id prefix that cannot be the garbled object still resolves.
    let info = fx.run(&["info", &older[..12]]);
    assert_eq!(info.code, Some(0), "{}", info.describe());

    // Opted in: the older snapshot, a warning naming the object, exit 3.
    let taken = fx.run(&["restore", "--newest-readable", "-to", out_s, "latest"]);
    assert_eq!(taken.code, Some(3), "{}", taken.describe());
    assert!(
        taken.stderr_str().contains("warning") && taken.stderr_str().contains(&garbled),
        "{}",
        taken.describe()
    );
    assert_eq!(entries(&out_dir), ["old.txt"]);
    assert_eq!(fs::read(out_dir.join("old.txt")).expect("read"), b"old\n");
    let cat = fx.run(&["--newest-readable", "cat", "latest:/old.txt"]);
    assert_eq!(cat.code, Some(3), "{}", cat.describe());
    assert_eq!(cat.stdout_str(), "old\n");

    // sync of `latest` into another store (same passphrase): refused, then
    // opted in.
    let other = StoreFixture::local(&tmp.path().join("other"));
    other.must(&["create", "--kdf-memory-mib", "8"]);
    let to_pass = common::cli::TEST_PASSPHRASE;
    let syncer = fx.kloset.clone().env("KLOSET_PASSPHRASE_TO", to_pass);
    let sync = |extra: &[&str]| {
        let mut args = vec!["at", fx.location.as_str()];
        args.extend_from_slice(extra);
        args.extend(["sync", "latest", "to", other.location.as_str()]);
        syncer.run(args)
    };
    let refused = sync(&[]);
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(
        refused.stderr_str().contains(&garbled),
        "{}",
        refused.describe()
    );
    let taken = sync(&["--newest-readable"]);
    assert_eq!(taken.code, Some(3), "{}", taken.describe());
    assert!(
        taken.stderr_str().contains(&garbled),
        "{}",
        taken.describe()
    );
    let copied: Value = serde_json::from_str(&other.must(&["--json", "ls"])).expect("ls json");
    assert_eq!(
        copied["snapshots"].as_array().map(Vec::len),
        Some(1),
        "{copied}"
    );

    // `--latest N` could shift to older snapshots: refused unless asked;
    // `all` copies what it can read and says what it could not (exit 3).
    let per_source = |extra: &[&str], spec: &str, latest: Option<&str>| {
        let mut args = vec!["at", fx.location.as_str()];
        args.extend_from_slice(extra);
        args.extend(["sync", spec, "to", other.location.as_str()]);
        if let Some(n) = latest {
            args.extend(["--latest", n]);
        }
        syncer.run(args)
    };
    let refused = per_source(&[], "all", Some("1"));
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(
        refused.stderr_str().contains(&garbled) && refused.stderr_str().contains("newest 1"),
        "{}",
        refused.describe()
    );
    for (extra, latest) in [(&["--newest-readable"][..], Some("1")), (&[][..], None)] {
        let taken = per_source(extra, "all", latest);
        assert_eq!(taken.code, Some(3), "{}", taken.describe());
        assert!(
            taken.stderr_str().contains(&garbled) && taken.stderr_str().contains("not synced"),
            "{}",
            taken.describe()
        );
    }
}

/// The run of one-shot `name` once it has ended.
fn ended(d: &Daemon, name: &str) -> Value {
    wait_value(
        &format!("task {name} to end"),
        common::daemon::LIMIT,
        || {
            let v = d.try_json(&format!("/api/v1/tasks?task={name}&limit=1"))?;
            let t = tasks(&v).into_iter().next()?;
            (t["status"] != "running").then_some(t)
        },
    )
}

#[test]
fn daemon_restore_task_refuses_latest_unless_latest_readable() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    let fx = StoreFixture::local(&root.join("store"));
    let (older, garbled) = two_snapshots_newest_garbled(&fx, &root.join("src"));
    let pass = root.join("pass");
    fs::write(&pass, format!("{}\n", common::cli::TEST_PASSPHRASE)).expect("pass");
    for d in ["strict", "readable", "conf"] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let toml = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\n\n\
         [store.main]\nlocation = {}\npassphrase_file = {}\n\n\
         [destination.strict]\nlocation = {}\n\n[destination.readable]\nlocation = {}\n\n\
         [task.a-strict]\ntask = \"restore\"\nstore = \"main\"\ndestination = \"strict\"\n\n\
         [task.b-readable]\ntask = \"restore\"\nstore = \"main\"\ndestination = \"readable\"\n\
         snapshot = \"latest-readable\"\n",
        lit(&root.join("state")),
        lit(&root.join("store")),
        lit(&pass),
        lit(&root.join("strict")),
        lit(&root.join("readable")),
    );
    write_like_ansible(&root.join("conf"), "00.toml", &toml);
    let d = Daemon::start(&root.join("conf"), &root.join("log"), &[]);

    let strict = ended(&d, "a-strict");
    assert_eq!(strict["status"], "failed", "{strict}");
    let error = strict["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&garbled) && error.contains("latest-readable"),
        "{strict}"
    );
    assert!(
        entries(&root.join("strict")).is_empty(),
        "the strict restore wrote"
    );

    let readable = ended(&d, "b-readable");
    assert_eq!(readable["status"], "partial", "{readable}");
    assert_eq!(
        readable["stats"]["unreadable_snapshots_passed_over"],
        serde_json::json!([garbled]),
        "{readable}"
    );
    assert_eq!(readable["snapshot_id"], older.as_str(), "{readable}");
    assert!(
        readable["error"]
            .as_str()
            .is_some_and(|e| e.contains(&garbled)),
        "{readable}"
    );
    assert_eq!(entries(&root.join("readable")), ["old.txt"]);
}
