//! A restore (and a sync) from a remote store fetches each pack it needs
//! most of once, whole (`pack_spool.rs`), instead of one ranged read per
//! batch of files (or chunks) in it; the result is bit-exact and no file
//! is left behind.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use common::{FaultStore, PASS, Rng, assert_same_tree, remote_over, storage_over};
use kloset::Repository;
use kloset::ops::backup::{BackupOptions, backup};
use kloset::ops::restore::{RestoreOptions, restore};
use kloset::ops::sync::{SyncOptions, sync};
use kloset::tree_cache::TreeCache;
use object_store::PutMode;

/// 60 directories of small random files and a few larger ones: about
/// 26 MB that does not compress.
fn mixed_tree(root: &Path) {
    let mut rng = Rng::new(21);
    for d in 0..60 {
        let dir = root.join(format!("d{}", d % 6)).join(format!("s{d:02}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..8 {
            let len = 200 + (rng.next() as usize) % 8000;
            std::fs::write(dir.join(format!("f{f}")), rng.bytes(len)).expect("write");
        }
        if d % 5 == 0 {
            std::fs::write(dir.join("large.bin"), rng.bytes(2_000_000)).expect("write");
        }
    }
}

/// Reads of each pack since `from`.
fn reads_per_pack(store: &FaultStore, from: usize) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for path in store.reads()[from..]
        .iter()
        .filter(|p| p.starts_with("packs/"))
    {
        *out.entry(path.clone()).or_default() += 1;
    }
    out
}

/// The pack objects of the store, with their sizes.
fn pack_objects(repo: &Repository) -> Vec<(String, u64)> {
    repo.storage()
        .list(Some(kloset::storage::PACKS_DIR))
        .expect("list")
        .into_iter()
        .map(|l| (l.path, l.size))
        .collect()
}

/// The store opened with its local cache (tree packs and the spool) in
/// `cache`.
fn cached(store: &Arc<FaultStore>, cache: &Path) -> Repository {
    let repo = Repository::open(remote_over(store.clone()), PASS).expect("open");
    let tree_cache = TreeCache::open(cache, repo.store_id());
    repo.with_tree_cache(Some(tree_cache))
}

/// The reads of each pack since `before`, checking that every pack of at
/// least 1.5 MiB was read once and that the spool under `cache` is empty.
/// (A pack whose wanted span is under MIN_SPAN, 1 MiB: the last of a
/// backup, or a tree pack, is read by ranges: a request or two.)
fn each_large_pack_read_once(
    store: &FaultStore,
    repo: &Repository,
    before: usize,
    cache: &Path,
) -> HashMap<String, usize> {
    let reads = reads_per_pack(store, before);
    let sizes: HashMap<String, u64> = pack_objects(repo).into_iter().collect();
    let twice: Vec<_> = reads
        .iter()
        .filter(|(pack, n)| **n > 1 && sizes[*pack] >= 3 << 19)
        .collect();
    assert!(twice.is_empty(), "packs read more than once: {twice:?}");
    let spool_dir = cache.join(repo.store_id().to_hex()).join("spool");
    assert_eq!(
        std::fs::read_dir(&spool_dir).expect("spool dir").count(),
        0,
        "nothing left in {}",
        spool_dir.display()
    );
    reads
}

fn restore_all(repo: &Repository, out: &Path) {
    let snapshot = repo.resolve_snapshot("latest").expect("snapshot");
    let report = restore(repo, &snapshot, "/", out, &RestoreOptions::default()).expect("restore");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

/// A remote store (2 MiB packs) holding one backup of [`mixed_tree`].
fn backed_up() -> (Arc<FaultStore>, Repository, tempfile::TempDir) {
    let (store, repo) = common::remote_store(2 << 20);
    let src = tempfile::tempdir().expect("src");
    mixed_tree(src.path());
    backup(&repo, src.path(), &BackupOptions::default()).expect("backup");
    (store, repo, src)
}

#[test]
fn packs_a_restore_needs_most_of_are_read_once() {
    let (store, repo, src) = backed_up();
    let packs = pack_objects(&repo).len();
    assert!(packs >= 10, "several packs: {packs}");

    // With a local cache: each pack once (the tree packs by the tree
    // cache, the data packs by the spool), from 16 workers at once.
    let cache = tempfile::tempdir().expect("cache");
    let repo = cached(&store, cache.path());
    let before = store.reads().len();
    let out = tempfile::tempdir().expect("out");
    restore_all(&repo, out.path());
    assert_same_tree(src.path(), out.path());
    let spooled = each_large_pack_read_once(&store, &repo, before, cache.path());

    // Without a cache there is no spool: ranged reads, several per pack.
    let repo = Repository::open(remote_over(store.clone()), PASS)
        .expect("open")
        .with_tree_cache(None);
    let before = store.reads().len();
    let out = tempfile::tempdir().expect("out");
    restore_all(&repo, out.path());
    assert_same_tree(src.path(), out.path());
    let ranged: usize = reads_per_pack(&store, before).values().sum();
    let whole: usize = spooled.values().sum();
    eprintln!("{packs} packs: {whole} pack reads with the spool, {ranged} without");
    assert!(
        ranged > whole * 2,
        "ranged reads {ranged} against {whole} whole-pack reads"
    );
}

#[test]
fn a_damaged_pack_fetched_whole_fails_the_restore_and_names_it() {
    let (store, _, _src) = backed_up();
    let cache = tempfile::tempdir().expect("cache");
    let repo = cached(&store, cache.path());
    // The largest pack holds data (tree packs are small).
    let (pack, _) = pack_objects(&repo)
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .expect("a pack");
    let storage = repo.storage();
    let mut bytes = storage.run(storage.get_async(&pack)).expect("get").to_vec();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    storage
        .run(storage.put_async(&pack, bytes.into(), PutMode::Overwrite))
        .expect("put");
    let out = tempfile::tempdir().expect("out");
    let snapshot = repo.resolve_snapshot("latest").expect("snapshot");
    let err = restore(
        &repo,
        &snapshot,
        "/",
        out.path(),
        &RestoreOptions::default(),
    )
    .expect_err("a damaged pack");
    assert!(err.to_string().contains(&pack), "names {pack}: {err}");
}

/// A sync out of a remote store reads what it copies the same way: each
/// pack it needs most of once, whole, and the copy restores bit-exact.
#[test]
fn a_sync_from_a_remote_store_reads_each_pack_it_copies_once() {
    let (store, _, src) = backed_up();
    let copy_to = || {
        let target = Repository::create(
            storage_over(Arc::new(object_store::memory::InMemory::new())),
            b"the target's passphrase",
            common::create_options(4 << 20),
        )
        .expect("target");
        (target, tempfile::tempdir().expect("out"))
    };

    let cache = tempfile::tempdir().expect("cache");
    let repo = cached(&store, cache.path());
    let before = store.reads().len();
    let (target, out) = copy_to();
    let report = sync(&repo, &target, &SyncOptions::default()).expect("sync");
    assert_eq!(report.copied.len(), 1);
    let spooled = each_large_pack_read_once(&store, &repo, before, cache.path());
    restore_all(&target, out.path());
    assert_same_tree(src.path(), out.path());

    // Without a cache: ranged reads, a few chunks each.
    let repo = Repository::open(remote_over(store.clone()), PASS)
        .expect("open")
        .with_tree_cache(None);
    let before = store.reads().len();
    let (target, out) = copy_to();
    sync(&repo, &target, &SyncOptions::default()).expect("sync");
    let ranged: usize = reads_per_pack(&store, before).values().sum();
    let whole: usize = spooled.values().sum();
    eprintln!("sync: {whole} pack reads with the spool, {ranged} without");
    assert!(
        ranged > whole * 2,
        "ranged reads {ranged} against {whole} whole-pack reads"
    );
    restore_all(&target, out.path());
    assert_same_tree(src.path(), out.path());
}
