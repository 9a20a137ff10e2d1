//! The daemon's `sync` task: copy the snapshots of `store` (optionally
//! filtered by tags, source names and the newest N per source) into `to`,
//! which has its own passphrase.
//!
//! A cold source is refused unless the task sets `allow_cold_read` (sync
//! reads the source's packs); a cold target is fine, since sync reads only
//! its index and snapshot objects.

use std::sync::Arc;

use kloset::Progress;
use kloset::ops::sync::{SyncFilter, SyncOptions, sync};
use serde_json::json;

use super::run::{TaskResult, cold_refusal};
use super::store::open_store;
use crate::config::desired::{DesiredState, StoreDef};
use crate::config::model::StorageType;

/// Runs one sync from `source` to the store named `to`.
pub fn run_sync(
    state: &DesiredState,
    source: &StoreDef,
    to: &str,
    filter: SyncFilter,
    allow_cold_read: bool,
    progress: Arc<Progress>,
) -> TaskResult {
    let Some(target_def) = state.stores.get(to) else {
        return TaskResult::failed(format!("no [store.{to}] is declared"));
    };
    if !allow_cold_read && let Some(refused) = cold_refusal(source, "a sync from it") {
        return refused;
    }
    let source_repo = match open_store(source, false) {
        Ok(r) => r,
        Err(p) => return TaskResult::from_store(&p),
    };
    let target = match open_store(target_def, true) {
        Ok(r) => r,
        Err(p) => return TaskResult::from_store(&p),
    };
    let options = SyncOptions {
        filter,
        threads: 0,
        progress,
        cold_target: target_def.storage_type == StorageType::Cold,
    };
    match sync(&source_repo, &target, &options) {
        Ok(report) => {
            let mut result = TaskResult::succeeded(json!({
                "snapshots_copied": report.copied.len(),
                "snapshots_skipped": report.skipped.len(),
                "bytes_read": report.bytes_read,
                "bytes_uploaded": report.bytes_uploaded,
                "blobs_added": report.blobs_added,
                "copied": report.copied.iter().map(|c| json!({
                    "source": c.source.to_hex(),
                    "target": c.target.to_hex(),
                })).collect::<Vec<_>>(),
            }));
            result.bytes_added = Some(report.bytes_uploaded);
            let passed = &report.unreadable_passed_over;
            if !passed.is_empty() {
                result.stats["unreadable_snapshots_passed_over"] = json!(passed);
                result.partial = true;
                result.error = Some(format!(
                    "{} snapshot object(s) of store {} cannot be read and were not synced: {}",
                    passed.len(),
                    source.name,
                    passed.join(", ")
                ));
            }
            result
        }
        Err(e) => TaskResult::from_engine(&e),
    }
}
