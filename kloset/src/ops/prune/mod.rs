//! Prune: give space back without deleting anything a snapshot needs,
//! beside backups, restores and syncs on this host and others.
//!
//! The steps follow FORMAT.md §16, which argues why each is safe:
//! 1. take the prune lock (one prune at a time; writers are not blocked);
//! 2. remove marks left by earlier prunes (a mark only restrains writers);
//! 3. read every snapshot and index object (any unreadable one stops the
//!    prune before it deletes anything) and list the packs;
//! 4. find every referenced blob, choose one copy of each, and plan which
//!    packs to delete, repack or keep ([`plan`]);
//! 5. copy the chosen blobs of mostly unused packs into new, indexed packs;
//! 6. write a mark naming every pack to delete: writers that start from
//!    now on never deduplicate against them;
//! 7. wait until every other lock holder present now has finished, or is
//!    taken over once stale (observed unchanged for the stale period on
//!    this host's clock), then out the grace period;
//! 8. read the snapshots again: a pack holding the only copy of a blob
//!    that a snapshot written meanwhile references is spared;
//! 9. with the lock provably ours: write index objects for what survives,
//!    delete the superseded ones, delete the packs, delete the mark.
//!
//! `dry_run` stops after step 4 and changes nothing.

pub mod plan;
pub mod reach;
pub mod repack;
pub mod sweep;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId};
use crate::lock::watch::LockWatch;
use crate::lock::{HeldLock, LockKind, boot_clock};
use crate::progress::Progress;
use crate::repository::{Repository, now_ns};
use crate::storage::{Key, PACKS_DIR};
use plan::{PackInfo, PlanSizes, Thresholds};
use reach::Reachable;

/// How to prune.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Plan and report, change nothing.
    pub dry_run: bool,
    /// Repack packs whose unused share is above this (0 to 1).
    pub max_unused: f64,
    /// Repack at most this many bytes of packs in one run.
    pub max_repack_bytes: u64,
    /// The least time between writing the mark and deleting anything.
    pub grace: Duration,
    /// How long to wait for other lock holders (default: twice the stale
    /// period, by which time every holder has finished or gone stale).
    pub max_wait: Option<Duration>,
    /// Live counters, phase and cancellation.
    pub progress: Arc<Progress>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            max_unused: 0.2,
            max_repack_bytes: 4 << 30,
            grace: Duration::from_secs(60),
            max_wait: None,
            progress: Arc::new(Progress::new()),
        }
    }
}

/// What a prune did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Snapshots whose data was kept.
    pub snapshots: usize,
    /// The plan's sizes.
    pub plan: PlanSizes,
    /// Packs with no referenced blob.
    pub packs_unused: usize,
    /// Packs rewritten.
    pub packs_repacked: usize,
    /// Packs no index listed.
    pub packs_orphaned: usize,
    /// Packs deleted in the end.
    pub packs_deleted: usize,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Bytes written into new packs by the repack.
    pub bytes_repack_written: u64,
    /// Packs kept after all because a snapshot written during the prune
    /// needs them.
    pub packs_spared: usize,
    /// Index objects written (for repacked blobs and by the rewrite).
    pub index_written: usize,
    /// Index objects deleted.
    pub index_deleted: usize,
    /// Marks of earlier prunes removed.
    pub marks_cleared: usize,
    /// Lock holders taken over as stale.
    pub taken_over: Vec<String>,
    /// Time spent waiting for other lock holders, milliseconds.
    pub waited_ms: u64,
    /// Referenced blobs found in no pack (the store is damaged: `check`).
    pub unfound_blobs: usize,
    /// Packs an index lists that the store does not hold, with blobs a
    /// snapshot references (damage: `check`).
    pub packs_missing: usize,
    /// Packs an index lists that the store does not hold and no snapshot
    /// needs: their index entries were dropped.
    pub index_entries_dropped: usize,
}

/// Prunes the store. See the module docs for the steps.
pub fn prune(repo: &Repository, options: &PruneOptions) -> Result<PruneReport> {
    let progress = &options.progress;
    if !options.dry_run {
        if !repo.header().has_locks_v2() {
            return Err(Error::InvalidArgument(format!(
                "the store at {} uses format version {}, whose writers do not follow the lock protocol prune relies on; run `kloset at {} upgrade` once no older kloset writes to it",
                repo.storage().location(),
                repo.format_version(),
                repo.storage().location()
            )));
        }
        repo.header().check_writable()?;
    }
    let timing = repo.lock_timing();
    let max_wait = options.max_wait.unwrap_or(timing.stale_after * 2);
    let mut report = PruneReport {
        dry_run: options.dry_run,
        ..Default::default()
    };
    let held = if options.dry_run {
        None
    } else {
        progress.set_phase("taking the prune lock");
        Some(acquire_prune_lock(repo, max_wait, progress)?)
    };
    if held.is_some() {
        for name in crate::marks::list_names(repo.storage())? {
            crate::marks::delete(repo.storage(), &name)?;
            report.marks_cleared += 1;
        }
    }

    progress.set_phase("reading snapshots and the index");
    let snapshots = readable_snapshots(repo)?;
    report.snapshots = snapshots.len();
    repo.avoid_packs(HashSet::new());
    repo.refresh_index()?;
    let files = repo.read_index_objects()?;
    let known_files: HashSet<IndexId> = files.iter().map(|(id, _)| *id).collect();
    let sizes = pack_sizes(repo)?;
    let mut packs: HashMap<PackId, PackInfo> = HashMap::new();
    // Indexed packs the listing does not show, with the blobs listed there.
    let mut gone: HashMap<PackId, Vec<BlobId>> = HashMap::new();
    for (_, file) in files {
        for p in file.packs {
            let Some(size) = sizes.get(&p.id) else {
                gone.entry(p.id)
                    .or_default()
                    .extend(p.blobs.iter().map(|e| e.id));
                continue;
            };
            packs.entry(p.id).or_insert(PackInfo {
                id: p.id,
                size: *size,
                blobs: p.blobs,
            });
        }
    }
    let orphans: Vec<(PackId, u64)> = sizes
        .iter()
        .filter(|(id, _)| !packs.contains_key(id))
        .map(|(id, size)| (*id, *size))
        .collect();

    progress.set_phase("finding what the snapshots reference");
    let mut reach = Reachable::default();
    reach.add(repo, &snapshots, progress, false)?;
    let limits = Thresholds {
        max_unused: options.max_unused,
        max_repack_bytes: options.max_repack_bytes,
    };
    let plan = plan::plan(packs.into_values().collect(), orphans, &reach.blobs, limits);
    report.plan = plan.sizes;
    report.packs_unused = plan.delete.len();
    report.packs_repacked = plan.repack.len();
    report.packs_orphaned = plan.orphans.len();
    report.unfound_blobs = plan.unfound;
    // A missing pack none of whose blobs a snapshot references is only a
    // stale index entry (a writer taken over as stale indexed packs a
    // prune had already deleted): the rewrite drops it. One that holds
    // referenced blobs is damage, for `check`.
    let (damaged, stale): (Vec<_>, Vec<_>) = gone
        .into_iter()
        .partition(|(_, blobs)| blobs.iter().any(|b| reach.blobs.contains(b)));
    report.packs_missing = damaged.len();
    report.index_entries_dropped = stale.len();
    let stale: Vec<PackId> = stale.into_iter().map(|(p, _)| p).collect();
    let Some(lock) = held else {
        report.bytes_freed = plan.sizes.delete_bytes + plan.sizes.repack_bytes;
        report.packs_deleted = plan.delete.len() + plan.repack.len() + plan.orphans.len();
        return Ok(report);
    };
    if plan.delete.is_empty()
        && plan.repack.is_empty()
        && plan.orphans.is_empty()
        && stale.is_empty()
    {
        return Ok(report);
    }

    progress.start_step(
        format!("repacking {} mostly unused pack(s)", plan.repack.len()),
        plan.repack
            .iter()
            .flat_map(|(_, entries)| entries.iter().map(|e| u64::from(e.length)))
            .sum(),
    );
    let repacked = repack::repack(repo, &plan.repack, progress)?;
    report.bytes_repack_written = repacked.bytes_written;
    report.index_written = repacked.index_written;

    let doomed: Vec<PackId> = plan
        .delete
        .iter()
        .chain(plan.repack.iter().map(|(p, _)| p))
        .chain(plan.orphans.iter())
        .chain(stale.iter())
        .copied()
        .collect();
    lock.ensure_alive()?;
    let mark = crate::marks::write(
        repo.storage(),
        repo.keys(),
        now_ns(),
        doomed.clone(),
        Some(lock.holder()),
    )?;
    let marked_at = boot_clock();
    let swept = sweep_after_mark(
        repo,
        options,
        &lock,
        &plan,
        &mut reach,
        &known_files,
        &doomed,
        max_wait,
        marked_at,
        &mut report,
    );
    // Whatever happened, the mark has done its job or is no longer needed.
    let _ = crate::marks::delete(repo.storage(), &Key::Mark(mark).path());
    swept?;
    drop(lock);
    progress.set_phase("done");
    Ok(report)
}

/// Steps 7 to 9: wait, re-check, sweep.
#[allow(clippy::too_many_arguments)]
fn sweep_after_mark(
    repo: &Repository,
    options: &PruneOptions,
    lock: &HeldLock,
    plan: &plan::PrunePlan,
    reach: &mut Reachable,
    known_files: &HashSet<IndexId>,
    doomed: &[PackId],
    max_wait: Duration,
    marked_at: Duration,
    report: &mut PruneReport,
) -> Result<()> {
    let progress = &options.progress;
    let mut watch = LockWatch::new(
        repo.storage(),
        repo.keys(),
        repo.lock_timing(),
        Some(lock.holder()),
    );
    let present: BTreeSet<_> = watch.poll()?;
    let waiting_since = boot_clock();
    watch.wait_gone(&present, max_wait, |who| {
        progress.check_cancelled()?;
        lock.within_fence()?;
        progress.set_phase(format!(
            "waiting for {} lock holder(s) that started before the mark: {}",
            who.len(),
            who.join("; ")
        ));
        Ok(())
    })?;
    report.taken_over = watch.taken_over().to_vec();
    while boot_clock().saturating_sub(marked_at) < options.grace {
        progress.check_cancelled()?;
        progress.set_phase("waiting out the grace period");
        std::thread::sleep(Duration::from_millis(50).min(options.grace));
    }
    report.waited_ms = boot_clock().saturating_sub(waiting_since).as_millis() as u64;

    progress.set_phase("checking snapshots written during the prune");
    let doomed_set: HashSet<PackId> = doomed.iter().copied().collect();
    let spared = spare_for_new_snapshots(repo, plan, reach, known_files, &doomed_set, progress)?;
    report.packs_spared = spared.len();
    let last: Vec<PackId> = doomed
        .iter()
        .filter(|p| !spared.contains(p))
        .copied()
        .collect();
    let last_set: HashSet<PackId> = last.iter().copied().collect();

    lock.ensure_alive()?;
    progress.set_phase("rewriting the index");
    let rewrite = sweep::rewrite_indexes(repo, &last_set)?;
    report.index_written += rewrite.written;
    report.index_deleted = rewrite.deleted;

    lock.ensure_alive()?;
    let sizes = pack_sizes(repo)?;
    let sized: Vec<(PackId, u64)> = last
        .iter()
        .map(|p| (*p, sizes.get(p).copied().unwrap_or(0)))
        .collect();
    let total: u64 = sized.iter().map(|(_, size)| size).sum();
    progress.start_step(format!("deleting {} pack(s)", last.len()), total);
    sweep::delete_packs(repo, &sized, progress, &|| lock.within_fence())?;
    report.packs_deleted = last.iter().filter(|p| sizes.contains_key(p)).count();
    report.bytes_freed = total;
    Ok(())
}

/// The packs to keep after all: those holding the only copies of blobs
/// that snapshots written since the plan reference.
fn spare_for_new_snapshots(
    repo: &Repository,
    plan: &plan::PrunePlan,
    reach: &mut Reachable,
    known_files: &HashSet<IndexId>,
    doomed: &HashSet<PackId>,
    progress: &Progress,
) -> Result<HashSet<PackId>> {
    repo.refresh_index()?;
    let snapshots = readable_snapshots(repo)?;
    let new_refs = reach.add(repo, &snapshots, progress, true)?;
    let mut spared = HashSet::new();
    if new_refs.is_empty() {
        return Ok(spared);
    }
    // Copies in index objects written since the plan (by writers that ran
    // beside this prune, or the repack's own).
    let mut fresh_copies: HashSet<BlobId> = HashSet::new();
    let mut doomed_copies: HashMap<BlobId, Vec<PackId>> = HashMap::new();
    for (id, file) in repo.read_index_objects()? {
        if known_files.contains(&id) {
            continue;
        }
        for pack in file.packs {
            for e in pack.blobs {
                if doomed.contains(&pack.id) {
                    doomed_copies.entry(e.id).or_default().push(pack.id);
                } else {
                    fresh_copies.insert(e.id);
                }
            }
        }
    }
    for blob in new_refs {
        if fresh_copies.contains(&blob) {
            continue;
        }
        if let Some(d) = plan.doomed.get(&blob)
            && !d.safe
        {
            spared.extend(d.packs.iter().copied());
        }
        if let Some(packs) = doomed_copies.get(&blob) {
            spared.extend(packs.iter().copied());
        }
    }
    Ok(spared)
}

/// The packs in the store, with their sizes.
fn pack_sizes(repo: &Repository) -> Result<HashMap<PackId, u64>> {
    Ok(repo
        .storage()
        .list(Some(PACKS_DIR))?
        .into_iter()
        .filter_map(|l| Some((PackId::from_hex(l.path.rsplit('/').next()?).ok()?, l.size)))
        .collect())
}

/// Every snapshot; an unreadable snapshot object stops the prune, since
/// the packs it references cannot be known.
fn readable_snapshots(repo: &Repository) -> Result<Vec<crate::snapshot::Snapshot>> {
    let (snapshots, bad) = repo.snapshots_with_problems()?;
    if let Some((object, e)) = bad.first() {
        return Err(Error::corrupt(
            object,
            format!(
                "{e} ({} unreadable snapshot object(s)); prune deletes nothing while it cannot tell what they reference: run check, then forget or repair them",
                bad.len()
            ),
        ));
    }
    Ok(snapshots)
}

/// Takes the prune lock once no other prune holds one; waits (up to
/// `max_wait`) for another prune to finish or go stale.
fn acquire_prune_lock(
    repo: &Repository,
    max_wait: Duration,
    progress: &Progress,
) -> Result<HeldLock> {
    let start = boot_clock();
    loop {
        progress.check_cancelled()?;
        let lock = HeldLock::acquire(
            repo.storage(),
            repo.keys(),
            LockKind::Prune,
            "prune",
            repo.lock_timing(),
        )?;
        let mut watch = LockWatch::new(
            repo.storage(),
            repo.keys(),
            repo.lock_timing(),
            Some(lock.holder()),
        );
        watch.poll()?;
        let others = watch.prunes();
        if others.is_empty() {
            return Ok(lock);
        }
        // Both may see each other: both step back, wait, and try again.
        drop(lock);
        let left = max_wait.saturating_sub(boot_clock().saturating_sub(start));
        watch.wait_gone(&others, left, |who| {
            progress.check_cancelled()?;
            progress.set_phase(format!("waiting for another prune: {}", who.join("; ")));
            Ok(())
        })?;
        let jitter = rand::random::<u64>() % (watch.poll_every().as_millis() as u64 + 1);
        std::thread::sleep(Duration::from_millis(jitter));
    }
}
