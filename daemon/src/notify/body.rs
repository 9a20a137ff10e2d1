//! The message: the versioned webhook body (`docs/notifications.md`), from
//! which every other kind renders its text, path or environment.
//!
//! Version 1 only ever gains fields; a field is never removed, renamed or
//! given another meaning without a new `version`. No field holds a
//! secret: errors are the task's own (which never include secrets), and
//! channel URLs are not part of it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::{NotifyEvent, TaskId, TaskKind};

/// The body's current version.
pub const BODY_VERSION: u32 = 1;

/// The most of an error a message carries.
pub const MAX_ERROR_BYTES: usize = 8 * 1024;

/// A notification, as the webhook kind POSTs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// Always [`BODY_VERSION`] for this layout.
    pub version: u32,
    /// Unique per message; a receiver deduplicates by it (delivery is at
    /// least once).
    pub id: String,
    /// What happened.
    pub event: NotifyEvent,
    /// The host the daemon runs on.
    pub host: String,
    /// The schedule whose run (or staleness) this is, or `null`.
    pub schedule: Option<String>,
    /// The one-shot task whose run this is, or `null`.
    pub task: Option<String>,
    /// What the task does.
    pub kind: TaskKind,
    /// Its store.
    pub store: String,
    /// `running` (start), `succeeded`, `partial`, `failed`, or `stale`.
    pub status: String,
    /// Why it failed or what it missed, or `null`.
    pub error: Option<String>,
    /// The snapshot a backup wrote, or `null`.
    pub snapshot_id: Option<String>,
    /// The run's id in `/api/v1/tasks/{id}`, or `null` (stale).
    pub task_id: Option<TaskId>,
    /// When the run got its task slot.
    pub started_at: Option<DateTime<Utc>>,
    /// When the run ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// The schedule's last successful (or partial) run, if known.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Stale events: since when the schedule is stale.
    pub stale_since: Option<DateTime<Utc>>,
    /// The schedule's `alert_after`, in seconds.
    pub alert_after_seconds: Option<u64>,
    /// When the event happened.
    pub at: DateTime<Utc>,
    /// One line for people: what happened, where.
    pub message: String,
}

impl Body {
    /// `schedule.NAME` or `task.NAME`.
    pub fn origin(&self) -> String {
        match (&self.schedule, &self.task) {
            (Some(s), _) => format!("schedule.{s}"),
            (None, Some(t)) => format!("task.{t}"),
            (None, None) => "klosetd".to_string(),
        }
    }

    /// A short title: `klosetd: backup schedule.nightly failed`.
    pub fn title(&self) -> String {
        let what = match self.event {
            NotifyEvent::Start => "started",
            NotifyEvent::Success => "succeeded",
            NotifyEvent::Failure => "failed",
            NotifyEvent::Partial => "is partial",
            NotifyEvent::Recovery => "recovered",
            NotifyEvent::Stale => "is stale",
        };
        format!(
            "klosetd on {}: {} {} {what}",
            self.host,
            self.kind,
            self.origin()
        )
    }

    /// A few lines for people (ntfy, healthchecks' log excerpt).
    pub fn text(&self) -> String {
        let mut out = self.message.clone();
        if let Some(s) = &self.snapshot_id {
            out.push_str(&format!("\nsnapshot: {s}"));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("\nerror: {e}"));
        }
        if let Some(id) = self.task_id {
            out.push_str(&format!("\ntask: {id} (GET /api/v1/tasks/{id})"));
        }
        out
    }
}

/// Cuts `text` to at most [`MAX_ERROR_BYTES`], on a character boundary.
pub fn clip(text: &str) -> String {
    if text.len() <= MAX_ERROR_BYTES {
        return text.to_string();
    }
    let mut end = MAX_ERROR_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A unique message id: 32 hex digits from the host, the process, the
/// time and a counter.
pub fn new_uid(host: &str, at: DateTime<Utc>) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!(
        "{host}\0{}\0{nanos}\0{}\0{n}",
        std::process::id(),
        at.timestamp_nanos_opt().unwrap_or(0)
    );
    blake3::hash(seed.as_bytes()).to_hex()[..32].to_string()
}

/// The host name (`/proc/sys/kernel/hostname`), or `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_on_a_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = clip(&long);
        assert!(cut.len() <= MAX_ERROR_BYTES + "…".len());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn ids_are_unique() {
        let now = Utc::now();
        let a = new_uid("h", now);
        let b = new_uid("h", now);
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
