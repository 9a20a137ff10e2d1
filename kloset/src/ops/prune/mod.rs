//! Prune: give space back without deleting anything a snapshot needs,
//! beside backups, restores and syncs on this host and others.
//!
//! The steps follow FORMAT.md §16, which argues why each is safe:
//! 1. take the prune lock (one prune at a time; writers are not blocked);
//! 2. remove marks left by earlier prunes (a mark only restrains writers);
//! 3. read every snapshot and index object (any unreadable one stops the
//!    prune before it deletes anything), sort every index entry into a
//!    table on local disk, and list the packs;
//! 4. find every referenced blob (sorted on local disk too), choose one
//!    copy of each, and plan which packs to delete, repack or keep
//!    ([`plan`], over a merge-join of the two sorted tables: memory per
//!    pack and per directory, not per blob);
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

mod join;
pub mod plan;
pub mod reach;
pub mod repack;
mod scratch;
pub mod sweep;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::{BlobId, PackId};
use crate::index::record;
use crate::index::run::Run;
use crate::index::sorter::Sorter;
use crate::lock::watch::LockWatch;
use crate::lock::{HeldLock, LockKind, boot_clock};
use crate::progress::Progress;
use crate::repository::{Repository, now_ns};
use crate::storage::{Key, PACKS_DIR};
use join::Join;
use plan::{PackState, PlanSizes, Thresholds};
use reach::Reachable;
use scratch::Scratch;

/// Chosen copies a repack collects and copies at a time (48 bytes each in
/// memory, twice: read and written); packs holding more are repacked in
/// groups, one pass over the sorted tables per group. At the default
/// 1 MiB average chunk, one group is 512 GiB of data, beyond the default
/// repack budget.
const REPACK_GROUP_ENTRIES: u64 = 1 << 19;

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
    let scratch = Scratch::create(repo.store_id())?;
    let loaded = repo.index_table_in(scratch.path())?;
    let sizes = pack_sizes(repo)?;
    // One plan number per pack, however many index objects list it.
    let mut number_of: HashMap<PackId, u32> = HashMap::new();
    let mut packs: Vec<PackState> = Vec::new();
    let mut numbers: Vec<u32> = Vec::with_capacity(loaded.packs.len());
    for id in &loaded.packs {
        let n = *number_of.entry(*id).or_insert_with(|| {
            packs.push(PackState {
                id: *id,
                size: sizes.get(id).copied(),
            });
            (packs.len() - 1) as u32
        });
        numbers.push(n);
    }
    let orphans: Vec<(PackId, u64)> = sizes
        .iter()
        .filter(|(id, _)| !number_of.contains_key(id))
        .map(|(id, size)| (*id, *size))
        .collect();
    drop((number_of, sizes));

    progress.set_phase("finding what the snapshots reference");
    let ids_key: [u8; 32] = rand::random();
    let mut sorter = Sorter::new(scratch.path(), &ids_key);
    let mut reach = Reachable::default();
    reach.add(repo, &snapshots, progress, &mut |id| {
        sorter.push(record::of_id(&id))
    })?;
    let referenced = sorter
        .finish()?
        .map(|meta| Run::open(scratch.path(), &meta, &ids_key, 0))
        .transpose()?;
    drop(snapshots);

    progress.set_phase("planning");
    let join = Join {
        table: &loaded.table,
        numbers: &numbers,
        referenced: referenced.as_ref(),
    };
    let limits = Thresholds {
        max_unused: options.max_unused,
        max_repack_bytes: options.max_repack_bytes,
    };
    let mut scan = |visit: &mut dyn FnMut(&plan::Listing<'_>) -> Result<()>| {
        progress.check_cancelled()?;
        join.for_each(visit)
    };
    let plan = plan::plan(&packs, orphans, limits, &mut scan)?;
    report.plan = plan.sizes;
    report.packs_unused = plan.delete.len();
    report.packs_repacked = plan.repack.len();
    report.packs_orphaned = plan.orphans.len();
    report.unfound_blobs = plan.unfound;
    // A missing pack none of whose blobs a snapshot references is only a
    // stale index entry (a writer taken over as stale indexed packs a
    // prune had already deleted): the rewrite drops it. One that holds
    // referenced blobs is damage, for `check`.
    report.packs_missing = plan.missing.len();
    report.index_entries_dropped = plan.stale.len();
    let Some(lock) = held else {
        report.bytes_freed = plan.sizes.delete_bytes + plan.sizes.repack_bytes;
        report.packs_deleted = plan.delete.len() + plan.repack.len() + plan.orphans.len();
        return Ok(report);
    };
    if plan.delete.is_empty()
        && plan.repack.is_empty()
        && plan.orphans.is_empty()
        && plan.stale.is_empty()
    {
        return Ok(report);
    }

    progress.start_step(
        format!("repacking {} mostly unused pack(s)", plan.repack.len()),
        plan.sizes.repack_copy_bytes,
    );
    for group in plan.repack_groups(REPACK_GROUP_ENTRIES) {
        let entries = plan.repack_entries(&group, &mut scan)?;
        let repacked = repack::repack(repo, &entries, progress)?;
        report.bytes_repack_written += repacked.bytes_written;
        report.index_written += repacked.index_written;
    }
    drop((referenced, loaded, packs, numbers, scratch));

    let doomed: Vec<PackId> = plan
        .delete
        .iter()
        .chain(plan.repack.iter().map(|(p, _, _)| p))
        .chain(plan.orphans.iter())
        .chain(plan.stale.iter())
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
        &mut reach,
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
    reach: &mut Reachable,
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
    let spared = spare_for_new_snapshots(repo, reach, &doomed_set, progress)?;
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

/// The packs to keep after all: for each blob that snapshots written
/// since the plan reference from trees the plan did not walk, a copy
/// outside the doomed packs, or else the doomed pack the index finds it
/// in. A blob the plan saw referenced needs nothing: its chosen copy is in
/// a kept pack or was copied out by the repack, indexed before the mark.
fn spare_for_new_snapshots(
    repo: &Repository,
    reach: &mut Reachable,
    doomed: &HashSet<PackId>,
    progress: &Progress,
) -> Result<HashSet<PackId>> {
    // The index then prefers a copy outside the doomed packs, wherever
    // it was written (by a writer beside this prune, or the repack).
    repo.avoid_packs(doomed.clone());
    repo.refresh_index()?;
    let snapshots = readable_snapshots(repo)?;
    let mut new_refs: HashSet<BlobId> = HashSet::new();
    reach.add(repo, &snapshots, progress, &mut |id| {
        new_refs.insert(id);
        Ok(())
    })?;
    let index = repo.index();
    let mut spared = HashSet::new();
    for blob in new_refs {
        if let Some(at) = index.get(&blob)?
            && doomed.contains(&at.pack)
        {
            spared.insert(at.pack);
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
