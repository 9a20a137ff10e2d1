//! `klosetd run` reconciling a config directory while it runs, driven only
//! through files, signals and HTTP (see `common::daemon`):
//!
//! - Ansible-style edits apply; a broken file makes `/readyz` fail with its
//!   file and line while the last good config keeps running; fixing it
//!   applies again.
//! - Removing a schedule stops its runs and leaves no partial snapshot.
//! - A Nix-style symlink swap of the whole directory, and the directory
//!   deleted and recreated, are picked up without a signal.
//! - SIGHUP reloads what the file watch cannot see.
//! - `kill -9` and a restart: history intact, an interrupted run marked
//!   failed, one catch-up run for the runs missed while down.
//! - The read-only HTTP endpoint: methods, errors, and no secret anywhere.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use serde_json::Value;

use common::cli::Kloset;
use common::daemon::{
    Daemon, FakeS3, LIMIT, lit, swap_like_nix, time, wait_for, wait_until, write_like_ansible,
};

const PASS: &str = "e2e-passphrase-Qv7XkP2m-not-for-logs";

/// A test's directories: `conf/`, `src/` (a few small files), `pass`,
/// and where the store and the state go.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    conf: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().canonicalize().expect("canonical tmp");
        let conf = root.join("conf");
        std::fs::create_dir_all(root.join("src/sub")).expect("mkdir");
        std::fs::write(root.join("src/a.txt"), b"hello").expect("write");
        std::fs::write(root.join("src/sub/b.txt"), b"world").expect("write");
        std::fs::write(root.join("pass"), format!("{PASS}\n")).expect("write");
        Fixture {
            _tmp: tmp,
            root,
            conf,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `[daemon]`, `[store.main]` (local, `init = "auto"`), `[source.src]`.
    fn base(&self) -> String {
        format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\nmax_concurrent_tasks = 2\n\n\
             [store.main]\nlocation = {}\npassphrase_file = {}\ninit = \"auto\"\n\n\
             [source.src]\nlocation = {}\n",
            lit(&self.path("state")),
            lit(&self.path("store")),
            lit(&self.path("pass")),
            lit(&self.path("src")),
        )
    }

    fn start(&self, log: &str, envs: &[(&str, &str)]) -> Daemon {
        Daemon::start(&self.conf, &self.path(log), envs)
    }
}

/// A backup schedule of `src` into `main`.
fn schedule(name: &str, cron: &str) -> String {
    format!(
        "[schedule.{name}]\ntask = \"backup\"\nsource = \"src\"\nstore = \"main\"\ncron = \"{cron}\"\n"
    )
}

/// Asserts the reload that found `revision` valid was triggered by
/// `expected` (the log line says so). The periodic resync may win the race
/// by coincidence, but then only right after the change (`elapsed`, as seen
/// by the test, stays short); a broken trigger shows as a late resync.
fn assert_trigger(d: &Daemon, revision: &str, expected: &str, elapsed: Duration) {
    let trigger = d.reload_trigger(revision);
    let coincidence = trigger.as_deref() == Some("resync") && elapsed < Duration::from_secs(3);
    assert!(
        trigger.as_deref() == Some(expected) || coincidence,
        "expected a reload by {expected}, seen {trigger:?} after {elapsed:?}"
    );
}

#[test]
fn ansible_edits_broken_file_and_fix() {
    let f = Fixture::new();
    std::fs::create_dir_all(&f.conf).expect("mkdir");
    write_like_ansible(&f.conf, "10-base.toml", &f.base());
    write_like_ansible(&f.conf, "20-a.toml", &schedule("a", "*/2 * * * * *"));
    let mut d = f.start("run.log", &[]);
    d.wait_ready();
    wait_for("schedule a with a next run", LIMIT, || {
        let v = d.try_json("/api/v1/schedules/a").ok_or("no answer")?;
        time(&v["next_run"]).map(|_| ()).ok_or(v.to_string())
    });

    let b = schedule("b", "*/2 * * * * *");
    write_like_ansible(&f.conf, "21-b.toml", &b);
    d.wait_schedules(&["a", "b"]);
    d.wait_ready();
    let good = d.applied_revision();

    // Line 6 holds an unknown key.
    let broken = format!("# schedule b\n{b}").replace("cron =", "colour = \"blue\"\ncron =");
    assert_eq!(broken.lines().nth(5), Some("colour = \"blue\""), "{broken}");
    write_like_ansible(&f.conf, "21-b.toml", &broken);
    let place = format!("{}:6", f.conf.join("21-b.toml").display());
    wait_for("/readyz 503 naming the broken line", LIMIT, || {
        let r = d.try_request("GET", "/readyz")?;
        (r.status == 503 && r.body.contains(&place))
            .then_some(())
            .ok_or(format!("{}: {}", r.status, r.body))
    });
    let confirmed = Utc::now();
    let (code, text) = d.get("/status");
    assert_eq!(code, 503, "{text}");
    assert!(text.contains(&place) && text.contains("INVALID"), "{text}");
    let status = d.status();
    let config = &status["config"];
    assert_eq!(config["valid"], false, "{status:#}");
    assert_eq!(config["applied_revision"], good.as_str(), "{status:#}");
    assert_ne!(config["attempted_revision"], config["applied_revision"]);
    let err = &config["errors"][0];
    assert_eq!(
        err["file"].as_str(),
        f.conf.join("21-b.toml").to_str(),
        "{status:#}"
    );
    assert_eq!(err["line"], 6, "{status:#}");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("colour")),
        "{err}"
    );
    assert_eq!(status["ready"], false);

    // The last good configuration keeps running: b still fires.
    assert_eq!(d.schedule_names(), Some(vec!["a".into(), "b".into()]));
    wait_for("a run of b after the breakage", LIMIT, || {
        let list = d.tasks("schedule=b&status=succeeded");
        list.iter()
            .any(|t| time(&t["started_at"]).is_some_and(|s| s > confirmed))
            .then_some(())
            .ok_or(format!("{list:?}"))
    });
    assert_eq!(d.applied_revision(), good);

    // Fixed (with a comment, so a new revision): applied again.
    write_like_ansible(&f.conf, "21-b.toml", &format!("# fixed\n{b}"));
    d.wait_ready();
    let status = d.status();
    let config = &status["config"];
    assert_eq!(config["valid"], true, "{status:#}");
    assert_eq!(config["applied_revision"], config["attempted_revision"]);
    assert_ne!(config["applied_revision"], good.as_str());
    assert_eq!(config["errors"], serde_json::json!([]));
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
}

#[test]
fn removing_a_schedule_stops_its_runs() {
    let f = Fixture::new();
    std::fs::create_dir_all(&f.conf).expect("mkdir");
    write_like_ansible(&f.conf, "10-base.toml", &f.base());
    write_like_ansible(&f.conf, "20-a.toml", &schedule("a", "*/2 * * * * *"));
    let mut d = f.start("run.log", &[]);
    d.wait_ready();
    wait_until("two runs of a", LIMIT, || {
        d.tasks("schedule=a&status=succeeded").len() >= 2
    });

    std::fs::remove_file(f.conf.join("20-a.toml")).expect("rm");
    d.wait_schedules(&[]);
    let removed = Utc::now();
    wait_for("the last run of a to end", LIMIT, || {
        let running = d.status()["running"].clone();
        let rows = d.tasks("schedule=a&status=running");
        (running.as_array().is_some_and(Vec::is_empty) && rows.is_empty())
            .then_some(())
            .ok_or(format!("{running} {rows:?}"))
    });
    let before = d.tasks("schedule=a&limit=1000");
    // Watch for longer than two cron periods, only after the removal.
    std::thread::sleep(Duration::from_secs(6));
    let after = d.tasks("schedule=a&limit=1000");
    assert_eq!(after, before, "no run of a after its removal");
    for t in &after {
        let nominal = time(&t["scheduled_for"]).expect("scheduled_for");
        assert!(
            nominal < removed,
            "a run for {nominal} after {removed}: {t}"
        );
        assert_ne!(t["status"], "running", "{t}");
    }
    assert!(d.log_text().contains("schedule removed: no further runs"));
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);

    let check = Kloset::new().passphrase(PASS).run([
        "at",
        f.path("store").to_str().expect("utf8"),
        "check",
        "--read-data",
    ]);
    assert!(
        check.success() && check.stdout_str().starts_with("ok:"),
        "{}",
        check.describe()
    );
}

#[test]
fn nix_symlink_swap_and_recreated_directory() {
    let f = Fixture::new();
    let gen_dir = |name: &str, schedules: &[&str]| {
        let dir = f.path(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("10-base.toml"), f.base()).expect("write");
        let text: Vec<String> = schedules
            .iter()
            .map(|s| schedule(s, "0 0 3 * * *"))
            .collect();
        std::fs::write(dir.join("20-schedules.toml"), text.join("\n")).expect("write");
    };
    gen_dir("gen1", &["one"]);
    gen_dir("gen2", &["three", "two"]);
    std::os::unix::fs::symlink("gen1", &f.conf).expect("symlink");
    let mut d = f.start("run.log", &[]);
    d.wait_ready();
    d.wait_schedules(&["one"]);

    swap_like_nix(&f.conf, Path::new("gen2"));
    let swapped = Instant::now();
    d.wait_schedules(&["three", "two"]);
    let elapsed = swapped.elapsed();
    d.wait_ready();
    assert_trigger(&d, &d.applied_revision(), "file change", elapsed);

    // The symlink deleted, a real directory created in its place.
    let recreate = |schedules: &[&str]| {
        match std::fs::symlink_metadata(&f.conf) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&f.conf).expect("rm -rf"),
            Ok(_) => std::fs::remove_file(&f.conf).expect("rm"),
            Err(e) => panic!("{e}"),
        }
        std::fs::create_dir(&f.conf).expect("mkdir");
        write_like_ansible(&f.conf, "10-base.toml", &f.base());
        let text: Vec<String> = schedules
            .iter()
            .map(|s| schedule(s, "0 0 3 * * *"))
            .collect();
        write_like_ansible(&f.conf, "20-schedules.toml", &text.join("\n"));
    };
    for names in [&["four"][..], &["five", "six"][..]] {
        let start = Instant::now();
        recreate(names);
        d.wait_schedules(names);
        let elapsed = start.elapsed();
        d.wait_ready();
        let status = d.status();
        assert_eq!(
            status["config"]["applied_revision"],
            status["config"]["attempted_revision"]
        );
        assert_trigger(&d, &d.applied_revision(), "file change", elapsed);
    }
    assert!(d.log_text().contains("trigger=\"file change\""));
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
}

#[test]
fn sighup_reloads_what_the_watch_cannot_see() {
    let f = Fixture::new();
    // conf/20-x.toml is a link to a file in a directory nobody watches: an
    // edit there is only seen by SIGHUP (or the periodic resync).
    let outside = f.path("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::create_dir_all(&f.conf).expect("mkdir");
    write_like_ansible(&f.conf, "10-base.toml", &f.base());
    write_like_ansible(&outside, "x.toml", &schedule("x", "0 0 3 * * *"));
    std::os::unix::fs::symlink(outside.join("x.toml"), f.conf.join("20-x.toml")).expect("link");
    let mut d = f.start("run.log", &[]);
    d.wait_ready();
    d.wait_schedules(&["x"]);

    write_like_ansible(&outside, "x.toml", &schedule("y", "0 0 3 * * *"));
    d.signal("HUP");
    let sent = Instant::now();
    d.wait_schedules(&["y"]);
    let elapsed = sent.elapsed();
    assert!(d.alive(), "klosetd died on SIGHUP");
    assert_eq!(d.get("/healthz").0, 200);
    d.wait_ready();
    assert_trigger(&d, &d.applied_revision(), "SIGHUP", elapsed);

    // A SIGHUP with nothing to change is harmless.
    let revision = d.applied_revision();
    d.signal("HUP");
    d.signal("HUP");
    d.wait_ready();
    assert!(d.alive());
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(d.applied_revision(), revision);
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
}

#[test]
fn kill9_then_restart_keeps_history_and_catches_up_once() {
    const PERIOD: i64 = 5;
    let f = Fixture::new();
    // A sparse file: reading its zeros takes seconds but no disk, so the
    // one-shot backup of it is surely running when the daemon is killed.
    std::fs::create_dir_all(f.path("big")).expect("mkdir");
    std::fs::File::create(f.path("big/sparse"))
        .and_then(|big| big.set_len(4 << 30))
        .expect("sparse file");
    std::fs::create_dir_all(&f.conf).expect("mkdir");
    let base = format!(
        "{}\n[source.big]\nlocation = {}\n",
        f.base(),
        lit(&f.path("big"))
    );
    write_like_ansible(&f.conf, "10-base.toml", &base);
    let c = format!(
        "{}catch_up = true\n",
        schedule("c", &format!("*/{PERIOD} * * * * *"))
    );
    write_like_ansible(&f.conf, "20-c.toml", &c);
    let mut d = f.start("run1.log", &[]);
    d.wait_ready();
    wait_until("a run of c", LIMIT, || {
        !d.tasks("schedule=c&status=succeeded").is_empty()
    });
    // Right after that run: a one-shot backup of the big source, then kill -9.
    write_like_ansible(
        &f.conf,
        "30-big.toml",
        "[task.big]\ntask = \"backup\"\nsource = \"big\"\nstore = \"main\"\n",
    );
    d.wait_log("task started origin=big", LIMIT);
    let before = d.tasks("limit=1000");
    d.kill9();
    assert!(
        before
            .iter()
            .any(|t| t["task"] == "big" && t["status"] == "running"),
        "{before:?}"
    );
    let last_c = |list: &[Value]| {
        list.iter()
            .filter(|t| t["schedule"] == "c")
            .filter_map(|t| time(&t["scheduled_for"]))
            .max()
            .expect("a run of c")
    };
    // Down for two cron times (bounded).
    let resume = last_c(&before) + TimeDelta::seconds(2 * PERIOD + 1);
    let wait = (resume - Utc::now()).to_std().unwrap_or_default();
    assert!(wait < Duration::from_secs(30), "{wait:?}");
    std::thread::sleep(wait);

    let restarted = Utc::now();
    let mut d = f.start("run2.log", &[]);
    wait_until("a run of c after the restart", LIMIT, || {
        d.tasks("schedule=c&status=succeeded")
            .iter()
            .any(|t| time(&t["scheduled_for"]).is_some_and(|s| s > restarted))
    });
    let after = d.tasks("limit=1000");
    let by_id = |id: &Value| after.iter().find(|t| t["id"] == *id).cloned();
    for old in &before {
        let now = by_id(&old["id"]).unwrap_or_else(|| panic!("task {} lost", old["id"]));
        for key in ["kind", "schedule", "task", "scheduled_for", "started_at"] {
            assert_eq!(now[key], old[key], "{key} of {old} became {now}");
        }
        if old["status"] == "running" {
            assert_eq!(now["status"], "failed", "{now}");
            let error = now["error"].as_str().unwrap_or_default();
            assert!(error.starts_with("interrupted"), "{now}");
        } else {
            assert_eq!(now, *old);
        }
    }
    // One catch-up run, for the first cron time after the last run before
    // the kill, started at once.
    let old: Vec<Value> = after
        .iter()
        .filter(|t| time(&t["started_at"]).is_some_and(|s| s < restarted))
        .cloned()
        .collect();
    let expected = last_c(&old) + TimeDelta::seconds(PERIOD);
    let new_c: Vec<&Value> = after
        .iter()
        .rev()
        .filter(|t| t["schedule"] == "c" && time(&t["started_at"]).is_some_and(|s| s > restarted))
        .collect();
    let catch_up: Vec<&&Value> = new_c
        .iter()
        .filter(|t| time(&t["scheduled_for"]).is_some_and(|s| s < restarted))
        .collect();
    assert_eq!(catch_up.len(), 1, "one catch-up run: {new_c:#?}");
    assert_eq!(new_c[0]["id"], catch_up[0]["id"], "the catch-up runs first");
    assert_eq!(time(&catch_up[0]["scheduled_for"]), Some(expected));
    let started = time(&catch_up[0]["started_at"]).expect("started_at");
    assert!(started - restarted < TimeDelta::seconds(30), "{started}");
    let log = d.log_text();
    let due: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("run due schedule=c") && l.contains("catch_up=true"))
        .collect();
    assert_eq!(due.len(), 1, "one catch-up:\n{log}");
    // The interrupted one-shot is shown, never run again.
    assert_eq!(after.iter().filter(|t| t["task"] == "big").count(), 1);
    assert!(log.contains("already handled"), "{log}");
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
}

/// `[resource.s3]` on `s3` and `[store.remote]` in it.
fn s3_config(s3: &FakeS3) -> String {
    format!(
        "\n[resource.s3]\nclass = \"object-storage\"\nsubclass = \"s3\"\nbucket = \"bkt\"\n\
         prefix = \"p\"\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:{}\"\n\
         allow_http = true\naccess_key_id_env = \"E2E_S3_KEY_ID\"\n\
         secret_access_key_env = \"E2E_S3_SECRET\"\n\n\
         [store.remote]\nresource = \"s3\"\npassphrase_env = \"E2E_REMOTE_PASS\"\n",
        s3.port
    )
}

const KEY_ID: &str = "AKIAE2EKLOSETD000001";
const SECRETS: [&str; 3] = [
    "e2eS3secret/Zr8+Lq3vN0tLeak9f8e7d6c5",
    "remote-passphrase-Hx4TwQ-not-for-logs",
    "aws-env-secret-M2pY7uK1-not-for-logs",
];

fn s3_envs() -> Vec<(&'static str, &'static str)> {
    vec![
        ("E2E_S3_KEY_ID", KEY_ID),
        ("E2E_S3_SECRET", SECRETS[0]),
        ("E2E_REMOTE_PASS", SECRETS[1]),
        ("AWS_SECRET_ACCESS_KEY", SECRETS[2]),
    ]
}

#[test]
fn http_methods_errors_and_no_secrets() {
    let f = Fixture::new();
    let s3 = FakeS3::start(true);
    std::fs::create_dir_all(&f.conf).expect("mkdir");
    write_like_ansible(
        &f.conf,
        "10-base.toml",
        &format!("{}{}", f.base(), s3_config(&s3)),
    );
    write_like_ansible(&f.conf, "20-a.toml", &schedule("a", "*/2 * * * * *"));
    let mut d = f.start("run.log", &s3_envs());
    wait_until("task 1", LIMIT, || {
        d.status_of("/api/v1/tasks/1") == Some(200)
    });
    wait_for("store.remote not ready", LIMIT, || {
        let v = d.status();
        v["problems"]
            .to_string()
            .contains("store.remote not ready")
            .then_some(())
            .ok_or(v.to_string())
    });
    let heads = s3.heads();
    assert!(
        heads
            .iter()
            .any(|h| h.contains(&format!("Credential={KEY_ID}/"))),
        "the S3 credentials from the environment are used: {heads:?}"
    );

    let mut bodies = Vec::new();
    let endpoints = [
        ("/healthz", 200),
        ("/readyz", 503),
        ("/status", 503),
        ("/metrics", 200),
        ("/api/v1/status", 200),
        ("/api/v1/schedules", 200),
        ("/api/v1/schedules/a", 200),
        ("/api/v1/tasks", 200),
        ("/api/v1/tasks/1", 200),
    ];
    for (path, code) in endpoints {
        let get = d.request("GET", path);
        assert_eq!(get.status, code, "GET {path}: {}", get.body);
        assert!(!get.body.is_empty(), "GET {path}");
        if path.starts_with("/api/") {
            serde_json::from_str::<Value>(&get.body).expect("JSON");
            assert_eq!(get.content_type.as_deref(), Some("application/json"));
        }
        let head = d.request("HEAD", path);
        assert_eq!(head.status, code, "HEAD {path}");
        assert_eq!(head.body, "", "HEAD {path}");
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let r = d.request(method, path);
            assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
            assert_eq!(r.allow.as_deref(), Some("GET, HEAD"), "{method} {path}");
            let v: Value = serde_json::from_str(&r.body).expect("JSON error");
            assert_eq!(v["error"]["status"], 405, "{v}");
        }
        bodies.push(get.body);
    }
    assert!(bodies[1].contains("store.remote"), "{}", bodies[1]);
    for (path, code) in [
        ("/nope", 404),
        ("/api/v1/nope", 404),
        ("/api/v1/schedules/nope", 404),
        ("/api/v1/tasks/999999", 404),
        ("/api/v1/tasks?kind=nope", 400),
    ] {
        let r = d.request("GET", path);
        assert_eq!(r.status, code, "GET {path}: {}", r.body);
        let v: Value = serde_json::from_str(&r.body).expect("JSON error");
        assert_eq!(v["error"]["status"], code, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        bodies.push(r.body);
    }
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
    bodies.push(d.log_text());
    for secret in SECRETS.iter().chain([&PASS]) {
        for body in &bodies {
            assert!(!body.contains(secret), "a secret leaked: {body}");
        }
    }
}

#[test]
fn readyz_waits_for_objects_not_tested_yet() {
    let f = Fixture::new();
    // The S3 endpoint holds its requests: store.remote's test stays in flight.
    let s3 = FakeS3::start(false);
    std::fs::create_dir_all(&f.conf).expect("mkdir");
    write_like_ansible(
        &f.conf,
        "10-base.toml",
        &format!("{}{}", f.base(), s3_config(&s3)),
    );
    write_like_ansible(&f.conf, "20-a.toml", &schedule("a", "0 0 3 * * *"));
    let mut d = f.start("run.log", &s3_envs());
    wait_for(
        "config applied, store.main ready, store.remote in test",
        LIMIT,
        || {
            let v = d.status();
            let a = d.try_json("/api/v1/schedules/a").unwrap_or_default();
            (v["config"]["applied_revision"] == v["config"]["attempted_revision"]
                && a["condition"]["ready"] == true
                && !s3.heads().is_empty())
            .then_some(())
            .ok_or(format!("{v} {a}"))
        },
    );
    let r = d.request("GET", "/readyz");
    s3.open.store(true, Ordering::SeqCst);
    assert_eq!(
        r.status, 503,
        "store.remote is not known to be ready yet: {}",
        r.body
    );
    assert!(r.body.contains("store.remote"), "{}", r.body);
    wait_for("store.remote not ready", LIMIT, || {
        let r = d.try_request("GET", "/readyz")?;
        (r.status == 503 && r.body.contains("store.remote not ready"))
            .then_some(())
            .ok_or(r.body)
    });
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
}

/// The state database locked by another process for a while (a backup
/// tool, an operator's `sqlite3`): the new revision is not applied, the
/// reason is shown, and the apply is retried until it works.
#[test]
fn an_apply_that_fails_is_shown_and_retried_until_it_works() {
    let f = Fixture::new();
    std::fs::create_dir_all(&f.conf).expect("mkdir");
    write_like_ansible(&f.conf, "10-base.toml", &f.base());
    write_like_ansible(&f.conf, "20-a.toml", &schedule("a", "0 3 * * *"));
    let d = f.start("run.log", &[]);
    d.wait_ready();
    let first = d.applied_revision();

    let db = rusqlite::Connection::open(f.path("state/state.db")).expect("open state db");
    db.execute_batch("BEGIN EXCLUSIVE")
        .expect("lock the state database");
    write_like_ansible(&f.conf, "21-b.toml", &schedule("b", "0 4 * * *"));
    wait_for("the failed apply shown", Duration::from_secs(120), || {
        let v = d.status();
        let failure = &v["config"]["apply_error"];
        let text = failure["message"].as_str().unwrap_or_default();
        let (code, body) = d.get("/readyz");
        (text.contains("locked") && code == 503 && body.contains("could not be applied"))
            .then_some(())
            .ok_or(format!("{v}\n{code} {body}"))
    });
    assert_eq!(d.applied_revision(), first, "nothing counts as applied");
    assert_eq!(d.schedule_names(), Some(vec!["a".to_string()]));

    db.execute_batch("ROLLBACK").expect("unlock");
    drop(db);
    d.wait_schedules(&["a", "b"]);
    d.wait_ready();
    let v = d.status();
    assert!(v["config"]["apply_error"].is_null(), "{v}");
    assert_ne!(d.applied_revision(), first);
    assert_eq!(
        v["config"]["applied_revision"], v["config"]["attempted_revision"],
        "{v}"
    );
}
