//! The prune task: give space back in a store with the engine's prune
//! (FORMAT.md §16), beside backups and restores of this daemon and other
//! hosts; the engine's lock protocol makes that safe, and the runner starts
//! at most one prune per store at a time.
//!
//! Cold stores: repacking reads the still-used blobs of mostly unused packs.
//! On a `cold` store, unless the task sets `allow_cold_read = true`, the
//! prune runs delete-only (`max_repack` 0): packs with no used blob are
//! deleted, mostly unused ones are kept, and `stats.repack_skipped` says why.
//! Reading index and snapshot objects (metadata) is allowed, as for the
//! structure-only checks of cold stores.

use std::sync::Arc;
use std::time::Duration;

use kloset::Progress;
use kloset::ops::prune::{PruneOptions, PruneReport, prune};
use serde_json::json;

use super::run::{RunStatus, TaskResult};
use super::store::open_store;
use crate::config::desired::StoreDef;
use crate::config::model::StorageType;

/// What a prune task asks for (from `Action::Prune`).
#[derive(Clone, Copy, Debug)]
pub(super) struct PruneRequest {
    /// Repack packs with more than this share unused.
    pub max_unused: f64,
    /// Repack at most this many bytes.
    pub max_repack: u64,
    /// The least time between marking packs and deleting them.
    pub grace: Duration,
    /// Repack (read packs) even on a cold store.
    pub allow_cold_read: bool,
}

/// Runs one prune on `store`.
pub(super) fn run_prune(
    store: &StoreDef,
    request: &PruneRequest,
    progress: Arc<Progress>,
) -> TaskResult {
    let cold_delete_only = store.storage_type == StorageType::Cold && !request.allow_cold_read;
    let repo = match open_store(store, false) {
        Ok(r) => r,
        Err(p) => return TaskResult::from_store(&p),
    };
    let options = PruneOptions {
        dry_run: false,
        max_unused: request.max_unused,
        max_repack_bytes: if cold_delete_only {
            0
        } else {
            request.max_repack
        },
        grace: request.grace,
        max_wait: None,
        progress,
    };
    let report = match prune(&repo, &options) {
        Ok(r) => r,
        Err(e) => {
            let mut result = TaskResult::from_engine(&e);
            if result.status == RunStatus::Failed {
                result.error = Some(format!("prune of store {}: {e}", store.name));
            }
            return result;
        }
    };
    let mut result = TaskResult::succeeded(stats(&report, cold_delete_only));
    if report.unfound_blobs > 0 || report.packs_missing > 0 {
        result.status = RunStatus::Failed;
        result.error = Some(format!(
            "store {} is damaged: {} referenced blob(s) found in no pack, {} pack(s) an \
             index lists are missing; the prune deleted nothing those snapshots need \
             (run a check)",
            store.name, report.unfound_blobs, report.packs_missing
        ));
    }
    result
}

/// The task's stats for a prune report.
pub(super) fn stats(r: &PruneReport, cold_delete_only: bool) -> serde_json::Value {
    let mut stats = json!({
        "snapshots": r.snapshots,
        "store_bytes": r.plan.bytes,
        "used_bytes": r.plan.used_bytes,
        "packs": r.plan.packs,
        "packs_deleted": r.packs_deleted,
        "packs_unused": r.packs_unused,
        "packs_orphaned": r.packs_orphaned,
        "packs_repacked": r.packs_repacked,
        "packs_spared": r.packs_spared,
        "bytes_freed": r.bytes_freed,
        "bytes_repack_written": r.bytes_repack_written,
        "index_written": r.index_written,
        "index_deleted": r.index_deleted,
        "marks_cleared": r.marks_cleared,
        "taken_over": r.taken_over.len(),
        "waited_ms": r.waited_ms,
        "unfound_blobs": r.unfound_blobs,
        "packs_missing": r.packs_missing,
        "index_entries_dropped": r.index_entries_dropped,
    });
    if cold_delete_only {
        stats["repack_skipped"] = json!(
            "cold store: packs are not read to repack them unless the task sets \
             allow_cold_read = true; only unused packs were deleted"
        );
    }
    stats
}
