//! Full disks under the real `kloset`: the store's disk fills up during a
//! backup, and a restore target's during a restore. Each fails with an error
//! that names the cause, lists no partial snapshot, and leaves a store that
//! checks clean; once space is freed the backup or the restore succeeds,
//! bit-exact. The disks are size-limited tmpfs mounts (root only).

use crate::common;

use common::cli::Kloset;
use common::small_disk::{SmallDisk, root_or_skip};
use common::tree::{assert_trees_equal, write_random_files};

const PASS: &str = "disk full passphrase";
const MIB: usize = 1 << 20;

fn snapshot_lines(kloset: &Kloset, store: &str) -> Vec<String> {
    kloset
        .must_at(store, ["ls"])
        .stdout_lines()
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn a_full_store_disk_fails_the_backup_clearly_and_the_store_stays_sound() {
    if !root_or_skip("mounting a small tmpfs") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let store_dir = tmp.path().join("store");
    let disk = SmallDisk::mount(&store_dir, "24m");
    let store = store_dir.display().to_string();
    let kloset = Kloset::new().passphrase(PASS);
    let small = tmp.path().join("small");
    let big = tmp.path().join("big");
    write_random_files(&small, 1, 1, 4 * MIB);
    write_random_files(&big, 2, 12, 4 * MIB);
    kloset.must_at(&store, ["create"]);
    kloset.must_at(&store, ["backup", small.to_str().expect("utf8")]);

    let failed = kloset.run(["at", store.as_str(), "backup", big.to_str().expect("utf8")]);
    assert!(
        !failed.success(),
        "48 MiB cannot fit in 24: {}",
        failed.describe()
    );
    let err = failed.stderr_str();
    assert!(
        err.contains("No space left on device"),
        "the error names the cause: {err}"
    );
    assert_eq!(
        snapshot_lines(&kloset, &store).len(),
        1,
        "no partial snapshot"
    );
    kloset.must_at(&store, ["check", "--read-data"]);
    let out = tmp.path().join("out-small");
    kloset.must_at(
        &store,
        ["restore", "--to", out.to_str().expect("utf8"), "latest"],
    );
    assert_trees_equal(&small, &out);

    // Space is freed: the same backup succeeds, and everything restores.
    disk.resize("200m");
    kloset.must_at(&store, ["backup", big.to_str().expect("utf8")]);
    assert_eq!(snapshot_lines(&kloset, &store).len(), 2);
    kloset.must_at(&store, ["check", "--read-data"]);
    let out = tmp.path().join("out-big");
    kloset.must_at(
        &store,
        ["restore", "--to", out.to_str().expect("utf8"), "latest"],
    );
    assert_trees_equal(&big, &out);
}

#[test]
fn a_full_restore_target_fails_clearly_and_a_rerun_with_space_restores_exactly() {
    if !root_or_skip("mounting a small tmpfs") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store").display().to_string();
    let kloset = Kloset::new().passphrase(PASS);
    let big = tmp.path().join("big");
    write_random_files(&big, 3, 8, 4 * MIB);
    kloset.must_at(&store, ["create"]);
    kloset.must_at(&store, ["backup", big.to_str().expect("utf8")]);

    let target = tmp.path().join("target");
    let disk = SmallDisk::mount(&target, "12m");
    let failed = kloset.run([
        "at",
        store.as_str(),
        "restore",
        "--to",
        target.to_str().expect("utf8"),
        "latest",
    ]);
    assert!(
        !failed.success(),
        "32 MiB cannot fit in 12: {}",
        failed.describe()
    );
    let err = failed.stderr_str();
    assert!(
        err.contains("No space left on device"),
        "the error names the cause: {err}"
    );
    kloset.must_at(&store, ["check", "--read-data"]);

    disk.resize("200m");
    kloset.must_at(
        &store,
        [
            "restore",
            "--force",
            "--to",
            target.to_str().expect("utf8"),
            "latest",
        ],
    );
    assert_trees_equal(&big, &target);
}
