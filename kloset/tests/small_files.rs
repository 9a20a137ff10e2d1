//! Small files are restored in batches that span directories
//! (`ops/restore/batch.rs`): from a remote store, a tree of many small
//! directories costs far fewer reads than it has directories, and every
//! directory still gets its mode and times after its files are written.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{PASS, Rng, assert_same_tree, create_options};
use kloset::Repository;
use kloset::ops::backup::{BackupOptions, backup};
use kloset::ops::restore::{RestoreOptions, restore};

/// `dirs` directories of `files` small files each, in two levels; every
/// directory gets a distinct mode and modification time.
fn many_small_dirs(root: &Path, dirs: usize, files: usize) {
    let mut rng = Rng::new(5);
    for d in 0..dirs {
        let dir = root.join(format!("top{}", d % 7)).join(format!("d{d:04}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..files {
            let len = 100 + (rng.next() as usize) % 3000;
            std::fs::write(dir.join(format!("f{f}")), rng.bytes(len)).expect("write");
        }
    }
    for d in 0..dirs {
        let dir = root.join(format!("top{}", d % 7)).join(format!("d{d:04}"));
        let mode = if d % 3 == 0 { 0o555 } else { 0o750 };
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
        set_mtime(&dir, 1_000_000_000 + d as i64 * 60);
    }
}

fn set_mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &t,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

/// Every directory below `a` has the mode and modification time of its
/// counterpart below `b`.
fn assert_same_dir_meta(a: &Path, b: &Path) {
    for entry in walk_dirs(a) {
        let rel = entry.strip_prefix(a).expect("below");
        let (ma, mb) = (
            std::fs::metadata(&entry).expect("a"),
            std::fs::metadata(b.join(rel)).expect("b"),
        );
        assert_eq!(ma.mode(), mb.mode(), "mode of {}", rel.display());
        assert_eq!(ma.mtime(), mb.mtime(), "mtime of {}", rel.display());
    }
}

fn walk_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let path = e.expect("entry").path();
            if path.is_dir() && !path.is_symlink() {
                todo.push(path.clone());
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn small_files_of_many_directories_take_far_fewer_reads_than_directories() {
    let (store, repo) = common::remote_store(4 << 20);
    let src = tempfile::tempdir().expect("src");
    // 400 directories of 6 files of about 1.5 KiB: 3.6 MiB in all.
    let dirs = 400;
    many_small_dirs(src.path(), dirs, 6);
    let snapshot = backup(&repo, src.path(), &BackupOptions::default()).expect("backup");

    let repo = Repository::open(common::remote_over(store.clone()), PASS).expect("open");
    let before = store.reads().len();
    let out = tempfile::tempdir().expect("out");
    let report = restore(
        &repo,
        &snapshot,
        "/",
        out.path(),
        &RestoreOptions::default(),
    )
    .expect("restore");
    assert_eq!(report.files, (dirs * 6) as u64);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_same_tree(src.path(), out.path());
    assert_same_dir_meta(src.path(), out.path());
    let pack_reads = store.reads()[before..]
        .iter()
        .filter(|p| p.starts_with("packs/"))
        .count();
    // Per-directory batches made at least one read per directory (400).
    // Batches over directory boundaries make one per pack region of a
    // batch; how the workers share the directories decides how many
    // regions a batch has (39 to 51 in runs on 2 cores).
    assert!(
        pack_reads <= dirs / 5,
        "{pack_reads} pack reads for {dirs} directories"
    );
}

#[test]
fn directories_get_their_metadata_after_their_files_from_local_disk_too() {
    let dir = tempfile::tempdir().expect("store");
    let location = kloset::Location::Fs(dir.path().join("store"));
    let storage = kloset::Storage::open(&location, true).expect("storage");
    let repo = Repository::create(storage, PASS, create_options(1 << 20)).expect("create");
    let src = tempfile::tempdir().expect("src");
    many_small_dirs(src.path(), 120, 3);
    // A file too large for a batch beside the small ones.
    std::fs::write(
        src.path().join("top0").join("large.bin"),
        Rng::new(9).bytes(3 << 20),
    )
    .expect("write");
    let snapshot = backup(&repo, src.path(), &BackupOptions::default()).expect("backup");
    let out = tempfile::tempdir().expect("out");
    restore(
        &repo,
        &snapshot,
        "/",
        out.path(),
        &RestoreOptions {
            threads: 4,
            ..Default::default()
        },
    )
    .expect("restore");
    assert_same_tree(src.path(), out.path());
    assert_same_dir_meta(src.path(), out.path());
}
