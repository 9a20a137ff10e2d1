//! The HTTP endpoint's guards end to end, against snapshots written by the
//! real daemon's own one-shot `[task.*]` backups:
//!
//! - the bearer token (`[daemon] token_file`): every data-reading endpoint
//!   answers `401` with `WWW-Authenticate` without it or with a wrong one,
//!   `200` with it (curl too); status endpoints stay open; rewriting the
//!   file rotates it at once, without a reload; an unreadable file closes
//!   the data endpoints; the token is never echoed nor logged;
//! - no request target leaves the snapshot: `..` in every spelling (raw
//!   bytes that are not UTF-8 included),
//!   absolute paths (read inside the snapshot), NUL, backslashes, double
//!   slashes, symlinks pointing out, over-long targets (`414`); a canary
//!   next to the source root never appears in an answer;
//! - every method but GET and HEAD is `405` on every endpoint and changes
//!   nothing;
//! - `/api/v1/{stores,sources,destinations,resources}`: contents, last
//!   check, conditions, `404` for unknown names, and an S3 secret read
//!   from a file shown nowhere;
//! - a cold store lists its snapshots but its tree and files answer `409`.

use crate::common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, FakeS3, RawReply, lit, raw_http, wait_for, write_like_ansible};
use serde_json::Value;

const PASS: &str = "http-security-passphrase-Zt4w-never-shown";
const TOKEN: &str = "tok-3b9e1c0f-first-bearer-token-value";
const NEW_TOKEN: &str = "tok-77aa41d2-rotated-bearer-token-value";
const CANARY: &str = "CANARY-5d1f-outside-the-snapshot";
const SNAP_PASSWD: &str = "snapshot-own:x:0:0:inside the snapshot:/:/bin/false\n";
const LATEST: &str = "/api/v1/stores/main/snapshots/latest";

/// Request targets (`@` is [`LATEST`]) that must not leave the snapshot,
/// and the statuses they may get.
#[rustfmt::skip]
const ESCAPES: &[(&str, &[u16])] = &[
    ("@/files/../canary.txt", &[400]),
    ("@/files/../../../../../../canary.txt", &[400]),
    ("@/files/sub/../../canary.txt", &[400]),
    ("@/files/%2e%2e/canary.txt", &[400]),
    ("@/files/%2E%2E%2Fcanary.txt", &[400]),
    ("@/files/..%2fcanary.txt", &[400]),
    ("@/files/.%2e/.%2e/canary.txt", &[400]),
    ("@/files/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", &[400]),
    ("@/files/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fshadow", &[400]),
    ("@/files/%252e%252e%252fcanary.txt", &[404]),
    ("@/files/..%5Ccanary.txt", &[404]),
    ("@/files/..%5C..%5C..%5Cetc%5Cpasswd", &[404]),
    ("@/files/..\\..\\canary.txt", &[404]),
    ("@/files/a.txt%00", &[400]),
    ("@/files/a.txt%00.png", &[400]),
    ("@/files/%00/../canary.txt", &[400]),
    // Names are raw bytes: not UTF-8 is a name (404), traversal is not.
    ("@/files/%ff%fe", &[404]),
    ("@/files/%C0%AE%C0%AE/canary.txt", &[404]),
    ("@/files/%ff/../canary.txt", &[400]),
    ("@/files/%ff%2f..%2f..%2fcanary.txt", &[400]),
    ("@/files/%e9%2F%2E%2E%2F%2E%2E%2Fcanary.txt", &[400]),
    ("@/files/%e9%00", &[400]),
    ("@/tree/%ff%2f%2e%2e", &[400]),
    ("/ui/stores/main/snapshots/latest/tree/%ff%2f..%2f..", &[400]),
    ("/ui/stores/main/snapshots/latest/tree/%e9%00", &[400]),
    ("@/files/link-out", &[400]),
    ("@/files/link-abs", &[400]),
    ("@/files/dir-up/canary.txt", &[404]),
    ("@/files/dir-up/src/a.txt", &[404]),
    ("@/files//etc/shadow", &[404]),
    ("@/files/%2Fproc%2Fself%2Fenviron", &[404]),
    ("@/files/sub", &[400]),
    ("@/tree/..", &[400]),
    ("@/tree/%2e%2e", &[400]),
    ("@/tree/%2E%2E%2F%2E%2E%2F", &[400]),
    ("@/tree/sub/..%2f..", &[400]),
    ("@/tree/dir-up", &[400]),
    ("@/tree/%00", &[400]),
    ("/api/v1/stores/main/snapshots/..%2F..%2F/files/canary.txt", &[400]),
    ("/api/v1/stores/main/snapshots/../snapshots/latest/files/a.txt", &[404]),
    ("/api/v1/stores/..%2F..%2F..%2Fetc/snapshots/latest/files/passwd", &[404]),
    ("/api/v1/stores/../../etc/passwd", &[404]),
    ("http://127.0.0.1@/files/../../canary.txt", &[400]),
    ("//etc/passwd", &[404]),
    ("/../../../../etc/passwd", &[404]),
    ("/%2e%2e/%2e%2e/%2e%2e/etc/passwd", &[404]),
    ("/ui/stores/main/snapshots/latest/tree/..", &[400]),
    ("/ui/stores/main/snapshots/latest/tree/%2e%2e%2f%2e%2e", &[400]),
    ("/ui/stores/..%2f..%2f/snapshots", &[404]),
];

/// Every kind of endpoint (`@` is [`LATEST`]).
#[rustfmt::skip]
const ENDPOINTS: &[&str] = &[
    "/", "/healthz", "/readyz", "/status", "/metrics", "/api/v1/openapi.json", "/api/v1/status",
    "/api/v1/tasks", "/api/v1/tasks/1", "/api/v1/schedules", "/api/v1/resources", "/api/v1/stores",
    "/api/v1/stores/main", "/api/v1/sources/src", "/api/v1/destinations",
    "/api/v1/stores/main/snapshots", "/api/v1/stores/main/snapshots/{id}", "@/tree/", "@/tree/sub",
    "@/files/a.txt", "@/files/new.txt", "/ui/stores/main", "/ui/stores/main/snapshots/latest",
    "/no/such/page",
];

/// Writes `root/src` (`a.txt`, `sub/b.txt`, `etc/passwd`, symlinks
/// pointing out), the canary next to it, the config (`[daemon]` plus
/// `daemon_extra`, `[store.main]`, `[source.src]`, a one-shot backup
/// `first`, and `extra`); starts the daemon and waits for the backup.
fn start(root: &Path, daemon_extra: &str, extra: &str) -> Daemon {
    let src = root.join("src");
    for dir in ["conf", "src/sub", "src/etc"] {
        fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    fs::write(src.join("a.txt"), "alpha\n").expect("write");
    fs::write(src.join("sub/b.txt"), "beta\n").expect("write");
    fs::write(src.join("etc/passwd"), SNAP_PASSWD).expect("write");
    symlink("../canary.txt", src.join("link-out")).expect("symlink");
    symlink("/etc/passwd", src.join("link-abs")).expect("symlink");
    symlink("..", src.join("dir-up")).expect("symlink");
    fs::write(root.join("canary.txt"), CANARY).expect("canary");
    fs::write(root.join("pass"), format!("{PASS}\n")).expect("pass");
    let toml = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\n{daemon_extra}\n\
         [store.main]\nlocation = {}\npassphrase_file = {}\n\n\
         [source.src]\nlocation = {}\n\n\
         [task.first]\ntask = \"backup\"\nsource = \"src\"\nstore = \"main\"\n\n{extra}",
        lit(&root.join("state")),
        lit(&root.join("store")),
        lit(&root.join("pass")),
        lit(&src),
    );
    write_like_ansible(&root.join("conf"), "00.toml", &toml);
    let d = Daemon::start(&root.join("conf"), &root.join("log"), &[]);
    d.wait_task("first");
    d
}

fn tmp_root() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    (tmp, root)
}

fn request(d: &Daemon, method: &str, target: &str, headers: &[(&str, &str)]) -> RawReply {
    raw_http(d.port().expect("port"), method, target, headers)
}

/// Asserts a JSON error with `status`; returns its message.
fn json_error(r: &RawReply, status: u16, what: &str) -> String {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(v["error"]["status"], status, "{what}: {v}");
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Asserts none of `secrets` is in any of `texts` nor in the log.
fn assert_never_shown(d: &Daemon, texts: &[String], secrets: &[&str]) {
    for secret in secrets {
        for text in texts {
            assert!(!text.contains(secret), "an answer shows {secret:?}: {text}");
        }
        assert!(!d.log_text().contains(secret), "the log shows {secret:?}");
    }
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl").args(args).output().expect("run curl")
}

#[test]
fn the_bearer_token_guards_data_and_rotates_without_reload() {
    let (_tmp, root) = tmp_root();
    let token_file = root.join("http.token");
    fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let d = start(&root, &format!("token_file = {}\n", lit(&token_file)), "");
    let id = d.tasks("task=first")[0]["snapshot_id"]
        .as_str()
        .expect("id")
        .to_string();
    let data = [
        "/api/v1/stores/main/snapshots".to_string(),
        format!("/api/v1/stores/main/snapshots/{id}"),
        format!("{LATEST}/tree/"),
        format!("{LATEST}/tree/sub"),
        format!("{LATEST}/files/a.txt"),
        "/api/v1/stores/nope/snapshots".into(),
        "/ui/stores/main".into(),
        format!("/ui/stores/main/snapshots/{id}/tree/sub"),
    ];
    let right = format!("Bearer {TOKEN}");
    let wrong = [
        String::new(),
        "Bearer wrong".into(),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Bearer {TOKEN}x"),
        format!("Bearer {NEW_TOKEN}"),
        format!("Basic {TOKEN}"),
        "Bearer ".into(),
        TOKEN.into(),
    ];
    let mut seen = Vec::new();
    for target in &data {
        for auth in &wrong {
            let headers: &[(&str, &str)] = if auth.is_empty() {
                &[]
            } else {
                &[("Authorization", auth)]
            };
            for method in ["GET", "HEAD"] {
                let r = request(&d, method, target, headers);
                assert_eq!(
                    r.status,
                    401,
                    "{method} {target} with {auth:?}: {}",
                    r.text()
                );
                let challenge = r.header("www-authenticate").unwrap_or_default();
                assert!(
                    challenge.starts_with("Bearer"),
                    "{method} {target}: {:?}",
                    r.headers
                );
                if method == "GET" && target.starts_with("/api/") {
                    json_error(&r, 401, target);
                }
                seen.push(format!("{:?} {}", r.headers, r.text()));
            }
        }
        let r = request(&d, "GET", target, &[("Authorization", &right)]);
        let want = if target.contains("/nope/") { 404 } else { 200 };
        assert_eq!(r.status, want, "GET {target} with the token: {}", r.text());
        seen.push(r.text());
    }
    let file = format!("{LATEST}/files/a.txt");
    assert_eq!(
        request(&d, "GET", &file, &[("Authorization", &right)]).body,
        b"alpha\n"
    );

    // Status endpoints stay open.
    for path in [
        "/healthz",
        "/readyz",
        "/status",
        "/api/v1/status",
        "/metrics",
        "/api/v1/stores",
        "/api/v1/tasks",
        "/",
    ] {
        let r = request(&d, "GET", path, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("www-authenticate"), None, "{path}");
        seen.push(r.text());
    }

    // curl, as an operator would.
    let url = d.url(&file);
    let out = root.join("a.out");
    let ok = curl(&[
        "-fsS",
        "-o",
        out.to_str().expect("utf-8"),
        "-H",
        &format!("Authorization: {right}"),
        &url,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(fs::read(&out).expect("curl output"), b"alpha\n");
    let out = root.join("denied.out");
    let denied = curl(&["-fsS", "-o", out.to_str().expect("utf-8"), &url]);
    assert_eq!(
        denied.status.code(),
        Some(22),
        "curl -f without the token must fail"
    );
    assert!(
        fs::read(&out).map_or(true, |b| b.is_empty()),
        "curl got data without the token"
    );
    let code = curl(&["-sS", "-o", "/dev/null", "-w", "%{http_code}", &url]);
    assert_eq!(String::from_utf8_lossy(&code.stdout), "401");

    // Rotation: the file is read at each request, no reload needed.
    let revision = d.applied_revision();
    let tmp = root.join(".http.token.tmp");
    fs::write(&tmp, format!("{NEW_TOKEN}\n")).expect("new token");
    fs::rename(&tmp, &token_file).expect("rotate");
    let new = format!("Bearer {NEW_TOKEN}");
    let r = request(&d, "GET", &file, &[("Authorization", &new)]);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"alpha\n".as_slice()),
        "the new token"
    );
    json_error(
        &request(&d, "GET", &file, &[("Authorization", &right)]),
        401,
        "the old token",
    );
    assert_eq!(d.applied_revision(), revision, "no reload happened");

    // An unreadable token file closes the data endpoints (fails closed).
    fs::remove_file(&token_file).expect("rm token");
    for auth in [&new, &right] {
        let r = request(&d, "GET", &file, &[("Authorization", auth)]);
        json_error(&r, 503, "no token file");
        seen.push(r.text());
    }
    json_error(
        &request(&d, "GET", &file, &[]),
        503,
        "no token file, no header",
    );
    fs::write(&token_file, NEW_TOKEN).expect("token back");
    assert_eq!(
        request(&d, "GET", &file, &[("Authorization", &new)]).status,
        200
    );
    assert_never_shown(&d, &seen, &[TOKEN, NEW_TOKEN, PASS]);
}

#[test]
fn no_request_target_leaves_the_snapshot() {
    let (_tmp, root) = tmp_root();
    let d = start(&root, "", "");
    let host_passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let host_line = host_passwd
        .lines()
        .next()
        .unwrap_or("root:x:0:0:")
        .to_string();
    let mut seen = Vec::new();

    // Absolute paths are paths inside the snapshot.
    for tail in [
        "files//etc/passwd",
        "files/%2Fetc%2Fpasswd",
        "files/etc/passwd",
        "files/./etc/./passwd",
        "files/%2e/etc//passwd",
        "files///etc///passwd",
    ] {
        let r = request(&d, "GET", &format!("{LATEST}/{tail}"), &[]);
        assert_eq!((r.status, r.text().as_str()), (200, SNAP_PASSWD), "{tail}");
    }

    let long = |prefix: &str, part: &str| format!("{prefix}{}", part.repeat(4200 / part.len()));
    let mut cases: Vec<(String, &[u16])> = ESCAPES
        .iter()
        .map(|(t, codes)| (t.replace('@', LATEST), *codes))
        .collect();
    cases.push((long(&format!("{LATEST}/files/"), "a/"), &[414]));
    cases.push((long(&format!("{LATEST}/tree/"), "a/"), &[414]));
    cases.push((
        long("/ui/stores/main/snapshots/latest/tree/", "..%2f"),
        &[414],
    ));
    for (target, allowed) in &cases {
        for method in ["GET", "HEAD"] {
            let r = request(&d, method, target, &[]);
            assert!(
                allowed.contains(&r.status),
                "{method} {target}: {} {}",
                r.status,
                r.text()
            );
            if method == "GET" && target.starts_with("/api/") {
                json_error(&r, r.status, target);
            }
            seen.push(format!("{:?} {}", r.headers, r.text()));
        }
    }
    // curl --path-as-is sends `..` unchanged, as an attacker would.
    let url = d.url(&format!("{LATEST}/files/../../canary.txt"));
    let out = curl(&["-sS", "--path-as-is", "-w", "\n%{http_code}", &url]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.ends_with("\n400"), "{text}");
    seen.push(text);
    for text in &seen {
        assert!(!text.contains(CANARY), "an answer shows the canary: {text}");
        assert!(
            !text.contains(&host_line),
            "an answer shows the host's /etc/passwd: {text}"
        );
    }
    assert_never_shown(&d, &seen, &[PASS]);
}

#[test]
fn only_get_and_head_are_served_and_nothing_changes() {
    let (_tmp, root) = tmp_root();
    let d = start(&root, "", "");
    let id = d.tasks("task=first")[0]["snapshot_id"]
        .as_str()
        .expect("id")
        .to_string();
    let files = |dir: &str| {
        let mut v: Vec<String> = common::tree::walk(&root.join(dir))
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        v.sort();
        v
    };
    let (store_before, src_before) = (files("store"), files("src"));
    let snaps = "/api/v1/stores/main/snapshots";
    let endpoints: Vec<String> = ENDPOINTS
        .iter()
        .map(|e| e.replace("{id}", &id).replace('@', LATEST))
        .collect();
    for target in &endpoints {
        for method in [
            "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND",
        ] {
            let r = request(&d, method, target, &[("Content-Length", "0")]);
            json_error(&r, 405, &format!("{method} {target}"));
            assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method} {target}");
        }
    }
    assert_eq!(d.json(snaps)["snapshots"].as_array().map(Vec::len), Some(1));
    assert_eq!(files("store"), store_before, "the store changed");
    assert_eq!(files("src"), src_before, "the source changed");
}
#[test]
fn object_endpoints_report_contents_checks_and_no_secrets() {
    let (_tmp, root) = tmp_root();
    for dir in ["out", "disk-store", "secrets"] {
        fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    let secret = "s3-SECRET-value-3vX9-must-not-leak";
    fs::write(root.join("secrets/key-id"), "AKIDHTTPBROWSE\n").expect("write");
    fs::write(root.join("secrets/secret"), format!("{secret}\n")).expect("write");
    let s3 = FakeS3::start(true);
    let extra = format!(
        "[resource.disk]\nclass = \"filesystem\"\nsubclass = \"local\"\npath = {}\n\n\
         [resource.bucket]\nclass = \"object-storage\"\nsubclass = \"s3\"\nbucket = \"bkt\"\n\
         region = \"us-east-1\"\nendpoint = \"http://127.0.0.1:{}\"\nallow_http = true\n\
         access_key_id_file = {}\nsecret_access_key_file = {}\n\n\
         [store.ondisk]\nresource = \"disk\"\npassphrase_file = {pass}\n\n\
         [store.cloud]\nresource = \"bucket\"\npassphrase_file = {pass}\n\n\
         [destination.out]\nlocation = {}\n\n\
         [task.to-disk]\ntask = \"backup\"\nsource = \"src\"\nstore = \"ondisk\"\n",
        lit(&root.join("disk-store")),
        s3.port,
        lit(&root.join("secrets/key-id")),
        lit(&root.join("secrets/secret")),
        lit(&root.join("out")),
        pass = lit(&root.join("pass")),
    );
    let d = start(&root, "", &extra);
    d.wait_task("to-disk");
    // Declared once the store holds a backup: a check does not initialise it.
    let check = "[task.chk]\ntask = \"check\"\nstore = \"main\"\n";
    write_like_ansible(&root.join("conf"), "10-check.toml", check);
    d.wait_task("chk");
    let mut seen = Vec::new();

    let count = d.json("/api/v1/stores/main/snapshots")["snapshots"]
        .as_array()
        .map_or(0, Vec::len);
    wait_for(
        "main's contents and last check",
        Duration::from_secs(60),
        || {
            let v = d.json("/api/v1/stores/main");
            let ok =
                v["contents"]["snapshots"] == count && v["last_check"]["status"] == "succeeded";
            ok.then_some(()).ok_or(v.to_string())
        },
    );
    let stores = d.json("/api/v1/stores");
    seen.push(stores.to_string());
    let main = stores["stores"]
        .as_array()
        .expect("stores")
        .iter()
        .find(|s| s["name"] == "main")
        .expect("main")
        .clone();
    assert_eq!(main["storage_type"], "standard", "{main}");
    assert_eq!(main["contents"]["snapshots"], count, "{main}");
    assert!(
        main["contents"]["stored_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{main}"
    );
    assert_eq!(main["condition"]["ready"], true, "{main}");
    assert_eq!(main["last_check"]["status"], "succeeded", "{main}");
    assert!(
        main["integration"].is_string() && main["location"].is_string(),
        "{main}"
    );

    let ondisk = d.json("/api/v1/stores/ondisk");
    assert_eq!(
        (&ondisk["resource"], &ondisk["storage_type"]),
        (&"disk".into(), &"standard".into()),
        "{ondisk}"
    );
    assert_eq!(ondisk["contents"]["snapshots"], 1, "{ondisk}");
    assert_eq!(ondisk["condition"]["ready"], true, "{ondisk}");
    wait_for("the S3 store to be tested", Duration::from_secs(60), || {
        let v = d.json("/api/v1/stores/cloud");
        (v["condition"]["ready"] == false)
            .then_some(())
            .ok_or(v.to_string())
    });
    let source = d.json("/api/v1/sources/src");
    assert_eq!(source["condition"]["ready"], true, "{source}");
    assert!(
        source["location"]
            .as_str()
            .is_some_and(|l| l.ends_with("/src")),
        "{source}"
    );
    let dest = d.json("/api/v1/destinations/out");
    assert!(
        dest["location"]
            .as_str()
            .is_some_and(|l| l.contains("/out")),
        "{dest}"
    );
    assert!(dest["integration"].is_string(), "{dest}");
    let disk = d.json("/api/v1/resources/disk");
    assert_eq!(
        (&disk["class"], &disk["subclass"]),
        (&"filesystem".into(), &"local".into()),
        "{disk}"
    );
    let bucket = d.json("/api/v1/resources/bucket");
    assert_eq!(bucket["class"], "object-storage", "{bucket}");
    for (list, n) in [
        ("resources", 2),
        ("stores", 3),
        ("sources", 1),
        ("destinations", 1),
    ] {
        let v = d.json(&format!("/api/v1/{list}"));
        assert_eq!(v[list].as_array().map(Vec::len), Some(n), "{v}");
        seen.push(v.to_string());
        for suffix in ["nope", "..%2Fmain", "main%00"] {
            json_error(
                &request(&d, "GET", &format!("/api/v1/{list}/{suffix}"), &[]),
                404,
                list,
            );
        }
    }
    for path in [
        "/api/v1/stores/cloud",
        "/api/v1/resources/bucket",
        "/api/v1/status",
        "/status",
        "/readyz",
        "/metrics",
        "/api/v1/tasks",
        "/",
    ] {
        seen.push(request(&d, "GET", path, &[]).text());
    }
    assert_never_shown(&d, &seen, &[secret, PASS]);
}

#[test]
fn a_cold_store_lists_snapshots_but_refuses_reads() {
    let (_tmp, root) = tmp_root();
    let extra = format!(
        "[store.cold]\nlocation = {}\npassphrase_file = {}\nstorage_type = \"cold\"\n\n\
         [task.to-cold]\ntask = \"backup\"\nsource = \"src\"\nstore = \"cold\"\n",
        lit(&root.join("cold-store")),
        lit(&root.join("pass")),
    );
    let d = start(&root, "", &extra);
    let id = d.wait_task("to-cold")["snapshot_id"]
        .as_str()
        .expect("id")
        .to_string();
    let list = d.json("/api/v1/stores/cold/snapshots")["snapshots"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(
        d.json("/api/v1/stores/cold/snapshots/latest")["id"],
        id.as_str()
    );
    assert_eq!(d.json("/api/v1/stores/cold")["storage_type"], "cold");
    for tail in ["tree", "tree/", "files/a.txt"] {
        let target = format!("/api/v1/stores/cold/snapshots/{id}/{tail}");
        let m = json_error(&request(&d, "GET", &target, &[]), 409, &target);
        assert!(
            m.contains("cold") && m.contains("allow_cold_read"),
            "{target}: {m}"
        );
        let head = request(&d, "HEAD", &target, &[]);
        assert_eq!(head.status, 409, "HEAD {target}");
    }
}
