//! The on-disk index: backups, restores, checks and prunes through it give
//! the same answers as the in-memory index; it follows the store's index
//! objects (new ones become runs, superseded ones mean a rebuild); and a
//! damaged, truncated, foreign or exposed cache costs a rebuild, never a
//! wrong location.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{PASS, assert_clean, assert_same_tree, create_options, make_tree, open, storage_over};
use kloset::index::{BlobLocation, IndexCache};
use kloset::ops::backup::{BackupOptions, backup};
use kloset::ops::prune::{PruneOptions, prune};
use kloset::ops::restore::{RestoreOptions, restore};
use kloset::snapshot::Snapshot;
use kloset::storage::Key;
use kloset::writer::Writer;
use kloset::{BlobId, BlobKind, Repository};
use object_store::memory::InMemory;

fn new_store() -> Arc<InMemory> {
    let store = Arc::new(InMemory::new());
    Repository::create(storage_over(store.clone()), PASS, create_options(64 << 10))
        .expect("create");
    store
}

/// The store opened with its index on disk under `cache`.
fn with_cache(store: &Arc<InMemory>, cache: &Path) -> Repository {
    let repo = open(store.clone());
    let index = IndexCache::open(cache, repo.store_id(), repo.keys().cache_mac_key());
    let repo = repo.with_index_cache(Some(index), 0).expect("index cache");
    assert!(repo.index().on_disk(), "the index is on disk");
    repo
}

/// Every blob and its location, from the in-memory index.
fn in_memory(store: &Arc<InMemory>) -> HashMap<BlobId, BlobLocation> {
    let repo = open(store.clone());
    assert!(!repo.index().on_disk());
    let index = repo.index();
    index.iter().map(|b| b.expect("memory index")).collect()
}

/// The on-disk index answers like the in-memory one, for every blob, by
/// lookup and by scan.
fn assert_same_answers(repo: &Repository, expected: &HashMap<BlobId, BlobLocation>) {
    let index = repo.index();
    for (id, loc) in expected {
        assert_eq!(index.get(id).expect("lookup").as_ref(), Some(loc));
        assert!(index.contains(id).expect("contains"));
    }
    let scanned: HashMap<BlobId, BlobLocation> = index.iter().map(|b| b.expect("scan")).collect();
    assert_eq!(&scanned, expected);
    assert_eq!(index.blob_count(), expected.len());
    assert!(!index.contains(&BlobId::random()).expect("contains"));
}

fn runs(repo: &Repository) -> usize {
    let dir = repo.index_cache().expect("cache").dir().to_path_buf();
    std::fs::read_dir(dir)
        .expect("ls cache")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .starts_with("run-")
        })
        .count()
}

fn assert_restores(repo: &Repository, snapshot: &Snapshot, source: &Path) {
    let out = tempfile::tempdir().expect("out");
    let target = out.path().join("r");
    restore(repo, snapshot, "/", &target, &RestoreOptions::default()).expect("restore");
    assert_same_tree(source, &target);
}

#[test]
fn backups_restores_and_checks_give_the_same_answers_through_the_on_disk_index() {
    let store = new_store();
    let cache = tempfile::tempdir().expect("cache");
    let sources: Vec<tempfile::TempDir> =
        (0..7).map(|_| tempfile::tempdir().expect("src")).collect();
    let mut snapshots = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        make_tree(src.path(), i as u64 + 1, 60, 40_000);
        let repo = with_cache(&store, cache.path());
        snapshots.push(backup(&repo, src.path(), &BackupOptions::default()).expect("backup"));
        // The same files again: nothing new is stored.
        let packs_before = repo.list_packs().expect("packs").len();
        backup(&repo, src.path(), &BackupOptions::default()).expect("again");
        assert_eq!(
            repo.list_packs().expect("packs").len(),
            packs_before,
            "deduplicated"
        );

        let reopened = with_cache(&store, cache.path());
        assert!(runs(&reopened) <= 4, "runs are merged beyond four");
        assert_same_answers(&reopened, &in_memory(&store));
    }
    let repo = with_cache(&store, cache.path());
    for (snap, src) in snapshots.iter().zip(&sources) {
        assert_restores(&repo, snap, src.path());
    }
    assert_clean(&repo, "after the backups");
}

#[test]
fn a_prune_that_supersedes_index_objects_means_a_rebuild() {
    let store = new_store();
    let cache = tempfile::tempdir().expect("cache");
    let (old, kept) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    make_tree(old.path(), 11, 80, 40_000);
    make_tree(kept.path(), 12, 80, 40_000);
    let repo = with_cache(&store, cache.path());
    let first = backup(&repo, old.path(), &BackupOptions::default()).expect("old");
    let second = backup(&repo, kept.path(), &BackupOptions::default()).expect("kept");
    let before = in_memory(&store);
    repo.storage()
        .delete(&Key::Snapshot(first.id).path())
        .expect("forget");
    let options = PruneOptions {
        grace: Duration::ZERO,
        max_wait: Some(Duration::from_secs(120)),
        ..Default::default()
    };
    let report = prune(&repo, &options).expect("prune");
    assert!(report.packs_deleted > 0, "{report:?}");

    let after = in_memory(&store);
    assert!(after.len() < before.len(), "the prune removed blobs");
    let reopened = with_cache(&store, cache.path());
    assert_eq!(runs(&reopened), 1, "rebuilt in one run");
    assert_same_answers(&reopened, &after);
    assert_restores(&reopened, &second, kept.path());
    assert_clean(&reopened, "after the prune");
}

/// The path of one run file of the cache in `dir`.
fn first_run(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("run-"))
        })
        .expect("a run")
}

/// Flips one byte in the middle of the first run file.
fn flip_a_run_byte(repo: &Repository) {
    let run = first_run(repo.index_cache().expect("cache").dir());
    let mut bytes = std::fs::read(&run).expect("read run");
    bytes[100] ^= 0x10; // a record of block 0
    std::fs::write(&run, bytes).expect("write run");
}

#[test]
fn a_damaged_foreign_or_exposed_cache_costs_a_rebuild_never_a_wrong_answer() {
    let store = new_store();
    let cache = tempfile::tempdir().expect("cache");
    let src = tempfile::tempdir().expect("src");
    make_tree(src.path(), 21, 200, 20_000);
    let snap = backup(
        &with_cache(&store, cache.path()),
        src.path(),
        &BackupOptions::default(),
    )
    .expect("backup");
    let expected = in_memory(&store);

    // A flipped record byte under an open handle: a lookup in that block
    // fails and names the cache; the next open rebuilds it.
    let repo = with_cache(&store, cache.path());
    flip_a_run_byte(&repo);
    let failures: Vec<String> = {
        let index = repo.index();
        expected
            .keys()
            .filter_map(|id| index.get(id).err().map(|e| e.to_string()))
            .collect()
    };
    assert!(!failures.is_empty(), "the damaged block is found");
    assert!(failures[0].contains("index cache block"), "{}", failures[0]);
    let dir = repo.index_cache().expect("cache").dir().to_path_buf();
    assert!(!dir.join("manifest").exists(), "marked for a rebuild");
    let repo = with_cache(&store, cache.path());
    assert_same_answers(&repo, &expected);
    assert_restores(&repo, &snap, src.path());

    // A damaged manifest, a truncated run, a deleted run: rebuilt.
    let mut manifest = std::fs::read(dir.join("manifest")).expect("manifest");
    manifest[3] ^= 1;
    std::fs::write(dir.join("manifest"), manifest).expect("write");
    assert_same_answers(&with_cache(&store, cache.path()), &expected);
    for damage in ["truncate", "delete"] {
        let run = first_run(&dir);
        match damage {
            "truncate" => {
                let len = std::fs::metadata(&run).expect("stat").len();
                std::fs::File::options()
                    .write(true)
                    .open(&run)
                    .and_then(|f| f.set_len(len - 10))
                    .expect("truncate");
            }
            _ => std::fs::remove_file(&run).expect("delete"),
        }
        assert_same_answers(&with_cache(&store, cache.path()), &expected);
    }

    // Another store's cache planted under this store's name: its MACs
    // are under another key, so it is rebuilt, not used.
    let other = new_store();
    let other_src = tempfile::tempdir().expect("other src");
    make_tree(other_src.path(), 22, 50, 20_000);
    let other_cache = tempfile::tempdir().expect("other cache");
    let other_repo = with_cache(&other, other_cache.path());
    backup(&other_repo, other_src.path(), &BackupOptions::default()).expect("other backup");
    let other_dir = with_cache(&other, other_cache.path())
        .index_cache()
        .expect("cache")
        .dir()
        .to_path_buf();
    std::fs::remove_dir_all(&dir).expect("rm");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    for entry in std::fs::read_dir(&other_dir).expect("ls other") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
    }
    assert_same_answers(&with_cache(&store, cache.path()), &expected);

    // A cache directory others can write is not used: the index stays in
    // memory.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let repo = open(store.clone());
    let index = IndexCache::open(cache.path(), repo.store_id(), repo.keys().cache_mac_key());
    let repo = repo.with_index_cache(Some(index), 0).expect("open");
    assert!(!repo.index().on_disk(), "an exposed cache is not trusted");
    assert_restores(&repo, &snap, src.path());
}

#[test]
fn handles_that_update_one_cache_at_once_all_see_the_whole_index() {
    let store = new_store();
    let cache = tempfile::tempdir().expect("cache");
    let src = tempfile::tempdir().expect("src");
    make_tree(src.path(), 31, 100, 20_000);
    backup(
        &with_cache(&store, cache.path()),
        src.path(),
        &BackupOptions::default(),
    )
    .expect("backup");
    let more = tempfile::tempdir().expect("more");
    make_tree(more.path(), 32, 100, 20_000);
    backup(&open(store.clone()), more.path(), &BackupOptions::default()).expect("more");
    let expected = in_memory(&store);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert_same_answers(&with_cache(&store, cache.path()), &expected));
        }
    });
}

#[test]
fn a_long_backup_moves_its_blobs_to_the_on_disk_index_as_it_goes() {
    let store = new_store();
    let cache = tempfile::tempdir().expect("cache");
    let repo = with_cache(&store, cache.path());
    let writer = Writer::new(&repo).expect("writer");
    let blob = |i: u64| i.to_le_bytes().repeat(3);
    let n = 700_000u64;
    let mut most_in_memory = 0;
    for i in 0..n {
        assert!(writer.save_blob(BlobKind::Data, &blob(i)).expect("save").1);
        if i % 1000 == 0 {
            most_in_memory = most_in_memory.max(repo.index().memory_blobs());
        }
    }
    writer.finish().expect("finish");
    assert!(repo.index().on_disk());
    // 200,000 before a spill, plus what was indexed meanwhile.
    assert!(
        most_in_memory < 400_000,
        "{most_in_memory} of {n} blobs held in memory at once"
    );
    let index = repo.index();
    for i in (0..n).step_by(997) {
        let id = repo.keys().blob_id(BlobKind::Data, &blob(i));
        assert!(index.get(&id).expect("lookup").is_some(), "blob {i}");
    }
    drop(index);
    for i in (0..n).step_by(49_999) {
        let id = repo.keys().blob_id(BlobKind::Data, &blob(i));
        assert_eq!(repo.load_blob(BlobKind::Data, &id).expect("read"), blob(i));
    }
    let reopened = with_cache(&store, cache.path());
    assert_eq!(reopened.index().blob_count() as u64, n);
}
