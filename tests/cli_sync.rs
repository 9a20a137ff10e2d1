//! End-to-end `sync` with the real `kloset` binary: into a store with
//! another passphrase (restores bit-exact, second run copies nothing), and
//! a sync killed with kill -9 and resumed (restores bit-exact; the bytes
//! sent twice are counted and bounded by the packs in flight).

use crate::common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::store::StoreFixture;
use kloset::{Location, Repository, Storage};
use serde_json::Value;

const OTHER: &str = "the target's own passphrase";
const PACK: u64 = 1024 * 1024;
/// Packs a killed writer can lose: the one being filled, one queued, and
/// one per uploader thread (3).
const IN_FLIGHT: u64 = 5;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn write_data(dir: &Path, files: usize, size: usize) {
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..files {
        let mut v = Vec::with_capacity(size);
        while v.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        let at = if i % 2 == 0 {
            dir.join(format!("f{i}"))
        } else {
            dir.join("sub").join(format!("g{i}"))
        };
        std::fs::write(at, v).expect("write");
    }
    std::fs::write(dir.join("small.txt"), b"hello sync").expect("write");
}

fn pack_files(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(top) = std::fs::read_dir(dir.join("packs")) else {
        return out;
    };
    for sub in top {
        let sub = sub.expect("entry").path();
        for f in std::fs::read_dir(&sub).into_iter().flatten() {
            let f = f.expect("entry");
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            out.push((name, f.metadata().expect("meta").len()));
        }
    }
    out
}

fn target_fixture(dir: &Path) -> StoreFixture {
    let mut fx = StoreFixture::local(dir);
    fx.kloset = fx.kloset.clone().passphrase(OTHER);
    fx
}

fn restore_and_compare(fx: &StoreFixture, snap: &str, data: &Path, out: &Path) {
    fx.must(&["restore", "--to", out.to_str().expect("utf8"), snap]);
    same_files(data, out);
}

/// Every file under `a` has the same bytes under `b`, and both hold the
/// same names.
fn same_files(a: &Path, b: &Path) {
    let mut names_a: Vec<_> = std::fs::read_dir(a)
        .expect("a")
        .map(|e| e.expect("e").file_name())
        .collect();
    let mut names_b: Vec<_> = std::fs::read_dir(b)
        .expect("b")
        .map(|e| e.expect("e").file_name())
        .collect();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b, "{}", b.display());
    for n in names_a {
        let (pa, pb) = (a.join(&n), b.join(&n));
        if pa.is_dir() {
            same_files(&pa, &pb);
        } else {
            assert!(
                std::fs::read(&pa).expect("a") == std::fs::read(&pb).expect("b"),
                "{}",
                pb.display()
            );
        }
    }
}

#[test]
fn sync_into_another_passphrase_restores_bit_exact() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    write_data(&data, 6, 300_000);
    let src = StoreFixture::local(&tmp.path().join("src"));
    let dst = target_fixture(&tmp.path().join("dst"));
    src.must(&["create", "--kdf-memory-mib", "8", "--pack-size", "1MiB"]);
    dst.must(&["create", "--kdf-memory-mib", "8", "--pack-size", "1MiB"]);
    src.must(&["backup", "--tag", "t", data.to_str().expect("utf8")]);
    let pass_file = tmp.path().join("to-pass");
    std::fs::write(&pass_file, OTHER).expect("write");
    let dst_loc = dst.location.clone();
    let pf = pass_file.to_str().expect("utf8");
    let r = json(&src.must(&[
        "--json",
        "--to-passphrase-file",
        pf,
        "sync",
        "all",
        "to",
        &dst_loc,
    ]));
    assert_eq!(r["copied"].as_array().expect("copied").len(), 1, "{r}");
    let copy = r["copied"][0]["target"].as_str().expect("id").to_string();
    restore_and_compare(&dst, &copy, &data, &tmp.path().join("out"));
    let again = json(&src.must(&[
        "--json",
        "--to-passphrase-file",
        pf,
        "sync",
        "all",
        "to",
        &dst_loc,
    ]));
    assert!(
        again["copied"].as_array().expect("copied").is_empty(),
        "{again}"
    );
    assert_eq!(again["skipped"].as_array().expect("skipped").len(), 1);
    // Bad input is refused clearly.
    let bad = src.run(&["--to-passphrase-file", pf, "sync", "all", "into", &dst_loc]);
    assert!(!bad.success());
    let uninit = tmp.path().join("nothing");
    std::fs::create_dir_all(&uninit).expect("mkdir");
    let bad = src.run(&[
        "--to-passphrase-file",
        pf,
        "sync",
        "all",
        "to",
        uninit.to_str().expect("utf8"),
    ]);
    assert!(!bad.success());
    assert!(
        bad.stderr_str().contains("not an initialised store"),
        "{}",
        bad.describe()
    );
    let same = src.run(&["sync", "all", "to", &src.location]);
    assert!(!same.success());
}

#[test]
fn sync_killed_with_kill_9_resumes_and_resends_at_most_the_packs_in_flight() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    write_data(&data, 40, 1_000_000);
    let src = StoreFixture::local(&tmp.path().join("src"));
    let dst_dir = tmp.path().join("dst");
    let dst = target_fixture(&dst_dir);
    src.must(&["create", "--kdf-memory-mib", "8", "--pack-size", "1MiB"]);
    dst.must(&["create", "--kdf-memory-mib", "8", "--pack-size", "1MiB"]);
    src.must(&["backup", data.to_str().expect("utf8")]);
    let dst_loc = dst.location.clone();
    let mut child = src
        .kloset
        .command([
            "at",
            &src.location,
            "--json",
            "sync",
            "all",
            "to",
            &dst_loc,
            "--threads",
            "2",
        ])
        .env("KLOSET_PASSPHRASE_TO", OTHER)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while pack_files(&dst_dir).len() < 12 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no packs appeared"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "sync finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // kill -9
    unsafe_kill(child.id());
    let _ = child.wait();
    let before: u64 = pack_files(&dst_dir).iter().map(|(_, n)| n).sum();
    let r = json(&src.must_with_env_to(&dst_loc));
    assert_eq!(r["copied"].as_array().expect("copied").len(), 1, "{r}");
    let after_files = pack_files(&dst_dir);
    let after: u64 = after_files.iter().map(|(_, n)| n).sum();
    let uploaded = after - before;
    // Which packs are indexed now: the others were sent by the killed run
    // and their data sent again by the rerun.
    let storage = Storage::open(&Location::parse(&dst_loc).expect("loc"), false).expect("storage");
    let repo = Repository::open(storage, OTHER.as_bytes()).expect("open");
    let indexed: HashSet<String> = repo.index().packs().iter().map(|p| p.to_hex()).collect();
    let resent: u64 = after_files
        .iter()
        .filter(|(name, _)| !indexed.contains(name))
        .map(|(_, n)| n)
        .sum();
    let total: u64 = after_files
        .iter()
        .filter(|(name, _)| indexed.contains(name))
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "resume: killed run left {before} bytes of packs; rerun uploaded {uploaded} of {total} indexed bytes; sent twice: {resent} bytes (nominal pack size {PACK})"
    );
    // A pack closes once it reaches the pack size, so it holds up to one
    // chunk more: bound by the largest pack actually written.
    let max_pack = after_files.iter().map(|(_, n)| *n).max().unwrap_or(PACK);
    let orphans = after_files
        .iter()
        .filter(|(name, _)| !indexed.contains(name))
        .count() as u64;
    eprintln!("resume: {orphans} pack(s) sent twice; largest pack {max_pack} bytes");
    assert!(orphans <= IN_FLIGHT, "{orphans} packs sent twice");
    assert!(resent <= IN_FLIGHT * max_pack, "resent {resent}");
    assert!(
        uploaded < total,
        "the rerun resumed rather than starting over"
    );
    assert!(uploaded <= total - (before - resent) + 64 * 1024);
    let copy = r["copied"][0]["target"].as_str().expect("id").to_string();
    restore_and_compare(&dst, &copy, &data, &tmp.path().join("out"));
}

fn unsafe_kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

trait SyncTo {
    fn must_with_env_to(&self, target: &str) -> String;
}

impl SyncTo for StoreFixture {
    fn must_with_env_to(&self, target: &str) -> String {
        let out = self
            .kloset
            .clone()
            .env("KLOSET_PASSPHRASE_TO", OTHER)
            .must_at(
                &self.location,
                ["--json", "sync", "all", "to", target, "--threads", "2"],
            );
        out.stdout_str()
    }
}
