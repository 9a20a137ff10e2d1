//! Helpers for the integration end-to-end tests (`tests/integration_*.rs`)
//! that drive the real daemon: a config directory with a `[daemon]` table
//! and a store passphrase, waiting for one-shot tasks to finish (whatever
//! the outcome) and for connection tests to settle, and a check that no
//! secret shows in any answer or log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::daemon::{Daemon, lit, tasks, wait_for, wait_value};

/// The store passphrase written to `conf/pass`.
pub const PASS: &str = "integration e2e passphrase";

/// How long one task may take on a loaded CI machine.
pub const TASK_LIMIT: Duration = Duration::from_secs(120);

/// A test's directory: `conf/` (with `pass`), `state/`, room for data.
#[derive(Debug)]
pub struct Setup {
    /// Removed on drop.
    pub tmp: tempfile::TempDir,
}

impl Setup {
    /// A fresh directory with `conf/pass`.
    pub fn new() -> Setup {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(tmp.path().join("conf")).expect("mkdir conf");
        std::fs::write(tmp.path().join("conf/pass"), format!("{PASS}\n")).expect("write pass");
        Setup { tmp }
    }

    /// The test's root directory.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// `root/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// The config directory.
    pub fn conf(&self) -> PathBuf {
        self.path("conf")
    }

    /// Writes `conf/name`, a secret file (mode 0600) or a config file.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.conf().join(name);
        std::fs::write(&path, text).expect("write config file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }

    /// `[daemon]` with the state under `root/state` and a free port.
    pub fn daemon_table(&self) -> String {
        format!(
            "[daemon]\nstate_dir = {}\nlisten = \"127.0.0.1:0\"\nmax_concurrent_tasks = 2\n",
            lit(&self.path("state"))
        )
    }

    /// Starts the daemon on `conf/` with its log in `root/NAME.log`.
    pub fn start(&self, name: &str, envs: &[(&str, &str)]) -> Daemon {
        let d = Daemon::start(&self.conf(), &self.path(&format!("{name}.log")), envs);
        d.wait_log("configuration is valid", super::daemon::LIMIT);
        d
    }
}

/// Waits until the one-shot `[task.NAME]` has finished (any status but
/// `running`) and returns its record.
pub fn wait_finished(d: &Daemon, name: &str) -> Value {
    wait_value(&format!("task {name} to finish"), TASK_LIMIT, || {
        let t = d.try_json(&format!("/api/v1/tasks?task={name}&limit=1"))?;
        let t = tasks(&t).into_iter().next()?;
        (t["status"] != "running").then_some(t)
    })
}

/// Waits for `[task.NAME]` to succeed; panics with the record and the log
/// when it finishes otherwise.
pub fn wait_succeeded(d: &Daemon, name: &str) -> Value {
    let t = wait_finished(d, name);
    assert_eq!(
        t["status"],
        "succeeded",
        "task {name}: {t:#}\nlog:\n{}",
        d.log_text()
    );
    t
}

/// The condition of `/api/v1/{kind}/{name}` once its connection test has
/// reported (reason no longer `Pending`).
pub fn settled_condition(d: &Daemon, kind: &str, name: &str, limit: Duration) -> Value {
    wait_value(&format!("{kind}/{name} tested"), limit, || {
        let v = d.try_json(&format!("/api/v1/{kind}/{name}"))?;
        let c = v.get("condition")?.clone();
        (c.is_object() && c["reason"] != "Pending").then_some(c)
    })
}

/// Panics if `secret` appears in the log or in any of the documents at
/// `paths`.
pub fn assert_no_secret(d: &Daemon, secret: &str, paths: &[&str]) {
    assert!(secret.len() >= 8, "a real secret to look for");
    for p in paths {
        let (_, body) = d.get(p);
        assert!(!body.contains(secret), "a secret in GET {p}: {body}");
    }
    let log = d.log_text();
    assert!(!log.contains(secret), "a secret in the log:\n{log}");
}

/// The snapshots of `store`, newest first as the API lists them.
pub fn snapshots(d: &Daemon, store: &str) -> Vec<Value> {
    d.json(&format!("/api/v1/stores/{store}/snapshots"))["snapshots"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Writes a one-shot restore of `snapshot`'s `path` from `store` into
/// `destination` as `conf/NAME.toml` (Ansible style) and waits for it.
pub fn restore_task(
    setup: &Setup,
    d: &Daemon,
    name: &str,
    store: &str,
    destination: &str,
    path: Option<&str>,
) -> Value {
    let path = path.map(|p| format!("path = {p:?}\n")).unwrap_or_default();
    super::daemon::write_like_ansible(
        &setup.conf(),
        &format!("{name}.toml"),
        &format!(
            "[task.{name}]\ntask = \"restore\"\nstore = {store:?}\ndestination = {destination:?}\n{path}"
        ),
    );
    wait_finished(d, name)
}

/// Waits until one-shot `name` is pending on `object` (e.g.
/// `source.bad`), and checks that it never ran: a one-shot starts only
/// once its objects are ready.
pub fn wait_oneshot_waiting_for(d: &Daemon, name: &str, object: &str) {
    wait_for(
        &format!("one-shot {name} waiting for {object}"),
        Duration::from_secs(60),
        || {
            let s = d.status();
            let o = s["oneshots"]
                .as_array()
                .and_then(|l| l.iter().find(|o| o["name"] == name).cloned())
                .unwrap_or_default();
            let c = &o["condition"];
            if c["reason"] == "DependencyNotReady"
                && c["message"].as_str().is_some_and(|m| m.contains(object))
            {
                Ok(())
            } else {
                Err(o.to_string())
            }
        },
    );
    let runs = d.json(&format!("/api/v1/tasks?task={name}"));
    assert!(
        tasks(&runs).is_empty(),
        "one-shot {name} ran although {object} is not ready: {runs}"
    );
}

/// Every regular file below `dir`, with its bytes (e.g. a state directory
/// grepped for secrets while the daemon runs).
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            if meta.is_dir() {
                todo.push(path);
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).expect("read");
                out.push((path, bytes));
            }
        }
    }
    out
}

/// `klosetd validate` and `klosetd plan`, plain and `--json`, on the
/// configuration directory `conf` with `envs` added to the environment;
/// each must succeed. Returns what ran (`klosetd validate --json`, ...) and
/// its stdout followed by its stderr.
pub fn validate_and_plan(conf: &Path, envs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let conf = conf.to_str().expect("utf8");
    let mut shown = Vec::new();
    for args in [
        vec!["validate"],
        vec!["validate", "--json"],
        vec!["plan"],
        vec!["plan", "--json"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_klosetd"))
            .args(&args)
            .arg(conf)
            .envs(envs.iter().copied())
            .output()
            .expect("run klosetd");
        let mut all = out.stdout;
        all.extend_from_slice(&out.stderr);
        assert!(
            out.status.success(),
            "klosetd {args:?} {conf}: {}",
            String::from_utf8_lossy(&all)
        );
        shown.push((format!("klosetd {}", args.join(" ")), all));
    }
    shown
}
