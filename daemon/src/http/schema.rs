//! The JSON bodies of the status API (`/api/v1/status`, schedules, tasks)
//! and the error body, as types: each derives `Serialize` (what is sent)
//! and `utoipa::ToSchema` (what `/api/v1/openapi.json` says is sent), so
//! the document cannot drift from the wire. Times are RFC 3339 strings made
//! by [`super::api::time`]; optional fields that are always present (as
//! `null`) are marked `required`.

use std::borrow::Cow;

use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::state::{TaskKind, TaskStatus};

/// A string enum schema from the values a type serializes to.
fn string_enum(values: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .into()
}

impl PartialSchema for TaskKind {
    fn schema() -> RefOr<Schema> {
        string_enum(TaskKind::ALL.iter().map(|k| k.as_str()))
    }
}

impl ToSchema for TaskKind {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TaskKind")
    }
}

impl PartialSchema for TaskStatus {
    fn schema() -> RefOr<Schema> {
        string_enum(TaskStatus::ALL.iter().map(|s| s.as_str()))
    }
}

impl ToSchema for TaskStatus {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TaskStatus")
    }
}

/// A full snapshot id, or `null`: a reference to [`SnapshotHex`] or null.
pub fn snapshot_id_or_null() -> Schema {
    OneOfBuilder::new()
        .item(Ref::from_schema_name("SnapshotHex"))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some("The snapshot a backup wrote or a restore read"))
        .build()
        .into()
}

/// A full snapshot id: 64 lowercase hex digits.
pub struct SnapshotHex;

impl PartialSchema for SnapshotHex {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9a-f]{64}$"))
            .into()
    }
}

impl ToSchema for SnapshotHex {}

/// Every error body: `{"error": {"status": 404, "message": "…"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The status and message of an error.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong, for people.
    pub message: String,
}

/// An object's condition; `null` until the object was first checked.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Whether the object is ready.
    pub ready: bool,
    /// A CamelCase cause (`Ready`, `ConnectionFailed`, …).
    pub reason: String,
    /// The cause, for people.
    pub message: String,
    /// When `ready` or `reason` last changed.
    #[schema(format = DateTime)]
    pub since: String,
    /// The configuration revision it was checked under.
    #[schema(required = true, pattern = "^[0-9a-f]{64}$")]
    pub revision: Option<String>,
}

/// Live counters of a running task, its rate and ETA.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Files done.
    pub files: u64,
    /// Bytes done.
    pub bytes: u64,
    /// Files expected; 0 when unknown.
    pub total_files: u64,
    /// Bytes expected; 0 when unknown.
    pub total_bytes: u64,
    /// Files that could not be read.
    pub errors: u64,
    /// Bytes per second since it started.
    pub bytes_per_second: u64,
    /// Seconds left at this rate; `null` when unknown.
    #[schema(required = true)]
    pub eta_seconds: Option<u64>,
}

/// The `schedule` and `task` fields of a run: exactly one is set.
pub fn origin_fields(origin: &crate::state::Origin) -> (Option<String>, Option<String>) {
    match origin {
        crate::state::Origin::Schedule(n) => (Some(n.clone()), None),
        crate::state::Origin::Task(n) => (None, Some(n.clone())),
    }
}

/// A task that runs now (or waits for its task slot).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunningTask {
    /// `null` until its run is recorded (a moment after it is due).
    #[schema(required = true, minimum = 1)]
    pub id: Option<i64>,
    /// What it does.
    pub kind: TaskKind,
    /// The schedule it runs for (a run names its `schedule` or its one-shot
    /// `task`, never both).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub schedule: Option<String>,
    /// The one-shot task it runs for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub task: Option<String>,
    /// Its store.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub store: String,
    /// Always `running`.
    #[schema(value_type = String, pattern = "^running$")]
    pub status: &'static str,
    /// When it was due (schedules) or claimed (one-shots).
    #[schema(format = DateTime)]
    pub queued_at: String,
    /// When it got its task slot (`max_concurrent_tasks`); equal to
    /// `queued_at` while `waiting_for_slot`.
    #[schema(format = DateTime)]
    pub started_at: String,
    /// Whether it still waits for a task slot (`max_concurrent_tasks`).
    pub waiting_for_slot: bool,
    /// Its counters.
    pub progress: Progress,
}

/// A recorded task run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Its id (never reused).
    #[schema(minimum = 1)]
    pub id: i64,
    /// What it does.
    pub kind: TaskKind,
    /// The schedule it runs for (a run names its `schedule` or its one-shot
    /// `task`, never both).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub schedule: Option<String>,
    /// The one-shot task it runs for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub task: Option<String>,
    /// Its store.
    #[schema(required = true)]
    pub store: Option<String>,
    /// Where it is in its life.
    pub status: TaskStatus,
    /// Why it was skipped.
    #[schema(required = true)]
    pub reason: Option<String>,
    /// The cron time of a scheduled run; `null` for one-shots.
    #[schema(required = true, format = DateTime)]
    pub scheduled_for: Option<String>,
    /// When it was due (schedules) or claimed (one-shots), before it waited
    /// for a task slot; never `null` for runs this version records.
    #[schema(required = true, format = DateTime)]
    pub queued_at: Option<String>,
    /// When it got its task slot (`max_concurrent_tasks`) and really
    /// started; equal to `queued_at` while it still waits for one.
    #[schema(format = DateTime)]
    pub started_at: String,
    /// When it ended; `null` while running.
    #[schema(required = true, format = DateTime)]
    pub finished_at: Option<String>,
    /// From `started_at` to `finished_at` (the wait for a slot is not
    /// counted); `null` while running, for skipped and for interrupted runs.
    #[schema(required = true)]
    pub duration_ms: Option<u64>,
    /// Kind-specific numbers (`TaskStats`), `{}` for a run that failed
    /// early, `null` while running or when skipped.
    #[schema(required = true, value_type = Option<super::task_stats_schema::TaskStats>)]
    pub stats: Option<serde_json::Value>,
    /// Why it failed.
    #[schema(required = true)]
    pub error: Option<String>,
    /// The snapshot a backup wrote or a restore read.
    #[schema(required = true, schema_with = snapshot_id_or_null)]
    pub snapshot_id: Option<String>,
    /// The configuration revision it ran under.
    #[schema(required = true, pattern = "^[0-9a-f]{64}$")]
    pub revision: Option<String>,
    /// Live counters; only while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// The outcome of the latest configuration attempt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigView {
    /// The configuration directory.
    pub dir: String,
    /// Whether the latest attempt was valid.
    pub valid: bool,
    /// The revision last read; `null`: the directory was unreadable.
    #[schema(required = true, pattern = "^[0-9a-f]{64}$")]
    pub attempted_revision: Option<String>,
    /// When it was read.
    #[schema(required = true, format = DateTime)]
    pub attempted_at: Option<String>,
    /// The revision running now.
    #[schema(required = true, pattern = "^[0-9a-f]{64}$")]
    pub applied_revision: Option<String>,
    /// When it was applied.
    #[schema(required = true, format = DateTime)]
    pub applied_at: Option<String>,
    /// Every error of the latest attempt.
    pub errors: Vec<ConfigErrorView>,
    /// Settings that take effect only after a restart.
    pub restart_required: Vec<String>,
    /// Reloads attempted.
    pub reloads: u64,
    /// Reloads that failed validation.
    pub reload_failures: u64,
    /// A valid revision that could not be applied yet (the previous one
    /// keeps running); it is retried with backoff. `null` when none waits.
    #[schema(required = true)]
    pub apply_error: Option<ApplyErrorView>,
}

/// A valid revision whose apply failed, waiting for its retry.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApplyError)]
#[serde(deny_unknown_fields)]
pub struct ApplyErrorView {
    /// The revision that could not be applied.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub revision: String,
    /// The step that failed, and why.
    pub message: String,
    /// Failed attempts in a row.
    pub failures: u32,
    /// When the next attempt is due.
    #[schema(format = DateTime)]
    pub retry_at: String,
}

/// Daemon bookkeeping that is failing now: a problem until the same step
/// next succeeds.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Fault)]
#[serde(deny_unknown_fields)]
pub struct FaultView {
    /// What failed.
    pub what: &'static str,
    /// Why.
    pub message: String,
}

/// A notification channel's queue: messages waiting for delivery, failing,
/// or given up on (never its URL).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationChannel {
    /// The `[notify.NAME]`.
    pub channel: String,
    /// Messages waiting (first attempt or a retry).
    pub pending: u64,
    /// Of those, the ones that failed at least once.
    pub retrying: u64,
    /// Messages dropped in the last 30 days.
    pub dropped: u64,
    /// The latest delivery error.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When it happened.
    #[schema(required = true, format = DateTime)]
    pub last_error_at: Option<String>,
    /// When the next attempt is due.
    #[schema(required = true, format = DateTime)]
    pub next_attempt_at: Option<String>,
}

/// A configuration error, with its place.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConfigError)]
#[serde(deny_unknown_fields)]
pub struct ConfigErrorView {
    /// The file, when the problem is in one.
    #[schema(required = true)]
    pub file: Option<String>,
    /// 1-based line in that file.
    #[schema(required = true, minimum = 1)]
    pub line: Option<usize>,
    /// The object, e.g. `store.offsite`.
    #[schema(required = true)]
    pub object: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// How many objects of each kind are applied.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectCounts {
    /// `[store.*]`
    pub stores: usize,
    /// `[source.*]`
    pub sources: usize,
    /// `[destination.*]`
    pub destinations: usize,
    /// `[schedule.*]`
    pub schedules: usize,
    /// `[task.*]`
    pub tasks: usize,
}

/// `GET /api/v1/status`: the daemon at a glance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// The daemon's version.
    pub version: &'static str,
    /// Whether nothing is wrong (`problems` is empty).
    pub ready: bool,
    /// What makes the daemon not ready, most important first.
    pub problems: Vec<String>,
    /// When the daemon started.
    #[schema(format = DateTime)]
    pub started_at: String,
    /// The configuration.
    pub config: ConfigView,
    /// Daemon bookkeeping failing now.
    pub faults: Vec<FaultView>,
    /// What deserves attention without making the daemon unready: stale
    /// schedules and failing notification channels, one line each.
    pub warnings: Vec<String>,
    /// Notification channels with messages waiting, retrying or dropped.
    pub notifications: Vec<NotificationChannel>,
    /// Applied objects.
    pub objects: ObjectCounts,
    /// The tasks running now.
    pub running: Vec<RunningTask>,
    /// The declared one-shot tasks in the order they run per store (file,
    /// then line).
    pub oneshots: Vec<OneShot>,
}

/// A declared one-shot task and its condition.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OneShot {
    /// Its name.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// What it does.
    #[schema(value_type = TaskKind)]
    pub kind: &'static str,
    /// Its store.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub store: String,
    /// FILE:LINE of the declaration.
    #[schema(pattern = ":[0-9]+$")]
    pub declared_at: String,
    /// `Pending` or `DependencyNotReady` (not ready: an object it uses is
    /// not ready; nothing is claimed), `Queued` (a one-shot declared before
    /// it on the same store goes first), `Started` (its run is going),
    /// `Done` (handled for this content; the outcome is in its task run);
    /// `null` before it was first considered.
    #[schema(required = true)]
    pub condition: Option<Condition>,
}

/// A schedule, its state and its latest run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Its name.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// The kind of task it runs.
    #[schema(value_type = TaskKind)]
    pub task: &'static str,
    /// Its store.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub store: String,
    /// The source it backs up (backup only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The destination it restores to (restore only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The store it syncs to (sync only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Its cron expression.
    pub cron: String,
    /// The time zone of `cron`.
    pub timezone: String,
    /// Random delay added to each run, at most.
    pub jitter_seconds: u64,
    /// Whether a run missed while down is made up.
    pub catch_up: bool,
    /// When it runs next.
    #[schema(required = true, format = DateTime)]
    pub next_run: Option<String>,
    /// When it last started.
    #[schema(required = true, format = DateTime)]
    pub last_run: Option<String>,
    /// When its last run ended.
    #[schema(required = true, format = DateTime)]
    pub last_finished: Option<String>,
    /// When its last successful (or partial) run ended.
    #[schema(required = true, format = DateTime)]
    pub last_success: Option<String>,
    /// When its last failed run ended.
    #[schema(required = true, format = DateTime)]
    pub last_failure: Option<String>,
    /// How its last run ended.
    #[schema(required = true)]
    pub last_status: Option<TaskStatus>,
    /// How long its last run took.
    #[schema(required = true)]
    pub last_duration_ms: Option<u64>,
    /// Bytes its last backup added.
    #[schema(required = true)]
    pub last_bytes_added: Option<u64>,
    /// Runs skipped (the previous one still ran).
    pub skipped_count: u64,
    /// Its `alert_after` in seconds (`null`: not watched).
    #[schema(required = true)]
    pub alert_after_seconds: Option<u64>,
    /// Whether its last success is older than `alert_after`.
    pub stale: bool,
    /// Since when it is stale.
    #[schema(required = true, format = DateTime)]
    pub stale_since: Option<String>,
    /// The notification channels its outcomes go to.
    pub notify: Vec<String>,
    /// Its run going now.
    #[schema(required = true)]
    pub running: Option<RunningTask>,
    /// Its condition.
    #[schema(required = true)]
    pub condition: Option<Condition>,
    /// FILE:LINE of the declaration.
    #[schema(pattern = ":[0-9]+$")]
    pub declared_at: String,
}

/// `GET /api/v1/schedules`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleList {
    /// Every applied schedule, by name.
    pub schedules: Vec<Schedule>,
}

/// `GET /api/v1/tasks`: one page of task runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPage {
    /// The runs.
    pub tasks: Vec<Task>,
    /// The `before` value of the next page; `null` on the last one.
    #[schema(required = true, minimum = 1)]
    pub next: Option<i64>,
}
