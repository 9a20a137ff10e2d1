//! Per-object state: schedule state (last/next run) and object conditions (ready, reason, since).
//!
//! Invariants: every write is one upsert statement, so it is atomic without a
//! transaction. A condition's `since` changes only when `ready` or `reason`
//! changes. Forgetting a schedule keeps its task runs in the history.

use super::types::{DbTime, DbU64, ObjectKind, TaskStatus, time_serde};
use super::{Result, SqlContext, StateDb, StateError};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

/// What the scheduler remembers about one schedule across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScheduleState {
    pub name: String,
    /// The scheduled (cron) time of the last run that started.
    #[serde(serialize_with = "time_serde::opt_time")]
    pub last_run_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "time_serde::opt_time")]
    pub last_finished_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "time_serde::opt_time")]
    pub last_success_at: Option<DateTime<Utc>>,
    /// When its last failed run ended.
    #[serde(serialize_with = "time_serde::opt_time")]
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_status: Option<TaskStatus>,
    pub last_duration_ms: Option<u64>,
    pub last_bytes_added: Option<u64>,
    pub skipped_count: u64,
    #[serde(serialize_with = "time_serde::opt_time")]
    pub next_run_at: Option<DateTime<Utc>>,
    /// When the daemon began to watch it for `alert_after` (the reference
    /// time while it has never succeeded).
    #[serde(serialize_with = "time_serde::opt_time")]
    pub watch_since: Option<DateTime<Utc>>,
    /// When its current stale episode began (`None`: not stale).
    #[serde(serialize_with = "time_serde::opt_time")]
    pub stale_since: Option<DateTime<Utc>>,
}

const SCHEDULE_COLUMNS: &str = "name, last_run_at, last_finished_at, last_success_at, \
     last_status, last_duration_ms, last_bytes_added, skipped_count, next_run_at, \
     last_failure_at, watch_since, stale_since";

fn schedule_from_row(row: &Row<'_>) -> rusqlite::Result<ScheduleState> {
    let time = |i| -> rusqlite::Result<_> { Ok(row.get::<_, Option<DbTime>>(i)?.map(|t| t.0)) };
    Ok(ScheduleState {
        name: row.get(0)?,
        last_run_at: time(1)?,
        last_finished_at: time(2)?,
        last_success_at: time(3)?,
        last_status: row.get(4)?,
        last_duration_ms: row.get::<_, Option<DbU64>>(5)?.map(|n| n.0),
        last_bytes_added: row.get::<_, Option<DbU64>>(6)?.map(|n| n.0),
        skipped_count: row.get::<_, DbU64>(7)?.0,
        next_run_at: time(8)?,
        last_failure_at: time(9)?,
        watch_since: time(10)?,
        stale_since: time(11)?,
    })
}

/// An object's condition as the reconciler sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub ready: bool,
    /// A short CamelCase cause (`Ready`, `ConnectionFailed`, ...).
    pub reason: String,
    /// Human-readable detail; changing it alone does not move `since`.
    pub message: String,
    /// The configuration revision the condition reflects.
    pub revision: Option<String>,
}

/// A stored condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConditionRecord {
    pub kind: ObjectKind,
    pub name: String,
    pub ready: bool,
    pub reason: String,
    pub message: String,
    /// When `ready` or `reason` last changed.
    #[serde(serialize_with = "time_serde::time")]
    pub since: DateTime<Utc>,
    pub revision: Option<String>,
}

const CONDITION_COLUMNS: &str = "object_kind, name, ready, reason, message, since, revision";

fn condition_from_row(row: &Row<'_>) -> rusqlite::Result<ConditionRecord> {
    Ok(ConditionRecord {
        kind: row.get(0)?,
        name: row.get(1)?,
        ready: row.get(2)?,
        reason: row.get(3)?,
        message: row.get(4)?,
        since: row.get::<_, DbTime>(5)?.0,
        revision: row.get(6)?,
    })
}

impl StateDb {
    /// The state of one schedule, if anything was recorded for it.
    pub fn schedule_state(&self, name: &str) -> Result<Option<ScheduleState>> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedule_state WHERE name = ?1");
        self.conn
            .query_row(&sql, [name], schedule_from_row)
            .optional()
            .op("read schedule state")
    }

    /// Every schedule's state, by name.
    pub fn all_schedule_states(&self) -> Result<Vec<ScheduleState>> {
        const OP: &str = "list schedule states";
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedule_state ORDER BY name");
        let mut stmt = self.conn.prepare(&sql).op(OP)?;
        let rows = stmt.query_map([], schedule_from_row).op(OP)?;
        rows.collect::<rusqlite::Result<_>>().op(OP)
    }

    /// A run of `name` for the cron time `scheduled_for` starts. Record it
    /// before starting the run: after a crash the slot counts as run (a slot
    /// never runs twice; catch-up compares against `last_run_at`).
    pub fn record_schedule_started(
        &mut self,
        name: &str,
        scheduled_for: DateTime<Utc>,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO schedule_state (name, last_run_at) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at",
                params![name, DbTime(scheduled_for)],
            )
            .op("record schedule start")?;
        Ok(())
    }

    /// A run of `name` ended. `last_success_at` moves only on success;
    /// `bytes_added` is `None` for tasks that add nothing (check, prune...).
    pub fn record_schedule_finished(
        &mut self,
        name: &str,
        status: TaskStatus,
        finished_at: DateTime<Utc>,
        duration_ms: u64,
        bytes_added: Option<u64>,
    ) -> Result<()> {
        if status == TaskStatus::Running {
            return Err(StateError::InvalidArgument(format!(
                "schedule {name:?} cannot finish with status running"
            )));
        }
        // A partial backup wrote a snapshot: it is a success for "when was
        // the last one", and its own status says what it missed.
        let success = matches!(status, TaskStatus::Succeeded | TaskStatus::Partial)
            .then_some(DbTime(finished_at));
        let failure = (status == TaskStatus::Failed).then_some(DbTime(finished_at));
        self.conn
            .execute(
                "INSERT INTO schedule_state (name, last_finished_at, last_success_at, \
                 last_status, last_duration_ms, last_bytes_added, last_failure_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (name) DO UPDATE SET \
                 last_finished_at = excluded.last_finished_at, \
                 last_success_at = coalesce(excluded.last_success_at, last_success_at), \
                 last_failure_at = coalesce(excluded.last_failure_at, last_failure_at), \
                 last_status = excluded.last_status, \
                 last_duration_ms = excluded.last_duration_ms, \
                 last_bytes_added = excluded.last_bytes_added",
                params![
                    name,
                    DbTime(finished_at),
                    success,
                    status,
                    DbU64(duration_ms),
                    bytes_added.map(DbU64),
                    failure
                ],
            )
            .op("record schedule finish")?;
        Ok(())
    }

    /// Starts watching `name` for `alert_after` at `now`, unless it already
    /// is watched; returns since when it is.
    pub fn watch_schedule(&mut self, name: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        self.conn
            .query_row(
                "INSERT INTO schedule_state (name, watch_since) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET watch_since = coalesce(watch_since, excluded.watch_since) \
                 RETURNING watch_since",
                params![name, DbTime(now)],
                |r| r.get::<_, DbTime>(0),
            )
            .map(|t| t.0)
            .op("watch schedule")
    }

    /// Begins a stale episode of `name` at `at`, if none is open and its
    /// last success (or, never having succeeded, the start of watching) is
    /// not after `cutoff`. `false` when it is not stale after all (a run
    /// just succeeded) or an episode is already open.
    pub fn begin_stale(
        &mut self,
        name: &str,
        at: DateTime<Utc>,
        cutoff: DateTime<Utc>,
    ) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE schedule_state SET stale_since = ?2 \
                 WHERE name = ?1 AND stale_since IS NULL \
                 AND coalesce(last_success_at, watch_since) <= ?3",
                params![name, DbTime(at), DbTime(cutoff)],
            )
            .op("begin stale episode")?;
        Ok(n > 0)
    }

    /// Ends the stale episode of `name`; returns when it began, if one was
    /// open.
    pub fn end_stale(&mut self, name: &str) -> Result<Option<DateTime<Utc>>> {
        const OP: &str = "end stale episode";
        let tx = super::Tx::begin(&mut self.conn).op(OP)?;
        let was = tx
            .query_row(
                "SELECT stale_since FROM schedule_state WHERE name = ?1",
                [name],
                |r| r.get::<_, Option<DbTime>>(0),
            )
            .optional()
            .op(OP)?
            .flatten();
        if was.is_some() {
            tx.execute(
                "UPDATE schedule_state SET stale_since = NULL WHERE name = ?1",
                [name],
            )
            .op(OP)?;
        }
        tx.commit().op(OP)?;
        Ok(was.map(|t| t.0))
    }

    /// Counts one skipped run of `name`; returns the new count.
    pub fn increment_skipped(&mut self, name: &str) -> Result<u64> {
        self.conn
            .query_row(
                "INSERT INTO schedule_state (name, skipped_count) VALUES (?1, 1) \
                 ON CONFLICT (name) DO UPDATE SET skipped_count = skipped_count + 1 \
                 RETURNING skipped_count",
                [name],
                |r| r.get::<_, DbU64>(0),
            )
            .map(|n| n.0)
            .op("count skipped run")
    }

    /// Sets (or clears, for a paused or unready schedule) the next run time.
    pub fn set_next_run(&mut self, name: &str, next: Option<DateTime<Utc>>) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO schedule_state (name, next_run_at) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET next_run_at = excluded.next_run_at",
                params![name, next.map(DbTime)],
            )
            .op("set next run")?;
        Ok(())
    }

    /// Sets the next run time of many schedules in one transaction.
    pub fn set_next_runs(&mut self, next: &[(String, Option<DateTime<Utc>>)]) -> Result<()> {
        const OP: &str = "set next runs";
        let tx = super::Tx::begin(&mut self.conn).op(OP)?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO schedule_state (name, next_run_at) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO UPDATE SET next_run_at = excluded.next_run_at",
                )
                .op(OP)?;
            for (name, at) in next {
                stmt.execute(params![name, at.map(DbTime)]).op(OP)?;
            }
        }
        tx.commit().op(OP)
    }

    /// Forgets a schedule removed from the configuration. Its task runs stay
    /// in the history. Returns whether there was anything to forget.
    pub fn forget_schedule(&mut self, name: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM schedule_state WHERE name = ?1", [name])
            .op("forget schedule")?;
        Ok(n > 0)
    }

    /// Sets an object's condition; `since` becomes `now` only if `ready` or
    /// `reason` changed (or the object had none). Returns what is stored.
    pub fn set_condition(
        &mut self,
        kind: ObjectKind,
        name: &str,
        condition: &Condition,
        now: DateTime<Utc>,
    ) -> Result<ConditionRecord> {
        self.set_conditions(&[(kind, name.to_string(), condition.clone())], now)?
            .pop()
            .ok_or(StateError::InvalidArgument("no condition stored".into()))
    }

    /// Sets many conditions in one transaction (see [`StateDb::set_condition`]).
    pub fn set_conditions(
        &mut self,
        conditions: &[(ObjectKind, String, Condition)],
        now: DateTime<Utc>,
    ) -> Result<Vec<ConditionRecord>> {
        const OP: &str = "set conditions";
        let sql = format!(
            "INSERT INTO conditions ({CONDITION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (object_kind, name) DO UPDATE SET \
             since = CASE WHEN ready = excluded.ready AND reason = excluded.reason \
                     THEN since ELSE excluded.since END, \
             ready = excluded.ready, reason = excluded.reason, \
             message = excluded.message, revision = excluded.revision \
             RETURNING {CONDITION_COLUMNS}"
        );
        let tx = super::Tx::begin(&mut self.conn).op(OP)?;
        let mut out = Vec::with_capacity(conditions.len());
        {
            let mut stmt = tx.prepare(&sql).op(OP)?;
            for (kind, name, c) in conditions {
                let record = stmt
                    .query_row(
                        params![
                            kind,
                            name,
                            c.ready,
                            c.reason,
                            c.message,
                            DbTime(now),
                            c.revision
                        ],
                        condition_from_row,
                    )
                    .op(OP)?;
                out.push(record);
            }
        }
        tx.commit().op(OP)?;
        Ok(out)
    }

    /// One object's condition.
    pub fn condition(&self, kind: ObjectKind, name: &str) -> Result<Option<ConditionRecord>> {
        let sql = format!(
            "SELECT {CONDITION_COLUMNS} FROM conditions WHERE object_kind = ?1 AND name = ?2"
        );
        self.conn
            .query_row(&sql, params![kind, name], condition_from_row)
            .optional()
            .op("read condition")
    }

    /// Every condition, by kind and name.
    pub fn conditions(&self) -> Result<Vec<ConditionRecord>> {
        const OP: &str = "list conditions";
        let sql = format!("SELECT {CONDITION_COLUMNS} FROM conditions ORDER BY object_kind, name");
        let mut stmt = self.conn.prepare(&sql).op(OP)?;
        let rows = stmt.query_map([], condition_from_row).op(OP)?;
        rows.collect::<rusqlite::Result<_>>().op(OP)
    }

    /// Removes an object's condition (the object left the configuration).
    pub fn remove_condition(&mut self, kind: ObjectKind, name: &str) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "DELETE FROM conditions WHERE object_kind = ?1 AND name = ?2",
                params![kind, name],
            )
            .op("remove condition")?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::at;
    use super::super::{NewTask, Origin, TaskKind};
    use super::*;

    fn cond(ready: bool, reason: &str, message: &str, revision: &str) -> Condition {
        Condition {
            ready,
            reason: reason.into(),
            message: message.into(),
            revision: Some(revision.into()),
        }
    }

    #[test]
    fn a_stale_episode_begins_once_and_ends_once() {
        let mut db = StateDb::open_in_memory().expect("open");
        assert_eq!(db.watch_schedule("nightly", at(10)).expect("watch"), at(10));
        assert_eq!(db.watch_schedule("nightly", at(20)).expect("watch"), at(10));
        assert_eq!(db.end_stale("nightly").expect("end"), None);
        assert!(
            !db.begin_stale("nightly", at(30), at(5))
                .expect("watched since 10"),
            "not stale before alert_after has passed"
        );
        assert!(db.begin_stale("nightly", at(30), at(20)).expect("begin"));
        assert!(!db.begin_stale("nightly", at(40), at(30)).expect("again"));
        let state = db.schedule_state("nightly").expect("get").expect("exists");
        assert_eq!(state.stale_since, Some(at(30)));
        assert_eq!(db.end_stale("nightly").expect("end"), Some(at(30)));
        assert_eq!(db.end_stale("nightly").expect("end"), None);
        db.record_schedule_finished("nightly", TaskStatus::Succeeded, at(60), 1, None)
            .expect("finish");
        assert!(
            !db.begin_stale("nightly", at(61), at(50))
                .expect("a success since"),
            "a success after the cutoff"
        );
        assert!(!db.begin_stale("unknown", at(50), at(50)).expect("no row"));
    }

    #[test]
    fn schedule_state_follows_runs_skips_and_next_time() {
        let mut db = StateDb::open_in_memory().expect("open");
        assert_eq!(db.schedule_state("nightly").expect("get"), None);
        db.set_next_run("nightly", Some(at(3600))).expect("next");
        db.record_schedule_started("nightly", at(3600))
            .expect("start");
        db.record_schedule_finished(
            "nightly",
            TaskStatus::Succeeded,
            at(3700),
            100_000,
            Some(4096),
        )
        .expect("finish");
        assert_eq!(db.increment_skipped("nightly").expect("skip"), 1);
        assert_eq!(db.increment_skipped("nightly").expect("skip"), 2);
        db.record_schedule_started("nightly", at(7200))
            .expect("start");
        db.record_schedule_finished("nightly", TaskStatus::Failed, at(7210), 10_000, None)
            .expect("finish");
        db.set_next_run("nightly", Some(at(10_800))).expect("next");
        let state = db.schedule_state("nightly").expect("get").expect("exists");
        assert_eq!(
            state,
            ScheduleState {
                name: "nightly".into(),
                last_run_at: Some(at(7200)),
                last_finished_at: Some(at(7210)),
                last_success_at: Some(at(3700)),
                last_failure_at: Some(at(7210)),
                last_status: Some(TaskStatus::Failed),
                last_duration_ms: Some(10_000),
                last_bytes_added: None,
                skipped_count: 2,
                next_run_at: Some(at(10_800)),
                watch_since: None,
                stale_since: None,
            }
        );
        db.set_next_run("nightly", None).expect("clear");
        assert_eq!(
            db.schedule_state("nightly")
                .expect("get")
                .expect("exists")
                .next_run_at,
            None
        );
        let json = serde_json::to_value(&state).expect("json");
        assert_eq!(json["last_status"], "failed");
        assert_eq!(json["last_success_at"], "2025-06-15T16:08:20.000Z");
        let err = db
            .record_schedule_finished("nightly", TaskStatus::Running, at(1), 0, None)
            .expect_err("running is not an end");
        assert!(matches!(err, StateError::InvalidArgument(_)), "{err:?}");
    }

    #[test]
    fn forgetting_a_schedule_keeps_its_task_history() {
        let mut db = StateDb::open_in_memory().expect("open");
        db.record_schedule_started("weekly", at(0)).expect("start");
        db.increment_skipped("daily").expect("skip");
        let run = NewTask {
            kind: TaskKind::Check,
            origin: Origin::Schedule("weekly".into()),
            store: None,
            scheduled_for: Some(at(0)),
            started_at: at(0),
            revision: None,
        };
        let id = db.start_task(&run).expect("task");
        let names: Vec<_> = db
            .all_schedule_states()
            .expect("all")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["daily", "weekly"]);
        assert!(db.forget_schedule("weekly").expect("forget"));
        assert!(!db.forget_schedule("weekly").expect("forget again"));
        assert_eq!(db.all_schedule_states().expect("all").len(), 1);
        assert!(db.get_task(id).expect("get").is_some());
    }

    #[test]
    fn condition_since_moves_only_when_ready_or_reason_change() {
        let mut db = StateDb::open_in_memory().expect("open");
        let (kind, name) = (ObjectKind::Store, "main");
        let c = db
            .set_condition(
                kind,
                name,
                &cond(false, "Connecting", "first try", "r1"),
                at(0),
            )
            .expect("set");
        assert_eq!(c.since, at(0));
        // Same ready and reason, new message and revision: since stays.
        let c = db
            .set_condition(
                kind,
                name,
                &cond(false, "Connecting", "retry 2", "r2"),
                at(10),
            )
            .expect("set");
        assert_eq!((c.since, c.message.as_str()), (at(0), "retry 2"));
        assert_eq!(c.revision.as_deref(), Some("r2"));
        // Reason changes: since moves.
        let c = db
            .set_condition(
                kind,
                name,
                &cond(false, "ConnectionFailed", "refused", "r2"),
                at(20),
            )
            .expect("set");
        assert_eq!(c.since, at(20));
        // Ready changes (same reason text): since moves.
        let c = db
            .set_condition(
                kind,
                name,
                &cond(true, "ConnectionFailed", "ok", "r2"),
                at(30),
            )
            .expect("set");
        assert_eq!(c.since, at(30));
        let c = db
            .set_condition(kind, name, &cond(true, "Ready", "opened", "r3"), at(40))
            .expect("set");
        assert_eq!(c.since, at(40));
        let c2 = db
            .set_condition(kind, name, &cond(true, "Ready", "opened", "r3"), at(50))
            .expect("set");
        assert_eq!(c2, c, "an identical update changes nothing");

        db.set_condition(
            ObjectKind::Source,
            "main",
            &cond(true, "Ready", "", "r3"),
            at(5),
        )
        .expect("set");
        let all = db.conditions().expect("all");
        let keys: Vec<_> = all.iter().map(|c| (c.kind, c.name.as_str())).collect();
        assert_eq!(
            keys,
            [(ObjectKind::Source, "main"), (ObjectKind::Store, "main")]
        );
        let json = serde_json::to_value(&all[1]).expect("json");
        assert_eq!(json["kind"], "store");
        assert_eq!(json["ready"], true);
        assert_eq!(json["since"], "2025-06-15T15:07:20.000Z");

        assert!(db.remove_condition(kind, name).expect("remove"));
        assert!(!db.remove_condition(kind, name).expect("remove again"));
        assert_eq!(db.condition(kind, name).expect("get"), None);
        let back = db
            .set_condition(kind, name, &cond(true, "Ready", "opened", "r4"), at(60))
            .expect("set");
        assert_eq!(back.since, at(60), "a re-added object starts afresh");
    }
}
