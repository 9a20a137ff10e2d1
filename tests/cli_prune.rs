//! End-to-end `prune`, `locks` and `upgrade` with the real `kloset` binary:
//! prune gives space back on local disk and on a real S3 server and every
//! kept snapshot still restores bit-exact; a backup stopped with SIGSTOP
//! past the stale period is taken over, fails when continued, and nothing
//! it wrote stays referenced; a version 1 store refuses prune until one
//! `upgrade`.
//!
//! The stale period is shortened with `KLOSET_LOCK_STALE_AFTER`, the
//! documented test setting (kloset/FORMAT.md §16).

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::cli::TEST_PASSPHRASE;
use common::daemon::{lit, wait_for, wait_until};
use common::rng::SplitMix64;
use common::store::StoreFixture;
use common::tree::assert_trees_equal;
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn write_random(path: &Path, seed: u64, len: usize) {
    std::fs::write(path, SplitMix64::new(seed).bytes(len)).expect("write");
}

/// Sum of the sizes of the store's packs.
fn pack_bytes(fx: &StoreFixture) -> u64 {
    fx.objects()
        .iter()
        .filter(|(_, k)| k.starts_with("packs/"))
        .map(|(p, _)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn count_under(fx: &StoreFixture, prefix: &str) -> usize {
    fx.objects()
        .iter()
        .filter(|(_, k)| k.starts_with(prefix))
        .count()
}

fn snapshot_ids(fx: &StoreFixture) -> Vec<String> {
    json(&fx.must(&["--json", "ls"]))["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

fn restore_matches(fx: &StoreFixture, snapshot: &str, expected: &Path, scratch: &Path) {
    let out = scratch.join(format!("restore-{}", &snapshot[..8]));
    let _ = std::fs::remove_dir_all(&out);
    fx.must(&["restore", "--to", out.to_str().expect("utf8"), snapshot]);
    assert_trees_equal(expected, &out);
    std::fs::remove_dir_all(&out).expect("cleanup");
}

fn prune_suite(fx: &StoreFixture, tmp: &Path) {
    let src = tmp.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    write_random(&src.join("keep.bin"), 1, 1 << 20);
    write_random(&src.join("gone.bin"), 2, 3 << 20);
    let src_s = src.to_str().expect("utf8");
    fx.must(&["create", "--kdf-memory-mib", "8", "--pack-size", "64KiB"]);
    fx.must(&["backup", src_s]);
    std::fs::remove_file(src.join("gone.bin")).expect("rm");
    write_random(&src.join("new.bin"), 3, 1 << 20);
    fx.must(&["backup", src_s]);
    fx.must(&["forget", "--keep-last", "1"]);
    let kept = snapshot_ids(fx);
    assert_eq!(kept.len(), 1);

    // A dry run reports what would go and changes nothing.
    let objects = fx.objects();
    let dry = json(&fx.must(&["--json", "prune", "--dry-run"]));
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert!(
        dry["bytes_freed"].as_u64().expect("bytes") >= 2 << 20,
        "gone.bin's 3 MiB are garbage: {dry}"
    );
    assert_eq!(fx.objects(), objects, "a dry run changes nothing");
    let text = fx.must(&["prune", "--dry-run"]);
    assert!(text.contains("dry run: would delete"), "{text}");

    // The real prune gives the space back and says what it did.
    let before = pack_bytes(fx);
    let report = json(&fx.must(&["--json", "prune", "--grace", "0s"]));
    let after = pack_bytes(fx);
    let freed = report["bytes_freed"].as_u64().expect("freed");
    let written = report["bytes_repack_written"].as_u64().expect("written");
    assert!(freed >= 2 << 20, "{report}");
    assert!(report["packs_deleted"].as_u64() > Some(0), "{report}");
    assert_eq!(before - after + written, freed, "{report}");
    assert_eq!(report["packs_missing"], 0, "{report}");
    assert_eq!(report["unfound_blobs"], 0, "{report}");
    assert_eq!(count_under(fx, "marks/"), 0, "the mark is gone");
    let locks = json(&fx.must(&["--json", "locks"]));
    assert_eq!(locks["locks"], serde_json::json!([]), "{locks}");
    assert_eq!(fx.must(&["locks"]).trim(), "no locks");

    // Every kept snapshot restores bit-exact, and the store checks clean.
    assert_eq!(snapshot_ids(fx), kept);
    restore_matches(fx, &kept[0], &src, tmp);
    fx.must(&["check", "--read-data"]);

    // A second prune finds nothing; the text form says what it did.
    let again = fx.must(&["prune", "--grace", "0s"]);
    assert!(again.contains("deleted 0 pack(s), freed 0 B"), "{again}");
}

#[test]
fn prune_gives_space_back_on_local_disk() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fx = StoreFixture::local(&tmp.path().join("store"));
    prune_suite(&fx, tmp.path());
}

#[test]
fn prune_gives_space_back_on_s3() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(fx) = StoreFixture::s3("prune") else {
        eprintln!("KLOSET_SKIP_S3=1: skipped");
        return;
    };
    prune_suite(&fx, tmp.path());
}

/// A backup stopped (SIGSTOP) past the stale period while it holds its
/// lock: a prune watches the lock unchanged for the stale period, takes
/// it over and deletes the backup's unreferenced packs. Continued, the
/// backup finds its lock lost and fails without a snapshot; nothing it
/// wrote is referenced, the store checks clean, and the next prune
/// collects what it uploaded after waking.
#[test]
fn a_backup_stopped_past_the_stale_period_fails_and_leaves_nothing_referenced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let store = root.join("store");
    let conf = root.join("conf");
    let go = root.join("GO");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(conf.join("pass"), TEST_PASSPHRASE).expect("pass");
    let script = format!(
        "head -c 40000000 /dev/urandom; while [ ! -e {} ]; do sleep 0.05; done",
        lit(&go)
    );
    std::fs::write(
        conf.join("10.toml"),
        format!(
            "[store.main]\nlocation = {}\npassphrase_file = \"pass\"\n\n\
             [source.slow]\nintegration = \"exec\"\ncommand = [\"sh\", \"-c\", {}]\nfile = \"slow.bin\"\n",
            lit(&store),
            serde_json::to_string(&script).expect("quote")
        ),
    )
    .expect("config");
    let mut fx = StoreFixture::local(&store);
    fx.kloset = fx.kloset.clone().env("KLOSET_LOCK_STALE_AFTER", "3s");
    fx.must(&["create", "--kdf-memory-mib", "8", "--pack-size", "1MiB"]);
    // Garbage for the prune: a forgotten snapshot's data.
    let junk = root.join("junk");
    std::fs::create_dir_all(&junk).expect("mkdir");
    write_random(&junk.join("a.bin"), 7, 2 << 20);
    let junk_s = junk.to_str().expect("utf8");
    fx.must(&["backup", junk_s]);
    write_random(&junk.join("a.bin"), 8, 2 << 20);
    fx.must(&["backup", junk_s]);
    fx.must(&["forget", "--keep-last", "1"]);
    let kept = snapshot_ids(&fx);
    let packs_before = count_under(&fx, "packs/");

    let conf_s = conf.to_str().expect("utf8");
    let slow = fx
        .kloset
        .command(["--config", conf_s, "at", "@main", "backup", "@slow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the slow backup");
    // Stop the backup once it holds its lock and has uploaded packs.
    let pid = slow.id().to_string();
    wait_for(
        "the backup's lock and packs",
        Duration::from_secs(120),
        || {
            let locks = json(&fx.must(&["--json", "locks"]));
            let holding = locks["locks"]
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l["operation"] == "backup"));
            let packs = count_under(&fx, "packs/");
            if holding && packs >= packs_before + 2 {
                Ok(())
            } else {
                Err(format!(
                    "lock: {holding}, packs: {packs} (before {packs_before})"
                ))
            }
        },
    );
    let kill = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill {sig}");
    };
    kill("-STOP");
    let shown = fx.must(&["locks"]);
    assert!(shown.contains("backup"), "{shown}");

    // Waiting less than the stale period: the error says who holds the
    // store and since when, and the prune deletes nothing.
    let not_locks = |objects: Vec<(std::path::PathBuf, String)>| -> Vec<String> {
        objects
            .into_iter()
            .map(|(_, k)| k)
            .filter(|k| !k.starts_with("locks/"))
            .collect()
    };
    let before_wait = not_locks(fx.objects());
    let out = fx.run(&["prune", "--grace", "0s", "--max-wait", "1s"]);
    assert!(!out.success(), "{}", out.describe());
    let err = out.stderr_str();
    assert!(
        err.contains("did not finish within 1s: backup on ")
            && err.contains(&format!("pid {pid} (since ")),
        "{}",
        out.describe()
    );
    assert_eq!(
        not_locks(fx.objects()),
        before_wait,
        "a prune that gave up deleted nothing"
    );

    let report = json(&fx.must(&["--json", "prune", "--grace", "0s", "--max-wait", "120s"]));
    let taken = report["taken_over"].as_array().expect("taken_over");
    assert_eq!(taken.len(), 1, "{report}");
    assert!(
        taken[0].as_str().expect("who").starts_with("backup on "),
        "{report}"
    );
    assert!(report["packs_deleted"].as_u64() > Some(0), "{report}");

    kill("-CONT");
    std::fs::write(&go, b"").expect("GO");
    let out = slow.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the backup must fail: {stderr}");
    assert!(stderr.contains("lost the lock"), "{stderr}");
    assert_eq!(snapshot_ids(&fx), kept, "no snapshot of the stopped backup");
    // Nothing it wrote is referenced: the store checks clean (packs it
    // uploaded after waking are unindexed, a warning at most).
    fx.must(&["check", "--read-data"]);
    let again = json(&fx.must(&["--json", "prune", "--grace", "0s"]));
    assert_eq!(again["packs_missing"], 0, "{again}");
    assert_eq!(again["unfound_blobs"], 0, "{again}");
    wait_until("no locks left", Duration::from_secs(30), || {
        json(&fx.must(&["--json", "locks"]))["locks"] == serde_json::json!([])
    });
    restore_matches(&fx, &kept[0], &junk, root);
    fx.must(&["check", "--read-data"]);
}

/// A version 1 store: readable and writable, but prune refuses it until
/// one `upgrade`, which keeps every snapshot and makes prune work.
#[test]
fn upgrade_moves_a_version_1_store_to_version_2_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let fx = StoreFixture::local(&store);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    write_random(&src.join("a.bin"), 11, 300_000);
    let src_s = src.to_str().expect("utf8");
    fx.must(&["create", "--kdf-memory-mib", "8"]);
    // Rewrite the header as version 1 wrote it.
    let header_path = store.join("kloset");
    let header = kloset::header::Header::parse(&std::fs::read(&header_path).expect("read"))
        .expect("parse")
        .expect("a header");
    std::fs::write(
        &header_path,
        header.as_version_1().expect("v1").to_json().expect("json"),
    )
    .expect("write v1");
    let info = fx.must(&["info"]);
    fx.must(&["backup", src_s]);
    let ids = snapshot_ids(&fx);

    let out = fx.run(&["prune"]);
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr_str().contains("upgrade") && out.stderr_str().contains("version 1"),
        "{}",
        out.describe()
    );
    let dry = json(&fx.must(&["--json", "prune", "--dry-run"]));
    assert_eq!(dry["dry_run"], true, "a dry run works on version 1");

    let up = json(&fx.must(&["--json", "upgrade"]));
    assert_eq!(
        (up["from"].as_u64(), up["to"].as_u64()),
        (Some(1), Some(2)),
        "{up}"
    );
    let text = std::fs::read_to_string(&header_path).expect("header");
    assert!(text.contains("\"features\""), "{text}");
    let again = fx.must(&["upgrade"]);
    assert!(again.contains("already at format version 2"), "{again}");
    assert!(!info.is_empty());

    assert_eq!(snapshot_ids(&fx), ids, "every snapshot kept");
    fx.must(&["prune", "--grace", "0s"]);
    restore_matches(&fx, &ids[0], &src, tmp.path());
    fx.must(&["check", "--read-data"]);
}
