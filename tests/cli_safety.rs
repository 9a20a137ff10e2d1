//! End-to-end safety of the `kloset` CLI: tampered, truncated and garbage
//! objects, wrong passphrases, unreadable source files, a backup killed
//! with SIGKILL, and usage errors. Exit codes are part of the contract:
//! 0 success, 1 error, 2 usage, 3 done with unreadable files; never a panic.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cli::{Kloset, Output};
use common::rng::SplitMix64;
use common::store::StoreFixture;
use common::tree::{assert_trees_equal, build_tricky_tree};

/// A small tree of random files over a few directories.
fn small_tree(root: &Path, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for i in 0..30 {
        let dir = root.join(format!("dir{}", i % 4));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let len = rng.below_or_eq(200_000) as usize;
        std::fs::write(dir.join(format!("file{i}.bin")), rng.bytes(len)).expect("write");
    }
}

fn assert_no_panic(out: &Output) {
    assert_ne!(out.code, Some(101), "panicked: {}", out.describe());
    assert!(
        !out.stderr_str().contains("panicked"),
        "panicked: {}",
        out.describe()
    );
}

fn tamper_suite(fx: &StoreFixture, tmp: &Path) {
    let src = tmp.join("src");
    small_tree(&src, 7);
    let src_s = src.to_str().expect("utf8");
    fx.must(&["create", "--pack-size", "256KiB", "--kdf-memory-mib", "8"]);
    fx.must(&["backup", src_s]);
    std::fs::write(src.join("dir0/file0.bin"), b"changed").expect("write");
    fx.must(&["backup", src_s]);
    let objects = fx.objects();
    let packs = objects
        .iter()
        .filter(|(_, k)| k.starts_with("packs/"))
        .count();
    assert!(packs >= 5, "want several packs, got {packs}: {objects:?}");

    let mut rng = SplitMix64::new(99);
    for (path, key) in &objects {
        let original = std::fs::read(path).expect("read object");
        let mut flipped = original.clone();
        // In a pack, a third into its blobs (a tree pack's trailer can be
        // most of it, and a damaged trailer affects no snapshot); in any
        // other object, a third into it.
        let at = if key.starts_with("packs/") {
            let len = flipped.len();
            let tail: [u8; 4] = flipped[len - 4..].try_into().expect("4 bytes");
            (len - 4 - u32::from_le_bytes(tail) as usize) / 3
        } else {
            flipped.len() / 3
        };
        flipped[at] ^= 0x20;
        let cases: [(&str, Vec<u8>); 3] = [
            ("one flipped byte", flipped),
            ("truncated", original[..original.len() / 2].to_vec()),
            ("garbage", rng.bytes(original.len())),
        ];
        for (what, bad) in cases {
            std::fs::write(path, &bad).expect("tamper");
            let out = fx.run(&["check", "--read-data"]);
            assert_no_panic(&out);
            assert_eq!(
                out.code,
                Some(1),
                "{what} {key}: check must fail: {}",
                out.describe()
            );
            if key != "kloset" {
                let all = format!("{}{}", out.stdout_str(), out.stderr_str());
                assert!(
                    all.contains(key.as_str()),
                    "{what} {key}: the error must name the object: {}",
                    out.describe()
                );
            }
            if key.starts_with("packs/") && what == "one flipped byte" {
                assert!(
                    out.stdout_str().contains("affected: snapshot"),
                    "check names what the damage affects: {}",
                    out.describe()
                );
                let dest = tmp.join(format!("restore-{}", key.replace('/', "_")));
                let restore = fx.run(&["restore", "-to", dest.to_str().expect("utf8"), "latest"]);
                let restore_first = fx.run(&[
                    "restore",
                    "-to",
                    tmp.join("r2").to_str().expect("utf8"),
                    &first_snapshot(fx),
                ]);
                let failed: Vec<&Output> = [&restore, &restore_first]
                    .into_iter()
                    .filter(|o| o.code == Some(1))
                    .collect();
                assert!(!failed.is_empty(), "a restore reading {key} must fail");
                for o in failed {
                    assert_no_panic(o);
                    assert!(
                        o.stderr_str().contains(key.as_str()),
                        "restore names the pack: {}",
                        o.describe()
                    );
                }
                let _ = std::fs::remove_dir_all(tmp.join("r2"));
            }
            std::fs::write(path, &original).expect("put back");
        }
    }
    let out = fx.must(&["check", "--read-data"]);
    assert!(out.starts_with("ok:"), "{out}");
}

fn first_snapshot(fx: &StoreFixture) -> String {
    let ls = fx.must(&["ls"]);
    ls.split_whitespace()
        .next()
        .expect("a snapshot")
        .to_string()
}

#[test]
fn tampering_is_detected_on_local_disk() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fx = StoreFixture::local(&tmp.path().join("store"));
    tamper_suite(&fx, tmp.path());
}

#[test]
fn tampering_is_detected_on_s3() {
    let Some(mut fx) = StoreFixture::s3("tamper") else {
        return;
    };
    // Every read goes to the store: with the tree cache, a restore would
    // read trees from the host's verified copies and rightly not notice a
    // damaged tree pack in the bucket (kloset/tests/tree_cache.rs covers
    // the cache's own tampering); `check --read-data` still would.
    fx.kloset = fx.kloset.env("KLOSET_CACHE_DIR", "off");
    let tmp = tempfile::tempdir().expect("tmp");
    tamper_suite(&fx, tmp.path());
}

fn store_state(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let fx = StoreFixture::local(dir);
    fx.objects()
        .into_iter()
        .map(|(p, k)| (k, std::fs::read(p).expect("read")))
        .collect()
}

#[test]
fn wrong_passphrase_is_clear_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fx = StoreFixture::local(&tmp.path().join("store"));
    let src = tmp.path().join("src");
    small_tree(&src, 3);
    fx.must(&["create", "--kdf-memory-mib", "8"]);
    fx.must(&["backup", src.to_str().expect("utf8")]);
    let before = store_state(&fx.objects_dir);
    let wrong = Kloset::new().passphrase("not the passphrase");
    for args in [
        vec!["backup", src.to_str().expect("utf8")],
        vec!["ls"],
        vec!["check"],
        vec!["restore", "-to", "/tmp/never", "latest"],
    ] {
        let mut all = vec!["at", fx.location.as_str()];
        all.extend(args);
        let out = wrong.run(all);
        assert_eq!(out.code, Some(1), "{}", out.describe());
        assert!(
            out.stderr_str().contains("wrong passphrase"),
            "{}",
            out.describe()
        );
        assert!(
            !out.stderr_str().contains("not the passphrase"),
            "never echo the passphrase"
        );
    }
    assert!(
        before == store_state(&fx.objects_dir),
        "a wrong passphrase must write nothing"
    );
    assert!(!Path::new("/tmp/never").exists());
    // Passphrase files work, with or without a trailing newline.
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, format!("{}\n", common::cli::TEST_PASSPHRASE)).expect("write");
    Kloset::new().without_passphrase().must([
        "at",
        fx.location.as_str(),
        "--passphrase-file",
        pw.to_str().expect("utf8"),
        "ls",
    ]);
    let out = Kloset::new()
        .without_passphrase()
        .run(["at", fx.location.as_str(), "ls"]);
    assert_eq!(
        out.code,
        Some(1),
        "no passphrase at all: {}",
        out.describe()
    );
    assert!(
        out.stderr_str().contains("KLOSET_PASSPHRASE"),
        "{}",
        out.describe()
    );
}

#[test]
fn unreadable_files_are_recorded_and_exit_3() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("locked")).expect("mkdir");
    std::fs::write(src.join("readable.txt"), b"fine").expect("write");
    std::fs::write(src.join("secret.txt"), b"hidden").expect("write");
    std::fs::write(src.join("locked/inside.txt"), b"hidden").expect("write");
    std::fs::set_permissions(
        src.join("secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .expect("chmod");
    std::fs::set_permissions(src.join("locked"), std::fs::Permissions::from_mode(0o000))
        .expect("chmod");
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store).expect("mkdir");
    // Root reads everything, so run kloset as an unprivileged user then.
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let bin = tmp.path().join("kloset");
    std::fs::copy(env!("CARGO_BIN_EXE_kloset"), &bin).expect("copy binary");
    let run = |args: &[&str]| -> std::process::Output {
        let mut cmd = if is_root {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin);
            c
        } else {
            std::process::Command::new(&bin)
        };
        cmd.args(["at", store.to_str().expect("utf8")]).args(args);
        cmd.env("KLOSET_PASSPHRASE", "pw").env("HOME", tmp.path());
        cmd.output().expect("run kloset")
    };
    if is_root {
        std::process::Command::new("chown")
            .arg("65534:65534")
            .arg(&store)
            .status()
            .expect("chown");
    }
    let out = run(&["create", "--kdf-memory-mib", "8"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["backup", src.to_str().expect("utf8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit 3 when files are unreadable: {stderr}"
    );
    assert!(
        stderr.contains("/secret.txt") && stderr.contains("/locked"),
        "{stderr}"
    );
    let out = run(&["--json", "info", "latest"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        info["snapshot"]["errors"].as_array().map(Vec::len),
        Some(2),
        "{info}"
    );
    let ls = String::from_utf8_lossy(&run(&["ls", "latest:/"]).stdout).into_owned();
    assert!(
        ls.contains("readable.txt") && !ls.contains("secret.txt"),
        "{ls}"
    );
}

#[test]
fn backup_killed_with_sigkill_leaves_no_partial_snapshot() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fx = StoreFixture::local(&tmp.path().join("store"));
    let src = tmp.path().join("src");
    build_tricky_tree(&src, 2_000);
    fx.must(&["create", "--pack-size", "1MiB", "--kdf-memory-mib", "8"]);
    let mut child = fx
        .kloset
        .command([
            "at",
            fx.location.as_str(),
            "backup",
            src.to_str().expect("utf8"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let packs = fx.objects_dir.join("packs");
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed_while_running = loop {
        let count = walk_count(&packs);
        if count >= 3 {
            break child.try_wait().expect("wait").is_none();
        }
        assert!(Instant::now() < deadline, "backup never wrote 3 packs");
        if child.try_wait().expect("wait").is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(
        killed_while_running,
        "the backup finished before it could be killed; the test tree is too small"
    );
    assert_eq!(fx.must(&["ls"]), "", "no snapshot may appear");
    let check = fx
        .kloset
        .must(["at", fx.location.as_str(), "check", "--read-data"]);
    assert!(
        check.stdout_str().starts_with("ok:"),
        "{}",
        check.describe()
    );
    fx.must(&["backup", src.to_str().expect("utf8")]);
    let out = tmp.path().join("out");
    fx.must(&["restore", "-to", out.to_str().expect("utf8"), "latest"]);
    assert_trees_equal(&src, &out);
}

fn walk_count(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk_count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn usage_errors_exit_2_and_bad_locations_exit_1() {
    let tmp = tempfile::tempdir().expect("tmp");
    let k = Kloset::new();
    for args in [
        vec![],
        vec!["at"],
        vec!["at", "/x", "frobnicate"],
        vec!["at", "/x", "check", "--read-data=abc"],
        vec!["at", "/x", "check", "--read-data=150"],
    ] {
        let out = k.run(args.clone());
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.describe());
    }
    let missing = tmp.path().join("missing");
    let out = k.run(["at", missing.to_str().expect("utf8"), "ls"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr_str().contains("no kloset store"),
        "{}",
        out.describe()
    );
    // Foreign data is refused, and a store is never created twice.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(&foreign).expect("mkdir");
    std::fs::write(foreign.join("notes.txt"), b"mine").expect("write");
    let out = k.run(["at", foreign.to_str().expect("utf8"), "create"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr_str().contains("other data"),
        "{}",
        out.describe()
    );
    let out = k.run(["at", foreign.to_str().expect("utf8"), "ls"]);
    assert!(
        out.stderr_str().contains("other data"),
        "{}",
        out.describe()
    );
    let store = tmp.path().join("store");
    k.must([
        "at",
        store.to_str().expect("utf8"),
        "create",
        "--kdf-memory-mib",
        "8",
    ]);
    let out = k.run(["at", store.to_str().expect("utf8"), "create"]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr_str().contains("already holds a kloset store"),
        "{}",
        out.describe()
    );
    let v = k.must(["version"]).stdout_str();
    assert!(
        v.contains("importers:")
            && v.contains("exporters:")
            && v.contains("klosets:")
            && v.contains("s3"),
        "{v}"
    );
}
