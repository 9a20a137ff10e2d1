//! Crash points, concurrent writers, and incremental/dedup behaviour of the
//! engine, driven through the public library API.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use kloset::ops::backup::{BackupOptions, backup};
use kloset::ops::check::{CheckOptions, check};
use kloset::ops::restore::{RestoreOptions, restore};
use kloset::{Location, Repository, Storage};
use object_store::ObjectStore;
use object_store::memory::InMemory;

fn full_check(repo: &Repository) -> kloset::ops::check::CheckReport {
    check(
        repo,
        &CheckOptions {
            read_data_percent: Some(100.0),
            ..Default::default()
        },
    )
    .expect("check runs")
}

/// A crash at every single write of a backup leaves the store as it was:
/// no partial snapshot, a clean check, and the next backup works.
#[test]
fn crash_at_every_write_point_leaves_a_consistent_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    make_tree(&first, 1, 40, 60_000);
    make_tree(&second, 2, 40, 60_000);

    // One backup worker: blobs then reach packs in a fixed order, so every
    // run makes the same number of writes (uploads stay concurrent). With
    // several workers, pack boundaries and so the write count vary by one.
    let serial = BackupOptions {
        threads: 1,
        ..Default::default()
    };
    // Count the writes of a clean second backup.
    let count_writes = || {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let fault = Arc::new(FaultStore::new(mem.clone()));
        let repo = Repository::create(storage_over(fault.clone()), PASS, create_options(64 * 1024))
            .expect("create");
        backup(&repo, &first, &BackupOptions::default()).expect("first");
        let before = fault.writes.load(Ordering::SeqCst);
        backup(&repo, &second, &serial).expect("second");
        fault.writes.load(Ordering::SeqCst) - before
    };
    let total = count_writes();
    assert_eq!(
        count_writes(),
        total,
        "the write count must be deterministic"
    );
    assert!(
        total >= 8,
        "expected several packs, an index and a snapshot; got {total} writes"
    );

    for crash_after in 0..total {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let fault = Arc::new(FaultStore::new(mem.clone()));
        let repo = Repository::create(storage_over(fault.clone()), PASS, create_options(64 * 1024))
            .expect("create");
        backup(&repo, &first, &BackupOptions::default()).expect("first");
        fault.budget.store(crash_after, Ordering::SeqCst);
        let result = backup(&repo, &second, &serial);
        assert!(
            result.is_err(),
            "crash after {crash_after} writes must fail the backup"
        );
        drop(repo);

        // "Restart": a fresh process opens the store.
        let repo = open(mem.clone());
        let snaps = repo.snapshots().expect("snapshots");
        assert_eq!(
            snaps.len(),
            1,
            "crash after {crash_after}: no partial snapshot may appear"
        );
        let report = full_check(&repo);
        assert!(
            report.is_ok(),
            "crash after {crash_after}: {:?}",
            report.problems
        );

        // The next backup succeeds and both snapshots restore exactly.
        let snap = backup(&repo, &second, &serial).expect("retry");
        for (s, src) in [(&snaps[0], &first), (&snap, &second)] {
            let out = tmp
                .path()
                .join(format!("out-{crash_after}-{}", s.id.short()));
            restore(&repo, s, "/", &out, &RestoreOptions::default()).expect("restore");
            assert_same_tree(src, &out);
            std::fs::remove_dir_all(&out).expect("cleanup");
        }
    }
}

/// Several processes writing one store at once lose nothing.
#[test]
fn concurrent_writers_share_one_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store_dir = tmp.path().join("store");
    let loc = Location::Fs(store_dir.clone());
    Repository::create(
        Storage::open(&loc, true).expect("storage"),
        PASS,
        create_options(256 * 1024),
    )
    .expect("create");
    let shared = tmp.path().join("shared");
    make_tree(&shared, 99, 20, 200_000);
    let sources: Vec<_> = (0..4)
        .map(|i| {
            let src = tmp.path().join(format!("src{i}"));
            make_tree(&src, 10 + i, 30, 100_000);
            // Every source also holds the same shared files: cross-writer dedup.
            std::process::Command::new("cp")
                .arg("-a")
                .arg(&shared)
                .arg(src.join("shared"))
                .status()
                .expect("cp");
            src
        })
        .collect();
    std::thread::scope(|s| {
        for src in &sources {
            let loc = loc.clone();
            s.spawn(move || {
                let repo = Repository::open(Storage::open(&loc, false).expect("storage"), PASS)
                    .expect("open");
                backup(&repo, src, &BackupOptions::default()).expect("backup");
            });
        }
    });
    let repo = Repository::open(Storage::open(&loc, false).expect("storage"), PASS).expect("open");
    let snaps = repo.snapshots().expect("snapshots");
    assert_eq!(snaps.len(), 4);
    let report = full_check(&repo);
    assert!(report.is_ok(), "{:?}", report.problems);
    for s in &snaps {
        let src = sources
            .iter()
            .find(|p| p.display().to_string() == s.source)
            .expect("source");
        let out = tmp.path().join(format!("out-{}", s.id.short()));
        restore(&repo, s, "/", &out, &RestoreOptions::default()).expect("restore");
        assert_same_tree(src, &out);
    }
}

/// Unchanged files are not re-read, identical data is stored once, and a
/// changed file is noticed.
#[test]
fn incremental_and_dedup() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    make_tree(&src, 5, 30, 300_000);
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let repo =
        Repository::create(storage_over(mem), PASS, create_options(1 << 20)).expect("create");
    let a = backup(&repo, &src, &BackupOptions::default()).expect("a");
    assert!(a.stats.bytes_added > 0);
    let b = backup(&repo, &src, &BackupOptions::default()).expect("b");
    assert_eq!(b.stats.files_unchanged, a.stats.files, "nothing re-read");
    assert_eq!(b.stats.bytes_added, 0, "nothing stored twice");
    assert_eq!(b.parent, Some(a.id));
    // Same bytes under a new name: read again, but deduplicated.
    std::fs::copy(src.join("d1/f1"), src.join("copy")).expect("copy");
    let c = backup(&repo, &src, &BackupOptions::default()).expect("c");
    assert_eq!(c.stats.files, a.stats.files + 1);
    assert!(
        c.stats.bytes_added < 4096,
        "only the new tree blobs: {}",
        c.stats.bytes_added
    );
    // A changed file is re-read; the others still are not.
    std::fs::write(src.join("d2/f2"), b"changed content").expect("write");
    let d = backup(&repo, &src, &BackupOptions::default()).expect("d");
    assert_eq!(d.stats.files_unchanged, c.stats.files - 1);
    let out = tmp.path().join("out");
    restore(&repo, &d, "/", &out, &RestoreOptions::default()).expect("restore");
    assert_same_tree(&src, &out);
}

/// A cancelled backup writes no snapshot.
#[test]
fn cancelled_backup_writes_no_snapshot() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    make_tree(&src, 6, 10, 10_000);
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let repo =
        Repository::create(storage_over(mem), PASS, create_options(1 << 20)).expect("create");
    let options = BackupOptions::default();
    options.progress.cancel();
    let err = backup(&repo, &src, &options).expect_err("cancelled");
    assert_eq!(err.kind(), kloset::ErrorKind::Cancelled);
    assert!(repo.snapshots().expect("list").is_empty());
}

/// A file whose bytes equal a tree's encoding must not be confused with
/// that tree: ids are keyed per blob kind.
#[test]
fn file_with_tree_bytes_does_not_shadow_trees() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let empty_tree = kloset::tree::Tree::new(Vec::new())
        .encode()
        .expect("encode");
    std::fs::write(src.join("planted"), &empty_tree).expect("write");
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let repo =
        Repository::create(storage_over(mem), PASS, create_options(1 << 20)).expect("create");
    backup(&repo, &src, &BackupOptions::default()).expect("first");
    for i in 0..3 {
        std::fs::create_dir_all(src.join(format!("empty{i}"))).expect("mkdir");
    }
    let snap = backup(&repo, &src, &BackupOptions::default()).expect("second");
    let report = full_check(&repo);
    assert!(report.is_ok(), "{:?}", report.problems);
    let out = tmp.path().join("out");
    restore(&repo, &snap, "/", &out, &RestoreOptions::default()).expect("restore");
    assert_same_tree(&src, &out);
}
