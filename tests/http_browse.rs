//! Browsing restore points over HTTP end to end, against snapshots written
//! by the real daemon's own one-shot `[task.*]` backups:
//!
//! - snapshots newest first with ids and tags; one by `latest`, by a full
//!   id and by a unique prefix; ambiguous, unknown and malformed prefixes
//!   are JSON errors;
//! - listings of the tricky tree (unicode, spaces, newlines, symlinks,
//!   modes, times) with type, size, mode and mtime, against `lstat`;
//! - every regular file downloaded byte-exact (some with the real `curl`),
//!   `Content-Length`, `Content-Type`, a stable `ETag` and `304`, `Range`
//!   (`a-b`, `a-`, `-n`, across chunks, `416`), `HEAD`;
//! - downloads and listings answered from the store, never from the live
//!   source (which is swapped for a symlink, then removed);
//! - a 4 GiB sparse file streamed while the daemon's `VmRSS` is sampled.
//!
//! The token, traversal, methods, object endpoints and cold stores are in
//! `http_security.rs`.

use crate::common;

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, RawReply, lit, raw_http, raw_open, write_like_ansible};
use common::tree::{self, build_tricky_tree};
use serde_json::Value;

const PASS: &str = "http-browse-passphrase-9Kq2-never-shown";
const GIB: u64 = 1 << 30;

/// `root/conf/00.toml` with `[daemon]`, `[store.main]` and `extra`; started.
fn start(root: &Path, extra: &str) -> Daemon {
    let conf = root.join("conf");
    fs::create_dir_all(&conf).expect("mkdir conf");
    fs::write(root.join("pass"), format!("{PASS}\n")).expect("pass");
    let toml = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\nmax_concurrent_tasks = 1\n\n\
         [store.main]\nlocation = {}\npassphrase_file = {}\n\n{extra}",
        lit(&root.join("state")),
        lit(&root.join("store")),
        lit(&root.join("pass")),
    );
    write_like_ansible(&conf, "00.toml", &toml);
    Daemon::start(&conf, &root.join("log"), &[])
}

fn backup(name: &str, source: &str, store: &str, tags: &[&str]) -> String {
    format!(
        "[task.{name}]\ntask = \"backup\"\nsource = \"{source}\"\nstore = \"{store}\"\ntags = {tags:?}\n\n"
    )
}

/// Percent-encodes every component of a relative path.
fn enc(rel: &str) -> String {
    rel.split('/')
        .map(|p| percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC))
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("/")
}

fn get(d: &Daemon, target: &str, headers: &[(&str, &str)]) -> RawReply {
    raw_http(d.port().expect("port"), "GET", target, headers)
}

/// Asserts a JSON error with `status`; returns its message.
fn json_error(r: &RawReply, status: u16, what: &str) -> String {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(v["error"]["status"], status, "{what}: {v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: {v}");
    message.to_string()
}

fn snapshot_ids(d: &Daemon, store: &str) -> Vec<Value> {
    d.json(&format!("/api/v1/stores/{store}/snapshots"))["snapshots"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Compares the listing of `rel` with the source directory: names must
/// match (asserted); the other fields' differences are returned.
fn listing_differences(d: &Daemon, base: &str, src: &Path, rel: &str) -> Vec<String> {
    let r = get(d, &format!("{base}/tree/{}", enc(rel)), &[]);
    assert_eq!(r.status, 200, "tree {rel:?}: {}", r.text());
    let v: Value = serde_json::from_slice(&r.body).expect("listing json");
    assert_eq!(v["path"], format!("/{rel}"), "{v}");
    let entries = v["entries"].as_array().expect("entries");
    let mut got: Vec<&str> = entries.iter().filter_map(|e| e["name"].as_str()).collect();
    let mut want: Vec<String> = fs::read_dir(src.join(rel))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "names listed in {rel:?}");
    let mut diffs = Vec::new();
    for e in entries {
        let name = e["name"].as_str().expect("name");
        let path = src.join(rel).join(name);
        let md = fs::symlink_metadata(&path).expect("lstat");
        let kind = match md.file_type() {
            t if t.is_dir() => "dir",
            t if t.is_symlink() => "symlink",
            _ => "file",
        };
        let mtime = chrono::DateTime::from_timestamp(md.mtime(), 0)
            .expect("mtime")
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mode = format!("{:o}", md.permissions().mode() & 0o7777);
        let mut expect = vec![("type", Value::from(kind)), ("mtime", Value::from(mtime))];
        match kind {
            "file" => expect.extend([("size", md.len().into()), ("mode", mode.into())]),
            "dir" => expect.push(("mode", mode.into())),
            _ => expect.push((
                "target",
                fs::read_link(&path)
                    .expect("readlink")
                    .to_string_lossy()
                    .into(),
            )),
        }
        for (field, want) in expect {
            if e[field] != want {
                diffs.push(format!(
                    "GET {base}/tree/{rel}: {name:?} {field} is {}, the source has {want}",
                    e[field]
                ));
            }
        }
    }
    diffs
}

#[test]
fn browse_snapshots_trees_and_downloads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    let src = root.join("src");
    build_tricky_tree(&src, 200);
    fs::create_dir_all(root.join("small")).expect("mkdir");
    fs::write(root.join("small/a.txt"), b"small\n").expect("write");
    let mut tasks: Vec<(String, Vec<&str>)> = vec![
        ("tricky".into(), vec!["tricky", "http"]),
        ("small-1".into(), vec!["small-1"]),
        ("small-2".into(), vec!["small-2"]),
    ];
    let mut extra = format!(
        "[source.tricky]\nlocation = {}\n\n[source.small]\nlocation = {}\n\n",
        lit(&src),
        lit(&root.join("small"))
    );
    for (name, tags) in &tasks {
        let source = if name == "tricky" { "tricky" } else { "small" };
        extra.push_str(&backup(name, source, "main", tags));
    }
    let d = start(&root, &extra);
    // Each task's snapshot id and end (tasks run one at a time).
    let mut runs: Vec<(String, String)> = Vec::new();
    let record = |name: &str| {
        let t = d.wait_task(name);
        let id = t["snapshot_id"].as_str().expect("snapshot id").to_string();
        (id, t["finished_at"].as_str().expect("end").to_string())
    };
    runs.extend(tasks.iter().map(|(name, _)| record(name)));

    // Two snapshots sharing a first character (at most 17 by pigeonhole).
    let shared = loop {
        let mut seen = HashSet::new();
        if let Some(c) = runs.iter().map(|r| &r.0[..1]).find(|c| !seen.insert(*c)) {
            break c.to_string();
        }
        let name = format!("small-{}", tasks.len());
        let more = backup(&name, "small", "main", &["more"]);
        write_like_ansible(&root.join("conf"), &format!("50-{name}.toml"), &more);
        runs.push(record(&name));
        tasks.push((name, vec!["more"]));
    };
    let ids: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    let index = |id: &str| ids.iter().position(|i| *i == id).expect("a known id");

    // The list: every task's snapshot, newest first, with its tags.
    let list = snapshot_ids(&d, "main");
    let listed: HashSet<&str> = list.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(listed, ids.iter().copied().collect(), "{list:?}");
    for pair in list.windows(2) {
        let (a, b) = (pair[0]["id"].as_str(), pair[1]["id"].as_str());
        let (a, b) = (a.expect("id"), b.expect("id"));
        assert!(
            pair[0]["time"].as_str() >= pair[1]["time"].as_str(),
            "{list:?}"
        );
        assert!(runs[index(a)].1 > runs[index(b)].1, "{a} listed before {b}");
    }
    for s in &list {
        let id = s["id"].as_str().expect("id");
        assert_eq!(s["short_id"].as_str(), id.get(..8), "{s}");
        assert_eq!(s["tags"], serde_json::json!(tasks[index(id)].1), "{s}");
    }

    // One snapshot: latest, full id, unique prefix (any case), short id.
    let tricky = ids[0].to_string();
    let snaps = "/api/v1/stores/main/snapshots";
    assert_eq!(d.json(&format!("{snaps}/latest"))["id"], list[0]["id"]);
    let unique = (1..=64)
        .map(|n| &tricky[..n])
        .find(|p| ids.iter().filter(|i| i.starts_with(p)).count() == 1)
        .expect("a unique prefix");
    for spec in [
        tricky.as_str(),
        unique,
        &tricky[..8],
        &tricky[..12].to_uppercase(),
    ] {
        let v = d.json(&format!("{snaps}/{spec}"));
        assert_eq!(v["id"], tricky.as_str(), "{spec}: {v}");
        assert!(v["unreadable_files"].is_array(), "{v}");
    }
    let m = json_error(
        &get(&d, &format!("{snaps}/{shared}"), &[]),
        400,
        "ambiguous prefix",
    );
    assert!(m.contains("ambiguous"), "{m}");
    let unknown = "0123456789abcdef"
        .chars()
        .map(|c| c.to_string().repeat(10))
        .find(|p| !ids.iter().any(|i| i.starts_with(p.as_str())))
        .expect("an unused prefix");
    json_error(
        &get(&d, &format!("{snaps}/{unknown}"), &[]),
        404,
        "unknown prefix",
    );
    json_error(&get(&d, &format!("{snaps}/not-hex"), &[]), 400, "not hex");
    json_error(
        &get(&d, "/api/v1/stores/nope/snapshots", &[]),
        404,
        "unknown store",
    );

    // Listings, compared with lstat of the source.
    let base = format!("{snaps}/{tricky}");
    for target in [format!("{base}/tree"), format!("{base}/tree/")] {
        let v: Value = serde_json::from_slice(&get(&d, &target, &[]).body).expect("json");
        assert_eq!(v["path"], "/", "{target}: {v}");
        assert_eq!(
            v["entries"].as_array().map(Vec::len),
            Some(fs::read_dir(&src).expect("ls").count()),
            "{v}"
        );
    }
    let mut diffs = Vec::new();
    for rel in [
        "unicode",
        "unicode/日本語ディレクトリ",
        "names",
        "modes",
        "modes/private-dir-0700",
        "times",
        "links",
        "empty",
        "empty/empty-dir",
        "nested/a/b/c/d/e/f/g/h/i/j",
        "data",
        "sparse",
    ] {
        diffs.extend(listing_differences(&d, &base, &src, rel));
    }
    let msg = json_error(
        &get(&d, &format!("{base}/tree/{}", enc(tree::UNICODE_FILE)), &[]),
        400,
        "tree of a file",
    );
    assert!(msg.contains("not a directory"), "{msg}");
    json_error(
        &get(&d, &format!("{base}/tree/{}", enc(tree::REL_LINK)), &[]),
        400,
        "tree of a symlink",
    );
    json_error(
        &get(&d, &format!("{base}/tree/no/such/dir"), &[]),
        404,
        "tree of nothing",
    );

    // Every regular file, byte for byte, with its length and an ETag.
    let mut files = 0;
    for rel in tree::walk(&src) {
        let path = src.join(&rel);
        if !fs::symlink_metadata(&path).expect("lstat").is_file() {
            continue;
        }
        let rel = rel.to_str().expect("utf-8");
        let r = get(&d, &format!("{base}/files/{}", enc(rel)), &[]);
        assert_eq!(r.status, 200, "files/{rel:?}: {}", r.text());
        let want = fs::read(&path).expect("read");
        assert_eq!(
            r.header("content-length"),
            Some(want.len().to_string().as_str()),
            "{rel:?}"
        );
        assert!(
            r.body == want,
            "files/{rel:?}: {} bytes differ from the source's {}",
            r.body.len(),
            want.len()
        );
        assert!(
            r.header("etag").is_some_and(|e| e.starts_with('"')),
            "{rel:?}: {:?}",
            r.headers
        );
        assert!(
            r.header("content-disposition")
                .is_some_and(|c| c.starts_with("attachment")),
            "{rel:?}"
        );
        files += 1;
    }
    assert!(files > 200, "{files} files downloaded");
    for rel in [tree::UNICODE_FILE, tree::RANDOM_FILE] {
        let out = root.join("curl.out");
        let url = d.url(&format!("{base}/files/{}", enc(rel)));
        let curl = std::process::Command::new("curl")
            .args(["-fsS", "-o"])
            .arg(&out)
            .arg(&url)
            .output()
            .expect("curl");
        assert!(
            curl.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&curl.stderr)
        );
        assert!(
            fs::read(&out).expect("out") == fs::read(src.join(rel)).expect("src"),
            "curl {rel}"
        );
    }

    // Content types from the name.
    let file = |rel: &str, headers: &[(&str, &str)]| {
        get(&d, &format!("{base}/files/{}", enc(rel)), headers)
    };
    let content_type = |rel: &str| file(rel, &[]).header("content-type").map(str::to_owned);
    assert!(
        content_type(tree::UNICODE_FILE).is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        content_type(tree::UNICODE_FILE)
    );
    for rel in [
        tree::RANDOM_FILE,
        "names/-starts-with-dash",
        tree::EMPTY_FILE,
    ] {
        assert_eq!(
            content_type(rel).as_deref(),
            Some("application/octet-stream"),
            "{rel}"
        );
    }

    // ETag: stable, content-specific, If-None-Match gives 304.
    let random = fs::read(src.join(tree::RANDOM_FILE)).expect("random");
    let len = random.len();
    let etag = file(tree::RANDOM_FILE, &[])
        .header("etag")
        .expect("etag")
        .to_string();
    assert_eq!(
        file(tree::RANDOM_FILE, &[]).header("etag"),
        Some(etag.as_str())
    );
    assert_ne!(
        file(tree::COMPRESSIBLE_FILE, &[]).header("etag"),
        Some(etag.as_str())
    );
    let r = file(tree::RANDOM_FILE, &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304, "{:?}", r.headers);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(
        file(tree::RANDOM_FILE, &[("If-None-Match", "\"other\"")]).status,
        200
    );

    // Ranges, one of them across several chunks (at most 8 MiB each).
    let mib = 1 << 20;
    for (spec, from, to) in [
        ("bytes=0-99".to_string(), 0, 100),
        ("bytes=1000-".to_string(), 1000, len),
        ("bytes=-5000".to_string(), len - 5000, len),
        (
            format!("bytes={}-{}", mib - 7, 17 * mib + 13),
            mib - 7,
            17 * mib + 14,
        ),
        (format!("bytes={}-{}", len - 10, len + 1000), len - 10, len),
    ] {
        let r = file(tree::RANDOM_FILE, &[("Range", &spec)]);
        assert_eq!(r.status, 206, "{spec}: {}", r.text());
        let want_range = format!("bytes {from}-{}/{len}", to - 1);
        assert_eq!(
            r.header("content-range"),
            Some(want_range.as_str()),
            "{spec}"
        );
        assert_eq!(
            r.header("content-length"),
            Some((to - from).to_string().as_str()),
            "{spec}"
        );
        assert!(r.body == random[from..to], "{spec}: the slice differs");
    }
    let r = file(tree::RANDOM_FILE, &[("Range", &format!("bytes={len}-"))]);
    json_error(&r, 416, "unsatisfiable range");
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );

    // HEAD: the headers of GET, no body.
    let head = raw_http(
        d.port().expect("port"),
        "HEAD",
        &format!("{base}/files/{}", enc(tree::RANDOM_FILE)),
        &[],
    );
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD sent {} bytes", head.body.len());
    assert_eq!(
        head.header("content-length"),
        Some(len.to_string().as_str())
    );
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    assert_eq!(head.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        head.header("content-type"),
        Some("application/octet-stream")
    );

    // Not regular files, and nothing there.
    json_error(&file("data", &[]), 400, "files/ of a directory");
    json_error(&file(tree::ABS_LINK, &[]), 400, "files/ of a symlink");
    json_error(&file("data/no-such-file", &[]), 404, "files/ of nothing");
    assert!(!d.log_text().contains(PASS), "the log shows the passphrase");

    // Downloads and listings read the store, never the live source: the
    // file is swapped for a symlink to another file, then its directory
    // is removed, and both still answer what the snapshot holds.
    let secret = root.join("secret");
    fs::write(&secret, b"live file, not in any snapshot\n").expect("write");
    fs::remove_file(root.join("small/a.txt")).expect("rm");
    std::os::unix::fs::symlink(&secret, root.join("small/a.txt")).expect("link");
    let small = format!("/api/v1/stores/main/snapshots/{}", runs[1].0);
    let r = get(&d, &format!("{small}/files/a.txt"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"small\n", "the stored content, not the live file");
    fs::remove_dir_all(root.join("small")).expect("rm");
    let r = get(&d, &format!("{small}/tree/"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).expect("listing json");
    assert_eq!(v["entries"][0]["name"], "a.txt", "{v}");
    assert_eq!(v["entries"][0]["type"], "file", "{v}");
    let r = get(&d, &format!("{small}/files/a.txt"), &[]);
    assert_eq!(
        r.body, b"small\n",
        "the source is gone, the snapshot is not"
    );

    // Deferred so every other check above has run.
    assert!(
        diffs.is_empty(),
        "listings differ from the source:\n{}",
        diffs.join("\n")
    );
}

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Samples `VmRSS` every 10 ms until dropped; `peak()` in KiB.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, p) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                p.fetch_max(rss_kib(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssSampler { stop, peak }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_4_gib_sparse_file_streams_in_bounded_memory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    fs::create_dir_all(root.join("big")).expect("mkdir");
    let size = 4 * GIB;
    fs::File::create(root.join("big/zeros-4GiB.bin"))
        .expect("create")
        .set_len(size)
        .expect("set_len");
    let d = start(
        &root,
        &format!(
            "[source.big]\nlocation = {}\n\n{}",
            lit(&root.join("big")),
            backup("big", "big", "main", &["big"])
        ),
    );
    let during_backup = RssSampler::start(d.pid());
    let started = Instant::now();
    d.wait_task("big");
    let backup_time = started.elapsed();
    let backup_peak = during_backup.peak();
    drop(during_backup);
    let target = "/api/v1/stores/main/snapshots/latest/files/zeros-4GiB.bin";
    let port = d.port().expect("port");

    let before = rss_kib(d.pid());
    let sampler = RssSampler::start(d.pid());
    let started = Instant::now();
    let (status, headers, mut body) = raw_open(port, "GET", target, &[]);
    assert_eq!(status, 200, "{headers:?}");
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.clone());
    assert_eq!(length, Some(size.to_string()));
    let (mut total, mut buf) = (0u64, vec![0u8; 1 << 20]);
    loop {
        let n = body.read(&mut buf).expect("read the download");
        if n == 0 {
            break;
        }
        assert!(
            buf[..n].iter().all(|&b| b == 0),
            "a non-zero byte near offset {total}"
        );
        total += n as u64;
    }
    let elapsed = started.elapsed();
    let peak = sampler.peak();
    drop(sampler);
    assert_eq!(total, size, "downloaded bytes");
    let mib_s = size as f64 / (1 << 20) as f64 / elapsed.as_secs_f64();
    eprintln!(
        "4 GiB download: {elapsed:.1?} ({mib_s:.0} MiB/s); daemon VmRSS before {} MiB, peak {} MiB; \
         backup took {backup_time:.1?} with peak VmRSS {} MiB",
        before / 1024,
        peak / 1024,
        backup_peak / 1024
    );
    assert!(
        peak < 300 * 1024,
        "the daemon's VmRSS peaked at {} MiB during the download",
        peak / 1024
    );

    // A range in the middle (2 GiB ± 4 KiB).
    let (from, to) = (2 * GIB - 4096, 2 * GIB + 4095);
    let r = raw_http(
        port,
        "GET",
        target,
        &[("Range", &format!("bytes={from}-{to}"))],
    );
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {from}-{to}/{size}").as_str())
    );
    assert_eq!(r.body.len(), 8192);
    assert!(r.body.iter().all(|&b| b == 0));
}
