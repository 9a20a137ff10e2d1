//! Sync between stores with different passphrases (so different chunking
//! and id keys): bit-exact restores, identity kept, filters, dedup against
//! the target, and a cold target whose packs are never read.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{FaultStore, PASS, assert_same_tree, create_options, make_tree, storage_over};
use kloset::Repository;
use kloset::ops::backup::{BackupOptions, backup};
use kloset::ops::restore::{RestoreOptions, restore};
use kloset::ops::sync::{SyncFilter, SyncOptions, sync};
use object_store::ObjectStore;
use object_store::memory::InMemory;

const OTHER: &[u8] = b"another passphrase";

fn store(pass: &[u8]) -> (Arc<InMemory>, Repository) {
    let mem = Arc::new(InMemory::new());
    let repo = Repository::create(storage_over(mem.clone()), pass, create_options(64 * 1024))
        .expect("create");
    (mem, repo)
}

fn tagged(source: &str, tags: &[&str]) -> BackupOptions {
    BackupOptions {
        source: Some(source.into()),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        threads: 2,
        ..Default::default()
    }
}

fn restores(repo: &Repository, id: kloset::SnapshotId, expect: &Path, scratch: &Path) {
    let snap = repo.resolve_snapshot(&id.to_hex()).expect("snapshot");
    let out = scratch.join(format!("r-{}-{}", id.short(), rand_suffix()));
    restore(repo, &snap, "/", &out, &RestoreOptions::default()).expect("restore");
    assert_same_tree(expect, &out);
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn sync_into_another_passphrase_restores_bit_exact_and_copies_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_tree(&data, 7, 40, 200_000);
    let (_, src) = store(PASS);
    let (_, dst) = store(OTHER);
    let a = backup(&src, &data, &tagged("a", &["daily"])).expect("backup");
    let report = sync(&src, &dst, &SyncOptions::default()).expect("sync");
    assert_eq!(report.copied.len(), 1);
    assert!(report.bytes_uploaded > 0);
    let copy = &report.copied[0];
    assert_eq!(copy.source, a.id);
    let held = dst.snapshots().expect("list");
    assert_eq!(held.len(), 1);
    let origin = held[0].origin.expect("origin recorded");
    assert_eq!(origin.snapshot, a.id);
    assert_eq!(origin.store, src.store_id());
    assert_eq!(held[0].time_ns, a.time_ns);
    assert_eq!(held[0].tags, a.tags);
    // The target re-chunked with its own keys: ids differ.
    assert_ne!(held[0].tree, a.tree);
    restores(&dst, copy.target, &data, tmp.path());
    // A reopened target (fresh index) restores too.
    let reopened = Repository::open(dst.storage().clone(), OTHER).expect("reopen");
    restores(&reopened, copy.target, &data, tmp.path());

    let again = sync(&src, &dst, &SyncOptions::default()).expect("sync again");
    assert!(again.copied.is_empty(), "{again:?}");
    assert_eq!(again.skipped.len(), 1);
    assert_eq!(again.bytes_uploaded, 0);
    assert_eq!(dst.snapshots().expect("list").len(), 1);

    // Syncing the copy back does not duplicate the original either.
    let back = sync(&dst, &src, &SyncOptions::default()).expect("sync back");
    assert!(back.copied.is_empty(), "{back:?}");
    assert_eq!(src.snapshots().expect("list").len(), 1);
}

#[test]
fn sync_dedups_against_the_target() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_tree(&data, 11, 30, 300_000);
    let (_, src) = store(PASS);
    let (_, dst) = store(OTHER);
    backup(&src, &data, &tagged("a", &[])).expect("one");
    let first = sync(&src, &dst, &SyncOptions::default()).expect("sync");
    std::fs::write(data.join("new"), b"a small new file").expect("write");
    let b = backup(&src, &data, &tagged("a", &[])).expect("two");
    let second = sync(&src, &dst, &SyncOptions::default()).expect("sync 2");
    assert_eq!(second.copied.len(), 1);
    assert_eq!(second.skipped.len(), 1);
    assert!(
        second.bytes_uploaded * 10 < first.bytes_uploaded,
        "the second copy re-used the first's chunks: {} vs {}",
        second.bytes_uploaded,
        first.bytes_uploaded
    );
    restores(&dst, second.copied[0].target, &data, tmp.path());
    assert_eq!(second.copied[0].source, b.id);
}

#[test]
fn filters_by_source_tag_latest_and_id() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_tree(&data, 3, 5, 1000);
    let (_, src) = store(PASS);
    let a1 = backup(&src, &data, &tagged("a", &["daily"])).expect("a1");
    let a2 = backup(&src, &data, &tagged("a", &["weekly"])).expect("a2");
    let b1 = backup(&src, &data, &tagged("b", &["daily"])).expect("b1");
    let run = |filter: SyncFilter| {
        let (_, dst) = store(OTHER);
        let r = sync(
            &src,
            &dst,
            &SyncOptions {
                filter,
                ..Default::default()
            },
        )
        .expect("sync");
        let mut ids: Vec<_> = r.copied.iter().map(|c| c.source).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<kloset::SnapshotId>| {
        v.sort();
        v
    };
    let by_source = run(SyncFilter {
        sources: vec!["a".into()],
        ..Default::default()
    });
    assert_eq!(by_source, sorted(vec![a1.id, a2.id]));
    let by_tag = run(SyncFilter {
        tags: vec!["daily".into()],
        ..Default::default()
    });
    assert_eq!(by_tag, sorted(vec![a1.id, b1.id]));
    let latest = run(SyncFilter {
        latest: Some(1),
        ..Default::default()
    });
    assert_eq!(latest, sorted(vec![a2.id, b1.id]));
    let one = run(SyncFilter {
        snapshots: vec![a1.id.to_hex()[..10].to_string()],
        ..Default::default()
    });
    assert_eq!(one, vec![a1.id]);
    let (_, dst) = store(OTHER);
    let missing = SyncOptions {
        filter: SyncFilter {
            snapshots: vec!["abcdef0123".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(sync(&src, &dst, &missing).is_err());
    assert!(
        sync(&src, &src, &SyncOptions::default()).is_err(),
        "same store"
    );
}

#[test]
fn a_cold_target_has_no_pack_read() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_tree(&data, 5, 30, 200_000);
    let (_, src) = store(PASS);
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    Repository::create(storage_over(mem.clone()), OTHER, create_options(64 * 1024))
        .expect("create");
    let recording = Arc::new(FaultStore::new(mem.clone()));
    let dst = Repository::open(storage_over(recording.clone()), OTHER).expect("open");
    let cold = SyncOptions {
        cold_target: true,
        ..Default::default()
    };
    backup(&src, &data, &tagged("a", &[])).expect("one");
    sync(&src, &dst, &cold).expect("sync");
    std::fs::write(data.join("more"), vec![7u8; 100_000]).expect("write");
    backup(&src, &data, &tagged("a", &[])).expect("two");
    let r = sync(&src, &dst, &cold).expect("sync 2");
    assert_eq!(r.copied.len(), 1);
    let reads = recording.reads();
    assert!(!reads.is_empty());
    let packs: Vec<_> = reads.iter().filter(|p| p.contains("packs/")).collect();
    assert!(packs.is_empty(), "target packs read: {packs:?}");
    // The copies are complete all the same.
    let plain = Repository::open(storage_over(mem), OTHER).expect("open");
    restores(&plain, r.copied[0].target, &data, tmp.path());
}
