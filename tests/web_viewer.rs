//! The web viewer (`GET /`, `/ui/…`) end to end in headless Chromium: the
//! real daemon backs up a small tree with a nested, awkwardly named file
//! (a one-shot task) and runs a schedule every two seconds so its plots
//! have points; then `tests/web/viewer.mjs` (playwright-core driving
//! Debian's `chromium`) clicks overview → store → latest snapshot →
//! directories → the file, downloads it, then a directory and a file whose
//! names are not UTF-8 (linked by their exact bytes), checks the schedule's
//! SVG plots, reloads pages with JavaScript disabled, and saves screenshots under
//! `target/test-artifacts/web-viewer/`. The downloaded bytes must equal the
//! source files. Missing Chromium, Node or `tests/web/node_modules` fails
//! the test with the install command: it never skips.

use crate::common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, LIMIT, lit, wait_for, wait_until};
use common::rng::SplitMix64;

const PASS: &str = "web viewer test passphrase";
const INSTALL: &str = "apt-get install -y chromium fonts-dejavu-core && npm ci --prefix tests/web";
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";
const NESTED: [&str; 3] = ["a dir & more", "sub#1", "report <v2> \"final\".txt"];
/// How long the browser script may take.
const BROWSER_LIMIT: Duration = Duration::from_secs(240);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Chromium's path; panics with the install command when something the
/// browser test needs is missing.
fn prerequisites(root: &Path) -> PathBuf {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "Chromium is missing ({}): install it with `{INSTALL}` (or set CHROMIUM)",
        chromium.display()
    );
    let node = Command::new("node").arg("--version").output();
    let version = match node {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => panic!("Node.js (>= 20) is missing: install it, then run `{INSTALL}`"),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "Node.js {version} is too old: playwright-core needs >= 20"
    );
    let playwright = root.join("tests/web/node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "tests/web/node_modules is missing playwright-core: run `{INSTALL}` in {}",
        root.display()
    );
    chromium
}

/// Names that are not UTF-8 (shown lossy): a directory and a file in it.
const RAW_DIR: &[u8] = b"raw-\xff";
const RAW_FILE: &[u8] = b"caf\xe9.bin";

/// Writes the tree; returns the nested file's and the raw-named file's content.
fn write_tree(tree: &Path) -> (Vec<u8>, Vec<u8>) {
    let nested = tree.join(NESTED[0]).join(NESTED[1]);
    std::fs::create_dir_all(&nested).expect("mkdir");
    std::fs::create_dir_all(tree.join("empty")).expect("mkdir");
    std::fs::create_dir_all(tree.join("extra")).expect("mkdir");
    let mut rng = SplitMix64::new(7);
    let content = rng.bytes(300 * 1024 + 17);
    std::fs::write(nested.join(NESTED[2]), &content).expect("write");
    std::fs::write(tree.join("top.txt"), b"top level\n").expect("write");
    std::fs::write(tree.join(NESTED[0]).join("line\nbreak.txt"), b"x").expect("write");
    std::fs::write(tree.join(NESTED[0]).join("it's & <b>.md"), b"# hi\n").expect("write");
    let raw = tree.join(OsStr::from_bytes(RAW_DIR));
    std::fs::create_dir_all(&raw).expect("mkdir");
    let raw_content = rng.bytes(70 * 1024 + 3);
    std::fs::write(raw.join(OsStr::from_bytes(RAW_FILE)), &raw_content).expect("write");
    (content, raw_content)
}

fn config(root: &Path, token: Option<&Path>) -> String {
    let token = token.map_or(String::new(), |t| format!("token_file = {}\n", lit(t)));
    format!(
        r#"[daemon]
state_dir = {state}
listen = "127.0.0.1:0"
{token}
[store.main]
location = {store}
passphrase_file = "pass"

[source.tree]
location = {tree}

[task.first]
task = "backup"
source = "tree"
store = "main"
tags = ["first"]

[schedule.often]
task = "backup"
source = "tree"
store = "main"
cron = "*/2 * * * * *"
tags = ["scheduled"]
"#,
        state = lit(&root.join("state")),
        store = lit(&root.join("store")),
        tree = lit(&root.join("tree")),
    )
}

fn succeeded(d: &Daemon, query: &str) -> usize {
    d.try_json(&format!("/api/v1/tasks?{query}&status=succeeded"))
        .map(|v| common::daemon::tasks(&v).len())
        .unwrap_or(0)
}

/// Plain HTTP checks of what the browser cannot see directly.
fn http_checks(d: &Daemon) {
    let r = d.request_full("GET", "/", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("content-security-policy"), Some(CSP));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(!r.body.contains("<script"), "no JavaScript");
    assert!(r.body.contains("/ui/stores/main") && r.body.contains("/ui/schedules/often"));
    let head = d.request_full("HEAD", "/", &[]);
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(
        head.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let missing = d.request_full("GET", "/ui/no/such/page", &[]);
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(d.request_full("GET", "/ui/stores/nope", &[]).status, 404);
    assert_eq!(d.request_full("GET", "/ui/schedules/nope", &[]).status, 404);
    // Names are escaped, control characters made visible, links encoded.
    let dir = d.request_full(
        "GET",
        "/ui/stores/main/snapshots/latest/tree/a%20dir%20%26%20more/",
        &[],
    );
    assert_eq!(dir.status, 200, "{}", dir.body);
    assert!(
        dir.body.contains("it&#39;s &amp; &lt;b&gt;.md"),
        "{}",
        dir.body
    );
    assert!(
        dir.body
            .contains("line<span class=\"ctl\">\\n</span>break.txt"),
        "{}",
        dir.body
    );
    assert!(!dir.body.contains("<b>.md"), "{}", dir.body);
    assert!(dir.body.contains("/sub%231/"), "{}", dir.body);
    let up = d.request_full("GET", "/ui/stores/main/snapshots/latest/tree/../etc", &[]);
    assert!(matches!(up.status, 400 | 404), "{}: {}", up.status, up.body);
}

fn run_browser(
    root: &Path,
    chromium: &Path,
    base: &str,
    downloads: &Path,
    shots: &Path,
) -> serde_json::Value {
    let expect = serde_json::json!({
        "store": "main",
        "schedule": "often",
        "path": NESTED,
        "shown": ["it's & <b>.md", "line\\nbreak.txt"],
        "raw": {
            "dir": String::from_utf8_lossy(RAW_DIR),
            "file": String::from_utf8_lossy(RAW_FILE),
        },
    });
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(root.join("tests/web/viewer.mjs"))
        .arg(base)
        .arg(downloads)
        .arg(shots)
        .arg(expect.to_string())
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let deadline = started + BROWSER_LIMIT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("node output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "viewer.mjs failed ({}) after {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status,
        started.elapsed()
    );
    eprintln!("browser script took {:?}", started.elapsed());
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn web_viewer_in_headless_chromium() {
    let root = workspace_root();
    let chromium = prerequisites(&root);
    let shots = root.join("target/test-artifacts/web-viewer");
    std::fs::create_dir_all(&shots).expect("screenshot dir");

    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let (conf, tree, downloads) = (dir.join("conf"), dir.join("tree"), dir.join("downloads"));
    for d in [&conf, &downloads] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let (content, raw_content) = write_tree(&tree);
    std::fs::write(conf.join("pass"), format!("{PASS}\n")).expect("write");
    std::fs::write(conf.join("10.toml"), config(dir, None)).expect("write");
    let daemon = Daemon::start(&conf, &dir.join("klosetd.log"), &[]);

    wait_until("the one-shot backup", LIMIT, || {
        succeeded(&daemon, "task=first") >= 1
    });
    // Growing data between scheduled runs gives the bytes plot a shape.
    let mut rng = SplitMix64::new(11);
    let mut n = 0;
    wait_for("three succeeded scheduled backups", LIMIT, || {
        let done = succeeded(&daemon, "schedule=often");
        if done < 3 && n < 40 {
            n += 1;
            let size = 4096 * (1 + (rng.next_u64() % 64) as usize);
            std::fs::write(
                tree.join("extra").join(format!("f{n}.bin")),
                rng.bytes(size),
            )
            .expect("write");
        }
        if done >= 3 {
            Ok(())
        } else {
            Err(format!("{done} so far"))
        }
    });

    http_checks(&daemon);
    let result = run_browser(&root, &chromium, &daemon.url(""), &downloads, &shots);
    eprintln!("browser saw: {result}");
    let downloaded = std::fs::read(result["download"].as_str().expect("download path"))
        .expect("downloaded file");
    assert!(
        downloaded == content,
        "the downloaded file differs: {} bytes, expected {}",
        downloaded.len(),
        content.len()
    );
    let raw = std::fs::read(result["rawDownload"].as_str().expect("raw download path"))
        .expect("downloaded raw-named file");
    assert!(
        raw == raw_content,
        "the raw-named download differs: {} bytes, expected {}",
        raw.len(),
        raw_content.len()
    );
    assert!(
        result["durationPoints"].as_u64().unwrap_or(0) >= 2,
        "{result}"
    );
    for name in [
        "overview",
        "store",
        "tree",
        "schedule",
        "not-found",
        "tree-nojs",
        "tree-raw",
    ] {
        assert!(
            shots.join(format!("{name}.png")).is_file(),
            "screenshot {name}"
        );
    }

    // With a bearer token, data-reading pages need it; the overview does not.
    let token = conf.join("token");
    std::fs::write(&token, "s3cret-token\n").expect("write");
    let before = daemon.applied_revision();
    common::daemon::write_like_ansible(&conf, "10.toml", &config(dir, Some(&token)));
    wait_until("the token config applied", LIMIT, || {
        daemon
            .try_json("/api/v1/status")
            .and_then(|s| s["config"]["applied_revision"].as_str().map(str::to_owned))
            .is_some_and(|r| r != before)
    });
    let denied = daemon.request_full("GET", "/ui/stores/main", &[]);
    assert_eq!(denied.status, 401, "{}", denied.body);
    assert_eq!(
        denied.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(denied.header("www-authenticate").is_some());
    assert!(
        denied.body.contains("Authorization: Bearer"),
        "{}",
        denied.body
    );
    let allowed = daemon.request_full(
        "GET",
        "/ui/stores/main",
        &[("authorization", "Bearer s3cret-token")],
    );
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(daemon.request_full("GET", "/", &[]).status, 200);
}
