//! Raw bytes over HTTP end to end, against the real daemon:
//!
//! - file names that are not UTF-8 (Unix names are bytes): listings give
//!   each entry its lossy `name` plus `name_encoded` and `href` (the raw
//!   bytes percent-encoded); following `href` lists the directory or
//!   downloads the exact bytes; the lossy spelling is not the file; the
//!   viewer links to the same URLs; `Content-Disposition` stays ASCII with
//!   an RFC 6266 `filename*`; traversal stays refused in every encoding;
//! - conditional downloads: `If-None-Match` with weak tags, lists and `*`
//!   (weak comparison → `304`); `If-Range` with the strong comparison only;
//! - `/api/v1/resources` with a secret file whose path is not UTF-8 (the
//!   config directory's name is not): valid JSON that shows where the
//!   secret is read from, never the secret.

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::daemon::{Daemon, RawReply, lit, raw_http, write_like_ansible};
use serde_json::Value;

const PASS: &str = "http-raw-names-passphrase-Q7c1-never-shown";
const LATEST: &str = "/api/v1/stores/main/snapshots/latest";
const CANARY: &str = "CANARY-raw-names-outside-the-snapshot";

fn get(d: &Daemon, target: &str, headers: &[(&str, &str)]) -> RawReply {
    raw_http(d.port().expect("port"), "GET", target, headers)
}

fn json_of(r: &RawReply, what: &str) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", r.text()))
}

fn entry<'a>(listing: &'a Value, encoded: &str) -> &'a Value {
    listing["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["name_encoded"] == encoded)
        .unwrap_or_else(|| panic!("no entry {encoded} in {listing}"))
}

fn start(root: &Path, extra: &str) -> Daemon {
    let conf = root.join("conf");
    fs::create_dir_all(&conf).expect("mkdir conf");
    fs::write(root.join("pass"), format!("{PASS}\n")).expect("pass");
    let toml = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\n\n\
         [store.main]\nlocation = {}\npassphrase_file = {}\n\n{extra}",
        lit(&root.join("state")),
        lit(&root.join("store")),
        lit(&root.join("pass")),
    );
    write_like_ansible(&conf, "00.toml", &toml);
    Daemon::start(&conf, &root.join("log"), &[])
}

#[test]
fn names_that_are_not_utf8_are_listed_exactly_followed_and_downloaded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    let src = root.join("src");
    let dir = src.join(OsStr::from_bytes(b"dir-\xff\xfe"));
    fs::create_dir_all(&dir).expect("mkdir");
    let latin1 = b"latin1 content\n".repeat(1000);
    let bytes = b"inner bytes \x00\x01\x02\n".to_vec();
    fs::write(src.join(OsStr::from_bytes(b"caf\xe9.txt")), &latin1).expect("write");
    // Its lossy spelling is another file: the raw name must win.
    fs::write(src.join("caf\u{fffd}.txt"), b"the lossy twin\n").expect("write");
    fs::write(dir.join(OsStr::from_bytes(b"\x80\x81 \"q\";.bin")), &bytes).expect("write");
    fs::write(src.join("100% ?#&.txt"), b"odd ascii\n").expect("write");
    fs::write(root.join("canary.txt"), CANARY).expect("canary");
    let extra = format!(
        "[source.src]\nlocation = {}\n\n[task.first]\ntask = \"backup\"\nsource = \"src\"\nstore = \"main\"\n",
        lit(&src)
    );
    let d = start(&root, &extra);
    d.wait_task("first");
    let id = d.json(LATEST)["id"].as_str().expect("id").to_string();
    let base = format!("/api/v1/stores/main/snapshots/{id}");

    // The listing: lossy names for display, exact encoded names and hrefs.
    let top = get(&d, &format!("{LATEST}/tree/"), &[]);
    assert_eq!(top.status, 200, "{}", top.text());
    let top = json_of(&top, "tree /");
    assert_eq!(top["href"], format!("{base}/tree/"), "{top}");
    let raw = entry(&top, "caf%E9.txt");
    assert_eq!(raw["name"], "caf\u{fffd}.txt", "{raw}");
    assert_eq!(raw["href"], format!("{base}/files/caf%E9.txt"), "{raw}");
    let twin = entry(&top, "caf%EF%BF%BD.txt");
    assert_eq!(twin["name"], "caf\u{fffd}.txt", "{twin}");
    let odd = entry(&top, "100%25%20%3F%23%26.txt");
    assert_eq!(odd["name"], "100% ?#&.txt", "{odd}");
    let sub = entry(&top, "dir-%FF%FE");
    assert_eq!(sub["type"], "dir", "{sub}");
    assert_eq!(sub["href"], format!("{base}/tree/dir-%FF%FE"), "{sub}");

    // Following the hrefs: the exact bytes, not the lossy twin.
    let got = get(&d, raw["href"].as_str().expect("href"), &[]);
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(got.body == latin1, "the raw-named file's bytes");
    let cd = got.header("content-disposition").expect("disposition");
    assert_eq!(
        cd,
        "attachment; filename=\"caf_.txt\"; filename*=UTF-8''caf%EF%BF%BD.txt"
    );
    let twin_got = get(&d, twin["href"].as_str().expect("href"), &[]);
    assert_eq!(
        (twin_got.status, twin_got.text().as_str()),
        (200, "the lossy twin\n")
    );
    let odd_got = get(&d, odd["href"].as_str().expect("href"), &[]);
    assert_eq!(
        (odd_got.status, odd_got.text().as_str()),
        (200, "odd ascii\n")
    );
    let inner = get(&d, sub["href"].as_str().expect("href"), &[]);
    assert_eq!(inner.status, 200, "{}", inner.text());
    let inner = json_of(&inner, "tree dir-\\xff\\xfe");
    assert_eq!(inner["path"], "/dir-\u{fffd}\u{fffd}", "{inner}");
    let file = entry(&inner, "%80%81%20%22q%22%3B.bin");
    let href = file["href"].as_str().expect("href");
    assert_eq!(
        href,
        format!("{base}/files/dir-%FF%FE/%80%81%20%22q%22%3B.bin")
    );
    let got = get(&d, href, &[]);
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(got.body == bytes, "the nested raw-named file's bytes");
    let cd = got.header("content-disposition").expect("disposition");
    assert!(cd.is_ascii() && !cd.contains("\"q\""), "{cd}");
    assert!(
        cd.starts_with("attachment; filename=\"__ _q__.bin\"; filename*=UTF-8''%EF%BF%BD%EF%BF%BD%20%22q%22%3B.bin"),
        "{cd}"
    );
    // Lower-case escapes are the same bytes.
    let got = get(&d, &format!("{LATEST}/files/caf%e9.txt"), &[]);
    assert!(got.status == 200 && got.body == latin1, "{}", got.status);

    // Traversal stays refused in every encoding, raw bytes included.
    for (tail, want) in [
        ("files/dir-%FF%FE/..%2F..%2Fcanary.txt", 400),
        ("files/dir-%FF%FE/%2e%2e/%2e%2e/canary.txt", 400),
        ("files/%ff/../canary.txt", 400),
        ("files/caf%E9.txt%00", 400),
        ("files/%00%E9", 400),
        ("tree/dir-%FF%FE%2F..%2F..", 400),
        ("tree/%E9%2f%2e%2e", 400),
        ("files/dir-%FF%FE%2F%80%81%20%22q%22%3B.bin", 200),
        ("files/%2Fcaf%E9.txt", 200),
        ("files/caf%25E9.txt", 404),
        ("files/caf%E9.txt%2F", 200),
        ("tree/caf%E9.txt", 400),
        ("files/dir-%FF%FE", 400),
    ] {
        let r = get(&d, &format!("{LATEST}/{tail}"), &[]);
        assert_eq!(r.status, want, "{tail}: {}", r.text());
        assert!(!r.text().contains(CANARY), "{tail}");
        if want != 200 {
            let v = json_of(&r, tail);
            assert_eq!(v["error"]["status"], want, "{tail}: {v}");
        }
    }

    // Conditional requests: weak comparison for If-None-Match, strong for
    // If-Range.
    let target = raw["href"].as_str().expect("href").to_string();
    let etag = get(&d, &target, &[])
        .header("etag")
        .expect("etag")
        .to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let weak = format!("W/{etag}");
    let listed = format!("\"nope\", {weak}");
    for inm in [etag.as_str(), &weak, &listed, "*", " \"x\" ,, W/\"y\", *x"] {
        let r = get(&d, &target, &[("If-None-Match", inm)]);
        let want = if inm.contains("*x") { 200 } else { 304 };
        assert_eq!(r.status, want, "If-None-Match: {inm}");
        if want == 304 {
            assert!(r.body.is_empty(), "{inm}");
            assert_eq!(r.header("etag"), Some(etag.as_str()), "{inm}");
        }
    }
    for inm in ["\"nope\"", "W/\"nope\", \"other\"", "garbage"] {
        let r = get(&d, &target, &[("If-None-Match", inm)]);
        assert!(
            r.status == 200 && r.body == latin1,
            "If-None-Match: {inm}: {}",
            r.status
        );
    }
    let range = ("Range", "bytes=0-9");
    let r = get(&d, &target, &[range, ("If-Range", &etag)]);
    assert_eq!((r.status, r.body.as_slice()), (206, &latin1[..10]));
    for if_range in [weak.as_str(), "\"nope\"", "Thu, 01 Jan 2099 00:00:00 GMT"] {
        let r = get(&d, &target, &[range, ("If-Range", if_range)]);
        assert!(
            r.status == 200 && r.body == latin1,
            "If-Range: {if_range}: {}",
            r.status
        );
    }

    // The viewer links to the same exact URLs and browses the raw directory.
    let page = get(&d, "/ui/stores/main/snapshots/latest/tree/", &[]);
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(
        html.contains(&format!("href=\"{base}/files/caf%E9.txt\"")),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "href=\"/ui/stores/main/snapshots/{id}/tree/dir-%FF%FE/\""
        )),
        "{html}"
    );
    let page = get(&d, "/ui/stores/main/snapshots/latest/tree/dir-%FF%FE/", &[]);
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.text().contains(&format!(
            "href=\"{base}/files/dir-%FF%FE/%80%81%20%22q%22%3B.bin\""
        )),
        "{}",
        page.text()
    );
    let page = get(
        &d,
        "/ui/stores/main/snapshots/latest/tree/dir-%FF%FE%2F..%2F..",
        &[],
    );
    assert_eq!(page.status, 400, "{}", page.text());
    assert!(!d.log_text().contains(PASS));
}

#[test]
fn resources_with_a_secret_path_that_is_not_utf8_answer_valid_json() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    let conf = root.join(OsStr::from_bytes(b"conf-\xe9\xff"));
    fs::create_dir_all(&conf).expect("mkdir conf");
    let secret = "s3-secret-VALUE-8hT2-never-shown";
    fs::write(conf.join("secret-key"), format!("{secret}\n")).expect("secret");
    fs::write(root.join("pass"), format!("{PASS}\n")).expect("pass");
    let env_value = "AKID-env-value-never-shown";
    // Relative secret paths resolve against the declaring file's directory.
    let toml = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\n\n\
         [store.main]\nlocation = {}\npassphrase_file = {}\n\n\
         [resource.bucket]\nclass = \"object-storage\"\nsubclass = \"s3\"\nbucket = \"bkt\"\n\
         region = \"us-east-1\"\nendpoint = \"http://127.0.0.1:9\"\n\
         access_key_id_env = \"RAW_NAMES_KEY_ID\"\nsecret_access_key_file = \"secret-key\"\n",
        lit(&root.join("state")),
        lit(&root.join("store")),
        lit(&root.join("pass")),
    );
    write_like_ansible(&conf, "00.toml", &toml);
    let d = Daemon::start(&conf, &root.join("log"), &[("RAW_NAMES_KEY_ID", env_value)]);
    d.wait_ready();
    let mut seen = Vec::new();
    for target in ["/api/v1/resources", "/api/v1/resources/bucket"] {
        let r = get(&d, target, &[]);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert!(std::str::from_utf8(&r.body).is_ok(), "{target}: not UTF-8");
        let v = json_of(&r, target);
        let bucket = if target.ends_with("bucket") {
            v.clone()
        } else {
            v["resources"][0].clone()
        };
        let creds = &bucket["credentials"];
        let file = creds["secret_access_key"]["file"]
            .as_str()
            .unwrap_or_else(|| panic!("{target}: {v}"));
        assert!(
            file.ends_with("/conf-\u{fffd}\u{fffd}/secret-key"),
            "{target}: {file}"
        );
        assert_eq!(
            creds["access_key_id"],
            serde_json::json!({ "env": "RAW_NAMES_KEY_ID" }),
            "{target}: {v}"
        );
        seen.push(r.text());
    }
    for target in ["/api/v1/status", "/status", "/api/v1/stores", "/"] {
        seen.push(get(&d, target, &[]).text());
    }
    for text in &seen {
        for hidden in [secret, env_value, PASS] {
            assert!(!text.contains(hidden), "an answer shows {hidden:?}: {text}");
        }
    }
    let log = d.log_text();
    for hidden in [secret, env_value, PASS] {
        assert!(!log.contains(hidden), "the log shows {hidden:?}");
    }
}
