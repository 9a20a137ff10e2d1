//! The restore task, into any destination.
//!
//! - A **scheduled restore is a restore test**: it writes into
//!   `DESTINATION/<snapshot short id>/`, so each snapshot gets a fresh place
//!   and never mixes with another; repeating the same snapshot replaces that
//!   place's files with identical content. On a local destination every
//!   restored file is then read back and each chunk's keyed id compared
//!   with the snapshot (no second download).
//! - A **one-shot restore is a real restore**: it writes into the
//!   destination itself and refuses, before writing anything, when a file it
//!   would write exists there, unless the task says `overwrite = true`.
//! - Non-local destinations (S3, SFTP, a database, a command) go through the
//!   integration's exporter; the exporter authenticates every chunk as it
//!   streams, and what it cannot hold (links on S3) is reported.

use std::sync::Arc;

use kloset::Progress;
use kloset::ops::export::export;
use kloset::ops::restore::{RestoreOptions, RestoreReport, restore};
use serde_json::json;

use super::run::{RunStatus, SHOWN, TaskResult, cold_refusal};
use super::store::open_store;
use super::verify::verify_restore;
use crate::config::desired::{DesiredState, StoreDef};
use crate::integrations::connectors::{RestoreTarget, restore_target};

/// What a restore task asks for.
#[derive(Debug)]
pub(super) struct RestoreRequest<'a> {
    pub destination: &'a str,
    pub snapshot: &'a str,
    pub path: &'a str,
    pub allow_cold_read: bool,
    pub into_snapshot_dir: bool,
    pub overwrite: bool,
}

pub(super) fn run_restore(
    state: &DesiredState,
    store: &StoreDef,
    req: &RestoreRequest<'_>,
    progress: Arc<Progress>,
) -> TaskResult {
    if !req.allow_cold_read
        && let Some(refused) = cold_refusal(store, "a restore")
    {
        return refused;
    }
    let Some(def) = state.destinations.get(req.destination) else {
        return TaskResult::failed(format!("no [destination.{}] is declared", req.destination));
    };
    let repo = match open_store(store, false) {
        Ok(r) => r,
        Err(p) => return TaskResult::from_store(&p),
    };
    let snap = match repo.resolve_snapshot(req.snapshot) {
        Ok(s) => s,
        Err(e) => return TaskResult::from_engine(&e),
    };
    let short = snap.id.short();
    let subdir = req.into_snapshot_dir.then_some(short.as_str());
    let target = match restore_target(&def.endpoint, subdir) {
        Ok(t) => t,
        Err(e) => return TaskResult::failed(format!("destination {}: {e}", def.name)),
    };
    let options = RestoreOptions {
        force: req.into_snapshot_dir || req.overwrite,
        owners: true,
        threads: 0,
        progress: progress.clone(),
    };
    let (shown_target, report, verified) = match &target {
        RestoreTarget::Local(dir) => {
            let report = match restore(&repo, &snap, req.path, dir, &options) {
                Ok(r) => r,
                Err(e) => return TaskResult::from_engine(&e),
            };
            let verified = match verify_restore(&repo, &snap, req.path, dir, &progress) {
                Ok(v) => v,
                Err(e) => return TaskResult::from_engine(&e),
            };
            (dir.display().to_string(), report, Some(verified))
        }
        RestoreTarget::Exporter(exporter) => {
            match export(&repo, &snap, req.path, exporter.as_ref(), &options) {
                Ok(r) => (exporter.target(), r, None),
                Err(e) => return TaskResult::from_engine(&e),
            }
        }
    };
    summarize(&snap.id.to_hex(), &short, &shown_target, report, verified)
}

fn summarize(
    id: &str,
    short: &str,
    target: &str,
    report: RestoreReport,
    verified: Option<super::verify::Verified>,
) -> TaskResult {
    let mut stats = json!({
        "target": target,
        "files": report.files,
        "dirs": report.dirs,
        "others": report.others,
        "bytes": report.bytes,
        "restore_errors": report.errors.len(),
    });
    let mut problems = report.errors;
    // Entries an exporter cannot hold (links on S3) leave a usable restore:
    // partial, not failed. Locally every entry must restore and verify.
    let partial_is_ok = verified.is_none();
    if let Some(v) = verified {
        stats["verified_files"] = json!(v.files);
        stats["verified_bytes"] = json!(v.bytes);
        stats["mismatches"] = json!(v.mismatches.len());
        problems.splice(0..0, v.mismatches);
    }
    let mut result = TaskResult::succeeded(stats);
    result.snapshot_id = Some(id.to_string());
    if !problems.is_empty() {
        if partial_is_ok {
            result.partial = true;
        } else {
            result.status = RunStatus::Failed;
        }
        result.error = Some(format!(
            "restore of snapshot {short} into {target} found {} problem(s): {}{}",
            problems.len(),
            problems[..problems.len().min(SHOWN)].join("; "),
            if problems.len() > SHOWN { "; ..." } else { "" }
        ));
    }
    result
}
