//! Retention after a backup: the schedule's `retention` policy applied to
//! the group of the snapshot just written (same host and source, as
//! `kloset forget` groups by default). Only snapshot objects are deleted;
//! their data goes at the next prune.
//!
//! It runs after the snapshot is committed and before the `post` hook, so
//! the hook sees the final status. A failure fails the task but keeps the
//! snapshot (the error says so). Unreadable snapshot objects are neither
//! counted nor deleted (`stats.retention.unreadable`).

use kloset::Repository;
use kloset::ops::forget::{GroupBy, GroupKey, forget, plan_forget};
use kloset::snapshot::Snapshot;
use serde_json::json;

use crate::config::model::RetentionTable;
use crate::config::retention::policy;

/// What retention did, for `stats.retention`, or why it failed.
pub(super) fn apply(
    repo: &Repository,
    written: &Snapshot,
    table: &RetentionTable,
) -> Result<serde_json::Value, String> {
    let policy = policy(table)?;
    let (snapshots, unreadable) = repo
        .snapshots_with_problems()
        .map_err(|e| format!("listing snapshots: {e}"))?;
    let group_by = GroupBy::default();
    let key = GroupKey::of(written, group_by);
    let mut group: Vec<Snapshot> = snapshots
        .into_iter()
        .filter(|s| GroupKey::of(s, group_by) == key)
        .collect();
    // A listing that does not show the new snapshot yet must not make the
    // policy keep older ones in its place.
    if !group.iter().any(|s| s.id == written.id) {
        group.push(written.clone());
    }
    let plan = plan_forget(&group, &policy, group_by).map_err(|e| e.to_string())?;
    let report = forget(repo, &plan, false).map_err(|e| format!("forgetting: {e}"))?;
    let kept: Vec<_> = plan
        .groups
        .iter()
        .flat_map(|g| g.keep.iter())
        .map(|s| {
            json!({
                "id": s.id.to_hex(),
                "reasons": s.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    let stats = json!({
        "applied": true,
        "kept": plan.kept_count(),
        "forgotten": report.removed.len(),
        "forgotten_ids": report.removed.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
        "kept_snapshots": kept,
        "unreadable": unreadable.len(),
    });
    if let Some(first) = report.failed.first() {
        return Err(format!(
            "could not delete {} snapshot object(s) ({}: {}); {} were forgotten",
            report.failed.len(),
            first.id.short(),
            first.error,
            report.removed.len()
        ));
    }
    Ok(stats)
}
