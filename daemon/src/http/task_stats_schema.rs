//! The schema of a task run's `stats`: kind-specific numbers the engine
//! and the task runner write as JSON into the state database, sent as they
//! are stored. These types only describe that JSON in the OpenAPI document
//! (nothing here builds it), closed to unknown fields so that
//! `tests/openapi_schemathesis.rs` notices a new field that is not
//! described here.

use utoipa::ToSchema;

/// One problem a check found.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes the engine's JSON; never built here
pub struct CheckProblem {
    object: String,
    problem: String,
}

/// A file a check found damaged.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes the engine's JSON; never built here
pub struct AffectedFile {
    snapshot: String,
    path: String,
    reason: String,
}

/// A snapshot a sync copied: its id in the source and in the target store.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes the engine's JSON; never built here
pub struct CopiedSnapshot {
    source: String,
    target: String,
}

/// Kind-specific numbers, `{}` for a run that failed early, `null` while
/// running or when skipped. backup: source (what was read: a path or URL,
/// never a secret), files, dirs, bytes, files_unchanged, bytes_added,
/// bytes_stored, duration_ms, errors (unreadable files), retention; check:
/// snapshots, trees, packs, packs_read, blobs_read, problems, affected,
/// warnings, first_problems, first_affected; restore: target, files, dirs,
/// others, bytes, restore_errors, verified_files, verified_bytes, mismatches;
/// prune: snapshots, store_bytes, used_bytes, packs, packs_deleted,
/// packs_unused, packs_orphaned, packs_repacked, packs_spared, bytes_freed,
/// bytes_repack_written, index_written, index_deleted, marks_cleared,
/// taken_over, waited_ms, unfound_blobs, packs_missing, repack_skipped (cold
/// store without allow_cold_read), index_entries_dropped; sync:
/// snapshots_copied, snapshots_skipped, bytes_read, bytes_uploaded,
/// blobs_added, copied (source and target snapshot ids).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes the engine's JSON; never built here
pub struct TaskStats {
    #[schema(nullable = false)]
    source: Option<String>,
    #[schema(nullable = false)]
    files: Option<u64>,
    #[schema(nullable = false)]
    dirs: Option<u64>,
    #[schema(nullable = false)]
    others: Option<u64>,
    #[schema(nullable = false)]
    bytes: Option<u64>,
    #[schema(nullable = false)]
    files_unchanged: Option<u64>,
    #[schema(nullable = false)]
    bytes_added: Option<u64>,
    #[schema(nullable = false)]
    bytes_stored: Option<u64>,
    #[schema(nullable = false)]
    duration_ms: Option<u64>,
    #[schema(nullable = false)]
    errors: Option<u64>,
    #[schema(nullable = false)]
    retention: Option<RetentionStats>,
    #[schema(nullable = false)]
    snapshots: Option<u64>,
    #[schema(nullable = false)]
    trees: Option<u64>,
    #[schema(nullable = false)]
    packs: Option<u64>,
    #[schema(nullable = false)]
    packs_read: Option<u64>,
    #[schema(nullable = false)]
    blobs_read: Option<u64>,
    #[schema(nullable = false)]
    problems: Option<u64>,
    #[schema(nullable = false)]
    affected: Option<u64>,
    #[schema(nullable = false)]
    warnings: Option<Vec<String>>,
    #[schema(nullable = false, max_items = 20)]
    first_problems: Option<Vec<CheckProblem>>,
    #[schema(nullable = false, max_items = 20)]
    first_affected: Option<Vec<AffectedFile>>,
    #[schema(nullable = false)]
    target: Option<String>,
    #[schema(nullable = false)]
    restore_errors: Option<u64>,
    #[schema(nullable = false)]
    verified_files: Option<u64>,
    #[schema(nullable = false)]
    verified_bytes: Option<u64>,
    #[schema(nullable = false)]
    mismatches: Option<u64>,
    #[schema(nullable = false)]
    store_bytes: Option<u64>,
    #[schema(nullable = false)]
    used_bytes: Option<u64>,
    #[schema(nullable = false)]
    packs_deleted: Option<u64>,
    #[schema(nullable = false)]
    packs_unused: Option<u64>,
    #[schema(nullable = false)]
    packs_orphaned: Option<u64>,
    #[schema(nullable = false)]
    packs_repacked: Option<u64>,
    #[schema(nullable = false)]
    packs_spared: Option<u64>,
    #[schema(nullable = false)]
    bytes_freed: Option<u64>,
    #[schema(nullable = false)]
    bytes_repack_written: Option<u64>,
    #[schema(nullable = false)]
    index_written: Option<u64>,
    #[schema(nullable = false)]
    index_deleted: Option<u64>,
    #[schema(nullable = false)]
    marks_cleared: Option<u64>,
    #[schema(nullable = false)]
    taken_over: Option<u64>,
    #[schema(nullable = false)]
    waited_ms: Option<u64>,
    #[schema(nullable = false)]
    unfound_blobs: Option<u64>,
    #[schema(nullable = false)]
    packs_missing: Option<u64>,
    #[schema(nullable = false)]
    repack_skipped: Option<String>,
    #[schema(nullable = false)]
    index_entries_dropped: Option<u64>,
    #[schema(nullable = false)]
    snapshots_copied: Option<u64>,
    #[schema(nullable = false)]
    snapshots_skipped: Option<u64>,
    #[schema(nullable = false)]
    bytes_read: Option<u64>,
    #[schema(nullable = false)]
    bytes_uploaded: Option<u64>,
    #[schema(nullable = false)]
    blobs_added: Option<u64>,
    #[schema(nullable = false)]
    copied: Option<Vec<CopiedSnapshot>>,
}

/// A snapshot retention kept, and the rules that kept it.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes the engine's JSON; never built here
pub struct KeptSnapshot {
    id: String,
    reasons: Vec<String>,
}

/// What the schedule's retention did after the backup, in the new snapshot's
/// group (same host and source). `applied` false with `error` when it failed
/// (the snapshot is kept).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes the engine's JSON; never built here
pub struct RetentionStats {
    applied: bool,
    #[schema(nullable = false)]
    error: Option<String>,
    #[schema(nullable = false)]
    kept: Option<u64>,
    #[schema(nullable = false)]
    forgotten: Option<u64>,
    #[schema(nullable = false)]
    forgotten_ids: Option<Vec<String>>,
    #[schema(nullable = false)]
    kept_snapshots: Option<Vec<KeptSnapshot>>,
    #[schema(nullable = false)]
    unreadable: Option<u64>,
}
