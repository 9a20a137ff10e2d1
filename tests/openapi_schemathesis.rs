//! The OpenAPI document (`/api/v1/openapi.json`) against the live daemon,
//! with schemathesis (PyPI, pinned): every check (`--checks all`: no server
//! error, statuses, content types, headers and bodies as documented, invalid
//! input rejected, valid input accepted, 405 for other methods, auth
//! enforced) over every operation, GET and HEAD, with a fixed seed.
//!
//! The daemon runs a configuration with every kind of object: a resource, a
//! standard and a cold store each with a snapshot made by a one-shot backup,
//! a source, a destination, a schedule of each task kind, a finished check
//! and a restore, and `token_file` (the token goes to schemathesis with
//! `-H "Authorization: Bearer …"`). Per-operation settings and one hook are
//! in `tests/schemathesis/` (why, in each file).
//!
//! schemathesis is found in the virtual environment `target/venv-schemathesis`
//! of the workspace (or at `$KLOSETD_SCHEMATHESIS`); when it is missing or not
//! the pinned version the test fails with the commands that install it.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, wait_for, write_like_ansible};
use common::rng::SplitMix64;

/// The schemathesis release the document is checked with.
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Test cases per operation and phase; bounds the run to well under a minute
/// (`KLOSETD_SCHEMATHESIS_MAX_EXAMPLES` overrides it, to search harder).
const MAX_EXAMPLES: &str = "40";
/// The generation seed: a failure is reproduced by running the test again
/// (`KLOSETD_SCHEMATHESIS_SEED` overrides it).
const SEED: &str = "20261122";
/// The bearer token of the data endpoints.
const TOKEN: &str = "openapi-test-token-7f3a";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// The pinned schemathesis, or a failure that says how to install it.
fn schemathesis() -> PathBuf {
    let venv = workspace().join("target/venv-schemathesis");
    let exe = std::env::var_os("KLOSETD_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| venv.join("bin/schemathesis"));
    let install = format!(
        "install it with (from {}):\n  \
         python3 -m venv target/venv-schemathesis\n  \
         target/venv-schemathesis/bin/pip install --disable-pip-version-check schemathesis=={SCHEMATHESIS_VERSION}\n\
         (Debian needs the python3-venv package; or set KLOSETD_SCHEMATHESIS to a schemathesis {SCHEMATHESIS_VERSION} executable)",
        workspace().display()
    );
    let version = Command::new(&exe)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "schemathesis not found at {}: {e}; {install}",
                exe.display()
            )
        });
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.status.success()
            && text.trim() == format!("schemathesis, version {SCHEMATHESIS_VERSION}"),
        "{} is not schemathesis {SCHEMATHESIS_VERSION} ({:?}); {install}",
        exe.display(),
        text.trim()
    );
    exe
}

/// The backed-up tree: text, a larger binary file, HTML (always sent as a
/// download), an empty file, a symlink, nested directories.
fn data(root: &Path) {
    let mut rng = SplitMix64::new(0x0a11);
    for dir in ["etc", "var/log", "srv/www"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )
    .expect("hosts");
    std::fs::write(root.join("var/log/big.log"), rng.bytes(300_000)).expect("big");
    std::fs::write(
        root.join("srv/www/index.html"),
        "<script>alert(1)</script>\n",
    )
    .expect("html");
    std::fs::write(root.join("etc/empty"), "").expect("empty");
    std::os::unix::fs::symlink("etc/hosts", root.join("hosts-link")).expect("symlink");
}

const CONFIG: &str = r#"[daemon]
listen = "127.0.0.1:0"
state_dir = "../state"
token_file = "token"
max_concurrent_tasks = 1

[resource.disk]
class = "filesystem"
subclass = "local"
path = "../data"

[store.local]
location = "../store"
passphrase_file = "pass"

[store.archive]
location = "../archive"
passphrase_file = "pass"
storage_type = "cold"

[source.data]
resource = "disk"
excludes = ["*.tmp"]

[destination.out]
location = "../out"

[schedule.nightly]
task = "backup"
source = "data"
store = "local"
cron = "0 3 * * *"
timezone = "Europe/Paris"
jitter = "5m"
catch_up = true
tags = ["nightly"]

[schedule.weekly-check]
task = "check"
store = "local"
cron = "@weekly"

[schedule.restore-test]
task = "restore"
store = "local"
destination = "out"
cron = "@monthly"

[schedule.offsite]
task = "sync"
store = "local"
to = "archive"
cron = "@yearly"

[schedule.prune]
task = "prune"
store = "local"
cron = "@yearly"

[task.first]
task = "backup"
source = "data"
store = "local"
tags = ["first"]
retention = { keep_last = 5 }

[task.archive-first]
task = "backup"
source = "data"
store = "archive"
"#;

/// Added once the backups are done, so that they read a snapshot.
const CHECK_AND_RESTORE: &str = r#"[task.verify]
task = "check"
store = "local"
read_data = "100%"

[task.restore-once]
task = "restore"
store = "local"
destination = "out"

[task.gc]
task = "prune"
store = "local"
grace = "1s"
"#;

/// Waits until the one-shot tasks `names` have all succeeded.
fn wait_succeeded(d: &Daemon, names: &[&str]) {
    wait_for(
        &format!("tasks {names:?} succeeded"),
        Duration::from_secs(120),
        || {
            for name in names {
                let v = d.json(&format!("/api/v1/tasks?task={name}"));
                let status = v["tasks"][0]["status"].as_str().unwrap_or("not started");
                match status {
                    "succeeded" => {}
                    "running" | "not started" => return Err(format!("{name}: {status}")),
                    _ => panic!("task {name} ended {status}: {}\n{}", v, d.log_text()),
                }
            }
            Ok(())
        },
    );
}

#[test]
fn the_openapi_document_matches_the_live_daemon() {
    let st = schemathesis();
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let conf = root.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::create_dir_all(root.join("out")).expect("mkdir");
    data(&root.join("data"));
    std::fs::write(conf.join("pass"), "openapi passphrase\n").expect("pass");
    std::fs::write(conf.join("token"), format!("{TOKEN}\n")).expect("token");
    write_like_ansible(&conf, "00.toml", CONFIG);
    let mut d = Daemon::start(&conf, &root.join("log"), &[]);
    wait_succeeded(&d, &["first", "archive-first"]);
    write_like_ansible(&conf, "10-check-restore.toml", CHECK_AND_RESTORE);
    wait_succeeded(&d, &["verify", "restore-once", "gc"]);
    d.wait_ready();

    let here = workspace().join("tests/schemathesis");
    let setting = |name: &str, default: &str| std::env::var(name).unwrap_or(default.to_string());
    let seed = setting("KLOSETD_SCHEMATHESIS_SEED", SEED);
    let max_examples = setting("KLOSETD_SCHEMATHESIS_MAX_EXAMPLES", MAX_EXAMPLES);
    let started = Instant::now();
    let out = Command::new(&st)
        .current_dir(root)
        .env("SCHEMATHESIS_HOOKS", "klosetd_hooks")
        .env("PYTHONPATH", &here)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_COLOR", "1")
        .arg("--config-file")
        .arg(here.join("schemathesis.toml"))
        .args(["run", &d.url("/api/v1/openapi.json")])
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--max-examples", &max_examples, "--seed", &seed])
        .args(["--generation-database", "none", "--workers", "1"])
        .args(["--request-timeout", "30", "--no-color"])
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis (seed {seed}) found problems ({}):\n{report}\ndaemon log:\n{}",
        out.status,
        d.log_text()
    );
    eprintln!("schemathesis ran in {:.1?}", started.elapsed());
    assert!(
        report.contains("No issues found"),
        "unexpected schemathesis report:\n{report}"
    );
    assert!(d.alive(), "the daemon died:\n{}", d.log_text());
    assert!(
        !d.log_text().contains("panicked"),
        "the daemon panicked:\n{}",
        d.log_text()
    );
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
}
