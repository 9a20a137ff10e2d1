//! `/metrics` checked with a real parser: Prometheus' own Python client
//! (`prometheus_client.parser`, Debian `python3-prometheus-client`) parses
//! the exposition of a daemon that has run a backup and a check, and the
//! families, types, labels and values are what the docs promise and what the
//! state says. Naming follows the Prometheus conventions.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::{Daemon, wait_for, write_like_ansible};
use serde_json::Value;

const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    out[family.name] = {
        "type": family.type,
        "help": family.documentation,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
print(json.dumps(out))
"#;

fn parse(text: &str) -> Value {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (apt-get install python3-prometheus-client)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics (apt-get install python3-prometheus-client):\n{}\n--- metrics ---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser json")
}

fn sample<'a>(families: &'a Value, family: &str, labels: &[(&str, &str)]) -> Option<&'a Value> {
    families[family]["samples"]
        .as_array()?
        .iter()
        .find(|s| labels.iter().all(|(k, v)| s[1][*k].as_str() == Some(*v)))
}

#[test]
fn metrics_parse_and_follow_the_conventions() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let conf = root.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::create_dir_all(root.join("data/sub")).expect("mkdir");
    std::fs::write(root.join("data/a.txt"), vec![b'a'; 100_000]).expect("a");
    std::fs::write(root.join("data/sub/b.txt"), vec![b'a'; 100_000]).expect("b");
    std::fs::write(conf.join("pass"), "metrics passphrase\n").expect("pass");
    write_like_ansible(
        &conf,
        "00.toml",
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"../state\"\n\n\
         [store.main]\nlocation = \"../store\"\npassphrase_file = \"pass\"\n\n\
         [source.data]\nlocation = \"../data\"\n\n\
         [schedule.often]\ntask = \"backup\"\nsource = \"data\"\nstore = \"main\"\ncron = \"*/2 * * * * *\"\n\n\
         [task.first]\ntask = \"backup\"\nsource = \"data\"\nstore = \"main\"\n",
    );
    let mut d = Daemon::start(&conf, &root.join("log"), &[]);
    wait_for(
        "the one-shot and two scheduled backups",
        Duration::from_secs(90),
        || {
            let tasks = d.json("/api/v1/tasks?status=succeeded&kind=backup");
            let n = tasks["tasks"].as_array().map_or(0, Vec::len);
            (n >= 3).then_some(()).ok_or(format!("{n} backups so far"))
        },
    );
    let text = d.get("/metrics").1;
    let families = parse(&text);

    for (name, kind) in [
        ("klosetd_config_reload_success", "gauge"),
        ("klosetd_config_info", "gauge"),
        ("klosetd_object_ready", "gauge"),
        ("klosetd_schedule_last_success_timestamp_seconds", "gauge"),
        ("klosetd_schedule_last_duration_seconds", "gauge"),
        ("klosetd_schedule_last_added_bytes", "gauge"),
        ("klosetd_schedule_last_status", "gauge"),
        // The parser names counter families without the _total suffix.
        ("klosetd_tasks", "counter"),
        ("klosetd_tasks_running", "gauge"),
        ("klosetd_backup_source_bytes", "counter"),
        ("klosetd_backup_added_bytes", "counter"),
        ("klosetd_backup_deduplicated_bytes", "counter"),
        ("klosetd_backup_written_bytes", "counter"),
    ] {
        assert_eq!(
            families[name]["type"], kind,
            "{name} missing or mistyped in:\n{text}"
        );
        assert!(
            !families[name]["help"].as_str().unwrap_or("").is_empty(),
            "{name} has no HELP"
        );
    }
    // Conventions: counters end in _total, every name is prefixed and
    // snake_case, no sample of a gauge named *_total.
    for (name, family) in families.as_object().expect("families") {
        assert!(name.starts_with("klosetd_"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name}"
        );
        for s in family["samples"].as_array().expect("samples") {
            let sample_name = s[0].as_str().expect("name");
            if family["type"] == "counter" {
                assert!(sample_name.ends_with("_total"), "{sample_name}");
            } else {
                assert!(!sample_name.ends_with("_total"), "{sample_name}");
            }
        }
    }

    // Values agree with the state.
    let status = d.json("/api/v1/status");
    assert_eq!(
        sample(&families, "klosetd_config_reload_success", &[]).map(|s| s[2].clone()),
        Some(1.0.into())
    );
    let info = sample(&families, "klosetd_config_info", &[]).expect("info");
    assert_eq!(
        info[1]["applied_revision"],
        status["config"]["applied_revision"]
    );
    let ready = sample(
        &families,
        "klosetd_object_ready",
        &[("kind", "store"), ("name", "main")],
    )
    .expect("store readiness");
    assert_eq!(ready[2], 1.0);
    let ok = sample(
        &families,
        "klosetd_schedule_last_status",
        &[("schedule", "often"), ("status", "succeeded")],
    )
    .expect("last status");
    assert_eq!(ok[2], 1.0);
    let last = sample(
        &families,
        "klosetd_schedule_last_success_timestamp_seconds",
        &[("schedule", "often")],
    )
    .expect("last success");
    let now = chrono::Utc::now().timestamp() as f64;
    let t = last[2].as_f64().expect("number");
    assert!(t > now - 120.0 && t <= now + 1.0, "{t} vs {now}");
    let succeeded = sample(
        &families,
        "klosetd_tasks",
        &[("kind", "backup"), ("status", "succeeded")],
    )
    .expect("task counter");
    assert!(succeeded[2].as_f64().expect("number") >= 3.0);
    let source = sample(&families, "klosetd_backup_source_bytes", &[]).expect("source bytes");
    let added = sample(&families, "klosetd_backup_added_bytes", &[]).expect("added bytes");
    let dedup = sample(&families, "klosetd_backup_deduplicated_bytes", &[]).expect("dedup");
    let (source, added, dedup) = (
        source[2].as_f64().expect("n"),
        added[2].as_f64().expect("n"),
        dedup[2].as_f64().expect("n"),
    );
    assert!(source >= 3.0 * 200_000.0, "{source}");
    assert_eq!(source - added, dedup);
    assert!(
        dedup > added,
        "repeated backups of unchanged data deduplicate"
    );
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
}
