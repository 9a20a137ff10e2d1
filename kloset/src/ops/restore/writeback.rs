//! Early writeback during a restore: a thread syncs the target's file
//! system each time another [`FLUSH_EVERY`] bytes have been written, so the
//! disk writes while the restore is still producing data and the final
//! sync finds little left to do.
//!
//! A `syncfs` reports a writeback error once per open file description,
//! so an error seen here would be missed by the final sync on the same
//! directory: it is kept and fails the restore in [`EarlyWriteback::finish`].

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::dirfd::DirFd;

/// Bytes written between two early syncs.
pub(super) const FLUSH_EVERY: u64 = 64 * 1024 * 1024;

/// The writeback thread and what it shares with the restore's workers.
pub(super) struct EarlyWriteback {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    /// Bytes written since the last sync started.
    pending: AtomicU64,
    /// Early syncs done.
    syncs: AtomicU64,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    stop: bool,
    /// The first error of an early sync.
    error: Option<io::Error>,
}

impl EarlyWriteback {
    /// Starts syncing `dir`'s file system in the background. Without a
    /// thread (none could be made) the restore only syncs at its end.
    pub(super) fn start(dir: Arc<DirFd>) -> Self {
        let shared = Arc::new(Shared {
            pending: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("restore-writeback".into())
                .spawn(move || shared.run(&dir))
                .ok()
        };
        let thread = Mutex::new(thread);
        EarlyWriteback { shared, thread }
    }

    /// Counts `bytes` written; wakes the thread when a sync is due.
    pub(super) fn wrote(&self, bytes: u64) {
        let before = self.shared.pending.fetch_add(bytes, Ordering::Relaxed);
        if before < FLUSH_EVERY && before.saturating_add(bytes) >= FLUSH_EVERY {
            // Taken so that the wake-up cannot fall between the thread's
            // check of `pending` and its wait.
            let _state = self.shared.lock();
            self.shared.wake.notify_one();
        }
    }

    /// How many early syncs were done.
    #[cfg(test)]
    pub(super) fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Stops the thread; the error of an early sync, if one failed.
    pub(super) fn finish(&self) -> io::Result<()> {
        self.stop();
        self.shared.lock().error.take().map_or(Ok(()), Err)
    }

    fn stop(&self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            // The thread only syncs; a panic there has nothing to hand on.
            let _ = thread.join();
        }
    }
}

impl Drop for EarlyWriteback {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self, dir: &DirFd) {
        let mut state = self.lock();
        loop {
            while !state.stop && self.pending.load(Ordering::Relaxed) < FLUSH_EVERY {
                state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.stop {
                return;
            }
            self.pending.store(0, Ordering::Relaxed);
            drop(state);
            let result = dir.sync_fs();
            self.syncs.fetch_add(1, Ordering::Relaxed);
            state = self.lock();
            if let Err(e) = result {
                state.error.get_or_insert(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn syncs_once_enough_was_written_and_stops_when_asked() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = Arc::new(DirFd::open_path(d.path()).expect("open"));
        let writeback = EarlyWriteback::start(dir.clone());
        writeback.wrote(FLUSH_EVERY - 1);
        assert_eq!(writeback.syncs(), 0);
        writeback.wrote(1);
        let deadline = Instant::now() + Duration::from_secs(120);
        while writeback.syncs() == 0 {
            assert!(Instant::now() < deadline, "no early sync within 2 minutes");
            std::thread::yield_now();
        }
        writeback.finish().expect("no sync failed");
        // Dropped without `finish` (a restore that failed): the thread ends.
        let unfinished = EarlyWriteback::start(dir);
        unfinished.wrote(FLUSH_EVERY);
        drop(unfinished);
    }
}
