//! The backup task: run the source's `pre` hook, back the source up through
//! its importer, apply the schedule's retention to the snapshot's group
//! (see `retention`), run the `post` hook.
//!
//! Sources that produce dumps (`postgresql`, `exec`) back up all or
//! nothing: if a dump command fails, no snapshot is written and the task
//! fails. File sources keep partial snapshots (unreadable files are listed
//! in the snapshot and the task succeeds with `partial = true`).

use std::sync::Arc;

use kloset::Progress;
use kloset::ops::backup::{BackupOptions, ParentPolicy, backup_from};
use serde_json::json;

use super::hooks::run_hook;
use super::run::{TaskResult, first_few};
use super::store::open_store;
use crate::config::desired::{DesiredState, StoreDef};
use crate::config::model::RetentionTable;

pub(super) fn run_backup(
    state: &DesiredState,
    store: &StoreDef,
    source: &str,
    tags: &[String],
    retention: Option<&RetentionTable>,
    progress: Arc<Progress>,
) -> TaskResult {
    let Some(def) = state.sources.get(source) else {
        return TaskResult::failed(format!("no [source.{source}] is declared"));
    };
    let env = [
        ("KLOSETD_SOURCE", source),
        ("KLOSETD_STORE", store.name.as_str()),
    ];
    if let Err(e) = run_hook("pre", &def.pre, &env, &progress) {
        return if progress.is_cancelled() {
            TaskResult::cancelled()
        } else {
            TaskResult::failed(format!("{e}; nothing was backed up"))
        };
    }
    let mut result = backup_with(store, def, tags, retention, progress.clone());
    let status = result.task_status().as_str();
    let post_env = [env[0], env[1], ("KLOSETD_STATUS", status)];
    if let Err(e) = run_hook("post", &def.post, &post_env, &progress) {
        result.status = super::RunStatus::Failed;
        result.error = Some(match result.error.take() {
            Some(first) => format!("{first}; then {e}"),
            None => format!("{e} (the snapshot was written)"),
        });
    }
    result
}

fn backup_with(
    store: &StoreDef,
    def: &crate::config::desired::SourceDef,
    tags: &[String],
    retention: Option<&RetentionTable>,
    progress: Arc<Progress>,
) -> TaskResult {
    let importer = match def.endpoint.importer() {
        Ok(i) => i,
        Err(e) => return TaskResult::failed(format!("source {}: {e}", def.name)),
    };
    let repo = match open_store(store, true) {
        Ok(r) => r,
        Err(p) => return TaskResult::from_store(&p),
    };
    let options = BackupOptions {
        // The config name, so `kloset backup @SOURCE` shares the parent chain.
        source: Some(def.name.clone()),
        host: None,
        tags: tags.to_vec(),
        excludes: def.excludes.clone(),
        parent: ParentPolicy::Latest,
        threads: 0,
        progress,
        all_or_nothing: def.endpoint.policies().all_or_nothing,
    };
    let snap = match backup_from(&repo, importer.as_ref(), &options) {
        Ok(s) => s,
        Err(e) => return TaskResult::from_engine(&e),
    };
    let s = &snap.stats;
    let mut stats = json!({
        "source": importer.origin(),
        "files": s.files,
        "dirs": s.dirs,
        "bytes": s.bytes,
        "files_unchanged": s.files_unchanged,
        "bytes_added": s.bytes_added,
        "bytes_stored": s.bytes_stored,
        "duration_ms": s.duration_ms,
        "errors": snap.errors.len(),
    });
    let mut retention_error = None;
    if let Some(table) = retention {
        match super::retention::apply(&repo, &snap, table) {
            Ok(applied) => stats["retention"] = applied,
            Err(e) => {
                stats["retention"] = json!({ "applied": false, "error": e });
                retention_error = Some(format!(
                    "retention failed: {e}; the snapshot {} was written and is kept",
                    snap.id.short()
                ));
            }
        }
    }
    let mut result = TaskResult::succeeded(stats);
    result.snapshot_id = Some(snap.id.to_hex());
    result.bytes_added = Some(s.bytes_added);

    if !snap.errors.is_empty() {
        result.partial = true;
        result.error = Some(format!(
            "partial backup: {} file(s) could not be read ({})",
            snap.errors.len(),
            first_few(
                snap.errors
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.error))
            )
        ));
    }
    if let Some(e) = retention_error {
        result.status = super::RunStatus::Failed;
        result.error = Some(match result.error.take() {
            Some(partial) => format!("{partial}; then {e}"),
            None => e,
        });
    }
    result
}
