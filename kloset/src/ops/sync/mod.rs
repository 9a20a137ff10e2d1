//! Sync: copy snapshots into another store, which has its own keys.
//!
//! Chunk ids and boundaries are keyed per store, so packs are never
//! copied: each file of a source snapshot is read from the source and
//! re-chunked with the target's keys, and the target's writer deduplicates
//! against everything the target already holds (including what an earlier,
//! interrupted run uploaded). Trees are re-encoded with the target's ids.
//!
//! Identity: a copy records its original (store id and snapshot id) as
//! its `origin` (FORMAT.md §12, "Snapshots written by sync"). A source
//! snapshot whose identity (its own origin, or itself) is already held by
//! the target is skipped, so nothing is copied twice, across chains of
//! stores too.
//!
//! Resumable: the target writer indexes every pack as soon as it is
//! uploaded ([`crate::writer::Writer::index_each_pack`]), so a process
//! killed part-way loses only the packs in flight.
//!
//! Cold target: the target is only listed and its index, marks, locks and
//! snapshot objects read; a pack of the target is never read (the copy has
//! no parent snapshot and deduplicates by the index alone).
//!
//! The source is read under a shared lock (`Repository::read_lock`), so a
//! prune of the source cannot delete what the sync reads. From a remote
//! source, the packs a copy reads most of are fetched once, whole, into
//! the local cache's spool, as a restore does ([`spool`]).

mod copy;
mod reader;
mod select;
mod spool;

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::progress::Progress;
use crate::repository::Repository;

pub use select::{SyncFilter, identities, select};

/// How to sync.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Which snapshots.
    pub filter: SyncFilter,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Live counters and cancellation.
    pub progress: Arc<Progress>,
    /// The target is cold storage: never read its packs (sync never does;
    /// this documents the caller's intent and is checked by tests).
    pub cold_target: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            filter: SyncFilter::default(),
            threads: 0,
            progress: Arc::new(Progress::new()),
            cold_target: false,
        }
    }
}

/// One snapshot copied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Copied {
    /// Its id in the source.
    pub source: SnapshotId,
    /// The copy's id in the target.
    pub target: SnapshotId,
    /// Blobs the copy added to the target.
    pub blobs_added: u64,
    /// Plaintext bytes of those blobs.
    pub bytes_added: u64,
    /// Bytes written to the target's storage for them.
    pub bytes_stored: u64,
}

/// One snapshot skipped because the target already holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Its id in the source.
    pub source: SnapshotId,
    /// The id of the copy the target holds.
    pub target: SnapshotId,
}

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Snapshots copied, oldest first.
    pub copied: Vec<Copied>,
    /// Snapshots selected but already in the target.
    pub skipped: Vec<Skipped>,
    /// Unreadable snapshot objects of the source that were not copied: every
    /// one when no snapshot spec is given, else those a spec passed over
    /// (only with [`SyncFilter::skip_unreadable`]).
    pub unreadable_passed_over: Vec<String>,
    /// Bytes of file content read from the source.
    pub bytes_read: u64,
    /// Bytes written to the target's storage (packs, compressed and sealed).
    pub bytes_uploaded: u64,
    /// Blobs added to the target.
    pub blobs_added: u64,
}

/// Copies the snapshots of `source` that `options.filter` selects into
/// `target`, skipping those the target already holds.
pub fn sync(source: &Repository, target: &Repository, options: &SyncOptions) -> Result<SyncReport> {
    if source.store_id() == target.store_id() {
        return Err(Error::InvalidArgument(
            "the source and the target are the same store".into(),
        ));
    }
    target.header().check_writable()?;
    let _read = source.read_lock("sync")?;
    let (all, unreadable) = source.snapshots_with_problems()?;
    let (picked, passed_over) = select(&all, unreadable, &options.filter)?;
    let (held, _) = target.snapshots_with_problems()?;
    let target_store = target.store_id();
    let mut report = SyncReport {
        unreadable_passed_over: passed_over,
        ..Default::default()
    };
    for snap in picked {
        options.progress.check_cancelled()?;
        let identity = snap.original(source.store_id());
        if let Some(copy) = held.iter().find(|h| h.original(target_store) == identity) {
            report.skipped.push(Skipped {
                source: snap.id,
                target: copy.id,
            });
            continue;
        }
        let before = options.progress.snapshot().bytes;
        let made = copy::copy_snapshot(source, target, &snap, identity, options)?;
        report.bytes_read += options.progress.snapshot().bytes.saturating_sub(before);
        report.bytes_uploaded += made.stats.bytes_stored;
        report.blobs_added += made.stats.blobs_added;
        report.copied.push(Copied {
            source: snap.id,
            target: made.id,
            blobs_added: made.stats.blobs_added,
            bytes_added: made.stats.bytes_added,
            bytes_stored: made.stats.bytes_stored,
        });
    }
    Ok(report)
}
