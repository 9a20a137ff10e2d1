//! Live progress and cancellation shared between an operation and whoever
//! watches it (a progress bar, the daemon's status endpoint).
//!
//! Counters are plain atomics: the operation increments them, observers read
//! them at any time without locks. Cancellation is a flag the operation polls
//! between files; a cancelled backup writes no snapshot.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Counters of a running operation.
#[derive(Debug, Default)]
pub struct Progress {
    /// Files done.
    pub files: AtomicU64,
    /// Bytes done (read for backup, written for restore, checked for check).
    pub bytes: AtomicU64,
    /// Files expected, when known (0 = unknown).
    pub total_files: AtomicU64,
    /// Bytes expected, when known (0 = unknown).
    pub total_bytes: AtomicU64,
    /// Errors met so far.
    pub errors: AtomicU64,
    cancelled: AtomicBool,
    /// What the operation is doing now, for long multi-step operations
    /// (prune: "waiting for 2 lock holders", "deleting packs").
    phase: std::sync::Mutex<String>,
}

/// A point-in-time copy of [`Progress`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProgressSnapshot {
    /// Files done.
    pub files: u64,
    /// Bytes done.
    pub bytes: u64,
    /// Files expected (0 = unknown).
    pub total_files: u64,
    /// Bytes expected (0 = unknown).
    pub total_bytes: u64,
    /// Errors so far.
    pub errors: u64,
}

impl Progress {
    /// Fresh counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one finished file of `bytes` bytes.
    pub fn file_done(&self, bytes: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one finished file whose bytes were already added.
    pub fn file_finished(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds bytes without finishing a file.
    pub fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts an error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the expected totals.
    pub fn set_totals(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Sets what the operation is doing now.
    pub fn set_phase(&self, phase: impl Into<String>) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase.into();
    }

    /// Starts a measured step of a multi-step operation: its phase, byte
    /// counter reset to 0, and `total_bytes` expected (0 = unknown).
    pub fn start_step(&self, phase: impl Into<String>, total_bytes: u64) {
        self.set_phase(phase);
        self.files.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.set_totals(0, total_bytes);
    }

    /// What the operation is doing now (empty when it never said).
    pub fn phase(&self) -> String {
        self.phase.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks the operation to stop at the next safe point.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether cancellation was asked.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Returns `Err(Cancelled)` once cancellation was asked.
    pub fn check_cancelled(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// A consistent-enough copy for display.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            files: self.files.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            total_files: self.total_files.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_cancellation() {
        let p = Progress::new();
        p.set_totals(3, 300);
        p.file_done(100);
        p.add_bytes(50);
        p.file_finished();
        p.error();
        assert_eq!(
            p.snapshot(),
            ProgressSnapshot {
                files: 2,
                bytes: 150,
                total_files: 3,
                total_bytes: 300,
                errors: 1
            }
        );
        assert!(p.check_cancelled().is_ok());
        p.cancel();
        assert_eq!(
            p.check_cancelled().expect_err("cancelled").kind(),
            crate::ErrorKind::Cancelled
        );
    }
}
