//! Prune through the public library API: it gives space back and keeps
//! every snapshot whole, beside a writer paused between its index and its
//! snapshot, after a writer opened the store, and when it is killed at any
//! of its own writes or deletes.
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use kloset::lock::{LockTiming, list_locks};
use kloset::ops::backup::{BackupOptions, backup};
use kloset::ops::prune::{PruneOptions, PruneReport, prune};
use kloset::ops::restore::{RestoreOptions, restore};
use kloset::snapshot::Snapshot;
use kloset::storage::{Key, PACKS_DIR};
use kloset::{Repository, progress::Progress};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};

fn options() -> PruneOptions {
    PruneOptions {
        grace: Duration::ZERO,
        max_wait: Some(Duration::from_secs(120)),
        ..Default::default()
    }
}

fn pack_bytes(repo: &Repository) -> u64 {
    repo.storage()
        .list(Some(PACKS_DIR))
        .expect("list packs")
        .iter()
        .map(|l| l.size)
        .sum()
}

fn object_names(repo: &Repository) -> Vec<String> {
    let mut names: Vec<String> = repo
        .storage()
        .list(None)
        .expect("list")
        .into_iter()
        .map(|l| l.path)
        .filter(|p| !p.starts_with("locks/"))
        .collect();
    names.sort();
    names
}

fn forget(repo: &Repository, snapshot: &Snapshot) {
    repo.storage()
        .delete(&Key::Snapshot(snapshot.id).path())
        .expect("forget");
}

fn assert_restores(repo: &Repository, snapshot: &Snapshot, source: &Path, scratch: &Path) {
    let out = scratch.join(format!("restore-{}", snapshot.id.short()));
    let _ = std::fs::remove_dir_all(&out);
    restore(repo, snapshot, "/", &out, &RestoreOptions::default()).expect("restore");
    assert_same_tree(source, &out);
    std::fs::remove_dir_all(&out).expect("cleanup");
}

fn serial() -> BackupOptions {
    BackupOptions {
        threads: 1,
        ..Default::default()
    }
}

/// A store with three snapshots: `old` (forgotten by the caller), `mixed`
/// (half of old's files and new ones, so some packs become partly used)
/// and `kept`.
struct Fixture {
    _tmp: tempfile::TempDir,
    old: std::path::PathBuf,
    mixed: std::path::PathBuf,
    kept: std::path::PathBuf,
    scratch: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tmp");
    let old = tmp.path().join("old");
    let mixed = tmp.path().join("mixed");
    let kept = tmp.path().join("kept");
    make_tree(&old, 1, 40, 60_000);
    make_tree(&kept, 3, 20, 60_000);
    std::process::Command::new("cp")
        .arg("-a")
        .arg(&old)
        .arg(&mixed)
        .status()
        .expect("cp");
    // Drop every other file of the copy and add new ones.
    let mut files: Vec<_> = walk_files(&mixed);
    files.sort();
    for f in files.iter().step_by(2) {
        std::fs::remove_file(f).expect("rm");
    }
    make_tree(&mixed.join("new"), 2, 10, 60_000);
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).expect("scratch");
    Fixture {
        _tmp: tmp,
        old,
        mixed,
        kept,
        scratch,
    }
}

fn walk_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Backs the fixture up into a fresh store over `store` and forgets `old`
/// and `mixed`; returns the snapshot that is kept.
fn populate(store: Arc<dyn ObjectStore>, f: &Fixture) -> Snapshot {
    let repo =
        Repository::create(storage_over(store), PASS, create_options(64 * 1024)).expect("create");
    let old = backup(&repo, &f.old, &serial()).expect("old");
    let mixed = backup(&repo, &f.mixed, &serial()).expect("mixed");
    let kept = backup(&repo, &f.kept, &serial()).expect("kept");
    forget(&repo, &old);
    let _ = mixed;
    kept
}

#[test]
fn prune_gives_space_back_and_every_kept_snapshot_restores() {
    let f = fixture();
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let kept = populate(mem.clone(), &f);
    let repo = open(mem.clone());
    let mixed = repo
        .snapshots()
        .expect("snapshots")
        .into_iter()
        .find(|s| s.id != kept.id)
        .expect("mixed");

    let before = pack_bytes(&repo);
    let names = object_names(&repo);
    let dry = prune(
        &repo,
        &PruneOptions {
            dry_run: true,
            ..options()
        },
    )
    .expect("dry run");
    assert!(dry.dry_run);
    assert!(dry.bytes_freed > 0, "old's own files are garbage: {dry:?}");
    assert_eq!(object_names(&repo), names, "a dry run changes nothing");

    let report = prune(
        &repo,
        &PruneOptions {
            max_unused: 0.1,
            ..options()
        },
    )
    .expect("prune");
    let after = pack_bytes(&repo);
    assert!(report.packs_deleted > 0, "{report:?}");
    assert!(
        report.packs_repacked > 0,
        "half-used packs repacked: {report:?}"
    );
    assert!(
        after < before,
        "space given back: {before} -> {after} ({report:?})"
    );
    assert_eq!(
        before - after + report.bytes_repack_written,
        report.bytes_freed,
        "the report counts what left the store"
    );
    assert!(
        list_locks(repo.storage(), repo.keys())
            .expect("locks")
            .is_empty(),
        "the prune lock is released"
    );
    assert!(
        !object_names(&repo).iter().any(|n| n.starts_with("marks/")),
        "the mark is removed"
    );

    let repo = open(mem.clone());
    assert_clean(&repo, "after prune");
    assert_restores(&repo, &kept, &f.kept, &f.scratch);
    assert_restores(&repo, &mixed, &f.mixed, &f.scratch);

    let again = prune(&repo, &options()).expect("second prune");
    assert_eq!(
        (again.packs_deleted, again.packs_repacked),
        (0, 0),
        "a second prune finds nothing: {again:?}"
    );
    // And the store still takes backups that dedup against what is left.
    let snap = backup(&repo, &f.old, &serial()).expect("backup after prune");
    assert_restores(&repo, &snap, &f.old, &f.scratch);
    assert_clean(&repo, "after a new backup");
}

/// Runs a prune while a backup is paused between its index and its
/// snapshot (after `meanwhile` did its worst to the store): the prune must
/// wait (its phase shows `waiting`) rather than finish; then the writer
/// goes on, and the store must be clean with both snapshots whole.
fn prune_beside_a_paused_writer(
    meanwhile: impl FnOnce(&Repository, &Arc<dyn ObjectStore>),
    waiting: &str,
) -> PruneReport {
    let f = fixture();
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let kept = populate(mem.clone(), &f);
    let fault = Arc::new(FaultStore::new(mem.clone()));
    fault.pause_puts_under("snapshots/");
    let writer_repo = open(fault.clone());
    let pruner_repo = open(mem.clone());
    let progress = Arc::new(Progress::new());

    std::thread::scope(|s| {
        let writer = s.spawn(|| backup(&writer_repo, &f.old, &serial()));
        assert!(
            wait_until(|| fault.paused.load(Ordering::SeqCst)),
            "the writer never reached its snapshot"
        );
        meanwhile(&pruner_repo, &mem);
        let pruner = s.spawn(|| {
            prune(
                &pruner_repo,
                &PruneOptions {
                    progress: progress.clone(),
                    ..options()
                },
            )
        });
        let waited = wait_until(|| progress.phase().contains(waiting) || pruner.is_finished());
        let finished_early = pruner.is_finished();
        // Release the writer before any assertion, so a failure cannot hang.
        fault.release.store(true, Ordering::SeqCst);
        assert!(waited, "the prune neither waited nor finished");
        assert!(
            !finished_early,
            "the prune finished while a writer held its lock"
        );
        let snap = writer.join().expect("writer thread").expect("backup");
        let report: PruneReport = pruner.join().expect("prune thread").expect("prune");
        let repo = open(mem.clone());
        assert_clean(&repo, "after the race");
        assert_restores(&repo, &snap, &f.old, &f.scratch);
        assert_restores(&repo, &kept, &f.kept, &f.scratch);
        report
    })
}

/// The writer holds its lock until its snapshot is written: a prune that
/// runs while the writer is paused between its index and its snapshot
/// waits for it, and spares the packs the new snapshot needs.
#[test]
fn prune_between_a_writers_index_and_its_snapshot_spares_its_packs() {
    // The new packs are indexed but not yet referenced: the prune plans to
    // delete them, then must wait for the writer's lock.
    let report = prune_beside_a_paused_writer(|_, _| {}, "waiting for");
    assert!(report.packs_spared > 0, "{report:?}");
}

/// The same race with the writer's lock object damaged in storage while it
/// is paused: the prune cannot read whose lock it is (it might be another
/// prune's), so it waits for the object as for a holder before it plans,
/// and the writer's snapshot is whole. (Passing over the object, as
/// before, the prune finished while the writer was paused.)
#[test]
fn prune_waits_for_a_writer_whose_lock_is_damaged() {
    let damage = |repo: &Repository, mem: &Arc<dyn ObjectStore>| {
        let locks = repo.storage().list(Some("locks/")).expect("list locks");
        assert_eq!(locks.len(), 1, "the writer's lock");
        let path = object_store::path::Path::from(locks[0].path.as_str());
        repo.storage()
            .run(async {
                let bytes = mem.get(&path).await?.bytes().await?;
                let mut damaged = bytes.to_vec();
                damaged[30] ^= 0x40;
                mem.put(&path, bytes::Bytes::from(damaged).into()).await
            })
            .expect("damage the lock");
    };
    prune_beside_a_paused_writer(damage, "unreadable lock object");
}

/// A prune that completes after a writer opened the store but before it
/// started writing: the writer reloads the index under its lock and does
/// not deduplicate against the packs the prune deleted.
#[test]
fn prune_between_open_and_write_does_not_leave_the_writer_dangling() {
    let f = fixture();
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    populate(mem.clone(), &f);
    let writer_repo = open(mem.clone());
    // Index merged at open, before the prune.
    assert!(writer_repo.index().packs().len() > 1);
    let report = prune(&open(mem.clone()), &options()).expect("prune");
    assert!(report.packs_deleted > 0, "{report:?}");
    // `old`'s data, which the prune just deleted, is backed up again.
    let snap = backup(&writer_repo, &f.old, &serial()).expect("backup");
    let repo = open(mem.clone());
    assert_clean(&repo, "after the backup");
    assert_restores(&repo, &snap, &f.old, &f.scratch);
}

/// Index entries for packs that are gone and that no snapshot needs (what
/// a writer taken over as stale could leave if it paused past the stale
/// period right after its last lock check) are dropped by the next prune,
/// which then leaves a store that checks clean. Entries of a gone pack that
/// a snapshot needs are reported as damage instead, and kept.
#[test]
fn prune_drops_index_entries_of_gone_unreferenced_packs() {
    let f = fixture();
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let repo = Repository::create(storage_over(mem.clone()), PASS, create_options(64 * 1024))
        .expect("create");
    let kept = backup(&repo, &f.kept, &serial()).expect("kept");
    let kept_packs = repo.index().packs().to_vec();
    let old = backup(&repo, &f.old, &serial()).expect("old");
    forget(&repo, &old);
    let old_only: Vec<_> = repo
        .index()
        .packs()
        .iter()
        .filter(|p| !kept_packs.contains(*p))
        .copied()
        .collect();
    assert!(!old_only.is_empty());
    for p in &old_only {
        repo.storage()
            .delete(&Key::Pack(*p).path())
            .expect("delete pack");
    }
    let repo = open(mem.clone());
    let report = prune(&repo, &options()).expect("prune");
    assert_eq!(report.index_entries_dropped, old_only.len(), "{report:?}");
    assert_eq!(
        (report.packs_missing, report.unfound_blobs),
        (0, 0),
        "{report:?}"
    );
    let repo = open(mem.clone());
    assert_clean(&repo, "after dropping the stale entries");
    assert_restores(&repo, &kept, &f.kept, &f.scratch);

    // A gone pack that the kept snapshot needs is damage: reported (or,
    // if it held a tree, the prune stops), and kept in the index, so that
    // `check` names what it breaks.
    let needed = *repo.index().packs().iter().next().expect("a pack");
    repo.storage()
        .delete(&Key::Pack(needed).path())
        .expect("delete pack");
    let repo = open(mem.clone());
    match prune(&repo, &options()) {
        Ok(report) => {
            assert_eq!(report.packs_missing, 1, "{report:?}");
            assert_eq!(report.index_entries_dropped, 0, "{report:?}");
        }
        // The pack held a tree: prune cannot see what it references.
        Err(e) => assert!(e.to_string().contains("deletes nothing"), "{e}"),
    }
    assert!(open(mem.clone()).index().packs().contains(&needed));
}

/// A reader without a lock whose index was read before a prune repacked
/// the packs it needs (the daemon's HTTP browser keeps a handle for a few
/// seconds) still reads every live snapshot: the prune wrote the index
/// naming the new copies before it deleted the old packs, and the reader
/// brings its index up to date when a pack is not found. (Restore, check
/// and export take a read lock, which reloads the index and avoids marked
/// packs.)
#[test]
fn a_reader_with_an_index_from_before_a_repack_still_reads() {
    let f = fixture();
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let kept = populate(mem.clone(), &f);
    let reader = open(mem.clone());
    let mixed = reader
        .snapshots()
        .expect("snapshots")
        .into_iter()
        .find(|s| s.id != kept.id)
        .expect("mixed");
    let report = prune(
        &open(mem.clone()),
        &PruneOptions {
            max_unused: 0.1,
            ..options()
        },
    )
    .expect("prune");
    assert!(report.packs_repacked > 0, "{report:?}");
    for (snapshot, dir) in [(&mixed, &f.mixed), (&kept, &f.kept)] {
        let read = read_like_a_browser(&reader, snapshot.tree, dir);
        let regular = walk_files(dir)
            .iter()
            .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
            .count();
        assert_eq!(read, regular, "every file read back");
    }
}

/// Reads every file of a tree through `load_tree` and `load_blob` and
/// compares it with `dir`; returns how many files it read.
fn read_like_a_browser(repo: &Repository, tree: kloset::BlobId, dir: &Path) -> usize {
    let mut files = 0;
    for node in repo.load_tree(&tree).expect("tree").entries {
        let path = dir.join(node.name_lossy());
        if let Some(sub) = node.subtree {
            files += read_like_a_browser(repo, sub, &path);
        } else if node.kind == kloset::tree::NodeKind::File {
            let mut content = Vec::new();
            for chunk in &node.content {
                content.extend(
                    repo.load_blob(kloset::BlobKind::Data, chunk)
                        .expect("chunk"),
                );
            }
            assert!(
                content == std::fs::read(&path).expect("read"),
                "{}",
                path.display()
            );
            files += 1;
        }
    }
    files
}

/// A prune killed at each of its writes and deletes leaves a store that
/// checks clean and restores every snapshot; the next prune (which takes
/// over the dead one's lock once it is stale) finishes the work.
#[test]
fn prune_killed_at_every_mutation_leaves_a_clean_store() {
    let f = fixture();
    let quick = LockTiming::with_stale_after(Duration::from_millis(600));
    let setup = || {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let kept = populate(mem.clone(), &f);
        let fault = Arc::new(FaultStore::new(mem.clone()));
        fault.faulty_deletes.store(true, Ordering::SeqCst);
        (mem, fault, kept)
    };
    let prune_options = || PruneOptions {
        max_unused: 0.1,
        ..options()
    };
    let (mem, fault, _) = setup();
    let clean = prune(&open(fault.clone()), &prune_options()).expect("clean prune");
    let total = fault.writes.load(Ordering::SeqCst);
    let target = pack_bytes(&open(mem));
    assert!(
        clean.packs_repacked > 0 && clean.packs_deleted > 2,
        "{clean:?}"
    );
    assert!(total >= 8, "lock, repack, mark, index, deletes: {total}");

    for crash_after in 0..total {
        let (mem, fault, kept) = setup();
        fault.budget.store(crash_after, Ordering::SeqCst);
        let crashed = prune(&open(fault.clone()), &prune_options());
        // The last two deletes (the mark, then the lock) are cleanup after
        // the work is done: failing them leaves the prune successful.
        assert!(
            crashed.is_err() || crash_after >= total - 2,
            "crash after {crash_after} of {total} writes: {crashed:?}"
        );

        // A restarted process, with a short stale period for the lock the
        // dead prune left behind.
        let repo = open(mem.clone()).with_lock_timing(quick);
        assert_clean(&repo, &format!("crash after {crash_after}"));
        let snaps = repo.snapshots().expect("snapshots");
        assert_eq!(snaps.len(), 2, "crash after {crash_after}");
        assert_restores(&repo, &kept, &f.kept, &f.scratch);
        let mixed = snaps.iter().find(|s| s.id != kept.id).expect("mixed");
        assert_restores(&repo, mixed, &f.mixed, &f.scratch);

        let report = prune(&repo, &prune_options())
            .unwrap_or_else(|e| panic!("crash after {crash_after}: the next prune: {e}"));
        let repo = open(mem.clone());
        assert_clean(&repo, &format!("crash after {crash_after}, pruned again"));
        let left = pack_bytes(&repo);
        assert!(
            left <= target + 64 * 1024 * 4,
            "crash after {crash_after}: the work is finished ({left} vs {target} bytes; {report:?})"
        );
        assert!(
            list_locks(repo.storage(), repo.keys())
                .expect("locks")
                .is_empty(),
            "crash after {crash_after}: no lock left"
        );
        let again = prune(&repo, &options()).expect("third prune");
        assert_eq!(
            again.packs_deleted, 0,
            "crash after {crash_after}: {again:?}"
        );
    }
}

/// Waits up to two minutes for `done`; whether it came.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}
