//! Schema migrations: an append-only list of SQL steps, applied in order by `PRAGMA user_version`.
//!
//! Invariants: migration `N` (1-based position in [`MIGRATIONS`]) moves the
//! database from `user_version = N-1` to `N`, inside one IMMEDIATE transaction
//! that also sets `user_version`, so a crash mid-migration leaves the previous
//! version intact. Several processes opening the same file at once are safe:
//! the version is re-read after the write lock is taken. A released migration
//! is never edited; changes are new entries at the end. A database with a
//! newer `user_version` than [`SCHEMA_VERSION`] is refused.

use super::{Result, SqlContext, StateError};
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

/// One step of the schema history.
#[derive(Debug)]
pub(super) struct Migration {
    /// What the step does (logged when it is applied).
    pub what: &'static str,
    pub sql: &'static str,
}

/// The schema history. Append only.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        what: "task runs, schedule state, one-shot claims, revisions, conditions",
        sql: r#"
-- Every task run, newest = highest id. AUTOINCREMENT: ids are never reused.
-- Times are RFC 3339 UTC text with milliseconds (sortable).
CREATE TABLE task_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,               -- backup, check, sync, restore, prune
    origin_kind   TEXT NOT NULL CHECK (origin_kind IN ('schedule', 'task')),
    origin_name   TEXT NOT NULL,
    store         TEXT,
    status        TEXT NOT NULL
                  CHECK (status IN ('running', 'succeeded', 'failed', 'skipped', 'cancelled')),
    reason        TEXT,                        -- why it was skipped
    scheduled_for TEXT,                        -- the cron time it ran for (schedules)
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    duration_ms   INTEGER CHECK (duration_ms >= 0),
    stats_json    TEXT,                        -- opaque JSON
    error         TEXT,
    snapshot_id   TEXT,
    revision      TEXT,                        -- config revision it ran under
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX task_runs_running ON task_runs (id) WHERE status = 'running';
CREATE INDEX task_runs_origin ON task_runs (origin_name, id);

-- Per schedule: what the scheduler needs across restarts and status shows.
CREATE TABLE schedule_state (
    name             TEXT PRIMARY KEY,
    last_run_at      TEXT,                     -- scheduled time of the last run that started
    last_finished_at TEXT,
    last_success_at  TEXT,
    last_status      TEXT,
    last_duration_ms INTEGER,
    last_bytes_added INTEGER,
    skipped_count    INTEGER NOT NULL DEFAULT 0,
    next_run_at      TEXT
) WITHOUT ROWID;

-- One-shot tasks: at most one claim per (name, content hash), ever.
CREATE TABLE oneshot (
    name         TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('started', 'done', 'interrupted')),
    task_id      INTEGER NOT NULL REFERENCES task_runs (id),
    status       TEXT,                         -- result, once not started
    claimed_at   TEXT NOT NULL,
    finished_at  TEXT,
    PRIMARY KEY (name, content_hash),
    CHECK ((state = 'started') = (status IS NULL))
) WITHOUT ROWID;
CREATE INDEX oneshot_task ON oneshot (task_id);

-- Configuration revisions: every attempt, and which one is applied.
CREATE TABLE revisions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    hash              TEXT NOT NULL,
    first_attempted_at TEXT NOT NULL,
    attempted_at      TEXT NOT NULL,           -- last time this same attempt was made
    valid             INTEGER NOT NULL CHECK (valid IN (0, 1)),
    errors_json       TEXT,
    applied_at        TEXT
);
CREATE INDEX revisions_hash ON revisions (hash, id);

-- Per-object conditions; since = when ready or reason last changed.
CREATE TABLE conditions (
    object_kind TEXT NOT NULL,
    name        TEXT NOT NULL,
    ready       INTEGER NOT NULL CHECK (ready IN (0, 1)),
    reason      TEXT NOT NULL,
    message     TEXT NOT NULL,
    since       TEXT NOT NULL,
    revision    TEXT,
    PRIMARY KEY (object_kind, name)
) WITHOUT ROWID;
"#,
    },
    Migration {
        what: "fingerprints of the applied configuration's objects (for `klosetd plan`)",
        sql: r#"
-- The applied configuration, object by object: replaced as a whole when a
-- revision is applied. `fingerprint` is a hash of the validated object
-- (without where it was declared), so a plan can say added/changed/removed.
CREATE TABLE applied_objects (
    object_kind TEXT NOT NULL,
    name        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    definition  TEXT NOT NULL,                 -- the validated object as JSON (no secrets)
    PRIMARY KEY (object_kind, name)
) WITHOUT ROWID;
"#,
    },
    Migration {
        what: "queued_at of task runs: when a run was due or claimed, before it got a task slot",
        sql: r#"
-- started_at becomes the moment a run got its max_concurrent_tasks permit;
-- queued_at is when it was due (schedules) or claimed (one-shots). Runs
-- recorded before this step waited for no slot as far as anyone knows.
ALTER TABLE task_runs ADD COLUMN queued_at TEXT;
UPDATE task_runs SET queued_at = started_at;
"#,
    },
    Migration {
        what: "the partial status of task runs (a backup that wrote a snapshot but missed files)",
        sql: r#"
-- SQLite cannot change a CHECK constraint: the table is rebuilt (foreign
-- keys are off during migrations; foreign_key_check runs before commit).
-- Ids and the AUTOINCREMENT counter are kept, so ids are never reused.
CREATE TABLE task_runs_v4 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    origin_kind   TEXT NOT NULL CHECK (origin_kind IN ('schedule', 'task')),
    origin_name   TEXT NOT NULL,
    store         TEXT,
    status        TEXT NOT NULL
                  CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'skipped', 'cancelled')),
    reason        TEXT,
    scheduled_for TEXT,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    duration_ms   INTEGER CHECK (duration_ms >= 0),
    stats_json    TEXT,
    error         TEXT,
    snapshot_id   TEXT,
    revision      TEXT,
    queued_at     TEXT,
    CHECK ((status = 'running') = (finished_at IS NULL))
);
INSERT INTO task_runs_v4 (id, kind, origin_kind, origin_name, store, status, reason,
    scheduled_for, started_at, finished_at, duration_ms, stats_json, error, snapshot_id,
    revision, queued_at)
SELECT id, kind, origin_kind, origin_name, store, status, reason,
    scheduled_for, started_at, finished_at, duration_ms, stats_json, error, snapshot_id,
    revision, queued_at
FROM task_runs;
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'task_runs_v4', 0
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'task_runs_v4');
UPDATE sqlite_sequence
    SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'task_runs'), 0))
    WHERE name = 'task_runs_v4';
DROP TABLE task_runs;
ALTER TABLE task_runs_v4 RENAME TO task_runs;
CREATE INDEX task_runs_running ON task_runs (id) WHERE status = 'running';
CREATE INDEX task_runs_origin ON task_runs (origin_name, id);
"#,
    },
    Migration {
        what: "when each schedule last failed (for alerting on a failed last run)",
        sql: r#"
ALTER TABLE schedule_state ADD COLUMN last_failure_at TEXT;
UPDATE schedule_state SET last_failure_at = (
    SELECT max(finished_at) FROM task_runs
    WHERE origin_kind = 'schedule' AND origin_name = schedule_state.name
      AND status = 'failed'
);
"#,
    },
    Migration {
        what: "the notification queue, and staleness episodes of schedules (alert_after)",
        sql: r#"
-- One row per message to one channel: queued in the same transaction as the
-- outcome it reports, so a recorded outcome always has its notifications.
-- Delivered (delivered_at) or dropped (dropped_at, with why) at most once;
-- until then retried at next_attempt_at with backoff.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    uid             TEXT NOT NULL UNIQUE,         -- the body's id (receivers deduplicate by it)
    channel         TEXT NOT NULL,                -- the [notify.NAME]
    event           TEXT NOT NULL
                    CHECK (event IN ('start', 'success', 'failure', 'partial', 'recovery', 'stale')),
    body_json       TEXT NOT NULL,                -- the webhook body (no secrets)
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TEXT NOT NULL,
    last_attempt_at TEXT,
    last_error      TEXT,
    delivered_at    TEXT,
    dropped_at      TEXT,
    CHECK (delivered_at IS NULL OR dropped_at IS NULL)
);
CREATE INDEX notifications_due ON notifications (next_attempt_at)
    WHERE delivered_at IS NULL AND dropped_at IS NULL;

-- alert_after: watch_since = when the daemon began to watch a schedule that
-- never succeeded; stale_since = when the current stale episode began (NULL:
-- not stale), so a stale notification is sent once per episode.
ALTER TABLE schedule_state ADD COLUMN watch_since TEXT;
ALTER TABLE schedule_state ADD COLUMN stale_since TEXT;
"#,
    },
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Brings the database to [`SCHEMA_VERSION`], or refuses a newer one.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    migrate_with(conn, path, MIGRATIONS)
}

fn migrate_with(conn: &mut Connection, path: &Path, migrations: &[Migration]) -> Result<()> {
    let known = migrations.len() as i64;
    loop {
        // Checked before and again under the write lock: another process may
        // be migrating the same file right now.
        let found = user_version(conn).op("read user_version")?;
        if found > known {
            return Err(too_new(path, found, known));
        }
        if found == known {
            return Ok(());
        }
        let failed = |source| StateError::Migration {
            path: path.to_owned(),
            version: found + 1,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let current = user_version(&tx).map_err(failed)?;
        if current != found {
            // Someone else migrated meanwhile; look again.
            continue;
        }
        let step = usize::try_from(current)
            .ok()
            .and_then(|i| migrations.get(i))
            .ok_or_else(|| StateError::InvalidArgument(format!("bad user_version {current}")))?;
        tx.execute_batch(step.sql).map_err(failed)?;
        // Steps that rebuild a table run with foreign keys off (see
        // `StateDb::setup`): nothing may be left dangling.
        let dangling: i64 = tx
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(failed)?;
        if dangling > 0 {
            return Err(StateError::InvalidArgument(format!(
                "migration to schema version {} left {dangling} dangling reference(s)",
                current + 1
            )));
        }
        tx.pragma_update(None, "user_version", current + 1)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(
            path = %path.display(),
            version = current + 1,
            what = step.what,
            "state database migrated"
        );
    }
}

fn too_new(path: &Path, found: i64, known: i64) -> StateError {
    StateError::TooNew {
        path: path.to_owned(),
        found,
        known,
    }
}

#[cfg(test)]
mod tests {
    use super::super::StateDb;
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    #[test]
    fn empty_database_is_migrated_to_latest() {
        let db = StateDb::open_in_memory().expect("open");
        assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
        assert_eq!(
            tables(&db.conn),
            [
                "applied_objects",
                "conditions",
                "notifications",
                "oneshot",
                "revisions",
                "schedule_state",
                "sqlite_sequence",
                "task_runs"
            ]
        );
    }

    #[test]
    fn reopen_is_idempotent_and_keeps_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            let db = StateDb::open(&path).expect("open");
            db.conn
                .execute("INSERT INTO schedule_state (name) VALUES ('nightly')", [])
                .expect("insert");
        }
        for _ in 0..2 {
            let db = StateDb::open(&path).expect("reopen");
            assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
            let n: i64 = db
                .conn
                .query_row("SELECT count(*) FROM schedule_state", [], |r| r.get(0))
                .expect("count");
            assert_eq!(n, 1);
        }
    }

    #[test]
    fn newer_database_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        drop(StateDb::open(&path).expect("open"));
        {
            let conn = Connection::open(&path).expect("raw open");
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .expect("bump");
        }
        let err = StateDb::open(&path).expect_err("newer must be refused");
        assert!(
            matches!(err, StateError::TooNew { found, known, .. }
                if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("newer klosetd"), "{msg}");
        assert!(msg.contains("state.db"), "{msg}");
    }

    #[test]
    fn steps_apply_in_order_and_a_failed_step_changes_nothing() {
        let path = Path::new(":memory:");
        let mut conn = Connection::open_in_memory().expect("open");
        let steps = [
            Migration {
                what: "one",
                sql: "CREATE TABLE a (x INTEGER);",
            },
            Migration {
                what: "two",
                sql: "ALTER TABLE a ADD COLUMN y TEXT;",
            },
        ];
        migrate_with(&mut conn, path, &steps[..1]).expect("first");
        assert_eq!(user_version(&conn).expect("v"), 1);
        migrate_with(&mut conn, path, &steps).expect("second");
        assert_eq!(user_version(&conn).expect("v"), 2);
        conn.execute("INSERT INTO a (x, y) VALUES (1, 'z')", [])
            .expect("both columns exist");

        let broken = [
            Migration {
                what: "one",
                sql: "CREATE TABLE a (x INTEGER);",
            },
            Migration {
                what: "two",
                sql: "ALTER TABLE a ADD COLUMN y TEXT;",
            },
            Migration {
                what: "half-broken",
                sql: "CREATE TABLE b (x INTEGER); SELECT * FROM missing;",
            },
        ];
        let err = migrate_with(&mut conn, path, &broken).expect_err("broken step");
        assert!(
            matches!(err, StateError::Migration { version: 3, .. }),
            "{err:?}"
        );
        assert_eq!(user_version(&conn).expect("v"), 2, "version unchanged");
        assert!(!tables(&conn).contains(&"b".to_owned()), "step rolled back");
    }

    /// A database exactly as the release before the `partial` status left
    /// it (the first three steps are that release's, unchanged): it opens,
    /// reads the same, keeps its ids and one-shot references, never reuses
    /// an id, and takes the new status.
    #[test]
    fn a_database_of_the_previous_release_is_migrated_and_reads_the_same() {
        use crate::state::{NewTask, Origin, Outcome, TaskFilter, TaskId, TaskKind, TaskStatus};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            let mut conn = Connection::open(&path).expect("open");
            migrate_with(&mut conn, &path, &MIGRATIONS[..3]).expect("previous schema");
            conn.execute_batch(
                "INSERT INTO task_runs (id, kind, origin_kind, origin_name, store, status, \
                   started_at, finished_at, duration_ms, stats_json, error, snapshot_id, queued_at) VALUES \
                 (1, 'backup', 'schedule', 'nightly', 'main', 'succeeded', \
                   '2026-12-01T02:00:00.000Z', '2026-12-01T02:00:05.000Z', 5000, \
                   '{\"bytes_added\": 42}', NULL, 'abc123', '2026-12-01T02:00:00.000Z'), \
                 (2, 'restore', 'task', 'once', 'main', 'failed', \
                   '2026-12-02T02:00:00.000Z', '2026-12-02T02:00:01.000Z', 1000, \
                   NULL, 'no space', NULL, '2026-12-02T02:00:00.000Z'), \
                 (3, 'check', 'schedule', 'weekly', 'main', 'succeeded', \
                   '2026-12-03T02:00:00.000Z', '2026-12-03T02:00:01.000Z', 1000, \
                   NULL, NULL, NULL, '2026-12-03T02:00:00.000Z');
                 INSERT INTO task_runs (id, kind, origin_kind, origin_name, store, status, \
                   started_at, finished_at, duration_ms, error, queued_at) VALUES \
                 (5, 'backup', 'schedule', 'nightly', 'main', 'failed', \
                   '2026-12-04T02:00:00.000Z', '2026-12-04T02:00:03.000Z', 3000, 'unreachable', \
                   '2026-12-04T02:00:00.000Z'), \
                 (7, 'check', 'task', 'verify', 'main', 'succeeded', \
                   '2026-12-05T02:00:00.000Z', '2026-12-05T02:00:03.000Z', 3000, NULL, \
                   '2026-12-05T02:00:00.000Z');
                 INSERT INTO schedule_state (name, last_finished_at, last_success_at, last_status) \
                   VALUES ('nightly', '2026-12-04T02:00:03.000Z', '2026-12-01T02:00:05.000Z', 'failed');
                 INSERT INTO oneshot (name, content_hash, state, task_id, status, claimed_at, finished_at) \
                   VALUES ('once', 'h1', 'done', 2, 'failed', '2026-12-02T02:00:00.000Z', '2026-12-02T02:00:01.000Z');
                 DELETE FROM task_runs WHERE id IN (3, 7);",
            )
            .expect("previous release's rows");
        }
        let mut db = StateDb::open(&path).expect("migrate");
        assert_eq!(db.schema_version().expect("version"), SCHEMA_VERSION);
        let runs = db.list_tasks(&TaskFilter::default()).expect("list");
        let ids: Vec<i64> = runs.iter().map(|r| r.id.0).collect();
        assert_eq!(ids, [5, 2, 1], "newest first, ids kept");
        let backup = db.get_task(TaskId(1)).expect("get").expect("run 1");
        assert_eq!(backup.status, TaskStatus::Succeeded);
        assert_eq!(backup.snapshot_id.as_deref(), Some("abc123"));
        assert_eq!(backup.stats, Some(serde_json::json!({"bytes_added": 42})));
        let nightly = db.schedule_state("nightly").expect("get").expect("nightly");
        assert_eq!(
            nightly.last_success_at,
            Some("2026-12-01T02:00:05Z".parse().expect("time"))
        );
        assert_eq!(
            nightly.last_failure_at,
            Some("2026-12-04T02:00:03Z".parse().expect("time")),
            "backfilled from the history"
        );
        let failed = db.get_task(TaskId(2)).expect("get").expect("run 2");
        assert_eq!(failed.error.as_deref(), Some("no space"));
        let dangling: i64 = db
            .conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .expect("fk check");
        assert_eq!(dangling, 0);
        let fk: i64 = db
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .expect("fk pragma");
        assert_eq!(fk, 1, "foreign keys are on again after migrating");
        let new = NewTask {
            kind: TaskKind::Backup,
            origin: Origin::Schedule("nightly".into()),
            store: Some("main".into()),
            scheduled_for: None,
            started_at: "2026-12-06T02:00:00Z".parse().expect("time"),
            revision: None,
        };
        let id = db.start_task(&new).expect("start");
        assert_eq!(id.0, 8, "an id deleted before the migration is not reused");
        let outcome = Outcome {
            status: TaskStatus::Partial,
            finished_at: "2026-12-06T02:00:09Z".parse().expect("time"),
            stats: None,
            error: Some("2 files could not be read".into()),
            snapshot_id: Some("def456".into()),
        };
        let rec = db
            .finish_task(id, &outcome)
            .expect("partial is a status now");
        assert_eq!(rec.status, TaskStatus::Partial);
        assert_eq!(db.integrity_check().expect("check"), "ok");
    }
}
