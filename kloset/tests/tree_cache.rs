//! The local tree cache of a remote store: tree blobs live in packs of
//! their own, an unchanged re-backup reads each tree pack once instead of
//! one request per directory, and a damaged or planted cache costs a
//! request, never a wrong tree.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{FaultStore, PASS, assert_same_tree, create_options, storage_over};
use kloset::ops::backup::{BackupOptions, backup};
use kloset::ops::restore::{RestoreOptions, restore};
use kloset::tree_cache::TreeCache;
use kloset::{BlobKind, Repository};
use object_store::memory::InMemory;

/// A source of `dirs` directories with a few small files each.
fn make_dirs(root: &Path, dirs: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("dir{d:03}")).join("sub");
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..3 {
            std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f}").repeat(50))
                .expect("write");
        }
    }
}

/// Reads of objects under `packs/` since `from`.
fn pack_reads(store: &FaultStore, from: usize) -> usize {
    store.reads()[from..]
        .iter()
        .filter(|p| p.starts_with("packs/"))
        .count()
}

/// A source of `dirs` directories and a new store on a read-recording
/// memory backend.
fn source_and_store(dirs: usize) -> (tempfile::TempDir, Arc<FaultStore>) {
    let src = tempfile::tempdir().expect("src");
    make_dirs(src.path(), dirs);
    let store = Arc::new(FaultStore::new(Arc::new(InMemory::new())));
    Repository::create(storage_over(store.clone()), PASS, create_options(1 << 20)).expect("create");
    (src, store)
}

fn open_with_cache(store: &Arc<FaultStore>, cache: Option<&Path>) -> Repository {
    let repo = Repository::open(storage_over(store.clone()), PASS).expect("open");
    let cache = cache.map(|dir| TreeCache::open(dir, repo.store_id()));
    repo.with_tree_cache(cache)
}

#[test]
fn an_unchanged_rebackup_reads_tree_packs_not_one_tree_per_directory() {
    let (src, store) = source_and_store(150); // 301 directories with the root and subs
    let writer_cache = tempfile::tempdir().expect("cache");
    let repo = open_with_cache(&store, Some(writer_cache.path()));
    let first = backup(&repo, src.path(), &BackupOptions::default()).expect("backup");

    // Tree blobs and data blobs never share a pack.
    {
        let index = repo.index();
        let mut tree_packs = std::collections::HashSet::new();
        for blob in index.iter() {
            let (_, loc) = blob.expect("index");
            if loc.kind == BlobKind::Tree {
                assert!(index.is_tree_pack(&loc.pack), "a tree in a mixed pack");
                tree_packs.insert(loc.pack);
            } else {
                assert!(!index.is_tree_pack(&loc.pack));
            }
        }
        assert_eq!(tree_packs.len(), 1, "301 small trees fit one pack");
    }

    // Without a cache: one read per directory (the baseline).
    let uncached = open_with_cache(&store, None);
    let before = store.reads().len();
    backup(&uncached, src.path(), &BackupOptions::default()).expect("uncached");
    let baseline = pack_reads(&store, before);
    assert!(baseline >= 301, "expected a read per tree, saw {baseline}");

    // A host with an empty cache: the one tree pack, once.
    let fresh_cache = tempfile::tempdir().expect("cache");
    let fresh = open_with_cache(&store, Some(fresh_cache.path()));
    let before = store.reads().len();
    let second = backup(&fresh, src.path(), &BackupOptions::default()).expect("fresh");
    assert_eq!(pack_reads(&store, before), 1, "one whole tree pack");
    assert_eq!(second.tree, first.tree);
    assert_eq!(second.stats.files_unchanged, 450);

    // The host that wrote the trees cached them while uploading: no read.
    let before = store.reads().len();
    backup(&repo, src.path(), &BackupOptions::default()).expect("again");
    assert_eq!(pack_reads(&store, before), 0, "trees came from the cache");
}

#[test]
fn a_damaged_or_planted_cache_is_detected_and_repaired_from_the_store() {
    let (src, store) = source_and_store(20);
    let cache_dir = tempfile::tempdir().expect("cache");
    let repo = open_with_cache(&store, Some(cache_dir.path()));
    let snap = backup(&repo, src.path(), &BackupOptions::default()).expect("backup");
    let cache = repo.tree_cache().expect("cache").clone();
    let cached: Vec<_> = std::fs::read_dir(cache.dir())
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(cached.len(), 1, "the tree pack: {cached:?}");
    let pack_file = &cached[0];
    let good = std::fs::read(pack_file).expect("read");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("flipped", {
            let mut b = good.clone();
            for i in (0..b.len()).step_by(97) {
                b[i] ^= 0x55;
            }
            b
        }),
        ("truncated", good[..good.len() / 3].to_vec()),
        ("emptied", Vec::new()),
        ("another pack's bytes", vec![0xAB; good.len()]),
    ];
    for (what, bytes) in cases {
        std::fs::write(pack_file, &bytes).expect("damage");
        let before = store.reads().len();
        restore_and_compare(&store, cache_dir.path(), &snap, src.path());
        assert!(
            pack_reads(&store, before) >= 1,
            "{what}: the store was asked"
        );
        assert_eq!(
            std::fs::read(pack_file).expect("repaired"),
            good,
            "{what}: the cache holds the store's pack again"
        );
    }

    // A deleted cache is only a cold one.
    std::fs::remove_dir_all(cache_dir.path()).expect("rm cache");
    restore_and_compare(&store, cache_dir.path(), &snap, src.path());
}

/// Opens the store again with the cache in `cache`, restores `snap` and
/// compares it with `src`.
fn restore_and_compare(store: &Arc<FaultStore>, cache: &Path, snap: &kloset::Snapshot, src: &Path) {
    let reopened = open_with_cache(store, Some(cache));
    let out = tempfile::tempdir().expect("out");
    restore(&reopened, snap, "/", out.path(), &RestoreOptions::default()).expect("restore");
    assert_same_tree(src, out.path());
}

#[test]
fn a_cache_directory_others_can_write_is_not_used() {
    let (src, store) = source_and_store(5);
    let open_dir = tempfile::tempdir().expect("cache");
    std::fs::set_permissions(
        open_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let repo = open_with_cache(&store, Some(open_dir.path()));
    backup(&repo, src.path(), &BackupOptions::default()).expect("backup");
    let before = store.reads().len();
    backup(&repo, src.path(), &BackupOptions::default()).expect("again");
    assert!(
        pack_reads(&store, before) >= 11,
        "every tree from the store"
    );
    let cached = walk_files(open_dir.path());
    assert!(cached.is_empty(), "nothing cached there: {cached:?}");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
