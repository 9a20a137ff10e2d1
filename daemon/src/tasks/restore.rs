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

use super::run::{RunStatus, TaskResult, cold_refusal, first_few};
use super::store::open_store;
use super::verify::verify_restore;
use crate::config::desired::{DesiredState, StoreDef};
use crate::integrations::{RestorePick, RestoreTarget};

/// What a restore task asks for.
#[derive(Debug)]
pub(super) struct RestoreRequest<'a> {
    pub destination: &'a str,
    pub snapshot: &'a str,
    pub path: &'a str,
    pub allow_cold_read: bool,
    pub into_snapshot_dir: bool,
    pub overwrite: bool,
    /// Only this source's snapshots.
    pub source: Option<&'a str>,
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
    let (snap, passed_over) = match pick_snapshot(&repo, req.snapshot, req.source) {
        Ok(s) => s,
        Err(e) => return TaskResult::from_engine(&e),
    };
    let short = snap.id.short();
    let path = match single_file(&repo, &snap, req.path, &def.endpoint) {
        Ok(p) => p,
        Err(e) => return TaskResult::failed(format!("destination {}: {e}", def.name)),
    };
    let subdir = req.into_snapshot_dir.then_some(short.as_str());
    let target = match def.endpoint.restore_target(subdir) {
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
            let report = match restore(&repo, &snap, &path, dir, &options) {
                Ok(r) => r,
                Err(e) => return restore_failed(&e),
            };
            let verified = match verify_restore(&repo, &snap, &path, dir, &progress) {
                Ok(v) => v,
                Err(e) => return TaskResult::from_engine(&e),
            };
            (dir.display().to_string(), report, Some(verified))
        }
        RestoreTarget::Exporter(exporter) => {
            match export(&repo, &snap, &path, exporter.as_ref(), &options) {
                Ok(r) => (exporter.target(), r, None),
                Err(e) => return restore_failed(&e),
            }
        }
    };
    let mut result = summarize(&snap.id.to_hex(), &short, &shown_target, report, verified);
    if !passed_over.is_empty() {
        let warning = format!(
            "snapshot = \"{LATEST_READABLE}\" passed over {} unreadable snapshot object(s): {}",
            passed_over.len(),
            first_few(passed_over.iter().cloned())
        );
        tracing::warn!("{warning}");
        result.stats["unreadable_snapshots_passed_over"] = json!(passed_over);
        result.partial = true;
        result.error = Some(match result.error.take() {
            Some(e) => format!("{warning}; {e}"),
            None => warning,
        });
    }
    result
}

/// The restore task's `snapshot` value that takes the newest readable
/// snapshot when snapshot objects cannot be read (warning, partial run).
pub use crate::config::desired::LATEST_READABLE;

/// `latest`, `latest-readable` or an id prefix, among one source's
/// snapshots when given. An unreadable snapshot object that may be the one
/// asked for fails the task, naming it, except with `latest-readable`
/// (then the objects passed over are returned).
fn pick_snapshot(
    repo: &kloset::Repository,
    spec: &str,
    source: Option<&str>,
) -> kloset::Result<(kloset::Snapshot, Vec<String>)> {
    let (spec, skip) = match spec {
        LATEST_READABLE => ("latest", true),
        other => (other, false),
    };
    let (all, unreadable) = repo.snapshots_with_problems()?;
    let mine: Vec<kloset::Snapshot> = all
        .into_iter()
        .filter(|s| source.is_none_or(|source| s.source == source))
        .collect();
    let hint = |e: kloset::Error| match e {
        kloset::Error::NotFound { what } if source.is_some() => kloset::Error::NotFound {
            what: format!(
                "{what} among the snapshots of source {}",
                source.unwrap_or_default()
            ),
        },
        kloset::Error::Corrupt { object, reason } if !skip => kloset::Error::Corrupt {
            object,
            reason: format!(
                "{reason}; set snapshot = \"{LATEST_READABLE}\" on the task to restore the \
                 newest readable snapshot instead"
            ),
        },
        other => other,
    };
    let (snap, passed) =
        kloset::snapshot::resolve_minding(&mine, unreadable, spec, skip).map_err(hint)?;
    Ok((snap, passed.into_iter().map(|(object, _)| object).collect()))
}

/// The engine's refusal to overwrite speaks of `--force`; a task says it
/// with `overwrite = true`. Other errors pass through.
fn restore_failed(e: &kloset::Error) -> TaskResult {
    match e {
        kloset::Error::AlreadyExists { location, what } => TaskResult::failed(format!(
            "{location} already holds {}; set `overwrite = true` on the task to replace them",
            what.split("; use --force")
                .next()
                .and_then(|w| w.split("; allow overwriting").next())
                .unwrap_or(what)
        )),
        other => TaskResult::from_engine(other),
    }
}

/// Destinations that take one file (a database, a command's stdin): the
/// file to restore. A file path is taken as is; in a directory, the one
/// file the integration wants (`NAME.dump` for pg_dump, `cluster.sql` for
/// pg_dumpall, the only file for exec); anything else is refused before a
/// byte is written, naming what is there.
fn single_file(
    repo: &kloset::Repository,
    snap: &kloset::Snapshot,
    path: &str,
    endpoint: &crate::config::desired::Endpoint,
) -> Result<String, String> {
    let RestorePick::OneFile(wanted) = endpoint.policies().restore else {
        return Ok(path.to_string());
    };
    let node = kloset::ops::restore::find_node(repo, snap, path).map_err(|e| e.to_string())?;
    if node.kind != kloset::tree::NodeKind::Dir {
        return Ok(path.to_string());
    }
    let names: Vec<(kloset::tree::NodeKind, String)> = match node.subtree {
        Some(subtree) => repo
            .load_tree(&subtree)
            .map_err(|e| e.to_string())?
            .entries
            .iter()
            .map(|n| (n.kind, n.name_lossy()))
            .collect(),
        None => Vec::new(),
    };
    let files: Vec<&str> = names
        .iter()
        .filter(|(kind, _)| *kind == kloset::tree::NodeKind::File)
        .map(|(_, name)| name.as_str())
        .collect();
    let fitting: Vec<&str> = files.iter().copied().filter(|n| wanted(n)).collect();
    match fitting.as_slice() {
        [one] => Ok(format!("{}/{one}", path.trim_end_matches('/'))),
        _ => Err(format!(
            "the {} destination takes one file, and {path} in snapshot {} holds {} that fit{}; \
             name the file with `path = \"/NAME\"` on the task",
            endpoint.integration,
            snap.id.short(),
            fitting.len(),
            if files.is_empty() {
                String::new()
            } else {
                format!(" (files: {})", files.join(", "))
            }
        )),
    }
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
            "restore of snapshot {short} into {target} found {} problem(s): {}",
            problems.len(),
            first_few(problems.iter().cloned())
        ));
    }
    result
}
