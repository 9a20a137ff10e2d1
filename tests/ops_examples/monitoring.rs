//! The monitoring examples: the Prometheus rules and the docs name only
//! metrics and endpoints a real daemon serves.

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::configs::*;
use super::tools::*;

// ------------------------------------------------------- monitoring --

/// Metric names (`klosetd_*`) in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("klosetd_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        // `klosetd_*` and `klosetd_` name the prefix, not a metric.
        if before_ok && !text[start..end].ends_with('_') {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// A running daemon on an empty config, serving on a Unix socket.
struct Daemon {
    child: std::process::Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("conf.d");
        std::fs::create_dir(&conf).expect("conf dir");
        let socket = dir.path().join("http.sock");
        std::fs::write(
            conf.join("00-daemon.toml"),
            format!(
                "[daemon]\nlisten = \"unix:{}\"\nstate_dir = \"{}\"\n",
                socket.display(),
                dir.path().join("state").display()
            ),
        )
        .expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_klosetd"))
            .args(["run", "--config"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start klosetd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "klosetd did not start serving");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon {
            child,
            socket,
            _dir: dir,
        }
    }

    /// `GET target`: (status code, body).
    fn get(&self, target: &str) -> (u16, String) {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read response");
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {response:?}"));
        let body = response
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_string());
        (code, body)
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(35);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "klosetd exited with {status} on SIGTERM");
                return;
            }
            assert!(Instant::now() < deadline, "klosetd did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn prometheus_rules_and_docs_use_exported_metrics_and_endpoints() {
    let rules_path = repo().join("docs/examples/prometheus/klosetd-rules.yml");
    let rules_text = read(&rules_path);
    let rules = yaml_to_json(&rules_text, "docs/examples/prometheus/klosetd-rules.yml");
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let alert = rule["alert"].as_str().expect("alerting rules only");
            assert!(rule["expr"].is_string(), "{alert}: expr");
            assert!(rule["labels"]["severity"].is_string(), "{alert}: severity");
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{alert}: summary"
            );
            if let Some(f) = rule["for"].as_str() {
                assert!(humantime::parse_duration(f).is_ok(), "{alert}: for {f:?}");
            }
            alerts.insert(alert.to_string());
        }
    }
    for required in [
        "KlosetdConfigReloadFailing",
        "KlosetdObjectNotReady",
        "KlosetdBackupStale",
        "KlosetdTaskFailures",
    ] {
        assert!(alerts.contains(required), "missing alert {required}");
    }

    let daemon = Daemon::start();
    let (code, metrics) = daemon.get("/metrics");
    assert_eq!(code, 200, "/metrics: {metrics}");
    crate::common::promtool::check_metrics(&metrics);
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let (_, operations) = doc("operations.md");
    // The Monitoring section (elsewhere klosetd_* are Ansible variables).
    let monitoring = operations
        .split_once("\n## Monitoring")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .expect("docs/operations.md has a Monitoring section");
    let dashboard = dashboard_queries().join("\n");
    for (what, text) in [
        ("klosetd-rules.yml", rules_text.as_str()),
        ("docs/operations.md, Monitoring", monitoring),
        ("klosetd-dashboard.json", dashboard.as_str()),
    ] {
        for name in metric_names(text) {
            assert!(
                exported.contains(&name),
                "{what} names {name}, which /metrics does not export (it exports {exported:?})"
            );
        }
    }
    // The endpoints the docs show, on an empty and therefore ready config.
    for (target, want) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/status", 200),
        ("/api/v1/status", 200),
        ("/api/v1/schedules", 200),
        ("/api/v1/tasks?status=failed&limit=20", 200),
    ] {
        let (code, body) = daemon.get(target);
        assert_eq!(code, want, "GET {target}: {body}");
        assert!(
            operations.contains(target),
            "docs/operations.md no longer shows {target}"
        );
    }
    let (_, status) = daemon.get("/api/v1/status");
    let status: Value = serde_json::from_str(&status).expect("JSON status");
    for pointer in [
        "/config/applied_revision",
        "/config/attempted_revision",
        "/config/valid",
        "/config/errors",
        "/config/restart_required",
        "/problems",
        "/running",
    ] {
        assert!(
            status.pointer(pointer).is_some(),
            "the docs' jq examples read {pointer}, which /api/v1/status lacks: {status}"
        );
    }
    daemon.stop();
}

/// `promtool check rules` accepts the rules, and `promtool test rules` runs
/// their unit tests over synthetic series (klosetd-rules.test.yml).
#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let dir = repo().join("docs/examples/prometheus");
    crate::common::promtool::check_rules(&dir.join("klosetd-rules.yml"));
    crate::common::promtool::test_rules(&dir.join("klosetd-rules.test.yml"));
    let tests = yaml_to_json(
        &read(&dir.join("klosetd-rules.test.yml")),
        "klosetd-rules.test.yml",
    );
    let tested: BTreeSet<String> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["alertname"].as_str().map(str::to_owned))
        .collect();
    let rules = yaml_to_json(&read(&dir.join("klosetd-rules.yml")), "klosetd-rules.yml");
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let alert = rule["alert"].as_str().expect("alert");
            assert!(
                alert == "KlosetdDown"
                    || alert.ends_with("ScheduleStale")
                    || tested.contains(alert),
                "{alert} has no unit test in klosetd-rules.test.yml"
            );
        }
    }
}

/// Every PromQL query of the Grafana dashboard, its variables replaced by
/// what they match at most.
fn dashboard_queries() -> Vec<String> {
    let path = repo().join("docs/examples/grafana/klosetd-dashboard.json");
    let dashboard: Value = serde_json::from_str(&read(&path)).expect("dashboard JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("panel title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            queries.push(expr.replace("$instance", ".*"));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(q) = var["query"]
            .as_str()
            .filter(|q| q.starts_with("label_values("))
        {
            // label_values(METRIC, LABEL) is Grafana's, not PromQL: keep the metric.
            let metric = q["label_values(".len()..]
                .split(',')
                .next()
                .expect("metric");
            queries.push(metric.to_owned());
        }
    }
    queries
}

/// The Grafana dashboard's queries are valid PromQL (promtool checks them
/// as recording rules) and, by the test above, use only exported metrics.
#[test]
fn the_grafana_dashboard_queries_parse() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let quoted = serde_json::to_string(q).expect("quote");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, rules).expect("write");
    crate::common::promtool::check_rules(&file);
}
