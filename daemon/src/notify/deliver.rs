//! Sending one message to one channel, by kind: a webhook POST, a
//! healthchecks ping, an ntfy message, or a command.
//!
//! An error says what went wrong without the URL (which may be a secret):
//! HTTP errors are stripped of it, and only the status code of an answer is
//! kept. Every attempt ends within the channel's `timeout`.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::body::Body;
use crate::config::desired::{NotifyDef, NotifyKind, NotifyTarget};
use crate::state::NotifyEvent;

/// The most of a command's output an error keeps.
const OUTPUT_TAIL: usize = 512;

/// The HTTP client every channel shares.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("klosetd/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e.without_url())))
}

/// Sends `body` to `def`.
pub async fn deliver(client: &reqwest::Client, def: &NotifyDef, body: &Body) -> Result<(), String> {
    let attempt = async {
        match &def.target {
            NotifyTarget::Command(argv) => run_command(argv, body, def.timeout).await,
            NotifyTarget::Url(url) => {
                let url = url.read()?;
                let request = match def.kind {
                    NotifyKind::Webhook => client
                        .post(url.as_str())
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(
                            serde_json::to_vec(body)
                                .map_err(|e| format!("encoding the body: {e}"))?,
                        ),
                    NotifyKind::Ntfy => ntfy(client, url.as_str(), body),
                    NotifyKind::Healthchecks => healthchecks(client, url.as_str(), body)?,
                    NotifyKind::Exec => return Err("an exec channel has no URL".to_string()),
                };
                let request = match &def.token {
                    Some(token) => {
                        let token = token.read_text().map_err(|e| format!("token: {e}"))?;
                        request.bearer_auth(token.as_str())
                    }
                    None => request,
                };
                send(request.timeout(def.timeout)).await
            }
        }
    };
    // A command is killed at its own timeout; this bounds everything else
    // (reading secrets included).
    match tokio::time::timeout(def.timeout + Duration::from_secs(5), attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", def.timeout.as_secs())),
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<(), String> {
    let response = request.send().await.map_err(|e| chain(&e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {status}"))
    }
}

/// An error and its causes, one after the other.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// ntfy: the text as the message, with a title, priority and tags.
fn ntfy(client: &reqwest::Client, url: &str, body: &Body) -> reqwest::RequestBuilder {
    let (priority, tags) = match body.event {
        NotifyEvent::Failure | NotifyEvent::Stale => ("high", "rotating_light"),
        NotifyEvent::Partial => ("default", "warning"),
        NotifyEvent::Recovery | NotifyEvent::Success => ("default", "white_check_mark"),
        NotifyEvent::Start => ("low", "arrow_forward"),
    };
    client
        .post(url)
        .header("Title", header_text(&body.title()))
        .header("Priority", priority)
        .header("Tags", tags)
        .body(body.text())
}

/// Header values are ASCII without control characters; the rest becomes `?`.
fn header_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// healthchecks.io: `/start` when a run starts, the ping URL itself on
/// success, `/fail` on failure, partial or stale; the text is the log
/// excerpt. `rid` ties a start to its end, so concurrent runs and run
/// durations are right.
fn healthchecks(
    client: &reqwest::Client,
    url: &str,
    body: &Body,
) -> Result<reqwest::RequestBuilder, String> {
    let mut url = reqwest::Url::parse(url).map_err(|e| format!("the ping URL: {e}"))?;
    let suffix = match body.event {
        NotifyEvent::Start => Some("start"),
        NotifyEvent::Success | NotifyEvent::Recovery => None,
        NotifyEvent::Failure | NotifyEvent::Partial | NotifyEvent::Stale => Some("fail"),
    };
    if let Some(suffix) = suffix {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| "the ping URL cannot take a path".to_string())?;
        segments.pop_if_empty().push(suffix);
    }
    if let Some(id) = body.task_id {
        url.query_pairs_mut()
            .append_pair("rid", &run_uuid(&body.host, id.0));
    }
    Ok(client.post(url).body(body.text()))
}

/// A UUID (version 4 layout) that names one run of this host.
pub fn run_uuid(host: &str, task_id: i64) -> String {
    let hash = blake3::hash(format!("klosetd run\0{host}\0{task_id}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash.as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// exec: the command with the outcome in `KLOSETD_*` variables (and PATH,
/// nothing else of the daemon's environment, which may hold secrets) and
/// the JSON body on stdin. Exit 0 is delivered.
async fn run_command(argv: &[String], body: &Body, timeout: Duration) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("the command is empty".into());
    };
    let json = serde_json::to_vec(body).map_err(|e| format!("encoding the body: {e}"))?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .envs(environment(body))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("command {program:?} could not start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is fine.
        let _ = stdin.write_all(&json).await;
    }
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.map_err(|e| format!("command {program:?}: {e}"))?,
        Err(_) => {
            return Err(format!(
                "command {program:?} did not finish within {}s and was killed",
                timeout.as_secs()
            ));
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let shown = if output.stderr.is_empty() {
        output.stdout
    } else {
        output.stderr
    };
    let text = String::from_utf8_lossy(&shown);
    let text = text.trim();
    let mut start = text.len().saturating_sub(OUTPUT_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    Err(format!(
        "command {program:?} failed ({}){}",
        output.status,
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        }
    ))
}

/// The `KLOSETD_*` variables of an exec channel.
pub fn environment(body: &Body) -> Vec<(&'static str, String)> {
    let time = |t: &Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    };
    vec![
        ("KLOSETD_EVENT", body.event.to_string()),
        ("KLOSETD_HOST", body.host.clone()),
        (
            "KLOSETD_SCHEDULE",
            body.schedule.clone().unwrap_or_default(),
        ),
        ("KLOSETD_TASK", body.task.clone().unwrap_or_default()),
        ("KLOSETD_KIND", body.kind.to_string()),
        ("KLOSETD_STORE", body.store.clone()),
        ("KLOSETD_STATUS", body.status.clone()),
        ("KLOSETD_ERROR", body.error.clone().unwrap_or_default()),
        (
            "KLOSETD_SNAPSHOT_ID",
            body.snapshot_id.clone().unwrap_or_default(),
        ),
        (
            "KLOSETD_TASK_ID",
            body.task_id.map(|i| i.to_string()).unwrap_or_default(),
        ),
        ("KLOSETD_STARTED_AT", time(&body.started_at)),
        ("KLOSETD_FINISHED_AT", time(&body.finished_at)),
        ("KLOSETD_MESSAGE", body.message.clone()),
        ("KLOSETD_NOTIFICATION_ID", body.id.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_uuids_are_stable_uuids() {
        let a = run_uuid("host", 7);
        assert_eq!(a, run_uuid("host", 7));
        assert_ne!(a, run_uuid("host", 8));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn header_text_is_ascii() {
        assert_eq!(header_text("a\nb é"), "a?b ?");
    }
}
