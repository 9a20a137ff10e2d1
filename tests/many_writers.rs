//! Many writers on one store, with `forget` and `prune` in a loop beside
//! them, on local disk and on a real S3 server (s3s-fs): three `kloset`
//! processes back up their own changing sources (which share some content,
//! so their data deduplicates across writers) while a fourth forgets all
//! but the last two snapshots of each source and prunes. Afterwards every
//! kept snapshot restores bit-exact to what its source held when it was
//! taken, each source has exactly two snapshots, and `check --read-data`
//! is clean.
//!
//! Runs with the stale period shortened through `KLOSET_LOCK_STALE_AFTER`
//! and `prune --grace 1s` (kloset/FORMAT.md §16).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::rng::SplitMix64;
use common::store::StoreFixture;
use common::tree::assert_trees_equal;
use serde_json::Value;

const WRITERS: usize = 3;
/// Each writer backs up at least this often, and goes on until this many
/// prunes have finished beside it (at most [`MAX_BACKUPS`]).
const MIN_BACKUPS: usize = 5;
const PRUNES_BESIDE: usize = 3;
const MAX_BACKUPS: usize = 60;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// One writer: changes its source, backs it up, and records a copy of what
/// each snapshot must restore to.
fn writer(
    fx: &StoreFixture,
    root: &Path,
    n: usize,
    expected: &Mutex<BTreeMap<String, PathBuf>>,
    prunes: &AtomicUsize,
) -> usize {
    let src = root.join(format!("src{n}"));
    std::fs::create_dir_all(&src).expect("mkdir");
    let shared = SplitMix64::new(99).bytes(400_000);
    std::fs::write(src.join("shared.bin"), &shared).expect("shared");
    let mut rng = SplitMix64::new(n as u64 * 1000);
    let mut round = 0;
    while round < MIN_BACKUPS
        || (prunes.load(Ordering::SeqCst) < PRUNES_BESIDE && round < MAX_BACKUPS)
    {
        // A new file each round; the one from two rounds back goes, so
        // forgotten snapshots leave garbage behind.
        std::fs::write(src.join(format!("r{round}.bin")), rng.bytes(300_000)).expect("write");
        if round >= 2 {
            std::fs::remove_file(src.join(format!("r{}.bin", round - 2))).expect("rm");
        }
        let out = json(&fx.must(&["--json", "backup", src.to_str().expect("utf8")]));
        let id = out["snapshot"]["id"].as_str().expect("id").to_string();
        let copy = root.join(format!("expected-{id}"));
        copy_dir(&src, &copy);
        expected.lock().expect("map").insert(id, copy);
        round += 1;
    }
    round
}

fn many_writers(fx: &StoreFixture, root: &Path) {
    fx.must(&["create", "--kdf-memory-mib", "8", "--pack-size", "64KiB"]);
    let expected = Mutex::new(BTreeMap::new());
    let writing = Arc::new(AtomicBool::new(true));
    let prunes = AtomicUsize::new(0);
    let mut freed_while_writing = 0u64;
    let mut backups = 0;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|n| {
                let (expected, prunes) = (&expected, &prunes);
                s.spawn(move || writer(fx, root, n, expected, prunes))
            })
            .collect();
        let watcher = {
            let writing = writing.clone();
            s.spawn(move || {
                let done: usize = handles
                    .into_iter()
                    .map(|h| h.join().expect("writer thread"))
                    .sum();
                writing.store(false, Ordering::SeqCst);
                done
            })
        };
        while writing.load(Ordering::SeqCst) {
            fx.must(&["forget", "--keep-last", "2"]);
            let r = json(&fx.must(&["--json", "prune", "--grace", "1s", "--max-unused", "10%"]));
            assert_eq!(r["packs_missing"], 0, "{r}");
            assert_eq!(r["unfound_blobs"], 0, "{r}");
            freed_while_writing += r["bytes_freed"].as_u64().expect("freed");
            prunes.fetch_add(1, Ordering::SeqCst);
        }
        backups = watcher.join().expect("watcher");
    });
    let prunes_while_writing = prunes.load(Ordering::SeqCst);
    fx.must(&["forget", "--keep-last", "2"]);
    let r = json(&fx.must(&["--json", "prune", "--grace", "0s", "--max-unused", "10%"]));
    assert_eq!(r["packs_missing"], 0, "{r}");
    assert!(
        prunes_while_writing >= PRUNES_BESIDE,
        "{prunes_while_writing} prune(s) ran beside the writers"
    );
    assert!(
        freed_while_writing + r["bytes_freed"].as_u64().expect("freed") > 0,
        "the prunes gave space back"
    );

    eprintln!(
        "{backups} backups; {prunes_while_writing} prune(s) beside them freed {freed_while_writing} B; the last freed {}",
        r["bytes_freed"]
    );
    let expected = expected.into_inner().expect("map");
    assert_eq!(expected.len(), backups, "every backup has its own snapshot");
    let listed = json(&fx.must(&["--json", "ls"]));
    let snapshots = listed["snapshots"].as_array().expect("snapshots");
    let mut per_source: BTreeMap<String, usize> = BTreeMap::new();
    for snap in snapshots {
        let id = snap["id"].as_str().expect("id");
        *per_source
            .entry(snap["source"].as_str().expect("source").to_string())
            .or_default() += 1;
        let want = expected
            .get(id)
            .unwrap_or_else(|| panic!("snapshot {id} was not written by a writer"));
        let out = root.join(format!("restored-{id}"));
        fx.must(&["restore", "--to", out.to_str().expect("utf8"), id]);
        assert_trees_equal(want, &out);
    }
    assert_eq!(per_source.len(), WRITERS, "{per_source:?}");
    assert!(per_source.values().all(|n| *n == 2), "{per_source:?}");
    fx.must(&["check", "--read-data"]);
    let locks = json(&fx.must(&["--json", "locks"]));
    assert_eq!(locks["locks"], serde_json::json!([]), "{locks}");
}

fn with_short_locks(mut fx: StoreFixture) -> StoreFixture {
    fx.kloset = fx.kloset.clone().env("KLOSET_LOCK_STALE_AFTER", "5s");
    fx
}

#[test]
fn many_writers_with_prune_on_local_disk() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fx = with_short_locks(StoreFixture::local(&tmp.path().join("store")));
    many_writers(&fx, tmp.path());
}

#[test]
fn many_writers_with_prune_on_s3() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(fx) = StoreFixture::s3("many") else {
        eprintln!("KLOSET_SKIP_S3=1: skipped");
        return;
    };
    many_writers(&with_short_locks(fx), tmp.path());
}
