//! Files that move under a backup, through the real local importer: one
//! that grows between its open and the end of its read is kept as read (its
//! recorded size is its content's) and recorded as changed; one that
//! vanishes between listing and opening is recorded and left out. The
//! snapshot is consistent: `check --read-data` is clean and it restores
//! exactly what was read.

mod common;

use std::io::Write;
use std::sync::Arc;

use common::*;
use kloset::import::{FsImporter, Importer, SourcePath};
use kloset::ops::backup::{BackupOptions, backup_from};
use kloset::ops::check::{CheckOptions, check};
use kloset::ops::restore::{RestoreOptions, restore};
use kloset::tree::Node;
use kloset::{Repository, Storage};
use object_store::ObjectStore;
use object_store::memory::InMemory;

const GROWING: &[u8] = b"growing.log";
const VANISHING: &[u8] = b"vanishing.txt";
const APPENDED: &[u8] = b"a line appended while the backup read the file\n";

#[test]
fn a_file_that_grows_or_vanishes_under_a_backup_is_recorded_and_the_snapshot_is_consistent() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let storage: Storage = storage_over(mem);
    let repo = Repository::create(storage, PASS, create_options(64 * 1024)).expect("create");
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("src");
    let original = Rng::new(7).bytes(300_000);
    std::fs::write(src.join("growing.log"), &original).expect("write");
    std::fs::write(src.join("vanishing.txt"), b"here when listed").expect("write");
    std::fs::write(src.join("still.txt"), b"untouched").expect("write");

    // Another process's moves at the worst moments: `growing.log` gets a
    // line appended right after it is opened (after its `fstat`),
    // `vanishing.txt` is deleted right before it is opened.
    let root = src.clone();
    let importer = OnOpen::new(
        &src,
        move |inner: &FsImporter, path: &SourcePath, listed: &Node| {
            if path.name() == VANISHING {
                std::fs::remove_file(root.join("vanishing.txt"))?;
            }
            let opened = inner.open(path, listed)?;
            if path.name() == GROWING {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(root.join("growing.log"))?;
                f.write_all(APPENDED)?;
            }
            Ok(opened)
        },
    );
    let snap = backup_from(&repo, &importer, &BackupOptions::default()).expect("backup");

    let errors: Vec<(String, String)> = snap
        .errors
        .iter()
        .map(|e| (e.path.clone(), e.error.clone()))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0].0, "/growing.log");
    assert!(
        errors[0].1.contains("changed size while it was read")
            && errors[0].1.contains("300000 bytes when opened"),
        "{errors:#?}"
    );
    assert_eq!(errors[1].0, "/vanishing.txt");

    let report = check(
        &repo,
        &CheckOptions {
            read_data_percent: Some(100.0),
            ..Default::default()
        },
    )
    .expect("check runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    let out = tmp.path().join("out");
    restore(&repo, &snap, "/", &out, &RestoreOptions::default()).expect("restore");
    let mut grown = original.clone();
    grown.extend_from_slice(APPENDED);
    assert_eq!(
        std::fs::read(out.join("growing.log")).expect("restored"),
        grown,
        "the snapshot holds what was read"
    );
    assert!(!out.join("vanishing.txt").exists());
    assert_eq!(
        std::fs::read(out.join("still.txt")).expect("restored"),
        b"untouched"
    );
}
