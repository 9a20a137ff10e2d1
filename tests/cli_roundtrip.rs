//! End-to-end round trip of the `kloset` CLI on a tricky tree, on local disk
//! and on a real S3 server: bit-exact restore, dedup, incremental backups,
//! browsing, sub-path restores and overwrite protection.

use crate::common;

use common::store::StoreFixture;
use common::tree::*;
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn round_trip(fx: &StoreFixture, tmp: &std::path::Path) {
    let src = tmp.join("src");
    let stats = build_tricky_tree(&src, 20_000);
    let src_s = src.to_str().expect("utf8 path");

    fx.must(&["create"]);
    let first = json(&fx.must(&["--json", "backup", src_s, "--tag", "first"]));
    let s1 = &first["snapshot"];
    assert_eq!(s1["errors"].as_array().map(Vec::len), Some(0), "{s1}");
    assert_eq!(
        s1["stats"]["files"].as_u64(),
        Some(stats.files as u64),
        "{s1}"
    );
    let logical = s1["stats"]["bytes"].as_u64().expect("bytes");
    let added = s1["stats"]["bytes_added"].as_u64().expect("added");
    let stored = s1["stats"]["bytes_stored"].as_u64().expect("stored");
    assert_eq!(logical, stats.bytes, "logical size");
    // 64 MiB sparse file of zeros and two duplicate 5 MiB files dedupe away.
    eprintln!("logical {logical} added {added} stored {stored}");
    // The 32 MiB compressible file shrinks.
    assert!(
        stored + 20 * 1024 * 1024 < added,
        "compression: stored {stored} of {added}"
    );

    // Bit-exact restore of the whole snapshot, holes kept.
    let out = tmp.join("out");
    fx.must(&["restore", "-to", out.to_str().expect("utf8"), "latest"]);
    assert_trees_equal(&src, &out);
    let allocated = allocated_bytes(&out.join(SPARSE_FILE));
    assert!(
        allocated < SPARSE_LEN / 4,
        "sparse file restored with {allocated} bytes allocated"
    );

    // Restoring again refuses to overwrite, and --force does.
    let refused = fx.run(&["restore", "-to", out.to_str().expect("utf8"), "latest"]);
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(
        refused.stderr_str().contains("--force"),
        "{}",
        refused.describe()
    );
    std::fs::write(out.join(UNICODE_FILE), b"scribbled").expect("scribble");
    fx.must(&[
        "restore",
        "--force",
        "-to",
        out.to_str().expect("utf8"),
        "latest",
    ]);
    assert_trees_equal(&src, &out);

    // An unchanged re-backup reads nothing and adds nothing.
    let second = json(&fx.must(&["--json", "backup", src_s]));
    let s2 = &second["snapshot"]["stats"];
    assert_eq!(
        s2["files_unchanged"].as_u64(),
        Some(stats.files as u64),
        "{s2}"
    );
    assert_eq!(s2["bytes_added"].as_u64(), Some(0), "{s2}");

    // Listing and browsing.
    let listing = json(&fx.must(&["--json", "ls"]));
    let snaps = listing["snapshots"].as_array().expect("snapshots");
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[0]["tags"][0], "first");
    let lines = fx.must(&["ls"]);
    assert_eq!(
        lines.lines().count(),
        2,
        "one line per snapshot, no header: {lines}"
    );
    let links = fx.must(&["ls", "latest:/links"]);
    assert!(links.contains("-> /etc/passwd"), "{links}");
    let cat = fx.kloset.must([
        "at",
        fx.location.as_str(),
        "cat",
        &format!("latest:/{UNICODE_FILE}"),
    ]);
    assert_eq!(
        cat.stdout,
        std::fs::read(src.join(UNICODE_FILE)).expect("read")
    );
    let cat = fx.kloset.must([
        "at",
        fx.location.as_str(),
        "cat",
        &format!("latest:{NEWLINE_FILE}"),
    ]);
    assert_eq!(
        cat.stdout,
        std::fs::read(src.join(NEWLINE_FILE)).expect("read")
    );

    // Sub-path restores: a directory's contents, and a single file.
    let sub = tmp.join("sub");
    fx.must(&["restore", "-to", sub.to_str().expect("utf8"), "latest:/dup"]);
    assert_trees_equal(&src.join("dup"), &sub);
    let one = tmp.join("one");
    fx.must(&[
        "restore",
        "-to",
        one.to_str().expect("utf8"),
        &format!("latest:/{RANDOM_FILE}"),
    ]);
    let name = std::path::Path::new(RANDOM_FILE).file_name().expect("name");
    assert!(
        std::fs::read(one.join(name)).expect("read")
            == std::fs::read(src.join(RANDOM_FILE)).expect("read")
    );

    // A change shows in diff and the new snapshot restores exactly.
    std::fs::write(src.join(EMPTY_FILE), b"no longer empty").expect("write");
    std::fs::remove_file(src.join(SPACES_FILE)).expect("rm");
    let third = json(&fx.must(&["--json", "backup", src_s]));
    let id3 = third["snapshot"]["short_id"]
        .as_str()
        .expect("id")
        .to_string();
    let id1 = snaps[0]["short_id"].as_str().expect("id").to_string();
    let diff = fx.must(&["diff", &id1, &id3]);
    assert!(
        diff.lines().any(|l| l == format!("M /{EMPTY_FILE}")),
        "{diff}"
    );
    assert!(
        diff.lines().any(|l| l == format!("- /{SPACES_FILE}")),
        "{diff}"
    );
    let out3 = tmp.join("out3");
    fx.must(&["restore", "-to", out3.to_str().expect("utf8"), &id3]);
    assert_trees_equal(&src, &out3);

    let check = fx.must(&["check", "--read-data"]);
    assert!(check.starts_with("ok:"), "{check}");
}

#[test]
fn tricky_tree_round_trip_on_local_disk() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fx = StoreFixture::local(&tmp.path().join("store"));
    round_trip(&fx, tmp.path());
}

#[test]
fn tricky_tree_round_trip_on_s3() {
    let Some(fx) = StoreFixture::s3("stores/roundtrip") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    round_trip(&fx, tmp.path());
    // Blobs are packed: a few large objects, not one per chunk or file.
    let objects = fx.objects();
    assert!(
        objects.len() <= 40,
        "{} objects in the bucket: {:?}",
        objects.len(),
        objects.iter().map(|o| &o.1).collect::<Vec<_>>()
    );
}

#[test]
fn create_takes_chunk_size_and_compression_level_and_refuses_bad_ones() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fx = StoreFixture::local(&tmp.path().join("store"));
    for (args, says) in [
        (&["--chunk-size", "3MiB"][..], "power of two"),
        (&["--chunk-size", "32KiB"], "from 64KiB to 4MiB"),
        (&["--compression-level", "0"], "--compression-level"),
        (&["--compression-level", "20"], "--compression-level"),
    ] {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        let out = fx.run(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr_str());
        assert!(
            out.stderr_str().contains(says),
            "{args:?}: {}",
            out.stderr_str()
        );
        assert!(
            !tmp.path().join("store/kloset").exists(),
            "{args:?} made a store"
        );
    }
    fx.must(&[
        "create",
        "--chunk-size",
        "256KiB",
        "--compression-level",
        "9",
    ]);
    let info = json(&fx.must(&["--json", "info"]));
    assert_eq!(info["chunker"]["avg_size"], 256 * 1024, "{info}");
    assert_eq!(info["chunker"]["min_size"], 128 * 1024, "{info}");
    assert_eq!(info["chunker"]["max_size"], 2048 * 1024, "{info}");
    assert_eq!(info["compression_level"], 9, "{info}");
    // The settings are used: a 3 MiB file of distinct content makes about
    // twelve chunks of 256 KiB, where the default would make three.
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..3u32 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(src.join("f"), &data).expect("write");
    let snap = json(&fx.must(&["--json", "backup", src.to_str().expect("utf8")]));
    let blobs = snap["snapshot"]["stats"]["blobs_added"]
        .as_u64()
        .expect("blobs");
    assert!((7..=25).contains(&blobs), "{blobs} blobs: {snap}");
}
