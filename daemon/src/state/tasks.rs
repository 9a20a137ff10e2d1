//! Task runs: one row per run from start to outcome; history queries, keyset paging and counters.
//!
//! Invariants: a row is `running` with no `finished_at`, or finished with one
//! (enforced by a CHECK). Only a `running` row can be finished, once. Ids grow
//! with start order and are never reused, so `id` order is history order.

use super::types::{
    DbJson, DbTime, DbU64, Origin, OriginKind, TaskId, TaskKind, TaskStatus, time_serde,
};
use super::{Result, SqlContext, StateDb, StateError};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

/// The error recorded on runs that were still `running` when the daemon died.
pub const INTERRUPTED_ERROR: &str = "interrupted: the daemon stopped while it ran";

/// [`TaskFilter::limit`] when none is given.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
/// The largest page [`StateDb::list_tasks`] returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// A run about to start (or to be recorded as skipped).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub kind: TaskKind,
    pub origin: Origin,
    pub store: Option<String>,
    /// The cron time this run is for (schedules); `None` for one-shots.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// When it was due or claimed (or skipped): its `queued_at`, and its
    /// `started_at` until [`StateDb::mark_started`] records the moment it
    /// got a task slot.
    pub started_at: DateTime<Utc>,
    /// The configuration revision it runs under.
    pub revision: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Anything but [`TaskStatus::Running`].
    pub status: TaskStatus,
    /// `duration_ms` is `finished_at - started_at` (0 if the clock went back).
    pub finished_at: DateTime<Utc>,
    pub stats: Option<serde_json::Value>,
    pub error: Option<String>,
    pub snapshot_id: Option<String>,
}

/// A run as recorded; serializes to the HTTP API's task object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub kind: TaskKind,
    #[serde(flatten)]
    pub origin: Origin,
    pub store: Option<String>,
    pub status: TaskStatus,
    /// Why it was skipped.
    pub reason: Option<String>,
    #[serde(serialize_with = "time_serde::opt_time")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// When it was due (schedules) or claimed (one-shots); `None` only for
    /// rows written before `queued_at` existed.
    #[serde(serialize_with = "time_serde::opt_time")]
    pub queued_at: Option<DateTime<Utc>>,
    /// When it got its task slot (`max_concurrent_tasks`) and really began.
    #[serde(serialize_with = "time_serde::time")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "time_serde::opt_time")]
    pub finished_at: Option<DateTime<Utc>>,
    /// `None` while running, for skipped runs and for interrupted ones.
    pub duration_ms: Option<u64>,
    pub stats: Option<serde_json::Value>,
    pub error: Option<String>,
    pub snapshot_id: Option<String>,
    pub revision: Option<String>,
}

/// Which runs [`StateDb::list_tasks`] returns: newest first, every `Some`
/// field must match, at most `limit` rows with `id < before_id` (keyset paging:
/// pass the last id of a page to get the next one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    pub kind: Option<TaskKind>,
    pub status: Option<TaskStatus>,
    pub origin_kind: Option<OriginKind>,
    pub origin_name: Option<String>,
    /// Runs on this store.
    pub store: Option<String>,
    /// Runs started at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub before_id: Option<TaskId>,
    /// Default [`DEFAULT_LIST_LIMIT`], capped at [`MAX_LIST_LIMIT`].
    pub limit: Option<u32>,
}

/// How many runs have a kind and status (for metrics counters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskCount {
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub count: u64,
}

/// What [`StateDb::mark_interrupted_running`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterruptedCounts {
    /// Runs turned from `running` into `failed`.
    pub tasks: u64,
    /// One-shot claims turned from `started` into `interrupted`.
    pub oneshots: u64,
}

pub(super) const TASK_COLUMNS: &str = "id, kind, origin_kind, origin_name, store, status, reason, \
     scheduled_for, started_at, finished_at, duration_ms, stats_json, error, snapshot_id, revision, \
     queued_at";

pub(super) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    Ok(TaskRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        origin: Origin::from_parts(row.get(2)?, row.get(3)?),
        store: row.get(4)?,
        status: row.get(5)?,
        reason: row.get(6)?,
        scheduled_for: row.get::<_, Option<DbTime>>(7)?.map(|t| t.0),
        queued_at: row.get::<_, Option<DbTime>>(15)?.map(|t| t.0),
        started_at: row.get::<_, DbTime>(8)?.0,
        finished_at: row.get::<_, Option<DbTime>>(9)?.map(|t| t.0),
        duration_ms: row.get::<_, Option<DbU64>>(10)?.map(|n| n.0),
        stats: row.get::<_, Option<DbJson>>(11)?.map(|j| j.0),
        error: row.get(12)?,
        snapshot_id: row.get(13)?,
        revision: row.get(14)?,
    })
}

pub(super) fn read_task(conn: &Connection, id: TaskId) -> rusqlite::Result<Option<TaskRecord>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM task_runs WHERE id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id], task_from_row)
        .optional()
}

/// Inserts a run; finished (at its start time) unless `status` is running.
pub(super) fn insert_task(
    conn: &Connection,
    task: &NewTask,
    status: TaskStatus,
    reason: Option<&str>,
) -> rusqlite::Result<TaskId> {
    let finished_at = (status != TaskStatus::Running).then_some(DbTime(task.started_at));
    conn.prepare_cached(
        "INSERT INTO task_runs (kind, origin_kind, origin_name, store, status, reason, \
         scheduled_for, started_at, finished_at, revision, queued_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?8) RETURNING id",
    )?
    .query_row(
        params![
            task.kind,
            task.origin.kind(),
            task.origin.name(),
            task.store,
            status,
            reason,
            task.scheduled_for.map(DbTime),
            DbTime(task.started_at),
            finished_at,
            task.revision,
        ],
        |row| row.get(0),
    )
}

impl StateDb {
    /// Records a run that starts now (`running`) and returns its new id.
    pub fn start_task(&mut self, task: &NewTask) -> Result<TaskId> {
        insert_task(&self.conn, task, TaskStatus::Running, None).op("start task")
    }

    /// Records that run `id` (still `running`) got its task slot at `at`:
    /// its `started_at` (and so its duration) counts from then; `queued_at`
    /// keeps when it was due or claimed.
    pub fn mark_started(&mut self, id: TaskId, at: DateTime<Utc>) -> Result<()> {
        const OP: &str = "mark task started";
        let n = self
            .conn
            .execute(
                "UPDATE task_runs SET started_at = ?2 WHERE id = ?1 AND status = 'running'",
                params![id, DbTime(at)],
            )
            .op(OP)?;
        if n == 0 {
            return match read_task(&self.conn, id).op(OP)? {
                None => Err(StateError::TaskNotFound(id)),
                Some(t) => Err(StateError::TaskNotRunning {
                    id,
                    status: t.status,
                }),
            };
        }
        Ok(())
    }

    /// Records a run that did not happen (e.g. the previous one still runs):
    /// status `skipped`, finished at `task.started_at`, with `reason`.
    pub fn record_skipped(&mut self, task: &NewTask, reason: &str) -> Result<TaskId> {
        insert_task(&self.conn, task, TaskStatus::Skipped, Some(reason)).op("record skipped task")
    }

    /// Finishes a `running` run, and the one-shot claim it belongs to, if any,
    /// in one transaction. Errors if the run does not exist or is already
    /// finished (a run finishes exactly once).
    pub fn finish_task(&mut self, id: TaskId, outcome: &Outcome) -> Result<TaskRecord> {
        const OP: &str = "finish task";
        if outcome.status == TaskStatus::Running {
            return Err(StateError::InvalidArgument(format!(
                "task {id} cannot finish with status running"
            )));
        }
        let tx = super::Tx::begin(&mut self.conn).op(OP)?;
        let found: Option<(TaskStatus, DbTime)> = tx
            .query_row(
                "SELECT status, started_at FROM task_runs WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .op(OP)?;
        let (status, started_at) = found.ok_or(StateError::TaskNotFound(id))?;
        if status != TaskStatus::Running {
            return Err(StateError::TaskNotRunning { id, status });
        }
        let duration_ms = (outcome.finished_at - started_at.0)
            .num_milliseconds()
            .max(0);
        tx.execute(
            "UPDATE task_runs SET status = ?2, finished_at = ?3, duration_ms = ?4, \
             stats_json = ?5, error = ?6, snapshot_id = ?7 WHERE id = ?1",
            params![
                id,
                outcome.status,
                DbTime(outcome.finished_at),
                duration_ms,
                outcome.stats.clone().map(DbJson),
                outcome.error,
                outcome.snapshot_id,
            ],
        )
        .op(OP)?;
        tx.execute(
            "UPDATE oneshot SET state = 'done', status = ?2, finished_at = ?3 \
             WHERE task_id = ?1 AND state = 'started'",
            params![id, outcome.status, DbTime(outcome.finished_at)],
        )
        .op(OP)?;
        let record = read_task(&tx, id)
            .op(OP)?
            .ok_or(StateError::TaskNotFound(id))?;
        tx.commit().op(OP)?;
        Ok(record)
    }

    /// One run, if it exists.
    pub fn get_task(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        read_task(&self.conn, id).op("read task")
    }

    /// Runs matching `filter`, newest first (see [`TaskFilter`]).
    pub fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>> {
        const OP: &str = "list tasks";
        let limit = filter
            .limit
            .unwrap_or(DEFAULT_LIST_LIMIT)
            .clamp(1, MAX_LIST_LIMIT);
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM task_runs \
             WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR status = ?2) \
             AND (?3 IS NULL OR origin_kind = ?3) AND (?4 IS NULL OR origin_name = ?4) \
             AND (?5 IS NULL OR started_at >= ?5) AND (?6 IS NULL OR id < ?6) \
             AND (?8 IS NULL OR store = ?8) \
             ORDER BY id DESC LIMIT ?7"
        );
        let mut stmt = self.conn.prepare_cached(&sql).op(OP)?;
        let rows = stmt
            .query_map(
                params![
                    filter.kind,
                    filter.status,
                    filter.origin_kind,
                    filter.origin_name,
                    filter.since.map(DbTime),
                    filter.before_id,
                    limit,
                    filter.store,
                ],
                task_from_row,
            )
            .op(OP)?;
        rows.collect::<rusqlite::Result<_>>().op(OP)
    }

    /// At daemon start: every run still `running` was left by a previous
    /// process; it becomes `failed` with `error` (normally
    /// [`INTERRUPTED_ERROR`]), `finished_at = now` (when this was noticed) and
    /// no duration. Its one-shot claim, if any, becomes `interrupted` (never
    /// re-run). Call it once, before the daemon starts any task.
    pub fn mark_interrupted_running(
        &mut self,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<InterruptedCounts> {
        const OP: &str = "mark interrupted tasks";
        let tx = super::Tx::begin(&mut self.conn).op(OP)?;
        let oneshots = tx
            .execute(
                "UPDATE oneshot SET state = 'interrupted', status = 'failed', finished_at = ?1 \
                 WHERE state = 'started'",
                [DbTime(now)],
            )
            .op(OP)?;
        let tasks = tx
            .execute(
                "UPDATE task_runs SET status = 'failed', error = ?1, finished_at = ?2 \
                 WHERE status = 'running'",
                params![error, DbTime(now)],
            )
            .op(OP)?;
        tx.commit().op(OP)?;
        Ok(InterruptedCounts {
            tasks: tasks as u64,
            oneshots: oneshots as u64,
        })
    }

    /// Number of runs per (kind, status), for Prometheus counters. Counts only
    /// grow as long as task history is not pruned.
    pub fn task_counts(&self) -> Result<Vec<TaskCount>> {
        const OP: &str = "count tasks";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT kind, status, count(*) FROM task_runs \
                 GROUP BY kind, status ORDER BY kind, status",
            )
            .op(OP)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TaskCount {
                    kind: r.get(0)?,
                    status: r.get(1)?,
                    count: r.get::<_, DbU64>(2)?.0,
                })
            })
            .op(OP)?;
        rows.collect::<rusqlite::Result<_>>().op(OP)
    }

    /// Byte totals of every succeeded or partial run, from their stats (for metrics).
    pub fn byte_totals(&self) -> Result<ByteTotals> {
        const OP: &str = "sum task bytes";
        self.conn
            .query_row(
                "SELECT \
                 coalesce(sum(CASE WHEN kind = 'backup' THEN json_extract(stats_json, '$.bytes') END), 0), \
                 coalesce(sum(CASE WHEN kind = 'backup' THEN json_extract(stats_json, '$.bytes_added') END), 0), \
                 coalesce(sum(CASE WHEN kind = 'backup' THEN json_extract(stats_json, '$.bytes_stored') END), 0), \
                 coalesce(sum(CASE WHEN kind = 'restore' THEN json_extract(stats_json, '$.bytes') END), 0) \
                 FROM task_runs WHERE status IN ('succeeded', 'partial') AND stats_json IS NOT NULL",
                [],
                |r| {
                    let get = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                    Ok(ByteTotals {
                        backup_source: get(0)?,
                        backup_added: get(1)?,
                        backup_stored: get(2)?,
                        restore_written: get(3)?,
                    })
                },
            )
            .op(OP)
    }
}

/// Sums of the byte counts of succeeded runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteTotals {
    /// Logical bytes of the files covered by backups (unchanged ones too).
    pub backup_source: u64,
    /// New plaintext bytes backups added (the rest was deduplicated).
    pub backup_added: u64,
    /// Bytes backups wrote to storage (compressed, encrypted).
    pub backup_stored: u64,
    /// Bytes restores wrote.
    pub restore_written: u64,
}

#[cfg(test)]
mod tests {
    use super::super::tests::at;
    use super::*;

    fn new(kind: TaskKind, origin: Origin, secs: i64) -> NewTask {
        NewTask {
            kind,
            origin,
            store: Some("main".into()),
            scheduled_for: Some(at(secs)),
            started_at: at(secs),
            revision: Some("rev1".into()),
        }
    }

    fn nightly(secs: i64) -> NewTask {
        new(TaskKind::Backup, Origin::Schedule("nightly".into()), secs)
    }

    fn done(status: TaskStatus, secs: i64) -> Outcome {
        Outcome {
            status,
            finished_at: at(secs),
            stats: None,
            error: None,
            snapshot_id: None,
        }
    }

    #[test]
    fn lifecycle_start_finish_and_json_shape() {
        let mut db = StateDb::open_in_memory().expect("open");
        let id = db.start_task(&nightly(0)).expect("start");
        let running = db.get_task(id).expect("get").expect("exists");
        assert_eq!(running.status, TaskStatus::Running);
        assert_eq!((running.finished_at, running.duration_ms), (None, None));

        let outcome = Outcome {
            stats: Some(serde_json::json!({"files": 3, "bytes_added": 42})),
            snapshot_id: Some("ab12".into()),
            ..done(TaskStatus::Succeeded, 90)
        };
        let rec = db.finish_task(id, &outcome).expect("finish");
        assert_eq!(db.get_task(id).expect("get"), Some(rec.clone()));
        assert_eq!(rec.status, TaskStatus::Succeeded);
        assert_eq!(rec.duration_ms, Some(90_000));
        assert_eq!(rec.finished_at, Some(at(90)));

        let json = serde_json::to_value(&rec).expect("json");
        assert_eq!(json["id"], 1);
        assert_eq!(json["kind"], "backup");
        assert_eq!(json["schedule"], "nightly");
        assert_eq!(json["status"], "succeeded");
        assert_eq!(json["started_at"], "2025-06-15T15:06:40.000Z");
        assert_eq!(json["stats"]["bytes_added"], 42);
        assert_eq!(json["error"], serde_json::Value::Null);
        assert!(json.get("task").is_none());
    }

    #[test]
    fn a_run_waiting_for_a_slot_keeps_queued_at_and_starts_later() {
        let mut db = StateDb::open_in_memory().expect("open");
        let id = db.start_task(&nightly(0)).expect("start");
        let queued = db.get_task(id).expect("get").expect("exists");
        assert_eq!((queued.queued_at, queued.started_at), (Some(at(0)), at(0)));
        db.mark_started(id, at(30)).expect("slot");
        let rec = db
            .finish_task(id, &done(TaskStatus::Succeeded, 40))
            .expect("finish");
        assert_eq!((rec.queued_at, rec.started_at), (Some(at(0)), at(30)));
        assert_eq!(rec.duration_ms, Some(10_000), "the wait is not the run");
        let json = serde_json::to_value(&rec).expect("json");
        assert_eq!(json["queued_at"], "2025-06-15T15:06:40.000Z");
        let err = db.mark_started(id, at(50)).expect_err("finished");
        assert!(matches!(err, StateError::TaskNotRunning { .. }), "{err:?}");
        let err = db.mark_started(TaskId(999), at(50)).expect_err("unknown");
        assert!(
            matches!(err, StateError::TaskNotFound(TaskId(999))),
            "{err:?}"
        );
    }

    #[test]
    fn finishing_twice_or_unknown_or_as_running_is_an_error() {
        let mut db = StateDb::open_in_memory().expect("open");
        let id = db.start_task(&nightly(0)).expect("start");
        let failed = Outcome {
            error: Some("store unreachable".into()),
            ..done(TaskStatus::Failed, 5)
        };
        db.finish_task(id, &failed).expect("first finish");
        let err = db
            .finish_task(id, &done(TaskStatus::Succeeded, 6))
            .expect_err("second finish");
        assert!(
            matches!(
                err,
                StateError::TaskNotRunning {
                    status: TaskStatus::Failed,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            db.get_task(id)
                .expect("get")
                .expect("exists")
                .error
                .as_deref(),
            Some("store unreachable"),
            "the first outcome stays"
        );
        let err = db
            .finish_task(TaskId(999), &done(TaskStatus::Failed, 6))
            .expect_err("unknown");
        assert!(
            matches!(err, StateError::TaskNotFound(TaskId(999))),
            "{err:?}"
        );
        let id2 = db.start_task(&nightly(10)).expect("start");
        let err = db
            .finish_task(id2, &done(TaskStatus::Running, 11))
            .expect_err("running is not an outcome");
        assert!(matches!(err, StateError::InvalidArgument(_)), "{err:?}");
    }

    #[test]
    fn skipped_runs_are_recorded_finished_with_a_reason() {
        let mut db = StateDb::open_in_memory().expect("open");
        let id = db
            .record_skipped(&nightly(0), "previous run still going")
            .expect("skip");
        let rec = db.get_task(id).expect("get").expect("exists");
        assert_eq!(rec.status, TaskStatus::Skipped);
        assert_eq!(rec.reason.as_deref(), Some("previous run still going"));
        assert_eq!((rec.finished_at, rec.duration_ms), (Some(at(0)), None));
        assert!(db.finish_task(id, &done(TaskStatus::Failed, 1)).is_err());
    }

    #[test]
    fn filters_and_keyset_paging_newest_first() {
        let mut db = StateDb::open_in_memory().expect("open");
        for i in 0..25 {
            let task = if i % 5 == 0 {
                new(TaskKind::Check, Origin::Task("verify".into()), i)
            } else {
                nightly(i)
            };
            let id = db.start_task(&task).expect("start");
            if i % 2 == 0 {
                db.finish_task(id, &done(TaskStatus::Succeeded, i + 1))
                    .expect("finish");
            }
        }
        let ids = |f: &TaskFilter| -> Vec<i64> {
            db.list_tasks(f)
                .expect("list")
                .iter()
                .map(|t| t.id.0)
                .collect()
        };
        let mut pages = Vec::new();
        let mut before_id = None;
        loop {
            let page = ids(&TaskFilter {
                limit: Some(10),
                before_id,
                ..TaskFilter::default()
            });
            let Some(&last) = page.last() else { break };
            before_id = Some(TaskId(last));
            pages.push(page);
        }
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        assert_eq!(pages.concat(), (1..=25).rev().collect::<Vec<_>>());

        let checks = ids(&TaskFilter {
            kind: Some(TaskKind::Check),
            ..TaskFilter::default()
        });
        assert_eq!(checks, [21, 16, 11, 6, 1]);
        let by_name = ids(&TaskFilter {
            origin_kind: Some(OriginKind::Task),
            origin_name: Some("verify".into()),
            ..TaskFilter::default()
        });
        assert_eq!(by_name, checks);
        let running = ids(&TaskFilter {
            status: Some(TaskStatus::Running),
            since: Some(at(20)),
            ..TaskFilter::default()
        });
        assert_eq!(running, [24, 22]);
        let newest_schedule_run = ids(&TaskFilter {
            origin_name: Some("nightly".into()),
            limit: Some(1),
            ..TaskFilter::default()
        });
        assert_eq!(newest_schedule_run, [25]);
        assert_eq!(
            ids(&TaskFilter {
                limit: Some(0),
                ..TaskFilter::default()
            })
            .len(),
            1,
            "limits are clamped to at least 1"
        );
    }

    #[test]
    fn interrupted_runs_are_failed_once_and_counted() {
        let mut db = StateDb::open_in_memory().expect("open");
        let a = db.start_task(&nightly(0)).expect("start");
        let b = db.start_task(&nightly(1)).expect("start");
        db.finish_task(b, &done(TaskStatus::Succeeded, 2))
            .expect("finish");
        let c = db
            .start_task(&new(TaskKind::Prune, Origin::Schedule("weekly".into()), 3))
            .expect("start");
        let counts = db
            .mark_interrupted_running(INTERRUPTED_ERROR, at(100))
            .expect("mark");
        assert_eq!(counts.tasks, 2);
        for id in [a, c] {
            let rec = db.get_task(id).expect("get").expect("exists");
            assert_eq!(rec.status, TaskStatus::Failed);
            assert_eq!(rec.error.as_deref(), Some(INTERRUPTED_ERROR));
            assert_eq!((rec.finished_at, rec.duration_ms), (Some(at(100)), None));
        }
        let b_rec = db.get_task(b).expect("get").expect("exists");
        assert_eq!(b_rec.status, TaskStatus::Succeeded);
        let again = db
            .mark_interrupted_running(INTERRUPTED_ERROR, at(200))
            .expect("mark");
        assert_eq!(again, InterruptedCounts::default());

        let counts = db.task_counts().expect("counts");
        let tc = |kind, status, count| TaskCount {
            kind,
            status,
            count,
        };
        assert_eq!(
            counts,
            [
                tc(TaskKind::Backup, TaskStatus::Failed, 1),
                tc(TaskKind::Backup, TaskStatus::Succeeded, 1),
                tc(TaskKind::Prune, TaskStatus::Failed, 1),
            ]
        );
    }

    #[test]
    fn ids_are_never_reused() {
        let mut db = StateDb::open_in_memory().expect("open");
        let first = db.start_task(&nightly(0)).expect("start");
        db.conn
            .execute("DELETE FROM task_runs WHERE id = ?1", [first])
            .expect("delete");
        let second = db.start_task(&nightly(1)).expect("start");
        assert!(second > first, "{second} after {first}");
    }
}
