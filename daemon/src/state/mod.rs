//! Persistent daemon state in SQLite (task history, schedule state, one-shot results, revisions, conditions).
//!
//! One database file, [`DB_FILE_NAME`] in `state_dir`, opened by [`StateDb`]. SQLite
//! is never touched from an async runtime thread: the daemon wraps its
//! [`StateDb`] in a [`StateHandle`], which owns a dedicated OS thread and runs
//! closures on it.
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous=NORMAL`. Every public write
//! method is one SQLite transaction: it happens entirely or not at all. A commit
//! lands in the WAL file (the OS page cache) before the method returns, so a
//! process crash, `kill -9` included, loses nothing that was reported committed.
//! A power loss or kernel crash may roll back the last few transactions (the WAL
//! is only fsynced at checkpoints), but never corrupts the database.
//!
//! # Conventions
//!
//! - **Times** are `DateTime<Utc>`, stored as RFC 3339 text in UTC with
//!   millisecond precision and a `Z` suffix (`2025-01-31T02:00:00.000Z`): fixed
//!   width, so text order is time order. Sub-millisecond parts are dropped on
//!   write. JSON output uses the same format.
//! - **The caller supplies every time** (the daemon's injected clock), so tests
//!   are deterministic and the module never reads the wall clock.
//! - **Opaque JSON** (task stats, config errors) is a `serde_json::Value`, stored
//!   as text and emitted as JSON, not as an escaped string.
//! - **Errors** are [`StateError`]; every SQLite error carries the operation.
//!
//! # Policies
//!
//! - Task ids come from `AUTOINCREMENT` and are never reused, even after rows
//!   are deleted. Only a `running` task can be finished, exactly once.
//! - At start the daemon calls [`StateDb::mark_interrupted_running`]: every task
//!   still `running` belonged to a previous process that died; it becomes
//!   `failed` with [`INTERRUPTED_ERROR`].
//! - One-shot tasks run at most once per (name, content hash): see
//!   [`StateDb::oneshot_claim`]. A claim interrupted by a crash is reported as
//!   [`Claim::Interrupted`] forever and never re-run; changing the task's
//!   content (a new hash) makes a new one-shot task.
//! - A database whose `user_version` is newer than this build knows is refused
//!   (no silent downgrade); older ones are migrated forward on open.

use rusqlite::{Connection, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod handle;
mod notifications;
mod objects;
mod oneshot;
mod recover;
mod revisions;
mod schema;
mod tasks;
mod types;

pub use handle::StateHandle;
pub use notifications::{
    ChannelHealth, NewNotification, NotificationId, QueuedNotification, RETAIN_FINISHED,
};
pub use objects::{Condition, ConditionRecord, ScheduleState};
pub use oneshot::{Claim, OneshotRecord};
pub use recover::{MovedAside, moved_aside, open_or_recover};
pub use revisions::{AppliedObject, KEEP_REVISIONS, RevisionId, RevisionRecord};
pub use schema::SCHEMA_VERSION;
pub use tasks::{
    ByteTotals, DEFAULT_LIST_LIMIT, INTERRUPTED_ERROR, InterruptedCounts, MAX_LIST_LIMIT, NewTask,
    Outcome, TaskCount, TaskFilter, TaskRecord,
};
pub use types::{
    NotifyEvent, ObjectKind, OneshotState, Origin, OriginKind, ParseEnumError, TaskId, TaskKind,
    TaskStatus,
};

/// Result alias of this module.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// The database's file name inside `state_dir`.
pub const DB_FILE_NAME: &str = "state.db";

/// How long a connection waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything that can go wrong in the state module.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the state directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the state database {} ({step}): {source}", path.display())]
    Open {
        path: PathBuf,
        step: &'static str,
        source: rusqlite::Error,
    },
    #[error(
        "the state database {} has schema version {found}, but this klosetd knows versions up to \
         {known}: it was written by a newer klosetd; run that version, or move the file away to \
         start with empty state",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("state database {}: migration to schema version {version} failed: {source}", path.display())]
    Migration {
        path: PathBuf,
        version: i64,
        source: rusqlite::Error,
    },
    #[error("state database: {op}: {source}")]
    Sqlite {
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error("task {0} does not exist")]
    TaskNotFound(TaskId),
    #[error("task {id} is already {status}; only a running task can be finished")]
    TaskNotRunning { id: TaskId, status: TaskStatus },
    #[error("configuration revision {hash} has no valid attempt to mark applied")]
    RevisionNotAttempted { hash: String },
    #[error("invalid state request: {0}")]
    InvalidArgument(String),
    #[error("cannot move the corrupt state database {} aside: {source}", path.display())]
    MoveAside {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the state thread: {0}")]
    Spawn(std::io::Error),
    #[error("the state thread is gone (stopped, or the request panicked)")]
    Unavailable,
}

impl StateError {
    /// Whether SQLite found the file damaged or not a database at all.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self.sqlite_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        )
    }

    /// Whether the disk under the database is full.
    pub fn is_disk_full(&self) -> bool {
        self.sqlite_code() == Some(rusqlite::ErrorCode::DiskFull)
    }

    fn sqlite_code(&self) -> Option<rusqlite::ErrorCode> {
        match self {
            StateError::Sqlite { source, .. }
            | StateError::Open { source, .. }
            | StateError::Migration { source, .. } => source.sqlite_error_code(),
            _ => None,
        }
    }

    /// Whether trying again later can help (another connection held the lock
    /// for longer than the busy timeout).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.sqlite_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

/// Adds the operation name to SQLite errors.
trait SqlContext<T> {
    fn op(self, op: &'static str) -> Result<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn op(self, op: &'static str) -> Result<T> {
        self.map_err(|source| StateError::Sqlite { op, source })
    }
}

/// The persistent state: one SQLite connection. Synchronous; use it through a
/// [`StateHandle`] from async code.
#[derive(Debug)]
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
}

impl StateDb {
    /// Opens (creating it and its parent directories if needed) the database
    /// at `path`, configures it and migrates it to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<StateDb> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|source| StateError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| StateError::Open {
            path: path.to_owned(),
            step: "open",
            source,
        })?;
        Self::setup(conn, path.to_owned(), true)
    }

    /// Opens an existing database read-only, without migrating it (for
    /// tools such as `klosetd plan` that look at a running daemon's state).
    /// A database newer than this build is refused like in [`StateDb::open`].
    pub fn open_read_only(path: &Path) -> Result<StateDb> {
        let step = |step| {
            let path = path.to_owned();
            move |source| StateError::Open { path, step, source }
        };
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(step("open read-only"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(step("set busy_timeout"))?;
        let found = schema::user_version(&conn).map_err(step("read user_version"))?;
        if found > SCHEMA_VERSION {
            return Err(StateError::TooNew {
                path: path.to_owned(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        Ok(StateDb {
            conn,
            path: path.to_owned(),
        })
    }

    /// Opens a private in-memory database (tests, `--dry-run` style tools).
    pub fn open_in_memory() -> Result<StateDb> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StateError::Open {
            path: path.clone(),
            step: "open",
            source,
        })?;
        Self::setup(conn, path, false)
    }

    fn setup(mut conn: Connection, path: PathBuf, file_backed: bool) -> Result<StateDb> {
        let step = |step| {
            let path = path.clone();
            move |source| StateError::Open { path, step, source }
        };
        // Set first: the pragmas below may already need to wait for a lock.
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(step("set busy_timeout"))?;
        let mode = enable_wal(&conn).map_err(step("set journal_mode=WAL"))?;
        if file_backed && !mode.eq_ignore_ascii_case("wal") {
            return Err(StateError::InvalidArgument(format!(
                "the state database {} cannot use WAL (journal mode stayed {mode:?}); \
                 put state_dir on a local file system",
                path.display()
            )));
        }
        // WAL + NORMAL: a commit is in the WAL (OS page cache) when it returns,
        // so a process crash or kill -9 loses nothing committed; only a power
        // loss or OS crash can roll back the last transactions (the WAL is
        // fsynced at checkpoints). Either way the database is never corrupted.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(step("set synchronous=NORMAL"))?;
        // Write transactions take the write lock at BEGIN, so two connections
        // never deadlock upgrading a read lock (which would fail at once
        // instead of waiting for the busy timeout).
        conn.set_transaction_behavior(TransactionBehavior::Immediate);
        // Migrations run with foreign keys off, as SQLite requires for
        // rebuilding a referenced table (the pragma is a no-op inside a
        // transaction); each step checks for dangling references itself.
        conn.pragma_update(None, "foreign_keys", "OFF")
            .map_err(step("set foreign_keys=OFF"))?;
        schema::migrate(&mut conn, &path)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(step("set foreign_keys=ON"))?;
        Ok(StateDb { conn, path })
    }

    /// The database file (`:memory:` for an in-memory database).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database (always [`SCHEMA_VERSION`]).
    pub fn schema_version(&self) -> Result<i64> {
        schema::user_version(&self.conn).op("read user_version")
    }

    /// Makes this connection refuse writes, or lets it write again: how
    /// in-process tests make the state database fail for a moment.
    #[cfg(test)]
    pub(crate) fn set_read_only(&self, on: bool) -> Result<()> {
        self.conn
            .pragma_update(None, "query_only", on)
            .op("set query_only")
    }

    /// Runs `f` as one transaction: everything it writes lands together or
    /// not at all (the methods it calls nest inside as savepoints). An
    /// error or a panic in `f` rolls all of it back.
    pub fn atomically<R>(&mut self, f: impl FnOnce(&mut StateDb) -> Result<R>) -> Result<R> {
        const OP: &str = "run a transaction";
        if !self.conn.is_autocommit() {
            return f(self); // already inside one
        }
        self.conn.execute_batch("BEGIN IMMEDIATE").op(OP)?;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        match result {
            Ok(Ok(value)) => {
                if let Err(e) = self.conn.execute_batch("COMMIT") {
                    self.rollback_atomically();
                    return Err(StateError::Sqlite { op: OP, source: e });
                }
                Ok(value)
            }
            Ok(Err(e)) => {
                self.rollback_atomically();
                Err(e)
            }
            Err(panic) => {
                self.rollback_atomically();
                std::panic::resume_unwind(panic)
            }
        }
    }

    fn rollback_atomically(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!("state database: rolling back a transaction failed: {e}");
        }
    }

    /// Runs `PRAGMA quick_check`: `None` when the file is sound, else
    /// SQLite's findings. Reads every page, but not the index contents.
    pub fn quick_check(&self) -> Result<Option<String>> {
        let findings = self.pragma_lines("PRAGMA quick_check", "quick check")?;
        Ok((findings != "ok").then_some(findings))
    }

    /// Runs `PRAGMA integrity_check`; returns `"ok"` or SQLite's findings.
    pub fn integrity_check(&self) -> Result<String> {
        self.pragma_lines("PRAGMA integrity_check", "integrity check")
    }

    fn pragma_lines(&self, sql: &str, op: &'static str) -> Result<String> {
        let mut stmt = self.conn.prepare(sql).op(op)?;
        let lines = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .op(op)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .op(op)?;
        Ok(lines.join("\n"))
    }
}

/// A write transaction: IMMEDIATE at the top level (the connection's
/// default), a savepoint inside [`StateDb::atomically`].
enum Tx<'c> {
    Top(rusqlite::Transaction<'c>),
    Nested(rusqlite::Savepoint<'c>),
}

impl<'c> Tx<'c> {
    fn begin(conn: &'c mut Connection) -> rusqlite::Result<Tx<'c>> {
        if conn.is_autocommit() {
            conn.transaction().map(Tx::Top)
        } else {
            conn.savepoint().map(Tx::Nested)
        }
    }

    fn commit(self) -> rusqlite::Result<()> {
        match self {
            Tx::Top(t) => t.commit(),
            Tx::Nested(s) => s.commit(),
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Tx::Top(t) => t,
            Tx::Nested(s) => s,
        }
    }
}

/// Switches to WAL (persistent in the file; a no-op once done) and returns
/// the resulting mode. Converting a fresh file while another connection opens
/// it can fail with SQLITE_BUSY *without* consulting the busy handler, so
/// that case is retried here, with backoff, up to [`BUSY_TIMEOUT`].
fn enable_wal(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            done => return done,
        }
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::types::{DbTime, format_time};
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};

    pub(crate) fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_750_000_000 + secs, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn times_are_stored_sortable_with_millis() {
        let t = Utc
            .timestamp_millis_opt(1_750_000_000_123)
            .single()
            .expect("valid");
        assert_eq!(format_time(&t), "2025-06-15T15:06:40.123Z");
        let db = StateDb::open_in_memory().expect("open");
        let back: DbTime = db
            .conn
            .query_row("SELECT ?1", [DbTime(t)], |r| r.get(0))
            .expect("roundtrip");
        assert_eq!(back.0, t);
        assert!(format_time(&at(0)) < format_time(&at(1)));
        assert!(format_time(&at(9)) < format_time(&at(10)));
    }

    #[test]
    fn opens_file_in_wal_mode_and_creates_parents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/state.db");
        let db = StateDb::open(&path).expect("open");
        let mode: String = db
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let sync: i64 = db
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("sync");
        assert_eq!(sync, 1, "NORMAL");
        let fk: i64 = db
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .expect("fk");
        assert_eq!(fk, 1);
        assert_eq!(db.integrity_check().expect("check"), "ok");
        assert_eq!(db.path(), path);
    }

    #[test]
    fn enum_text_roundtrip_and_errors() {
        for k in TaskKind::ALL {
            assert_eq!(k.as_str().parse::<TaskKind>(), Ok(*k));
        }
        let err = "nap".parse::<TaskStatus>().expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown task status \"nap\" (expected one of: running, succeeded, partial, failed, skipped, cancelled)"
        );
        assert_eq!(
            serde_json::to_string(&TaskStatus::Cancelled).expect("json"),
            "\"cancelled\""
        );
        let back: TaskKind = serde_json::from_str("\"prune\"").expect("json");
        assert_eq!(back, TaskKind::Prune);
    }

    #[test]
    fn busy_errors_are_retryable() {
        let busy = StateError::Sqlite {
            op: "x",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                None,
            ),
        };
        assert!(busy.is_retryable());
        assert!(!StateError::Unavailable.is_retryable());
    }
}
