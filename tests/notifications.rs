//! Declared notifications, end to end against a recording receiver: a failed
//! backup gives one `failure` and the next success one `recovery`; a
//! receiver that answers 500 still gets its message exactly once; a message
//! queued when the daemon stops is sent after the restart; healthchecks.io
//! pings go to `/start`, the ping URL and `/fail` with a run id; ntfy and
//! exec channels get what they document; and a URL read from `url_file`
//! appears in no log, status, metric or plan.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, wait_value, write_like_ansible};
use common::receiver::{Received, Receiver};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);

/// A secret part of a webhook URL: it must never be shown.
const URL_SECRET: &str = "hook-key-7f3a9c1e5b";

/// A config directory with a store, a source whose `pre` hook fails the
/// first time it runs (and succeeds after), and one that always fails.
struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    conf: PathBuf,
}

impl Setup {
    fn new(tables: &str) -> Setup {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().to_path_buf();
        let conf = root.join("conf");
        std::fs::create_dir(&conf).expect("conf");
        std::fs::create_dir(root.join("src")).expect("src");
        std::fs::write(root.join("src/file.txt"), b"backed up").expect("write");
        std::fs::write(conf.join("pass"), "notifications-pass\n").expect("pass");
        let marker = root.join("first-run-done");
        write_like_ansible(
            &conf,
            "00-base.toml",
            &format!(
                "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"../state\"\n\n\
                 [store.main]\nlocation = \"../store\"\npassphrase_file = \"pass\"\n\n\
                 [source.flaky]\nlocation = \"../src\"\n\
                 pre = [\"/bin/sh\", \"-c\", \"test -e {m} || {{ touch {m}; echo first run fails >&2; exit 1; }}\"]\n\n\
                 [source.broken]\nlocation = \"../src\"\n\
                 pre = [\"/bin/sh\", \"-c\", \"echo always fails >&2; exit 1\"]\n\n\
                 {tables}",
                m = marker.display(),
                tables = tables.replace("{root}", &root.display().to_string()),
            ),
        );
        Setup {
            _tmp: tmp,
            root,
            conf,
        }
    }

    fn start(&self) -> Daemon {
        let d = Daemon::start(&self.conf, &self.root.join("daemon.log"), &[]);
        d.wait_ready();
        d
    }

    fn restart(&self, log: &str) -> Daemon {
        let d = Daemon::start(&self.conf, &self.root.join(log), &[]);
        d.wait_ready();
        d
    }
}

/// The bodies of the deliveries, as JSON.
fn bodies(list: &[Received]) -> Vec<Value> {
    list.iter().map(Received::json).collect()
}

fn events(list: &[Value]) -> Vec<&str> {
    list.iter().filter_map(|b| b["event"].as_str()).collect()
}

/// Finished runs of schedule `name`, oldest first.
fn finished(d: &Daemon, name: &str) -> Vec<Value> {
    let mut runs: Vec<Value> = d
        .tasks(&format!("schedule={name}&limit=50"))
        .into_iter()
        .filter(|t| t["status"] != "running")
        .collect();
    runs.reverse();
    runs
}

/// The keys of the body example in docs/notifications.md.
fn documented_keys() -> Vec<String> {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/notifications.md"),
    )
    .expect("docs/notifications.md");
    let start = doc
        .find("```json\n{\n  \"version\": 1")
        .expect("the body example");
    let json = &doc[start + "```json\n".len()..];
    let json = &json[..json.find("```").expect("end of the example")];
    let example: Value = serde_json::from_str(json).expect("the example is JSON");
    let mut keys: Vec<String> = example
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[test]
fn a_failed_backup_gives_one_failure_and_the_next_success_one_recovery() {
    let receiver = Receiver::start();
    let setup = Setup::new(
        "[notify.ops]\nkind = \"webhook\"\nurl_file = \"ops.url\"\n\n\
         [schedule.often]\ntask = \"backup\"\nsource = \"flaky\"\nstore = \"main\"\n\
         cron = \"*/2 * * * * *\"\nnotify = [\"ops\"]\n",
    );
    std::fs::write(
        setup.conf.join("ops.url"),
        receiver.url(&format!("/hooks/{URL_SECRET}")),
    )
    .expect("url file");
    let d = setup.start();
    // Fail, succeed, succeed: only the first two are news.
    let runs = wait_value("three finished runs", LIMIT, || {
        let runs = finished(&d, "often");
        (runs.len() >= 3).then_some(runs)
    });
    assert_eq!(runs[0]["status"], "failed", "{runs:#?}");
    assert_eq!(runs[1]["status"], "succeeded", "{runs:#?}");
    let got = bodies(&receiver.wait_delivered(2, LIMIT));
    // Another run may still end; its success is not news either.
    wait_value("a fourth run", LIMIT, || {
        (finished(&d, "often").len() >= 4).then_some(())
    });
    let got_after = bodies(&receiver.delivered());
    assert_eq!(
        events(&got_after),
        ["failure", "recovery"],
        "{got_after:#?}"
    );
    let (failure, recovery) = (&got[0], &got[1]);
    assert_eq!(failure["version"], 1);
    assert_eq!(failure["schedule"], "often");
    assert_eq!(failure["task"], Value::Null);
    assert_eq!(failure["kind"], "backup");
    assert_eq!(failure["store"], "main");
    assert_eq!(failure["status"], "failed");
    assert_eq!(failure["task_id"], runs[0]["id"]);
    assert_eq!(failure["snapshot_id"], Value::Null);
    assert!(
        failure["error"]
            .as_str()
            .is_some_and(|e| e.contains("first run fails")),
        "{failure}"
    );
    assert_eq!(recovery["status"], "succeeded");
    assert_eq!(recovery["task_id"], runs[1]["id"]);
    assert_eq!(recovery["snapshot_id"], runs[1]["snapshot_id"]);
    assert!(recovery["snapshot_id"].is_string(), "{recovery}");
    assert_ne!(failure["id"], recovery["id"]);
    let delivered = receiver.delivered();
    assert_eq!(delivered[0].method, "POST");
    assert_eq!(delivered[0].path(), format!("/hooks/{URL_SECRET}"));
    assert_eq!(
        delivered[0].header("content-type"),
        Some("application/json")
    );
    assert!(
        delivered[0]
            .header("user-agent")
            .is_some_and(|u| u.starts_with("klosetd/")),
        "{:?}",
        delivered[0].headers
    );
    // The documented body is the sent body.
    let mut sent: Vec<String> = failure
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    sent.sort();
    assert_eq!(sent, documented_keys(), "docs/notifications.md's example");

    // The URL read from url_file is shown nowhere.
    let metrics = d.get("/metrics").1;
    assert!(
        metrics.contains(
            "klosetd_notification_deliveries_total{channel=\"ops\",result=\"delivered\"} 2"
        ),
        "{metrics}"
    );
    let plan = Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .arg("plan")
        .arg(&setup.conf)
        .output()
        .expect("plan");
    let validate = Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .args(["validate", "--json"])
        .arg(&setup.conf)
        .output()
        .expect("validate");
    for (what, text) in [
        ("log", d.log_text()),
        ("status", d.get("/api/v1/status").1),
        ("schedules", d.get("/api/v1/schedules").1),
        ("metrics", metrics),
        ("viewer", d.get("/ui/schedules/often").1),
        ("plan", String::from_utf8_lossy(&plan.stdout).into_owned()),
        (
            "validate",
            String::from_utf8_lossy(&validate.stdout).into_owned(),
        ),
    ] {
        assert!(
            !text.contains(URL_SECRET),
            "the URL shows in {what}:\n{text}"
        );
    }
}

#[test]
fn a_receiver_answering_500_gets_the_message_exactly_once_and_status_shows_the_retries() {
    let receiver = Receiver::start();
    receiver.answer_next(&[500, 500, 500]);
    let setup = Setup::new(&format!(
        "[notify.ops]\nkind = \"webhook\"\nurl = \"{}\"\n\n\
         [task.once]\ntask = \"backup\"\nsource = \"broken\"\nstore = \"main\"\nnotify = [\"ops\"]\n",
        receiver.url("/hook")
    ));
    let d = setup.start();
    // Backoff 1 s, 2 s, 4 s: the retries are visible for seconds.
    let channel = wait_value("a retrying message in status", LIMIT, || {
        let status = d.try_json("/api/v1/status")?;
        let ch = status["notifications"].as_array()?.first()?.clone();
        (ch["retrying"] == 1).then_some(ch)
    });
    assert_eq!(channel["channel"], "ops");
    assert_eq!(channel["pending"], 1);
    assert!(
        channel["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{channel}"
    );
    let (code, ready) = d.get("/readyz");
    assert_eq!(code, 200, "a failing channel is a warning: {ready}");
    assert!(ready.contains("warning: notify.ops"), "{ready}");
    let metrics = d.get("/metrics").1;
    assert!(
        metrics.contains("klosetd_notifications_retrying{channel=\"ops\"} 1"),
        "{metrics}"
    );

    let delivered = receiver.wait_delivered(1, LIMIT);
    let id = delivered[0].json()["id"].clone();
    assert_eq!(delivered[0].json()["event"], "failure");
    wait_value("the queue to empty in status", LIMIT, || {
        let status = d.try_json("/api/v1/status")?;
        status["notifications"].as_array()?.is_empty().then_some(())
    });
    // Longer than the next backoff would be: nothing is sent again.
    std::thread::sleep(Duration::from_secs(9));
    let all = receiver.received();
    let same: Vec<u16> = all
        .iter()
        .filter(|r| r.json()["id"] == id)
        .map(|r| r.answered)
        .collect();
    assert_eq!(same, [500, 500, 500, 200], "{all:#?}");
    assert_eq!(all.len(), 4, "one message, four attempts: {all:#?}");
    let metrics = d.get("/metrics").1;
    for line in [
        "klosetd_notification_deliveries_total{channel=\"ops\",result=\"delivered\"} 1",
        "klosetd_notification_deliveries_total{channel=\"ops\",result=\"failed\"} 3",
        "klosetd_notification_deliveries_total{channel=\"ops\",result=\"dropped\"} 0",
        "klosetd_notifications_pending{channel=\"ops\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}

#[test]
fn a_message_queued_when_the_daemon_stops_is_sent_after_the_restart() {
    let port = Receiver::free_port();
    let setup = Setup::new(&format!(
        "[notify.ops]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\n\
         [task.once]\ntask = \"backup\"\nsource = \"broken\"\nstore = \"main\"\nnotify = [\"ops\"]\n"
    ));
    let mut d = setup.start();
    let channel = wait_value("a failed delivery", LIMIT, || {
        let status = d.try_json("/api/v1/status")?;
        let ch = status["notifications"].as_array()?.first()?.clone();
        (ch["retrying"] == 1).then_some(ch)
    });
    let error = channel["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.to_lowercase().contains("connect"), "{error}");
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);

    let receiver = Receiver::start_on(port);
    let d = setup.restart("daemon-2.log");
    let delivered = receiver.wait_delivered(1, LIMIT);
    let body = delivered[0].json();
    assert_eq!(body["event"], "failure");
    assert_eq!(body["task"], "once");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(receiver.received().len(), 1, "sent once");
    assert_eq!(
        d.tasks("task=once").len(),
        1,
        "the one-shot did not run again"
    );
}

#[test]
fn healthchecks_pings_start_success_and_fail_with_a_run_id() {
    let receiver = Receiver::start();
    let uuid = "5f1e0c84-2b4a-4f6e-9d59-0b7a3c2e1d00";
    let setup = Setup::new(&format!(
        "[notify.hc]\nkind = \"healthchecks\"\nurl = \"{}\"\n\n\
         [schedule.often]\ntask = \"backup\"\nsource = \"flaky\"\nstore = \"main\"\n\
         cron = \"*/2 * * * * *\"\nnotify = [\"hc\"]\n",
        receiver.url(&format!("/ping/{uuid}"))
    ));
    let d = setup.start();
    let got = receiver.wait_delivered(4, LIMIT);
    let runs = finished(&d, "often");
    let rid = |r: &Received| {
        r.target
            .split_once("?rid=")
            .map(|(_, id)| id.to_string())
            .unwrap_or_default()
    };
    let paths: Vec<String> = got[..4].iter().map(|r| r.path().to_string()).collect();
    assert_eq!(
        paths,
        [
            format!("/ping/{uuid}/start"),
            format!("/ping/{uuid}/fail"),
            format!("/ping/{uuid}/start"),
            format!("/ping/{uuid}"),
        ],
        "{got:#?}"
    );
    assert!(got.iter().all(|r| r.method == "POST"));
    assert_eq!(rid(&got[0]), rid(&got[1]), "start and fail of one run");
    assert_eq!(rid(&got[2]), rid(&got[3]), "start and success of one run");
    assert_ne!(rid(&got[0]), rid(&got[2]), "two runs");
    assert_eq!(rid(&got[0]).len(), 36, "a UUID");
    let log = got[1].text();
    assert!(log.contains("first run fails"), "the log excerpt: {log}");
    assert!(
        log.contains(&format!("task: {}", runs[0]["id"])),
        "the run's id: {log}"
    );
    assert!(got[3].text().contains("snapshot: "), "{}", got[3].text());
}

#[test]
fn ntfy_and_exec_channels_get_what_they_document() {
    let receiver = Receiver::start();
    let setup = Setup::new(&format!(
        "[notify.phone]\nkind = \"ntfy\"\nurl = \"{}\"\ntoken_file = \"ntfy.token\"\n\n\
         [notify.script]\nkind = \"exec\"\n\
         command = [\"/bin/sh\", \"-c\", \"env > {{root}}/exec.env; cat > {{root}}/exec.json\"]\n\n\
         [task.once]\ntask = \"backup\"\nsource = \"broken\"\nstore = \"main\"\n\
         notify = [\"phone\", \"script\"]\n",
        receiver.url("/klosetd-alerts")
    ));
    std::fs::write(setup.conf.join("ntfy.token"), "tk_ntfytoken123\n").expect("token");
    let d = Daemon::start(
        &setup.conf,
        &setup.root.join("daemon.log"),
        &[("KLOSETD_TEST_SECRET", "env-secret-value-42")],
    );
    d.wait_ready();
    let got = receiver.wait_delivered(1, LIMIT);
    let ntfy = &got[0];
    assert_eq!(ntfy.path(), "/klosetd-alerts");
    assert_eq!(ntfy.header("authorization"), Some("Bearer tk_ntfytoken123"));
    assert_eq!(ntfy.header("priority"), Some("high"));
    assert_eq!(ntfy.header("tags"), Some("rotating_light"));
    let title = ntfy.header("title").unwrap_or_default();
    assert!(title.contains("backup task.once failed"), "{title}");
    assert!(ntfy.text().contains("always fails"), "{}", ntfy.text());

    let json_path = setup.root.join("exec.json");
    let body: Value = wait_value("the exec channel's output", LIMIT, || {
        let text = std::fs::read_to_string(&json_path).ok()?;
        serde_json::from_str(&text).ok()
    });
    assert_eq!(body["event"], "failure");
    assert_eq!(body["task"], "once");
    let env = std::fs::read_to_string(setup.root.join("exec.env")).expect("env");
    for line in [
        "KLOSETD_EVENT=failure",
        "KLOSETD_TASK=once",
        "KLOSETD_KIND=backup",
        "KLOSETD_STORE=main",
        "KLOSETD_STATUS=failed",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in:\n{env}");
    }
    assert!(
        !env.contains("env-secret-value-42") && !env.contains("tk_ntfytoken123"),
        "the daemon's environment and secrets stay out of the command's:\n{env}"
    );
    assert!(!d.log_text().contains("tk_ntfytoken123"));
}
