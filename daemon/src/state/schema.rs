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
}
