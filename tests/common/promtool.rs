//! `promtool` (Debian's `prometheus` package, installed by `scripts/test`): checks Prometheus rules, runs their unit tests, and lints a `/metrics` text.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn promtool() -> Command {
    Command::new("promtool")
}

fn run(mut cmd: Command, stdin: Option<&str>, what: &str) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("promtool {what}: {e} (apt-get install prometheus)"));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write to promtool");
    }
    child.wait_with_output().expect("wait for promtool")
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `promtool check rules FILE`; panics with its output on failure.
pub fn check_rules(file: &Path) {
    rules("check", file);
}

/// `promtool test rules FILE`; panics with its output on failure.
pub fn test_rules(file: &Path) {
    rules("test", file);
}

fn rules(verb: &str, file: &Path) {
    let mut cmd = promtool();
    cmd.args([verb, "rules"]).arg(file);
    let out = run(cmd, None, verb);
    assert!(
        out.status.success(),
        "promtool {verb} rules: {}",
        describe(&out)
    );
}

/// `promtool check metrics` on `text`: panics on a parse error or any lint
/// finding (promtool prints findings and exits 3 for lint problems).
pub fn check_metrics(text: &str) {
    let mut cmd = promtool();
    cmd.args(["check", "metrics"]);
    let out = run(cmd, Some(text), "check metrics");
    let said = describe(&out);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {said}\n--- metrics:\n{text}"
    );
}
