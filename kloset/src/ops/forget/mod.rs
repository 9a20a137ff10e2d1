//! Forget: decide by a retention policy which snapshots to keep, then
//! delete the snapshot objects of the others (and nothing else).
//!
//! Planning ([`plan_forget`]) is pure; executing ([`forget`]) deletes only
//! the `snapshots/ID` objects the plan lists. The data those snapshots used
//! stays in the store until `prune` finds it unreferenced, so forget never
//! frees space by itself.
//!
//! # Semantics (modelled on restic)
//!
//! Snapshots are grouped, by default by host and source ([`GroupBy`]: any
//! subset of host, source and tags; tags group by the sorted tag list),
//! and the policy is applied to each group on its own. Within a group,
//! snapshots are ordered newest first by time, then by id.
//!
//! - `last N`: the N newest snapshots of the group.
//! - `hourly`/`daily`/`weekly`/`monthly`/`yearly N`: walking the group
//!   newest first, the newest snapshot of each bucket, for the N newest
//!   distinct buckets that have snapshots (a bucket's age is that of its
//!   newest snapshot). Buckets are counted in the snapshot's own local
//!   time, `time_ns` plus `utc_offset_s` (UTC when absent): a snapshot at
//!   23:30 UTC from a host at +02:00 belongs to the next day. Weeks are
//!   ISO weeks (ISO year and week number, `2026-W49`).
//! - `within D`: every snapshot taken within D of the group's newest
//!   snapshot, inclusive. Not the wall clock: a host whose clock is wrong
//!   cannot make forget delete everything.
//! - `tag T` (repeatable): every snapshot carrying any of the tags.
//!
//! A snapshot is kept when any rule keeps it, and records every rule that
//! does (`last`, `daily 2026-12-04`, `weekly 2026-W49`, `monthly 2026-12`,
//! `within 7d`, `tag keep`). Counts of zero mean absent; a policy with no
//! rule left is refused rather than read as "forget everything".
//!
//! Snapshot objects that cannot be read are not given to the planner, so
//! they are never deleted nor counted; callers report them.

mod plan;
mod policy;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use plan::{ForgetGroup, ForgetPlan, GroupKey, PlannedSnapshot, Reason, plan_forget};
pub use policy::{
    CalendarUnit, GroupBy, RetentionPolicy, compact_duration, local_rfc3339, local_time,
};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::Result;
use crate::id::SnapshotId;
use crate::repository::Repository;
use crate::storage::Key;

/// How many deletions are in flight at once.
const DELETE_THREADS: usize = 8;

/// What [`forget`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ForgetReport {
    /// Nothing was deleted; `removed` lists what would have been.
    pub dry_run: bool,
    /// Snapshots whose object was deleted (or would be, in a dry run).
    pub removed: Vec<SnapshotId>,
    /// Snapshots whose deletion failed, with the error; they are still there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<DeleteFailure>,
}

/// A snapshot object that could not be deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeleteFailure {
    /// The snapshot.
    pub id: SnapshotId,
    /// Why.
    pub error: String,
}

/// Executes a plan: deletes the snapshot object of every snapshot the plan
/// removes, several at once, and nothing else. With `dry_run`, deletes
/// nothing and reports what would go. A snapshot already gone counts as
/// removed; other failures are listed in [`ForgetReport::failed`] while the
/// remaining deletions go on.
pub fn forget(repo: &Repository, plan: &ForgetPlan, dry_run: bool) -> Result<ForgetReport> {
    let ids = plan.removed_ids();
    if dry_run || ids.is_empty() {
        return Ok(ForgetReport {
            dry_run,
            removed: ids,
            failed: Vec::new(),
        });
    }
    let pool = super::worker_pool(DELETE_THREADS.min(ids.len()), "forget")?;
    let storage = repo.storage();
    let results: Vec<(SnapshotId, Result<()>)> = pool.install(|| {
        ids.par_iter()
            .map(|id| (*id, storage.delete(&Key::Snapshot(*id).path())))
            .collect()
    });
    let mut report = ForgetReport {
        dry_run,
        removed: Vec::new(),
        failed: Vec::new(),
    };
    for (id, result) in results {
        match result {
            Ok(()) => report.removed.push(id),
            Err(e) => report.failed.push(DeleteFailure {
                id,
                error: e.to_string(),
            }),
        }
    }
    Ok(report)
}
