//! The JSON API (SPEC §7): `/api/v1/status`, `/api/v1/schedules[/{name}]`,
//! `/api/v1/tasks` (filters, keyset paging) and `/api/v1/tasks/{id}` with
//! live progress. Lists are wrapped in an object named after them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hyper::StatusCode;

use super::Ctx;
use super::response::{Reply, error, json};
use super::schema::{
    ApplyErrorView, Condition, ConfigErrorView, ConfigView, FaultView, NotificationChannel,
    ObjectCounts, OneShot, Progress, RunningTask, Schedule, ScheduleList, Status, Task, TaskPage,
    origin_fields,
};
use crate::config::desired::Action;
use crate::state::{
    ConditionRecord, MAX_LIST_LIMIT, ObjectKind, Origin, OriginKind, ScheduleState, TaskFilter,
    TaskId, TaskKind, TaskRecord, TaskStatus,
};
use crate::status::RunningTask as LiveTask;

/// RFC 3339 UTC with milliseconds, like the state database.
pub fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn opt_time(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.as_ref().map(time)
}

/// A condition as sent (`None`, sent as `null`, when none is known yet).
pub fn condition(c: Option<&ConditionRecord>) -> Option<Condition> {
    c.map(|c| Condition {
        ready: c.ready,
        reason: c.reason.clone(),
        message: c.message.clone(),
        since: time(&c.since),
        revision: c.revision.clone(),
    })
}

/// Live progress of a running task: counters, rate and ETA.
pub fn progress(task: &LiveTask) -> Progress {
    let p = task.progress.snapshot();
    let elapsed = (Utc::now() - task.started_at).num_milliseconds().max(1) as f64 / 1000.0;
    let rate = p.bytes as f64 / elapsed;
    let eta = (p.total_bytes > p.bytes && rate > 0.0)
        .then(|| ((p.total_bytes - p.bytes) as f64 / rate).ceil() as u64);
    Progress {
        files: p.files,
        bytes: p.bytes,
        total_files: p.total_files,
        total_bytes: p.total_bytes,
        errors: p.errors,
        bytes_per_second: rate.round() as u64,
        eta_seconds: eta,
    }
}

/// A running task as sent.
pub fn running(task: &LiveTask) -> RunningTask {
    let (schedule, origin_task) = origin_fields(&task.origin);
    RunningTask {
        id: task.id.map(|i| i.0),
        kind: task.kind,
        schedule,
        task: origin_task,
        store: task.store.clone(),
        status: "running",
        queued_at: time(&task.queued_at),
        started_at: time(&task.started_at),
        waiting_for_slot: !task.has_slot,
        progress: progress(task),
    }
}

/// A recorded run as sent, with live progress when `live` is its running task.
pub fn task_view(t: &TaskRecord, live: Option<&LiveTask>) -> Task {
    let (schedule, task) = origin_fields(&t.origin);
    Task {
        id: t.id.0,
        kind: t.kind,
        schedule,
        task,
        store: t.store.clone(),
        status: t.status,
        reason: t.reason.clone(),
        scheduled_for: opt_time(&t.scheduled_for),
        queued_at: opt_time(&t.queued_at),
        started_at: time(&t.started_at),
        finished_at: opt_time(&t.finished_at),
        duration_ms: t.duration_ms,
        stats: t.stats.clone(),
        error: t.error.clone(),
        snapshot_id: t.snapshot_id.clone(),
        revision: t.revision.clone(),
        progress: live.map(progress),
    }
}

/// `GET /api/v1/status`.
pub fn status(ctx: &Ctx) -> Reply {
    json(StatusCode::OK, &status_value(ctx))
}

/// The status document.
pub fn status_value(ctx: &Ctx) -> Status {
    let live = &ctx.live;
    let config = live.config_status();
    let problems = live.problems();
    let applied = live.applied();
    let count = |f: fn(&crate::config::DesiredState) -> usize| applied.as_deref().map_or(0, f);
    Status {
        version: env!("CARGO_PKG_VERSION"),
        ready: problems.is_empty(),
        problems,
        started_at: time(&live.started_at),
        config: ConfigView {
            dir: live.config_dir.display().to_string(),
            valid: config.valid,
            attempted_revision: config.attempted_revision.clone(),
            attempted_at: opt_time(&config.attempted_at),
            applied_revision: config.applied_revision.clone(),
            applied_at: opt_time(&config.applied_at),
            errors: config
                .errors
                .iter()
                .map(|e| ConfigErrorView {
                    file: e.file.as_ref().map(|f| f.display().to_string()),
                    line: e.line,
                    object: e.object.clone(),
                    message: e.message.clone(),
                })
                .collect(),
            restart_required: config.restart_required.clone(),
            reloads: config.reloads,
            reload_failures: config.reload_failures,
            apply_error: config.apply_failure.as_ref().map(|f| ApplyErrorView {
                revision: f.revision.clone(),
                message: f.message.clone(),
                failures: f.failures,
                retry_at: time(&f.retry_at),
            }),
        },
        faults: live
            .faults()
            .into_iter()
            .map(|(fault, message)| FaultView {
                what: fault.what(),
                message,
            })
            .collect(),
        warnings: live.warnings(),
        notifications: live
            .notifications()
            .into_iter()
            .map(|h| NotificationChannel {
                channel: h.channel,
                pending: h.pending,
                retrying: h.retrying,
                dropped: h.dropped,
                last_error: h.last_error,
                last_error_at: opt_time(&h.last_error_at),
                next_attempt_at: opt_time(&h.next_attempt_at),
            })
            .collect(),
        objects: ObjectCounts {
            stores: count(|d| d.stores.len()),
            sources: count(|d| d.sources.len()),
            destinations: count(|d| d.destinations.len()),
            schedules: count(|d| d.schedules.len()),
            tasks: count(|d| d.tasks.len()),
        },
        running: live.running_tasks().iter().map(running).collect(),
        oneshots: oneshots(live),
    }
}

/// The declared one-shot tasks in the order they run per store, each with
/// its condition: `Pending`/`DependencyNotReady` (an object is not ready),
/// `Queued` (an earlier one-shot on its store goes first), `Started`, `Done`.
fn oneshots(live: &crate::status::Live) -> Vec<OneShot> {
    let Some(applied) = live.applied() else {
        return Vec::new();
    };
    let conditions = live.conditions();
    applied
        .oneshots_in_order()
        .into_iter()
        .map(|d| OneShot {
            name: d.name.clone(),
            kind: d.action.kind().as_str(),
            store: d.action.store().to_string(),
            declared_at: format!("{}:{}", d.origin.file.display(), d.origin.line),
            condition: condition(conditions.get(&(ObjectKind::Task, d.name.clone()))),
        })
        .collect()
}

/// `GET /api/v1/schedules` and `/api/v1/schedules/{name}`.
pub async fn schedules(ctx: &Ctx, name: Option<&str>) -> Reply {
    let Some(applied) = ctx.live.applied() else {
        return match name {
            None => json(
                StatusCode::OK,
                &ScheduleList {
                    schedules: Vec::new(),
                },
            ),
            Some(n) => error(StatusCode::NOT_FOUND, format!("no schedule named {n:?}")),
        };
    };
    if let Some(n) = name
        && !applied.schedules.contains_key(n)
    {
        return error(StatusCode::NOT_FOUND, format!("no schedule named {n:?}"));
    }
    let states: BTreeMap<String, ScheduleState> =
        match ctx.db.call(|db| db.all_schedule_states()).await {
            Ok(list) => list.into_iter().map(|s| (s.name.clone(), s)).collect(),
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("state database: {e}"),
                );
            }
        };
    let conditions = ctx.live.conditions();
    let running: BTreeMap<String, LiveTask> = ctx
        .live
        .running_tasks()
        .into_iter()
        .filter_map(|t| match &t.origin {
            Origin::Schedule(n) => Some((n.clone(), t.clone())),
            Origin::Task(_) => None,
        })
        .collect();
    let next_runs = ctx.live.next_runs();
    let stale = ctx.live.stale();
    let views: Vec<Schedule> = applied
        .schedules
        .values()
        .filter(|d| name.is_none_or(|n| n == d.name))
        .map(|d| {
            let s = states.get(&d.name).cloned().unwrap_or_default();
            let (source, destination, to) = match &d.action {
                Action::Backup { source, .. } => (Some(source.clone()), None, None),
                Action::Restore { destination, .. } => (None, Some(destination.clone()), None),
                Action::Sync { to, .. } => (None, None, Some(to.clone())),
                _ => (None, None, None),
            };
            Schedule {
                name: d.name.clone(),
                task: d.action.kind().as_str(),
                store: d.action.store().to_string(),
                source,
                destination,
                to,
                cron: d.cron.clone(),
                timezone: d.timezone.clone(),
                jitter_seconds: d.jitter.as_secs(),
                catch_up: d.catch_up,
                next_run: opt_time(&next_runs.get(&d.name).copied().flatten()),
                last_run: opt_time(&s.last_run_at),
                last_finished: opt_time(&s.last_finished_at),
                last_success: opt_time(&s.last_success_at),
                last_failure: opt_time(&s.last_failure_at),
                last_status: s.last_status,
                last_duration_ms: s.last_duration_ms,
                last_bytes_added: s.last_bytes_added,
                skipped_count: s.skipped_count,
                alert_after_seconds: d.alert_after.map(|a| a.as_secs()),
                stale: stale.contains_key(&d.name),
                stale_since: opt_time(&stale.get(&d.name).map(|s| s.since)),
                notify: d.notify.clone(),
                running: running.get(&d.name).map(self::running),
                condition: condition(conditions.get(&(ObjectKind::Schedule, d.name.clone()))),
                declared_at: format!("{}:{}", d.origin.file.display(), d.origin.line),
            }
        })
        .collect();
    match name {
        Some(_) => match views.into_iter().next() {
            Some(v) => json(StatusCode::OK, &v),
            None => error(StatusCode::NOT_FOUND, "no such schedule"),
        },
        None => json(StatusCode::OK, &ScheduleList { schedules: views }),
    }
}

/// Parses the task filters: `kind`, `status`, `schedule`, `task`, `store`, `since`
/// (RFC 3339), `before` (a task id, for the next page) and `limit`.
pub fn task_filter(query: &str) -> Result<TaskFilter, String> {
    let mut f = TaskFilter::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let v = value.as_ref();
        match key.as_ref() {
            "kind" => f.kind = Some(v.parse::<TaskKind>().map_err(|e| e.to_string())?),
            "status" => f.status = Some(v.parse::<TaskStatus>().map_err(|e| e.to_string())?),
            "schedule" | "task" => {
                if f.origin_kind.is_some() {
                    return Err("give either schedule or task, not both".into());
                }
                f.origin_kind = Some(if key == "schedule" {
                    OriginKind::Schedule
                } else {
                    OriginKind::Task
                });
                f.origin_name = Some(v.to_string());
            }
            "store" => f.store = Some(v.to_string()),
            "since" => {
                let t = DateTime::parse_from_rfc3339(v)
                    .map_err(|e| format!("since: {v:?} is not an RFC 3339 time: {e}"))?;
                f.since = Some(t.with_timezone(&Utc));
            }
            "before" => {
                let id = v
                    .parse::<i64>()
                    .ok()
                    .filter(|i| *i > 0)
                    .ok_or_else(|| format!("before: {v:?} is not a task id"))?;
                f.before_id = Some(TaskId(id));
            }
            "limit" => {
                let n = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("limit: {v:?} is not a number from 1 to {MAX_LIST_LIMIT}")
                    })?;
                f.limit = Some(n);
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (known: kind, status, schedule, task, store, since, before, limit)"
                ));
            }
        }
    }
    Ok(f)
}

/// `GET /api/v1/tasks`: newest first; `next` is the `before` value of the
/// next page, `null` on the last one.
pub async fn tasks(ctx: &Ctx, query: &str) -> Reply {
    let filter = match task_filter(query) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let limit = filter.limit.unwrap_or(crate::state::DEFAULT_LIST_LIMIT) as usize;
    let list = match ctx.db.call(move |db| db.list_tasks(&filter)).await {
        Ok(l) => l,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("state database: {e}"),
            );
        }
    };
    let next = (list.len() == limit)
        .then(|| list.last().map(|t| t.id))
        .flatten();
    let running = ctx.live.running_tasks();
    let tasks: Vec<Task> = list
        .iter()
        .map(|t| task_view(t, running.iter().find(|r| r.id == Some(t.id))))
        .collect();
    json(
        StatusCode::OK,
        &TaskPage {
            tasks,
            next: next.map(|i| i.0),
        },
    )
}

/// `GET /api/v1/tasks/{id}`, with live progress while it runs.
pub async fn task(ctx: &Ctx, id: &str) -> Reply {
    let Some(id) = id.parse::<i64>().ok().filter(|i| *i > 0).map(TaskId) else {
        return error(StatusCode::BAD_REQUEST, format!("{id:?} is not a task id"));
    };
    match ctx.db.call(move |db| db.get_task(id)).await {
        Ok(Some(t)) => {
            let running = ctx.live.running_tasks();
            let live = running.iter().find(|r| r.id == Some(id));
            json(StatusCode::OK, &task_view(&t, live))
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no task {id}")),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("state database: {e}"),
        ),
    }
}
