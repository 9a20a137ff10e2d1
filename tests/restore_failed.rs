//! A restore that fails part-way through a large file (a damaged chunk in
//! its middle) leaves no file cut short under a restored name and no
//! temporary file behind, and with `--force` the file it was replacing
//! stays as it was. The next restore into a directory removes what a
//! restore killed outright left there (its own temporary names only).

use crate::common;

use std::path::Path;

use common::e2e::files_under;
use common::later_damage::store_with_a_damaged_later_chunk;
use common::store::StoreFixture;

/// About 96 chunks: restored in windows, so several are written before
/// the damaged one is reached.
const FILE_LEN: usize = 6 * 1024 * 1024;

/// Every name under `dir` that a restore uses for a file not yet whole.
fn temporaries(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .map(|(path, _)| path)
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(".kloset-restore-") && n != ".kloset-restore-notes"
            })
        })
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn a_failed_restore_leaves_no_file_cut_short_and_keeps_what_force_would_replace() {
    let root = tempfile::tempdir().expect("tmp");
    let root = root.path();
    std::fs::create_dir_all(root.join("src/docs")).expect("mkdir");
    std::fs::write(root.join("src/docs/small.txt"), b"small and whole").expect("write");
    let fx = StoreFixture::local(&root.join("store"));
    let (_content, damage) = store_with_a_damaged_later_chunk(&fx, root, FILE_LEN);

    // Into a new directory: the large file is not there at all.
    let fresh = root.join("fresh");
    let out = fx.run(&["restore", "--to", fresh.to_str().expect("utf-8"), "latest"]);
    assert!(!out.status.success(), "the restore must fail: {out:?}");
    let stderr = out.stderr_str();
    assert!(stderr.contains(&damage.pack), "names the pack: {stderr}");
    assert!(
        !fresh.join("big.bin").exists(),
        "a file cut short was left under its restored name ({} bytes of {FILE_LEN})",
        std::fs::metadata(fresh.join("big.bin")).map_or(0, |m| m.len())
    );
    assert_eq!(temporaries(&fresh), Vec::<String>::new());

    // Over an older version with --force: the older version is kept.
    let old = root.join("old");
    std::fs::create_dir_all(old.join("docs")).expect("mkdir");
    std::fs::write(old.join("big.bin"), b"the version before").expect("write");
    let out = fx.run(&[
        "restore",
        "--force",
        "--to",
        old.to_str().expect("utf-8"),
        "latest",
    ]);
    assert!(!out.status.success(), "the restore must fail: {out:?}");
    assert_eq!(
        std::fs::read(old.join("big.bin")).expect("the older version"),
        b"the version before"
    );
    assert_eq!(temporaries(&old), Vec::<String>::new());

    // What a restore killed outright leaves: a temporary file. The next
    // restore into that directory removes it, and nothing else.
    let docs = old.join("docs");
    std::fs::write(docs.join(".kloset-restore-deadbeef-7"), b"cut").expect("write");
    std::fs::write(docs.join(".kloset-restore-notes"), b"a user's").expect("write");
    let docs_arg = docs.to_str().expect("utf-8");
    fx.must(&["restore", "--force", "--to", docs_arg, "latest:/docs"]);
    assert_eq!(temporaries(&old), Vec::<String>::new());
    assert_eq!(
        std::fs::read(docs.join(".kloset-restore-notes")).expect("kept"),
        b"a user's"
    );
    assert_eq!(
        std::fs::read(docs.join("small.txt")).expect("restored"),
        b"small and whole"
    );
}
