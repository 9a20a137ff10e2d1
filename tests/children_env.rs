//! Children never inherit a secret: the daemon reads a store passphrase and
//! a notification URL from its environment (`*_env`), and neither the
//! variables nor their values reach a source's `pre` hook, an `exec`
//! source's command, or an `exec` notification; the values appear in no
//! log, status or metric, no file of the state directory (the database and
//! its WAL), no output of `klosetd validate` and `plan`, and the daemon's
//! command line holds none.

use crate::common;

use std::time::Duration;

use common::daemon::{Daemon, wait_value, write_like_ansible};
use common::e2e::{assert_no_secret, files_under, validate_and_plan};
use common::receiver::Receiver;

const LIMIT: Duration = Duration::from_secs(90);
const PASS_VALUE: &str = "children-env-store-passphrase-5d1c";
const URL_KEY: &str = "children-env-url-key-93ab";

#[test]
fn hooks_commands_and_notifications_never_inherit_secret_variables() {
    let receiver = Receiver::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    std::fs::create_dir(root.join("src")).expect("src");
    std::fs::write(root.join("src/a.txt"), b"data").expect("write");
    let conf = root.join("conf");
    std::fs::create_dir(&conf).expect("conf");
    let r = root.display();
    write_like_ansible(
        &conf,
        "00.toml",
        &format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"../state\"\n\n\
             [store.main]\nlocation = \"../store\"\npassphrase_env = \"KLOSETD_TEST_STORE_PASS\"\n\n\
             [source.files]\nlocation = \"../src\"\n\
             pre = [\"/bin/sh\", \"-c\", \"env > {r}/pre.env\"]\n\n\
             [source.dump]\nintegration = \"exec\"\n\
             command = [\"/bin/sh\", \"-c\", \"env > {r}/exec.env; echo dumped\"]\nfile = \"dump.txt\"\n\n\
             [notify.hook]\nkind = \"webhook\"\nurl_env = \"KLOSETD_TEST_HOOK_URL\"\n\n\
             [notify.script]\nkind = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"env > {r}/notify.env\"]\n\
             on = [\"success\"]\n\n\
             [task.one]\ntask = \"backup\"\nsource = \"files\"\nstore = \"main\"\nnotify = [\"script\"]\n\n\
             [task.two]\ntask = \"backup\"\nsource = \"dump\"\nstore = \"main\"\n\n\
             [task.three]\ntask = \"check\"\nstore = \"main\"\nnotify = [\"hook\"]\n"
        ),
    );
    let url = receiver.url(&format!("/in/{URL_KEY}"));
    let d = Daemon::start(
        &conf,
        &root.join("daemon.log"),
        &[
            ("KLOSETD_TEST_STORE_PASS", PASS_VALUE),
            ("KLOSETD_TEST_HOOK_URL", url.as_str()),
        ],
    );
    for task in ["one", "two", "three"] {
        let run = wait_value(&format!("task {task}"), LIMIT, || {
            d.tasks(&format!("task={task}"))
                .into_iter()
                .find(|t| t["status"] != "running")
        });
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    let env_of = |name: &str| {
        let path = root.join(name);
        wait_value(&format!("{name} written"), LIMIT, || {
            std::fs::read_to_string(&path)
                .ok()
                .filter(|t| !t.is_empty())
        })
    };
    for file in ["pre.env", "exec.env", "notify.env"] {
        let env = env_of(file);
        for secret in [
            PASS_VALUE,
            URL_KEY,
            "KLOSETD_TEST_STORE_PASS",
            "KLOSETD_TEST_HOOK_URL",
        ] {
            assert!(!env.contains(secret), "{file} holds {secret}:\n{env}");
        }
    }
    // Other variables still reach hooks (only secrets are removed).
    assert!(env_of("pre.env").contains("PATH="));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", d.pid())).expect("cmdline");
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(!cmdline.contains(PASS_VALUE) && !cmdline.contains(URL_KEY));
    for secret in [PASS_VALUE, URL_KEY] {
        assert_no_secret(
            &d,
            secret,
            &[
                "/api/v1/status",
                "/api/v1/stores",
                "/api/v1/tasks",
                "/metrics",
                "/status",
                "/",
            ],
        );
    }
    // The state database (and its WAL, while the daemon runs) holds task
    // history, applied objects and notification outcomes: no secret.
    let state = files_under(&root.join("state"));
    let holds = |bytes: &[u8], what: &str| bytes.windows(what.len()).any(|w| w == what.as_bytes());
    assert!(
        state.iter().any(|(_, b)| holds(b, "KLOSETD_TEST_HOOK_URL")),
        "the applied configuration (which names the variable, not its value) is read"
    );
    for (path, bytes) in &state {
        for secret in [PASS_VALUE, URL_KEY] {
            assert!(!holds(bytes, secret), "{secret} in {}", path.display());
        }
    }
    // `validate` and `plan` resolve the same configuration with the same
    // environment: their outputs, plain and JSON, name no secret.
    let envs = [
        ("KLOSETD_TEST_STORE_PASS", PASS_VALUE),
        ("KLOSETD_TEST_HOOK_URL", url.as_str()),
    ];
    for (what, out) in validate_and_plan(&conf, &envs) {
        let all = String::from_utf8_lossy(&out);
        for secret in [PASS_VALUE, URL_KEY] {
            assert!(!all.contains(secret), "{what} shows {secret}:\n{all}");
        }
    }
}

/// Why a database client may get its password in its environment
/// (`PGPASSWORD`): on Linux, `/proc/PID/environ` of a process is readable by
/// its own user and root only, and `ps e` shows other users nothing of it.
/// klosetd runs its clients as itself (root under the packaged unit), so a
/// local user cannot read the password there. Runs as root only.
#[test]
fn another_user_cannot_read_a_childs_environment() {
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !is_root {
        eprintln!("skipped: needs root to switch to another user");
        return;
    }
    let secret = "pgpassword-in-environ-7c2f";
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .env("PGPASSWORD", secret)
        .spawn()
        .expect("sleep");
    let pid = child.id().to_string();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(args)
            .output()
            .expect("setpriv")
    };
    let environ = format!("/proc/{pid}/environ");
    let cat = as_nobody(&["cat", &environ]);
    let ps = as_nobody(&["ps", "eww", "-o", "args=", "-p", &pid]);
    let own = std::fs::read(&environ).expect("root reads it");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        String::from_utf8_lossy(&own).contains(secret),
        "the check itself: root sees it"
    );
    assert!(!cat.status.success(), "another user read {environ}");
    assert!(
        !String::from_utf8_lossy(&cat.stdout).contains(secret),
        "another user read the secret"
    );
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains(secret),
        "ps e showed it to another user: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
}
