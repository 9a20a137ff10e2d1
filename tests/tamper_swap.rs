//! Swapped and replayed objects, beside `cli_safety`'s flipped, truncated
//! and garbage ones. Every sealed object is bound to its kind and id (the
//! associated data of its seal, FORMAT.md §4), so an object copied over
//! another of the same kind, or over one of another kind, fails to
//! authenticate and is named; nothing restores wrong data. A replayed
//! object, an authentic one written back after it was removed (here a
//! forgotten snapshot), is accepted: detecting that needs a signed list of
//! what should exist, which the format does not have (docs/reliability.md).

use crate::common;

use std::path::Path;

use common::rng::SplitMix64;
use common::store::StoreFixture;

fn small_tree(root: &Path, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for i in 0..20 {
        let dir = root.join(format!("dir{}", i % 3));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("file{i}.bin")), rng.bytes(60_000)).expect("write");
    }
}

/// Runs `check --read-data` and `ls`; both must fail naming `key`, without
/// a panic.
fn detected(fx: &StoreFixture, what: &str, key: &str) {
    let check = fx.run(&["check", "--read-data"]);
    assert_eq!(
        check.code,
        Some(1),
        "{what}: check must fail: {}",
        check.describe()
    );
    let all = format!("{}{}", check.stdout_str(), check.stderr_str());
    assert!(
        all.contains(key),
        "{what}: check names {key}: {}",
        check.describe()
    );
    assert!(!all.contains("panicked"), "{what}: {}", check.describe());
}

#[test]
fn swapped_objects_are_detected_and_replayed_ones_are_not() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fx = StoreFixture::local(&tmp.path().join("store"));
    let src = tmp.path().join("src");
    small_tree(&src, 3);
    let src_s = src.to_str().expect("utf8");
    fx.must(&["create", "--pack-size", "256KiB", "--kdf-memory-mib", "8"]);
    fx.must(&["backup", src_s]);
    small_tree(&src.join("more"), 4);
    fx.must(&["backup", src_s]);
    let objects = fx.objects();
    let of_kind = |prefix: &str| -> Vec<(std::path::PathBuf, String)> {
        objects
            .iter()
            .filter(|(_, k)| k.starts_with(prefix))
            .cloned()
            .collect()
    };

    // Same kind: B's name holds A's (authentic) bytes.
    for kind in ["snapshots/", "index/", "packs/"] {
        let list = of_kind(kind);
        assert!(list.len() >= 2, "two {kind} objects: {list:?}");
        let (a, b) = (&list[0], &list[1]);
        let original = std::fs::read(&b.0).expect("read");
        std::fs::copy(&a.0, &b.0).expect("swap");
        detected(&fx, &format!("{} over {}", a.1, b.1), &b.1);
        if kind == "packs/" {
            // No restore writes what the swapped pack holds under B's name.
            let out = tmp.path().join(format!("r-{}", kind.trim_end_matches('/')));
            let restore = fx.run(&["restore", "-to", out.to_str().expect("utf8"), "latest"]);
            if restore.code == Some(0) {
                common::tree::assert_trees_equal(&src, &out);
            } else {
                assert!(
                    restore.stderr_str().contains(&b.1),
                    "the restore names the pack: {}",
                    restore.describe()
                );
            }
        }
        std::fs::write(&b.0, original).expect("put back");
    }

    // Another kind: an index object under a snapshot's name.
    let snapshot = &of_kind("snapshots/")[0];
    let index = &of_kind("index/")[0];
    let original = std::fs::read(&snapshot.0).expect("read");
    std::fs::copy(&index.0, &snapshot.0).expect("swap");
    detected(&fx, "an index object over a snapshot", &snapshot.1);
    let ls = fx.run(&["ls"]);
    assert_eq!(ls.code, Some(1), "ls names it too: {}", ls.describe());
    assert!(ls.stderr_str().contains(&snapshot.1), "{}", ls.describe());
    std::fs::write(&snapshot.0, original).expect("put back");
    fx.must(&["check", "--read-data"]);

    // Replay: forget the older snapshot, then write its object back.
    let before: Vec<(std::path::PathBuf, Vec<u8>)> = of_kind("snapshots/")
        .into_iter()
        .map(|(p, _)| {
            let bytes = std::fs::read(&p).expect("read");
            (p, bytes)
        })
        .collect();
    fx.must(&["forget", "--keep-last", "1"]);
    let listed = fx.must(&["ls"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    for (path, bytes) in &before {
        if !path.exists() {
            std::fs::write(path, bytes).expect("replay");
        }
    }
    let listed = fx.must(&["ls"]);
    assert_eq!(
        listed.lines().count(),
        2,
        "a replayed snapshot is authentic and listed again (no manifest): {listed}"
    );
    fx.must(&["check", "--read-data"]);
}
