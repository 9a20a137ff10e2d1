//! A directory of 300,000 files and a store of many snapshots, browsed over
//! HTTP in pages, in bounded memory:
//!
//! - the whole directory walked through `cursor` (`limit` 10,000, then the
//!   default 1,000 for the first pages): every name exactly once, in raw
//!   byte order, names that are not UTF-8 included; a path through the big
//!   directory and a download inside it; the viewer's pages and their
//!   "next page" links;
//! - the daemon's peak RSS (`VmHWM`, reset through `clear_refs` once idle)
//!   grows by less than 64 MiB over its idle `VmRSS` while serving it all;
//! - `limit` 0, above 10,000 or not a number, an empty cursor and a cursor
//!   the endpoint did not give are 400s;
//! - the snapshot list in pages, newest first, the same as unpaged.
//!
//! The store is written in-process with the engine (cheap KDF); the files
//! are empty and live on tmpfs (`/dev/shm`) when there is one.
//! `KLOSETD_BIG_DIR_FILES` changes the directory's size,
//! `KLOSETD_BIG_DIR_PAGE` the page size of the whole walk.

use crate::common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, RawReply, lit, raw_http, write_like_ansible};
use kloset::ops::backup::{BackupOptions, backup};
use kloset::repository::CreateOptions;
use kloset::{Location, Repository, Storage};
use serde_json::Value;

const PASS: &str = "big-dirs-passphrase-Zr8w";
const MIB: u64 = 1024;
/// Snapshots of the small source.
const SNAPSHOTS: usize = 23;

/// The page size of the whole walk (`KLOSETD_BIG_DIR_PAGE`, default
/// 10,000: each page reads the tree to its end, so 1,000 takes ten times
/// as long).
fn walk_page() -> usize {
    std::env::var("KLOSETD_BIG_DIR_PAGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// At least 1,000 (the test reads a default page at the end).
fn files_wanted() -> usize {
    std::env::var("KLOSETD_BIG_DIR_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000)
        .max(1_000)
}

/// A field of `/proc/PID/status` in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn get(d: &Daemon, target: &str) -> RawReply {
    raw_http(d.port().expect("port"), "GET", target, &[])
}

fn json_ok(d: &Daemon, target: &str) -> Value {
    let r = get(d, target);
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{target}: {e}"))
}

fn bad_request(d: &Daemon, target: &str) -> String {
    let r = get(d, target);
    assert_eq!(r.status, 400, "{target}: {}", r.text());
    let v: Value = serde_json::from_slice(&r.body).expect("error json");
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn decode(encoded: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(encoded).collect()
}

/// The big directory: `count` empty files, a few odd names and a
/// subdirectory; returns every name, sorted by bytes.
fn make_big_dir(dir: &Path, count: usize) -> Vec<Vec<u8>> {
    fs::create_dir_all(dir).expect("mkdir big");
    let mut names: Vec<Vec<u8>> = Vec::with_capacity(count + 4);
    for i in 0..count {
        let name = format!("f{i:07}");
        fs::File::create(dir.join(&name)).expect("create");
        names.push(name.into_bytes());
    }
    let odd: [&[u8]; 3] = [b"caf\xe9 not utf-8", b"with space & %", b"\xff\xfe"];
    for name in odd {
        fs::write(dir.join(std::ffi::OsStr::from_bytes(name)), b"odd").expect("odd");
        names.push(name.to_vec());
    }
    fs::create_dir(dir.join("zz-sub")).expect("mkdir sub");
    fs::write(dir.join("zz-sub/inner.txt"), b"hello from inside").expect("inner");
    names.push(b"zz-sub".to_vec());
    names.sort();
    names
}

/// Walks `first` (a tree URL) through `next`; every name, and the pages.
fn walk_tree(d: &Daemon, first: &str, limit: usize) -> (Vec<Vec<u8>>, usize) {
    let (mut names, mut pages) = (Vec::new(), 0);
    let mut target = format!("{first}?limit={limit}");
    loop {
        let v = json_ok(d, &target);
        pages += 1;
        assert_eq!(v["limit"], limit, "{target}");
        let entries = v["entries"].as_array().expect("entries");
        assert!(
            entries.len() <= limit,
            "{target}: {} entries",
            entries.len()
        );
        for e in entries {
            names.push(decode(e["name_encoded"].as_str().expect("name_encoded")));
        }
        match (v["next"].as_str(), v["next_cursor"].as_str()) {
            (Some(next), Some(cursor)) => {
                assert_eq!(entries.len(), limit, "a page before the last is full");
                let last = entries.last().expect("last entry");
                assert_eq!(last["name_encoded"].as_str(), Some(cursor));
                assert!(next.ends_with(&format!("cursor={cursor}")), "{next}");
                target = next.to_string();
            }
            (None, None) => return (names, pages),
            other => panic!("{target}: next and next_cursor disagree: {other:?}"),
        }
    }
}

#[test]
fn big_directories_and_snapshot_lists_page_in_bounded_memory() {
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tmp on tmpfs")
    } else {
        tempfile::tempdir().expect("tmp")
    };
    let root = tmp.path().canonicalize().expect("canonical");
    let count = files_wanted();

    let started = Instant::now();
    let names = make_big_dir(&root.join("big"), count);
    let made = started.elapsed();

    // The store, written in-process: one big snapshot, then many small ones.
    let storage = Storage::open(&Location::Fs(root.join("store")), true).expect("storage");
    let opts = CreateOptions {
        kdf: kloset::crypto::KdfParams::with_cost(64, 1, 1),
        ..CreateOptions::default()
    };
    let repo = Repository::create(storage, PASS.as_bytes(), opts).expect("create");
    let started = Instant::now();
    let big = backup(
        &repo,
        &root.join("big"),
        &BackupOptions {
            source: Some("big".into()),
            ..BackupOptions::default()
        },
    )
    .expect("backup big");
    let backed_up = started.elapsed();
    let tree_blob = repo
        .index()
        .get(&big.tree)
        .expect("read the index")
        .map(|loc| (loc.length, loc.raw_length))
        .expect("the big tree in the index");
    fs::create_dir_all(root.join("small")).expect("mkdir small");
    let mut small_ids = Vec::new();
    for i in 0..SNAPSHOTS {
        fs::write(root.join("small/n"), i.to_string()).expect("small");
        let s = backup(
            &repo,
            &root.join("small"),
            &BackupOptions {
                source: Some("small".into()),
                ..BackupOptions::default()
            },
        )
        .expect("backup small");
        small_ids.push(s.id.to_string());
    }
    drop(repo);
    fs::remove_dir_all(root.join("big")).expect("the source goes: answers come from the store");

    let conf = root.join("conf");
    fs::create_dir_all(&conf).expect("mkdir conf");
    fs::write(root.join("pass"), format!("{PASS}\n")).expect("pass");
    let toml = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\n\n\
         [store.main]\nlocation = {}\npassphrase_file = {}\n",
        lit(&root.join("state")),
        lit(&root.join("store")),
        lit(&root.join("pass")),
    );
    write_like_ansible(&conf, "00.toml", &toml);
    let d = Daemon::start(&conf, &root.join("log"), &[]);
    let snaps = "/api/v1/stores/main/snapshots";
    let big_tree = format!("{snaps}/{}/tree/", big.id);

    // Warm: the store is open and its index loaded before measuring.
    json_ok(&d, &format!("{snaps}?limit=1"));
    json_ok(&d, &format!("{snaps}/{}/tree/", small_ids[0]));
    std::thread::sleep(Duration::from_millis(500));
    let pid = d.pid();
    let idle = status_kib(pid, "VmRSS:");
    // Resets VmHWM to the current RSS (Linux ≥ 4.0), so the peak below is
    // the peak while browsing, not of start-up.
    let reset = fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();

    let started = Instant::now();
    let page_size = walk_page();
    let (walked, pages) = walk_tree(&d, &big_tree, page_size);
    let walk_time = started.elapsed();
    assert_eq!(walked.len(), names.len(), "every name once");
    assert_eq!(walked, names, "every name exactly once, in raw byte order");
    let unique: HashSet<&Vec<u8>> = walked.iter().collect();
    assert_eq!(unique.len(), names.len());
    assert_eq!(pages, names.len().div_ceil(page_size));

    // The default page size, twice through the cursor.
    let first = json_ok(&d, &big_tree);
    assert_eq!(first["limit"], 1000);
    assert_eq!(first["entries"].as_array().map(Vec::len), Some(1000));
    let next = first["next"].as_str().expect("a next page").to_string();
    let second = json_ok(&d, &next);
    assert_eq!(
        decode(second["entries"][0]["name_encoded"].as_str().expect("name")),
        names[1000]
    );
    // A cursor between names, and one past the end.
    let after = json_ok(&d, &format!("{big_tree}?limit=2&cursor=f0000001a"));
    assert_eq!(after["entries"][0]["name"], "f0000002");
    let end = json_ok(&d, &format!("{big_tree}?cursor=%FF%FF"));
    assert_eq!(end["entries"].as_array().map(Vec::len), Some(0));
    assert!(end["next"].is_null() && end["next_cursor"].is_null());

    // Cursors that are not UTF-8: exact bytes, percent-encoded.
    let odd = json_ok(&d, &format!("{big_tree}?limit=1"));
    assert_eq!(odd["next_cursor"], "caf%E9%20not%20utf-8", "{odd}");
    let odd = json_ok(&d, odd["next"].as_str().expect("next"));
    assert_eq!(odd["entries"][0]["name"], "f0000000");
    let odd = json_ok(&d, &format!("{big_tree}?limit=1&cursor=%FF"));
    assert_eq!(odd["entries"][0]["name_encoded"], "%FF%FE");
    assert!(odd["next_cursor"].is_null(), "the last name: {odd}");
    // One default page near the end: the cost of a page deep in the tree.
    let started = Instant::now();
    let deep = json_ok(&d, &format!("{big_tree}?cursor=f{:07}", count - 998));
    let deep_time = started.elapsed();
    assert_eq!(deep["entries"].as_array().map(Vec::len), Some(997 + 3));
    assert!(deep["next"].is_null(), "the last page, exactly full");

    // Through the big directory: a subdirectory and a download.
    let sub = json_ok(&d, &format!("{big_tree}zz-sub"));
    assert_eq!(sub["entries"][0]["name"], "inner.txt");
    assert!(sub["next"].is_null());
    let file = get(&d, &format!("{snaps}/{}/files/zz-sub/inner.txt", big.id));
    assert_eq!(
        (file.status, file.body.as_slice()),
        (200, b"hello from inside".as_slice())
    );

    // The viewer: a page of rows and a link to the next one.
    let ui = format!("/ui/stores/main/snapshots/{}/tree/", big.id);
    let page = get(&d, &format!("{ui}?limit=500"));
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert_eq!(html.matches("<tr><td class=\"kind\">").count(), 500);
    let cursor = String::from_utf8_lossy(&names[499]).into_owned();
    assert!(
        html.contains(&format!("?limit=500&amp;cursor={cursor}\"")),
        "a next-page link after {cursor}"
    );
    assert!(html.trim_end().ends_with("</html>"));
    let last = get(&d, &format!("{ui}?cursor=f{:07}", count - 1));
    let last = last.text();
    let (dir, file) = (last.find("zz-sub/"), last.find("with space"));
    assert!(dir.is_some() && file.is_some(), "the last page: {last}");
    assert!(dir < file, "directories first within a page");
    assert!(!last.contains("Next page"));

    let peak = if reset {
        status_kib(pid, "VmHWM:")
    } else {
        status_kib(pid, "VmRSS:")
    };
    let after_rss = status_kib(pid, "VmRSS:");
    eprintln!(
        "{} entries (tree blob {} KiB stored, {} KiB decoded): made in {made:.1?}, backed up \
         in {backed_up:.1?}; walked in {pages} pages of \
         {page_size} in {walk_time:.1?}, a page of 1,000 at the end in {deep_time:.1?}; daemon VmRSS idle {} MiB, peak while browsing {} MiB \
         (VmHWM reset: {reset}), after {} MiB",
        names.len(),
        tree_blob.0 / 1024,
        tree_blob.1 / 1024,
        idle / MIB,
        peak / MIB,
        after_rss / MIB
    );
    assert!(
        peak < idle + 64 * MIB,
        "serving a directory of {} entries grew the daemon from {} to {} MiB",
        names.len(),
        idle / MIB,
        peak / MIB
    );

    // Paging parameters refused with a clear 400.
    for bad in ["limit=0", "limit=10001", "limit=ten", "limit=-5", "cursor="] {
        let message = bad_request(&d, &format!("{big_tree}?{bad}"));
        assert!(
            message.contains("limit") || message.contains("cursor"),
            "{bad}: {message}"
        );
        bad_request(&d, &format!("{snaps}?{bad}"));
    }
    assert!(bad_request(&d, &format!("{snaps}?cursor=f0000001")).contains("cursor"));
    let upper = "A".repeat(80);
    assert!(bad_request(&d, &format!("{snaps}?cursor={upper}")).contains("cursor"));
    let viewer_bad = get(&d, &format!("{ui}?limit=0"));
    assert_eq!(viewer_bad.status, 400);

    // The snapshot list: pages of 10, newest first, the same as unpaged.
    let all = json_ok(&d, &format!("{snaps}?limit=10000"));
    let all: Vec<String> = all["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(all.len(), SNAPSHOTS + 1);
    let mut expected: Vec<String> = small_ids.iter().rev().cloned().collect();
    expected.push(big.id.to_string());
    assert_eq!(all, expected, "newest first");
    let (mut paged, mut target) = (Vec::new(), format!("{snaps}?limit=10"));
    loop {
        let v = json_ok(&d, &target);
        for s in v["snapshots"].as_array().expect("snapshots") {
            paged.push(s["id"].as_str().unwrap_or_default().to_string());
        }
        match v["next"].as_str() {
            Some(next) => target = next.to_string(),
            None => break,
        }
    }
    assert_eq!(paged, all, "the pages join into the whole list");
    let store_page = get(&d, "/ui/stores/main?limit=10");
    assert_eq!(store_page.status, 200);
    let text = store_page.text();
    assert_eq!(text.matches("<tr><td title=").count(), 10);
    assert!(
        text.contains("Next page"),
        "the store page links the next one"
    );
}
