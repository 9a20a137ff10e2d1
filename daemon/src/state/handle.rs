//! `StateHandle`: the async-side door to the database, which lives on its own OS thread.
//!
//! Invariants: exactly one thread owns the [`StateDb`]; requests run on it one
//! at a time, in the order they were sent, so SQLite never blocks a runtime
//! worker. Handles are cheap clones of a channel sender. When the last handle
//! is dropped the thread finishes the queued requests, closes the database
//! (checkpointing the WAL) and exits. A request that panics is rolled back
//! (its transaction is dropped) and reported as [`StateError::Unavailable`];
//! the thread keeps serving. There is no fire-and-forget request: a call
//! returns after its transaction committed, so shutdown needs no join.

use super::{Result, StateDb, StateError};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;

type Job = Box<dyn FnOnce(&mut StateDb) + Send>;

/// A clonable handle to the state thread.
#[derive(Debug, Clone)]
pub struct StateHandle {
    jobs: mpsc::Sender<Job>,
}

impl StateHandle {
    /// Moves `db` to a new thread named `klosetd-state` and returns a handle.
    pub fn spawn(db: StateDb) -> Result<StateHandle> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("klosetd-state".into())
            .spawn(move || serve(db, queue))
            .map_err(StateError::Spawn)?;
        Ok(StateHandle { jobs })
    }

    /// Opens the database at `path` (blocking: call it before the runtime
    /// starts, or in `spawn_blocking`) and spawns its thread.
    pub fn open(path: &Path) -> Result<StateHandle> {
        StateHandle::spawn(StateDb::open(path)?)
    }

    /// Runs `f` on the state thread and awaits its result. Never blocks the
    /// runtime.
    pub async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut StateDb) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Box::new(move |db| {
            // The caller may have gone away (cancelled future); that is fine.
            let _ = reply.send(f(db));
        }))?;
        answer.await.map_err(|_| StateError::Unavailable)?
    }

    /// Runs `f` on the state thread and waits for its result, blocking the
    /// calling thread. For non-async code; never call it on a runtime thread.
    pub fn call_blocking<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut StateDb) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Box::new(move |db| {
            let _ = reply.send(f(db));
        }))?;
        answer.recv().map_err(|_| StateError::Unavailable)?
    }

    fn send(&self, job: Job) -> Result<()> {
        self.jobs.send(job).map_err(|_| StateError::Unavailable)
    }
}

fn serve(mut db: StateDb, queue: mpsc::Receiver<Job>) {
    tracing::debug!(path = %db.path().display(), "state thread started");
    while let Ok(job) = queue.recv() {
        // The job's reply channel is dropped while unwinding, so its caller
        // gets `Unavailable`; an open transaction is rolled back on drop.
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut db))).is_err() {
            tracing::error!("a state request panicked; it was rolled back");
        }
    }
    tracing::debug!(path = %db.path().display(), "state thread stopped");
}

#[cfg(test)]
mod tests {
    use super::super::tests::at;
    use super::super::{NewTask, Origin, TaskKind, TaskStatus};
    use super::*;

    fn task(secs: i64) -> NewTask {
        NewTask {
            kind: TaskKind::Check,
            origin: Origin::Schedule("weekly".into()),
            store: None,
            scheduled_for: None,
            started_at: at(secs),
            revision: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_run_on_the_state_thread_from_async_code() {
        let dir = tempfile::tempdir().expect("tempdir");
        let handle = StateHandle::open(&dir.path().join("state.db")).expect("open");
        let calls = (0..20).map(|i| {
            let h = handle.clone();
            tokio::spawn(async move {
                h.call(move |db| {
                    let name = std::thread::current().name().map(str::to_owned);
                    Ok((db.start_task(&task(i))?, name))
                })
                .await
            })
        });
        for call in calls.collect::<Vec<_>>() {
            let (_, thread) = call.await.expect("join").expect("call");
            assert_eq!(thread.as_deref(), Some("klosetd-state"));
        }
        let running = handle
            .call(|db| db.list_tasks(&Default::default()))
            .await
            .expect("list");
        assert_eq!(running.len(), 20);
        assert!(running.iter().all(|t| t.status == TaskStatus::Running));
    }

    #[tokio::test]
    async fn errors_and_panics_reach_the_caller_and_the_thread_survives() {
        let handle = StateHandle::spawn(StateDb::open_in_memory().expect("open")).expect("spawn");
        let err = handle
            .call(|db| db.finish_task(super::super::TaskId(7), &outcome()))
            .await
            .expect_err("unknown task");
        assert!(matches!(err, StateError::TaskNotFound(_)), "{err:?}");
        let err = handle
            .call(|_db| -> Result<()> { panic!("boom") })
            .await
            .expect_err("panic");
        assert!(matches!(err, StateError::Unavailable), "{err:?}");
        let id = handle
            .call(|db| db.start_task(&task(0)))
            .await
            .expect("still serving");
        let blocking = handle.clone();
        let got =
            tokio::task::spawn_blocking(move || blocking.call_blocking(move |db| db.get_task(id)))
                .await
                .expect("join")
                .expect("call");
        assert_eq!(got.map(|t| t.id), Some(id));
    }

    #[test]
    fn dropping_the_last_handle_stops_the_thread_and_closes_the_db() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let handle = StateHandle::open(&path).expect("open");
        handle
            .call_blocking(|db| db.start_task(&task(0)))
            .expect("call");
        let wal = path.with_extension("db-wal");
        assert!(wal.exists(), "WAL mode");
        drop(handle);
        // The thread closes the database, and SQLite then checkpoints and
        // deletes the WAL file; poll for that with a generous deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while wal.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "state thread did not close the db"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let db = StateDb::open(&path).expect("reopen");
        assert_eq!(db.list_tasks(&Default::default()).expect("list").len(), 1);
    }

    fn outcome() -> super::super::Outcome {
        super::super::Outcome {
            status: TaskStatus::Failed,
            finished_at: at(1),
            stats: None,
            error: None,
            snapshot_id: None,
        }
    }
}
