//! Runs one task (backup, check, sync, restore, prune)
//! synchronously against the desired state; the daemon calls [`execute`]
//! from `spawn_blocking` and records the [`TaskResult`].
//!
//! Policies:
//! - **Partial backups**: files that cannot be read are skipped by the engine
//!   and listed in the snapshot. The snapshot is still a valid restore point
//!   for everything else, so the task *succeeds* with `partial = true`, the
//!   count in `stats.errors` and the first paths in `error`.
//! - **Cold stores** (`storage_type = "cold"`) get structure-only checks by
//!   default: a check with `read_data` and a restore (which always reads
//!   data) fail up front, without touching the store, unless the task sets
//!   `allow_cold_read = true`.
//! - **Restore tests**: a restore writes into `DESTINATION/<snapshot short
//!   id>/`, so each snapshot gets a fresh directory and never mixes with
//!   another one; running the same snapshot again overwrites that directory's
//!   files (force) with identical content. Then every restored regular file
//!   is read back from disk and each chunk's keyed BLAKE3 id is compared with
//!   the snapshot's chunk list (no second download from the store). Old
//!   restore-test directories are not removed yet.
//! - **Cancellation**: a cancelled task is `cancelled`; a cancelled backup
//!   writes no snapshot.
//! - **Retention** after a backup (`retention.rs`) forgets the snapshots of
//!   the new snapshot's group that the policy does not keep, before the
//!   `post` hook; `stats.retention` lists the forgotten ids. If it fails,
//!   the task fails and says that the snapshot was written and is kept.
//! - **Prune** (`prune.rs`) on a cold store is delete-only unless the task
//!   sets `allow_cold_read = true` (repacking reads packs).

use std::sync::Arc;
use std::time::Duration;

use kloset::ops::check::{CheckOptions, check};
use kloset::{Error, ErrorKind, Progress};
use serde_json::json;

use super::backup::run_backup;
use super::prune::{PruneRequest, run_prune};
use super::restore::{RestoreRequest, run_restore};
use super::store::{StoreProblem, StoreReason, open_store};
use crate::config::desired::{Action, DesiredState, StoreDef};
use crate::config::model::StorageType;
use crate::state::TaskStatus;

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Done (a backup may still be `partial`).
    Succeeded,
    /// Not done; `error` says why.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl RunStatus {
    /// `"succeeded"`, `"failed"` or `"cancelled"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// What a task did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TaskResult {
    /// How it ended.
    pub status: RunStatus,
    /// A backup that skipped unreadable files.
    pub partial: bool,
    /// Kind-specific numbers (always an object).
    pub stats: serde_json::Value,
    /// Why it failed, or what a partial backup missed.
    pub error: Option<String>,
    /// The snapshot written (backup) or restored (restore).
    pub snapshot_id: Option<String>,
    /// New bytes stored by a backup.
    pub bytes_added: Option<u64>,
}

impl TaskResult {
    /// How the run is recorded: `partial` is a success that missed
    /// something (`error` says what).
    pub fn task_status(&self) -> TaskStatus {
        match self.status {
            RunStatus::Succeeded if self.partial => TaskStatus::Partial,
            RunStatus::Succeeded => TaskStatus::Succeeded,
            RunStatus::Failed => TaskStatus::Failed,
            RunStatus::Cancelled => TaskStatus::Cancelled,
        }
    }

    pub(super) fn failed(error: impl Into<String>) -> Self {
        TaskResult {
            status: RunStatus::Failed,
            partial: false,
            stats: json!({}),
            error: Some(error.into()),
            snapshot_id: None,
            bytes_added: None,
        }
    }

    /// A task whose thread panicked (a bug): failed, with the panic's
    /// message, secrets redacted.
    pub fn panicked(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = crate::redact::redact(crate::redact::payload_text(payload));
        TaskResult::failed(format!(
            "the task panicked, which is a bug (the daemon's log has where): {message}"
        ))
    }

    pub(super) fn cancelled() -> Self {
        TaskResult {
            status: RunStatus::Cancelled,
            error: Some("cancelled".into()),
            ..TaskResult::failed("")
        }
    }

    pub(super) fn from_engine(e: &Error) -> Self {
        if e.kind() == ErrorKind::Cancelled {
            TaskResult::cancelled()
        } else {
            TaskResult::failed(e.to_string())
        }
    }

    pub(super) fn from_store(p: &StoreProblem) -> Self {
        if p.reason == StoreReason::Cancelled {
            TaskResult::cancelled()
        } else {
            TaskResult::failed(p.to_string())
        }
    }

    pub(super) fn succeeded(stats: serde_json::Value) -> Self {
        TaskResult {
            status: RunStatus::Succeeded,
            partial: false,
            stats,
            error: None,
            snapshot_id: None,
            bytes_added: None,
        }
    }
}

/// How many problems or paths an error message lists.
const SHOWN: usize = 3;

/// The first few of `items`, joined with `; `, and `; ...` when there are more.
pub(super) fn first_few(items: impl IntoIterator<Item = String>) -> String {
    let mut items = items.into_iter();
    let mut shown: Vec<String> = items.by_ref().take(SHOWN).collect();
    if items.next().is_some() {
        shown.push("...".into());
    }
    shown.join("; ")
}

/// Runs `action` against `state`, reporting live progress into `progress`
/// and stopping early once `progress.cancel()` is called.
/// Debug builds only: `KLOSETD_DEBUG_PANIC_IN_TASK=KIND:MESSAGE` makes
/// every task of that kind panic with MESSAGE, so that a test can see what
/// a panic leaves behind (`tests/panic_redacted.rs`).
#[cfg(debug_assertions)]
fn debug_panic(action: &Action) {
    if let Ok(spec) = std::env::var("KLOSETD_DEBUG_PANIC_IN_TASK")
        && let Some((kind, message)) = spec.split_once(':')
        && kind == action.kind().as_str()
    {
        panic!("{message}");
    }
}

pub fn execute(state: &DesiredState, action: &Action, progress: Arc<Progress>) -> TaskResult {
    #[cfg(debug_assertions)]
    debug_panic(action);
    let store = match state.stores.get(action.store()) {
        Some(s) => s,
        None => return TaskResult::failed(format!("no [store.{}] is declared", action.store())),
    };
    match action {
        Action::Backup {
            source,
            tags,
            retention,
            ..
        } => run_backup(state, store, source, tags, retention.as_ref(), progress),
        Action::Check {
            read_data,
            allow_cold_read,
            ..
        } => run_check(store, *read_data, *allow_cold_read, progress),
        Action::Restore {
            destination,
            snapshot,
            path,
            allow_cold_read,
            into_snapshot_dir,
            overwrite,
            source,
            ..
        } => run_restore(
            state,
            store,
            &RestoreRequest {
                destination,
                snapshot,
                path,
                allow_cold_read: *allow_cold_read,
                into_snapshot_dir: *into_snapshot_dir,
                overwrite: *overwrite,
                source: source.as_deref(),
            },
            progress,
        ),
        Action::Sync {
            to,
            tags,
            sources,
            latest,
            allow_cold_read,
            ..
        } => {
            let filter = kloset::ops::sync::SyncFilter {
                snapshots: Vec::new(),
                sources: sources.clone(),
                tags: tags.clone(),
                latest: latest.map(|n| n as usize),
                skip_unreadable: false,
            };
            super::sync::run_sync(state, store, to, filter, *allow_cold_read, progress)
        }
        Action::Prune {
            max_unused,
            max_repack,
            grace_ms,
            allow_cold_read,
            ..
        } => run_prune(
            store,
            &PruneRequest {
                max_unused: *max_unused,
                max_repack: *max_repack,
                grace: Duration::from_millis(*grace_ms),
                allow_cold_read: *allow_cold_read,
            },
            progress,
        ),
    }
}

pub(super) fn cold_refusal(store: &StoreDef, what: &str) -> Option<TaskResult> {
    (store.storage_type == StorageType::Cold).then(|| {
        TaskResult::failed(format!(
            "store {} is a cold store: {what} reads data from it, which archival \
             storage may not allow or may bill; set `allow_cold_read = true` on the \
             task to do it anyway (a cold store gets structure-only checks by default)",
            store.name
        ))
    })
}

fn run_check(
    store: &StoreDef,
    read_data: Option<f64>,
    allow_cold_read: bool,
    progress: Arc<Progress>,
) -> TaskResult {
    if read_data.is_some_and(|p| p > 0.0)
        && !allow_cold_read
        && let Some(refused) = cold_refusal(store, "a check with `read_data`")
    {
        return refused;
    }
    let repo = match open_store(store, false) {
        Ok(r) => r,
        Err(p) => return TaskResult::from_store(&p),
    };
    let options = CheckOptions {
        read_data_percent: read_data,
        progress,
    };
    let report = match check(&repo, &options) {
        Ok(r) => r,
        Err(e) => return TaskResult::from_engine(&e),
    };
    let stats = json!({
        "snapshots": report.snapshots,
        "trees": report.trees,
        "packs": report.packs,
        "packs_read": report.packs_read,
        "blobs_read": report.blobs_read,
        "problems": report.problems.len(),
        "affected": report.affected.len(),
        "warnings": report.warnings,
        "first_problems": report.problems.iter().take(20).collect::<Vec<_>>(),
        "first_affected": report.affected.iter().take(20).collect::<Vec<_>>(),
    });
    let mut result = TaskResult::succeeded(stats);
    if !report.is_ok() {
        result.status = RunStatus::Failed;
        result.error = Some(format!(
            "{} problem(s) found: {}",
            report.problems.len(),
            first_few(
                report
                    .problems
                    .iter()
                    .map(|p| format!("{}: {}", p.object, p.problem))
            )
        ));
    }
    result
}
