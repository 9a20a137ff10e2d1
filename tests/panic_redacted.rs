//! A panic never carries a secret out of the daemon. A `check` task is
//! forced to panic (debug builds read `KLOSETD_DEBUG_PANIC_IN_TASK`) with a
//! message that holds the store's passphrase (read from the environment),
//! the same as `{:?}` escapes it, and a webhook URL (read from a file):
//! the task is recorded as failed with the message redacted, the log's
//! panic line says `[redacted]`, and no log line, status page, task list
//! or metric holds a value. The daemon keeps running: the backup after the
//! panicked task succeeds.

use crate::common;

use std::time::Duration;

use common::daemon::{Daemon, wait_value, write_like_ansible};
use common::e2e::assert_no_secret;

const LIMIT: Duration = Duration::from_secs(90);
const PASS: &str = "panic-pass \"quoted\" 7f3c";
const URL: &str = "http://127.0.0.1:9/panic-url-key-41d2";

#[test]
fn a_panicking_task_is_recorded_as_failed_and_its_message_holds_no_secret() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    std::fs::create_dir(root.join("src")).expect("src");
    std::fs::write(root.join("src/a.txt"), b"data").expect("write");
    let conf = root.join("conf");
    std::fs::create_dir(&conf).expect("conf");
    std::fs::write(conf.join("hook.url"), format!("{URL}\n")).expect("url file");
    write_like_ansible(
        &conf,
        "00.toml",
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"../state\"\n\n\
         [store.main]\nlocation = \"../store\"\npassphrase_env = \"KLOSETD_TEST_PANIC_PASS\"\n\n\
         [source.files]\nlocation = \"../src\"\n\n\
         [notify.hook]\nkind = \"webhook\"\nurl_file = \"hook.url\"\n\n\
         [task.one]\ntask = \"backup\"\nsource = \"files\"\nstore = \"main\"\n\n\
         [task.two]\ntask = \"check\"\nstore = \"main\"\n\n\
         [task.three]\ntask = \"backup\"\nsource = \"files\"\nstore = \"main\"\n",
    );
    let message = format!("forced panic: passphrase={PASS} debug={PASS:?} url={URL}");
    let mut d = Daemon::start(
        &conf,
        &root.join("daemon.log"),
        &[
            ("KLOSETD_TEST_PANIC_PASS", PASS),
            (
                "KLOSETD_DEBUG_PANIC_IN_TASK",
                format!("check:{message}").as_str(),
            ),
        ],
    );
    let ended = |task: &str| {
        wait_value(&format!("task {task}"), LIMIT, || {
            d.tasks(&format!("task={task}"))
                .into_iter()
                .find(|t| t["status"] != "running")
        })
    };
    let two = ended("two");
    assert_eq!(two["status"], "failed", "{two}");
    let error = two["error"].as_str().expect("an error");
    assert!(error.contains("the task panicked"), "{error}");
    assert!(
        error.contains("forced panic: passphrase=[redacted] debug=\"[redacted]\" url=[redacted]"),
        "{error}"
    );
    for task in ["one", "three"] {
        let run = ended(task);
        assert_eq!(run["status"], "succeeded", "{task}: {run}");
    }
    let log = d.log_text();
    assert!(
        log.contains("panicked at") && log.contains("forced panic: passphrase=[redacted]"),
        "the panic is logged, redacted:\n{log}"
    );
    let escaped = format!("{PASS:?}");
    for secret in [
        PASS,
        &escaped[1..escaped.len() - 1],
        URL,
        "panic-url-key-41d2",
    ] {
        assert_no_secret(
            &d,
            secret,
            &[
                "/api/v1/status",
                "/api/v1/tasks",
                "/api/v1/tasks?task=two",
                "/metrics",
                "/readyz",
            ],
        );
    }
    assert!(d.alive(), "the daemon is up");
}
