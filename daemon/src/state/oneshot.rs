//! One-shot tasks (`[task.NAME]`): each (name, content hash) runs at most once, ever; its result is kept.
//!
//! Policy:
//! - [`StateDb::oneshot_claim`] is the only way to start a one-shot run. In
//!   one IMMEDIATE transaction it either finds the existing claim or records
//!   the claim *and* its `running` task run, so two callers (threads or
//!   processes) never both get [`Claim::New`], and a claim always has a run.
//! - [`StateDb::finish_task`] completes the claim in the same transaction as
//!   the run, so a crash cannot leave a finished run with an open claim.
//!   Whatever the outcome (failed and cancelled included) the claim is done:
//!   it is shown with its status and not run again.
//! - A claim still `started` when the daemon restarts belongs to a run that
//!   died with the old process: [`StateDb::mark_interrupted_running`] turns
//!   it into `interrupted` (status `failed`) and the run into `failed`.
//!   From then on the claim answers [`Claim::Interrupted`]: the daemon shows
//!   it and does **not** run it again (a restore may have been half done; an
//!   operator decides). Editing the task changes its content hash, which is a
//!   new one-shot task and runs once.
//! - Claims are kept when the task leaves the configuration, so putting the
//!   same content back does not run it again.

use super::tasks::{NewTask, insert_task};
use super::types::{DbTime, OneshotState, Origin, TaskId, TaskStatus, time_serde};
use super::{Result, SqlContext, StateDb, StateError};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

/// The answer to [`StateDb::oneshot_claim`].
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Never run before: it is now claimed and its run recorded as `running`
    /// with this id. Run it, then call [`StateDb::finish_task`].
    New(TaskId),
    /// Its run is going right now.
    InProgress(OneshotRecord),
    /// It ran to an end (`status` says how). Do not run it again.
    AlreadyDone(OneshotRecord),
    /// The daemon died while it ran; recorded as failed. Do not run it again.
    Interrupted(OneshotRecord),
}

/// A one-shot claim as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OneshotRecord {
    pub name: String,
    pub content_hash: String,
    pub state: OneshotState,
    /// The run that executes (or executed) it.
    pub task_id: TaskId,
    /// How the run ended; `None` while `started`.
    pub status: Option<TaskStatus>,
    #[serde(serialize_with = "time_serde::time")]
    pub claimed_at: DateTime<Utc>,
    #[serde(serialize_with = "time_serde::opt_time")]
    pub finished_at: Option<DateTime<Utc>>,
}

const ONESHOT_COLUMNS: &str = "name, content_hash, state, task_id, status, claimed_at, finished_at";

fn oneshot_from_row(row: &Row<'_>) -> rusqlite::Result<OneshotRecord> {
    Ok(OneshotRecord {
        name: row.get(0)?,
        content_hash: row.get(1)?,
        state: row.get(2)?,
        task_id: row.get(3)?,
        status: row.get(4)?,
        claimed_at: row.get::<_, DbTime>(5)?.0,
        finished_at: row.get::<_, Option<DbTime>>(6)?.map(|t| t.0),
    })
}

impl StateDb {
    /// Claims the one-shot task `name` with this content, atomically: see
    /// [`Claim`]. `task` describes the run to record on [`Claim::New`]; its
    /// origin must be `Origin::Task(name)`.
    pub fn oneshot_claim(
        &mut self,
        name: &str,
        content_hash: &str,
        task: &NewTask,
    ) -> Result<Claim> {
        const OP: &str = "claim one-shot task";
        if task.origin != Origin::Task(name.to_owned()) {
            return Err(StateError::InvalidArgument(format!(
                "one-shot task {name:?} claimed with origin {:?}",
                task.origin
            )));
        }
        let tx = super::Tx::begin(&mut self.conn).op(OP)?;
        let sql =
            format!("SELECT {ONESHOT_COLUMNS} FROM oneshot WHERE name = ?1 AND content_hash = ?2");
        let existing = tx
            .query_row(&sql, [name, content_hash], oneshot_from_row)
            .optional()
            .op(OP)?;
        if let Some(record) = existing {
            return Ok(match record.state {
                OneshotState::Started => Claim::InProgress(record),
                OneshotState::Done => Claim::AlreadyDone(record),
                OneshotState::Interrupted => Claim::Interrupted(record),
            });
        }
        let id = insert_task(&tx, task, TaskStatus::Running, None).op(OP)?;
        tx.execute(
            "INSERT INTO oneshot (name, content_hash, state, task_id, claimed_at) \
             VALUES (?1, ?2, 'started', ?3, ?4)",
            params![name, content_hash, id, DbTime(task.started_at)],
        )
        .op(OP)?;
        tx.commit().op(OP)?;
        Ok(Claim::New(id))
    }

    /// The claim of `name` with this content, if any.
    pub fn oneshot(&self, name: &str, content_hash: &str) -> Result<Option<OneshotRecord>> {
        let sql =
            format!("SELECT {ONESHOT_COLUMNS} FROM oneshot WHERE name = ?1 AND content_hash = ?2");
        self.conn
            .query_row(&sql, [name, content_hash], oneshot_from_row)
            .optional()
            .op("read one-shot claim")
    }

    /// Every claim, by name, oldest claim first.
    pub fn oneshots(&self) -> Result<Vec<OneshotRecord>> {
        const OP: &str = "list one-shot claims";
        let sql = format!("SELECT {ONESHOT_COLUMNS} FROM oneshot ORDER BY name, task_id");
        let mut stmt = self.conn.prepare(&sql).op(OP)?;
        let rows = stmt.query_map([], oneshot_from_row).op(OP)?;
        rows.collect::<rusqlite::Result<_>>().op(OP)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::at;
    use super::super::{INTERRUPTED_ERROR, Outcome, TaskKind};
    use super::*;
    use std::sync::{Arc, Barrier};

    fn restore(secs: i64) -> NewTask {
        NewTask {
            kind: TaskKind::Restore,
            origin: Origin::Task("restore-home".into()),
            store: Some("main".into()),
            scheduled_for: None,
            started_at: at(secs),
            revision: None,
        }
    }

    fn finished(status: TaskStatus, secs: i64) -> Outcome {
        Outcome {
            status,
            finished_at: at(secs),
            stats: None,
            error: None,
            snapshot_id: None,
        }
    }

    #[test]
    fn claimed_once_done_kept_new_content_is_new() {
        let mut db = StateDb::open_in_memory().expect("open");
        let Claim::New(id) = db
            .oneshot_claim("restore-home", "h1", &restore(0))
            .expect("claim")
        else {
            panic!("first claim must be new");
        };
        let claim = db
            .oneshot_claim("restore-home", "h1", &restore(1))
            .expect("claim");
        assert!(
            matches!(&claim, Claim::InProgress(r) if r.task_id == id),
            "{claim:?}"
        );
        db.finish_task(id, &finished(TaskStatus::Succeeded, 5))
            .expect("finish");
        let claim = db
            .oneshot_claim("restore-home", "h1", &restore(6))
            .expect("claim");
        let Claim::AlreadyDone(rec) = claim else {
            panic!("expected done, got {claim:?}");
        };
        assert_eq!(rec.status, Some(TaskStatus::Succeeded));
        assert_eq!((rec.claimed_at, rec.finished_at), (at(0), Some(at(5))));
        assert_eq!(db.oneshot("restore-home", "h1").expect("get"), Some(rec));
        let claim = db
            .oneshot_claim("restore-home", "h2", &restore(7))
            .expect("claim");
        assert!(matches!(claim, Claim::New(id2) if id2 > id), "{claim:?}");
        assert_eq!(db.oneshots().expect("list").len(), 2);
        let err = db
            .oneshot_claim("other", "h1", &restore(8))
            .expect_err("origin must match the name");
        assert!(matches!(err, StateError::InvalidArgument(_)), "{err:?}");
    }

    #[test]
    fn eight_processes_racing_claim_exactly_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = Arc::new(dir.path().join("state.db"));
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (path, barrier) = (Arc::clone(&path), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    // Each opens its own connection, racing on creation and
                    // migration of the file too.
                    let db = StateDb::open(&path);
                    barrier.wait(); // Even if open failed: never strand the others.
                    db?.oneshot_claim("restore-home", "h1", &restore(i))
                })
            })
            .collect();
        let claims: Vec<Claim> = threads
            .into_iter()
            .map(|t| t.join().expect("thread").expect("open and claim"))
            .collect();
        let new: Vec<_> = claims
            .iter()
            .filter_map(|c| match c {
                Claim::New(id) => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(new.len(), 1, "{claims:?}");
        assert!(
            claims.iter().all(|c| matches!(c, Claim::New(_))
                || matches!(c, Claim::InProgress(r) if r.task_id == new[0])),
            "{claims:?}"
        );
        let db = StateDb::open(&path).expect("reopen");
        let running = db
            .list_tasks(&Default::default())
            .expect("list")
            .into_iter()
            .filter(|t| t.status == TaskStatus::Running)
            .count();
        assert_eq!(running, 1, "exactly one run was recorded");
    }

    #[test]
    fn a_claim_left_by_a_crash_is_interrupted_and_never_rerun() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let id = {
            let mut db = StateDb::open(&path).expect("open");
            match db.oneshot_claim("restore-home", "h1", &restore(0)) {
                Ok(Claim::New(id)) => id,
                other => panic!("expected new, got {other:?}"),
            }
            // Dropped without finishing: the daemon died.
        };
        let mut db = StateDb::open(&path).expect("reopen");
        let before = db
            .oneshot_claim("restore-home", "h1", &restore(1))
            .expect("claim");
        assert!(
            matches!(before, Claim::InProgress(_)),
            "still never new: {before:?}"
        );
        let counts = db
            .mark_interrupted_running(INTERRUPTED_ERROR, at(50))
            .expect("mark");
        assert_eq!((counts.tasks, counts.oneshots), (1, 1));
        drop(db);
        for _ in 0..2 {
            let mut db = StateDb::open(&path).expect("reopen");
            let claim = db
                .oneshot_claim("restore-home", "h1", &restore(60))
                .expect("claim");
            let Claim::Interrupted(rec) = claim else {
                panic!("expected interrupted, got {claim:?}");
            };
            assert_eq!(rec.task_id, id);
            assert_eq!(rec.status, Some(TaskStatus::Failed));
            assert_eq!(rec.finished_at, Some(at(50)));
            let run = db.get_task(id).expect("get").expect("exists");
            assert_eq!(run.status, TaskStatus::Failed);
            assert_eq!(run.error.as_deref(), Some(INTERRUPTED_ERROR));
        }
        let mut db = StateDb::open(&path).expect("reopen");
        let edited = db
            .oneshot_claim("restore-home", "h2", &restore(70))
            .expect("claim");
        assert!(matches!(edited, Claim::New(_)), "{edited:?}");
    }
}
