//! Notifications: which events a run or a stale schedule raises, the
//! message each declared channel gets ([`body`]), and their delivery
//! ([`dispatch`], [`deliver`]).
//!
//! Messages are queued in the state database in the same transaction as
//! the outcome they report, and sent by one background loop that retries
//! with backoff: a slow or dead receiver never holds a task back, and a
//! restart sends what was queued before it.
//!
//! Which event a channel gets for one run (at most one message per run and
//! channel, besides `start`):
//! - `failure` for a failed run, `partial` for a partial one;
//! - for a successful run of a schedule whose previous run failed or was
//!   partial, or which was stale: `recovery` to channels that want it, else
//!   `success` to channels that want that; otherwise `success`;
//! - a cancelled run (daemon stopping) raises nothing.

pub mod body;
pub mod deliver;
pub mod dispatch;

use chrono::{DateTime, Utc};

use crate::config::DesiredState;
use crate::config::desired::Action;
use crate::state::{NewNotification, NotifyEvent, Origin, TaskId, TaskStatus};
use body::{BODY_VERSION, Body, clip, new_uid};

pub use dispatch::{Dispatcher, Wake};

/// The channels `origin` reports to, as declared.
pub fn channels_of<'d>(desired: &'d DesiredState, origin: &Origin) -> &'d [String] {
    match origin {
        Origin::Schedule(n) => desired.schedules.get(n).map(|s| s.notify.as_slice()),
        Origin::Task(n) => desired.tasks.get(n).map(|t| t.notify.as_slice()),
    }
    .unwrap_or(&[])
}

/// One message per channel of `channels` that wants `event`; a `recovery`
/// goes as `success` to channels that want only that.
pub fn messages(
    desired: &DesiredState,
    channels: &[String],
    event: NotifyEvent,
    body: &Body,
) -> Vec<NewNotification> {
    channels
        .iter()
        .filter_map(|name| {
            let def = desired.notify.get(name)?;
            let sent = if def.on.contains(&event) {
                event
            } else if event == NotifyEvent::Recovery && def.on.contains(&NotifyEvent::Success) {
                NotifyEvent::Success
            } else {
                return None;
            };
            let mut body = body.clone();
            body.event = sent;
            body.id = new_uid(&body.host, body.at);
            let json = serde_json::to_value(&body).ok()?;
            Some(NewNotification {
                channel: name.clone(),
                event: sent,
                uid: body.id,
                body: json,
            })
        })
        .collect()
}

/// What a run is, for its messages.
#[derive(Clone, Debug)]
pub struct RunFacts<'a> {
    /// Where it comes from.
    pub origin: &'a Origin,
    /// What it does.
    pub action: &'a Action,
    /// Its id.
    pub id: TaskId,
    /// When it got its slot.
    pub started_at: DateTime<Utc>,
    /// The host name.
    pub host: &'a str,
}

impl RunFacts<'_> {
    fn body(&self, event: NotifyEvent, status: &str, at: DateTime<Utc>, message: String) -> Body {
        let (schedule, task) = match self.origin {
            Origin::Schedule(n) => (Some(n.clone()), None),
            Origin::Task(n) => (None, Some(n.clone())),
        };
        Body {
            version: BODY_VERSION,
            id: String::new(),
            event,
            host: self.host.to_string(),
            schedule,
            task,
            kind: self.action.kind(),
            store: self.action.store().to_string(),
            status: status.to_string(),
            error: None,
            snapshot_id: None,
            task_id: Some(self.id),
            started_at: Some(self.started_at),
            finished_at: None,
            last_success_at: None,
            stale_since: None,
            alert_after_seconds: None,
            at,
            message,
        }
    }

    /// The `start` body.
    pub fn start(&self) -> Body {
        let message = format!(
            "{} {} started on store {}",
            self.action.kind(),
            self.origin_text(),
            self.action.store()
        );
        self.body(NotifyEvent::Start, "running", self.started_at, message)
    }

    fn origin_text(&self) -> String {
        format!("{}.{}", self.origin.kind(), self.origin.name())
    }
}

/// How a run ended, for its messages.
#[derive(Clone, Debug)]
pub struct Ending<'a> {
    /// Its status.
    pub status: TaskStatus,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Its error, if any.
    pub error: Option<&'a str>,
    /// The snapshot it wrote, if any.
    pub snapshot_id: Option<&'a str>,
    /// The schedule's previous run failed or was partial, or it was stale.
    pub was_in_trouble: bool,
    /// The schedule's last success after this run.
    pub last_success_at: Option<DateTime<Utc>>,
}

/// The event and body of a run's end; `None` for a cancelled run.
pub fn ending(run: &RunFacts<'_>, end: &Ending<'_>) -> Option<(NotifyEvent, Body)> {
    let event = match end.status {
        TaskStatus::Succeeded if end.was_in_trouble => NotifyEvent::Recovery,
        TaskStatus::Succeeded => NotifyEvent::Success,
        TaskStatus::Partial => NotifyEvent::Partial,
        TaskStatus::Failed => NotifyEvent::Failure,
        TaskStatus::Running | TaskStatus::Skipped | TaskStatus::Cancelled => return None,
    };
    let seconds = (end.finished_at - run.started_at).num_seconds().max(0);
    let what = match event {
        NotifyEvent::Recovery => "succeeded again",
        NotifyEvent::Success => "succeeded",
        NotifyEvent::Partial => "ended partial (a snapshot was written, but some files were not)",
        _ => "failed",
    };
    let message = format!(
        "{} {} {what} on store {} after {seconds}s",
        run.action.kind(),
        run.origin_text(),
        run.action.store()
    );
    let mut body = run.body(event, end.status.as_str(), end.finished_at, message);
    body.error = end.error.map(clip);
    body.snapshot_id = end.snapshot_id.map(str::to_string);
    body.finished_at = Some(end.finished_at);
    body.last_success_at = end.last_success_at;
    Some((event, body))
}

/// What a stale schedule is, for its message.
#[derive(Clone, Debug)]
pub struct StaleFacts<'a> {
    /// The schedule.
    pub schedule: &'a str,
    /// What it runs.
    pub action: &'a Action,
    /// Its `alert_after`.
    pub alert_after: std::time::Duration,
    /// Its last success, if it ever had one.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When it became stale.
    pub stale_since: DateTime<Utc>,
    /// Now.
    pub at: DateTime<Utc>,
    /// The host name.
    pub host: &'a str,
}

/// The `stale` body.
pub fn stale(f: &StaleFacts<'_>) -> Body {
    let after = humantime::format_duration(f.alert_after);
    let message = match f.last_success_at {
        Some(t) => format!(
            "{} schedule.{} has had no success for more than {after} (last success {})",
            f.action.kind(),
            f.schedule,
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => format!(
            "{} schedule.{} has not succeeded in the {after} since it was first watched",
            f.action.kind(),
            f.schedule
        ),
    };
    Body {
        version: BODY_VERSION,
        id: String::new(),
        event: NotifyEvent::Stale,
        host: f.host.to_string(),
        schedule: Some(f.schedule.to_string()),
        task: None,
        kind: f.action.kind(),
        store: f.action.store().to_string(),
        status: "stale".to_string(),
        error: None,
        snapshot_id: None,
        task_id: None,
        started_at: None,
        finished_at: None,
        last_success_at: f.last_success_at,
        stale_since: Some(f.stale_since),
        alert_after_seconds: Some(f.alert_after.as_secs()),
        at: f.at,
        message,
    }
}
