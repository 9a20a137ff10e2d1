//! Which packs a prune deletes, repacks or keeps. It sees what the store
//! holds and, through passes over a sorted listing of every blob (its
//! copies, and whether a snapshot references it), what the index lists and
//! the snapshots reference; it keeps counters per pack, never per blob.
//! The chosen copies in packs it repacks are collected by one more pass per
//! group of such packs, so the repack holds a bounded number of entries.
//!
//! Every referenced blob keeps exactly one chosen copy: packs are ranked
//! from the most referenced bytes down, and a blob's copy in the best
//! ranked pack is the one kept. A pack with no chosen copy is deleted; one
//! whose unused share is above the threshold is repacked (its chosen
//! copies are written into new packs), most unused first, up to a byte
//! budget per run. A pack the index lists but the store does not hold is
//! never chosen.

use serde::Serialize;

use crate::error::Result;
use crate::id::{BlobId, PackId};
use crate::pack::PackEntry;

/// One pack the index lists.
#[derive(Clone, Copy, Debug)]
pub struct PackState {
    /// The pack.
    pub id: PackId,
    /// Its object size, or `None` when the store does not hold it.
    pub size: Option<u64>,
}

/// One blob id as the index and the snapshots know it.
#[derive(Debug)]
pub struct Listing<'a> {
    /// The blob.
    pub id: BlobId,
    /// Whether a snapshot references it.
    pub referenced: bool,
    /// Its copies, at most one per pack: the pack's number in the plan's
    /// pack list, and the entry.
    pub copies: &'a [(u32, PackEntry)],
}

/// Goes through every listing, in id order, calling the visitor; the
/// planner calls it once per pass.
pub type Scan<'a> = dyn FnMut(&mut dyn FnMut(&Listing<'_>) -> Result<()>) -> Result<()> + 'a;

/// What to do with each pack.
#[derive(Debug, Default)]
pub struct PrunePlan {
    /// Packs kept as they are.
    pub keep: Vec<PackId>,
    /// Packs none of whose blobs is needed.
    pub delete: Vec<PackId>,
    /// Packs to rewrite: each with its number in the plan's pack list
    /// and how many chosen copies it holds (collected by
    /// [`PrunePlan::repack_entries`]).
    pub repack: Vec<(PackId, u32, u64)>,
    /// Packs the store holds that no index lists.
    pub orphans: Vec<PackId>,
    /// Packs the index lists, the store does not hold, and a snapshot
    /// needs a blob of (damage: `check`).
    pub missing: Vec<PackId>,
    /// Packs the index lists, the store does not hold, and no snapshot
    /// needs: their index entries can go.
    pub stale: Vec<PackId>,
    /// Referenced blobs found in no pack (the store is damaged; `check`).
    pub unfound: usize,
    /// Sizes, for the report.
    pub sizes: PlanSizes,
    /// Each pack's rank (`usize::MAX` for a pack the store does not hold):
    /// a blob's chosen copy is its copy in the best ranked pack.
    rank: Vec<usize>,
    /// Each pack's number of chosen copies.
    copies: Vec<u64>,
}

impl PrunePlan {
    /// The packs to repack in groups of at most `max_entries` chosen
    /// copies (a pack with more is a group of its own).
    pub fn repack_groups(&self, max_entries: u64) -> Vec<Vec<(PackId, u32)>> {
        let mut groups: Vec<Vec<(PackId, u32)>> = Vec::new();
        let mut in_last = 0;
        for &(id, number, entries) in &self.repack {
            match groups.last_mut() {
                Some(group) if in_last + entries <= max_entries => {
                    group.push((id, number));
                    in_last += entries;
                }
                _ => {
                    groups.push(vec![(id, number)]);
                    in_last = entries;
                }
            }
        }
        groups
    }

    /// The chosen copies in the packs of `group`, by one pass of `scan`.
    pub fn repack_entries(
        &self,
        group: &[(PackId, u32)],
        scan: &mut Scan<'_>,
    ) -> Result<Vec<(PackId, Vec<PackEntry>)>> {
        let mut slot = vec![usize::MAX; self.rank.len()];
        let mut entries: Vec<Vec<PackEntry>> = Vec::with_capacity(group.len());
        for (i, (_, number)) in group.iter().enumerate() {
            slot[*number as usize] = i;
            let count = self.copies.get(*number as usize).copied().unwrap_or(0);
            entries.push(Vec::with_capacity(count as usize));
        }
        scan(&mut |b| {
            if b.referenced
                && let Some((p, e)) = chosen_copy(&self.rank, b)
                && slot[p] != usize::MAX
            {
                entries[slot[p]].push(e);
            }
            Ok(())
        })?;
        Ok(group.iter().map(|(id, _)| *id).zip(entries).collect())
    }
}

/// The copy of `b` in the best ranked pack.
fn chosen_copy(rank: &[usize], b: &Listing<'_>) -> Option<(usize, PackEntry)> {
    b.copies
        .iter()
        .filter(|(p, _)| rank[*p as usize] != usize::MAX)
        .min_by_key(|(p, _)| rank[*p as usize])
        .map(|(p, e)| (*p as usize, *e))
}

/// Byte and pack counts of a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PlanSizes {
    /// Packs in the store.
    pub packs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Bytes of blobs still referenced.
    pub used_bytes: u64,
    /// Bytes of deleted packs (including orphans).
    pub delete_bytes: u64,
    /// Bytes of packs to repack.
    pub repack_bytes: u64,
    /// Bytes the repack copies into new packs.
    pub repack_copy_bytes: u64,
}

/// The thresholds of a plan.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Repack a pack whose unused share of its blob bytes is above this.
    pub max_unused: f64,
    /// Repack at most this many bytes of packs per run.
    pub max_repack_bytes: u64,
}

/// Plans a prune of `packs` (every pack the index lists, once) and `orphans`
/// (packs the store holds that no index lists, with their sizes). `scan`
/// is called twice.
pub fn plan(
    packs: &[PackState],
    orphans: Vec<(PackId, u64)>,
    limits: Thresholds,
    scan: &mut Scan<'_>,
) -> Result<PrunePlan> {
    let n = packs.len();
    let present = |p: usize| packs[p].size.is_some();
    // Pass 1: bytes per pack, all and referenced; missing packs a
    // snapshot needs.
    let mut total = vec![0u64; n];
    let mut used = vec![0u64; n];
    let mut needed = vec![false; n];
    scan(&mut |b| {
        for (p, e) in b.copies {
            let p = *p as usize;
            if !present(p) {
                needed[p] |= b.referenced;
                continue;
            }
            total[p] += u64::from(e.length);
            if b.referenced {
                used[p] += u64::from(e.length);
            }
        }
        Ok(())
    })?;
    // Most referenced bytes first, then by id for a stable choice.
    let mut order: Vec<usize> = (0..n).filter(|&p| present(p)).collect();
    order.sort_by(|&a, &b| used[b].cmp(&used[a]).then(packs[a].id.cmp(&packs[b].id)));
    let mut rank = vec![usize::MAX; n];
    for (r, &p) in order.iter().enumerate() {
        rank[p] = r;
    }
    // Pass 2: the chosen copies' bytes and count per pack.
    let mut kept = vec![0u64; n];
    let mut copies = vec![0u64; n];
    let mut out = PrunePlan::default();
    scan(&mut |b| {
        if b.referenced {
            match chosen_copy(&rank, b) {
                Some((p, e)) => {
                    kept[p] += u64::from(e.length);
                    copies[p] += 1;
                }
                None => out.unfound += 1,
            }
        }
        Ok(())
    })?;
    // Repack candidates: most unused bytes first, within the budget.
    let mut candidates: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&p| {
            kept[p] > 0
                && total[p] > 0
                && (1.0 - kept[p] as f64 / total[p] as f64) > limits.max_unused
        })
        .collect();
    candidates.sort_by_key(|&p| std::cmp::Reverse(total[p] - kept[p]));
    let mut budget = limits.max_repack_bytes;
    let mut repack = vec![false; n];
    for p in candidates {
        let size = packs[p].size.unwrap_or(0);
        if size <= budget {
            budget -= size;
            repack[p] = true;
        }
    }
    for &p in &order {
        let size = packs[p].size.unwrap_or(0);
        out.sizes.packs += 1;
        out.sizes.bytes += size;
        out.sizes.used_bytes += kept[p];
        if kept[p] == 0 {
            out.sizes.delete_bytes += size;
            out.delete.push(packs[p].id);
        } else if repack[p] {
            out.sizes.repack_bytes += size;
            out.sizes.repack_copy_bytes += kept[p];
            out.repack.push((packs[p].id, p as u32, copies[p]));
        } else {
            out.keep.push(packs[p].id);
        }
    }
    for (p, pack) in packs.iter().enumerate() {
        if !present(p) {
            if needed[p] {
                out.missing.push(pack.id);
            } else {
                out.stale.push(pack.id);
            }
        }
    }
    for (id, size) in orphans {
        out.sizes.packs += 1;
        out.sizes.bytes += size;
        out.sizes.delete_bytes += size;
        out.orphans.push(id);
    }
    out.rank = rank;
    out.copies = copies;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;

    /// A pack the store holds, with its blobs.
    struct TestPack {
        state: PackState,
        blobs: Vec<PackEntry>,
    }

    fn pack(blobs: &[(BlobId, u32)]) -> TestPack {
        let mut offset = 0;
        let blobs = blobs
            .iter()
            .map(|(id, len)| {
                let e = PackEntry {
                    kind: crate::id::BlobKind::Data,
                    id: *id,
                    offset,
                    length: *len,
                    raw_length: *len,
                };
                offset += len;
                e
            })
            .collect();
        TestPack {
            state: PackState {
                id: PackId::random(),
                size: Some(u64::from(offset) + 100),
            },
            blobs,
        }
    }

    /// Plans over `packs` as the merge-join would list them, and collects
    /// the entries to repack.
    fn plan_of(
        packs: &[&TestPack],
        orphans: Vec<(PackId, u64)>,
        referenced: &HashSet<BlobId>,
        limits: Thresholds,
    ) -> (PrunePlan, Vec<(PackId, Vec<PackEntry>)>) {
        let mut listings: BTreeMap<BlobId, Vec<(u32, PackEntry)>> = BTreeMap::new();
        for (n, p) in packs.iter().enumerate() {
            for e in &p.blobs {
                listings.entry(e.id).or_default().push((n as u32, *e));
            }
        }
        for id in referenced {
            listings.entry(*id).or_default();
        }
        let states: Vec<PackState> = packs.iter().map(|p| p.state).collect();
        let mut passes = 0;
        let mut scan = |visit: &mut dyn FnMut(&Listing<'_>) -> Result<()>| {
            passes += 1;
            for (id, copies) in &listings {
                visit(&Listing {
                    id: *id,
                    referenced: referenced.contains(id),
                    copies,
                })?;
            }
            Ok(())
        };
        let plan = plan(&states, orphans, limits, &mut scan).expect("plan");
        // Groups of one chosen copy: a pass per repacked pack.
        let groups = plan.repack_groups(1);
        let mut repacked = Vec::new();
        for group in &groups {
            repacked.extend(plan.repack_entries(group, &mut scan).expect("entries"));
        }
        assert_eq!(passes, 2 + groups.len());
        (plan, repacked)
    }

    fn ids(entries: &[PackEntry]) -> Vec<BlobId> {
        entries.iter().map(|e| e.id).collect()
    }

    const LIMITS: Thresholds = Thresholds {
        max_unused: 0.5,
        max_repack_bytes: u64::MAX,
    };

    #[test]
    fn unused_packs_go_mostly_unused_ones_are_repacked_and_used_ones_stay() {
        let b: Vec<BlobId> = (0..8).map(|_| BlobId::random()).collect();
        let full = pack(&[(b[0], 100), (b[1], 100)]);
        let dead = pack(&[(b[2], 100), (b[3], 100)]);
        let sparse = pack(&[(b[4], 10), (b[5], 1000)]);
        let sparser = pack(&[(b[6], 10), (b[7], 2000)]);
        let referenced: HashSet<BlobId> = [b[0], b[1], b[4], b[6]].into_iter().collect();
        let orphan = PackId::random();
        let (p, repacked) = plan_of(
            &[&full, &dead, &sparse, &sparser],
            vec![(orphan, 7)],
            &referenced,
            LIMITS,
        );
        assert_eq!(p.keep, vec![full.state.id]);
        assert_eq!(p.delete, vec![dead.state.id]);
        assert_eq!(p.repack.len(), 2);
        let mut repacked: Vec<(PackId, Vec<BlobId>)> =
            repacked.iter().map(|(p, e)| (*p, ids(e))).collect();
        repacked.sort();
        let mut want = vec![
            (sparse.state.id, vec![b[4]]),
            (sparser.state.id, vec![b[6]]),
        ];
        want.sort();
        assert_eq!(repacked, want);
        assert_eq!(p.orphans, vec![orphan]);
        assert_eq!(p.unfound, 0);
        assert_eq!(p.sizes.used_bytes, 220);
        assert_eq!(p.sizes.repack_copy_bytes, 20);
    }

    #[test]
    fn a_blob_stored_twice_keeps_one_copy_and_the_other_pack_can_go() {
        let (a, x) = (BlobId::random(), BlobId::random());
        let first = pack(&[(a, 100), (x, 100)]);
        let dup = pack(&[(a, 100)]);
        let referenced: HashSet<BlobId> = [a, x].into_iter().collect();
        let (p, _) = plan_of(&[&dup, &first], vec![], &referenced, LIMITS);
        assert_eq!(
            p.keep,
            vec![first.state.id],
            "the pack with more used bytes wins"
        );
        assert_eq!(p.delete, vec![dup.state.id]);
        assert_eq!(p.sizes.used_bytes, 200, "each blob counted once");
    }

    #[test]
    fn the_repack_budget_and_missing_blobs() {
        let b: Vec<BlobId> = (0..4).map(|_| BlobId::random()).collect();
        let s1 = pack(&[(b[0], 10), (b[1], 1000)]);
        let s2 = pack(&[(b[2], 10), (b[3], 500)]);
        let referenced: HashSet<BlobId> = [b[0], b[2], BlobId::random()].into_iter().collect();
        let limits = Thresholds {
            max_unused: 0.5,
            max_repack_bytes: s1.state.size.expect("held"),
        };
        let (p, _) = plan_of(&[&s1, &s2], vec![], &referenced, limits);
        assert_eq!(p.repack.len(), 1, "within the budget");
        assert_eq!(p.repack[0].0, s1.state.id, "most unused first");
        assert_eq!(p.keep, vec![s2.state.id]);
        assert_eq!(p.unfound, 1);
    }

    #[test]
    fn a_missing_pack_is_never_chosen_and_is_damage_only_when_needed() {
        let (a, b, c) = (BlobId::random(), BlobId::random(), BlobId::random());
        let mut gone_needed = pack(&[(a, 100)]);
        gone_needed.state.size = None;
        let mut gone_stale = pack(&[(b, 100)]);
        gone_stale.state.size = None;
        let held = pack(&[(c, 100), (a, 100)]);
        let referenced: HashSet<BlobId> = [a, c].into_iter().collect();
        let (p, _) = plan_of(
            &[&gone_needed, &gone_stale, &held],
            vec![],
            &referenced,
            LIMITS,
        );
        assert_eq!(p.keep, vec![held.state.id], "the held copy of a is chosen");
        assert_eq!(p.unfound, 0);
        assert_eq!(p.missing, vec![gone_needed.state.id]);
        assert_eq!(p.stale, vec![gone_stale.state.id]);
        assert_eq!(p.sizes.packs, 1, "a missing pack is not counted as held");

        let (only_gone, _) = plan_of(&[&gone_needed], vec![], &referenced, LIMITS);
        assert_eq!(
            only_gone.unfound, 2,
            "a is only in a missing pack; c nowhere"
        );
    }

    #[test]
    fn repack_groups_are_bounded_and_every_pack_lands_in_one() {
        let plan = PrunePlan {
            repack: vec![
                (PackId::random(), 0, 3),
                (PackId::random(), 1, 4),
                (PackId::random(), 2, 9),
                (PackId::random(), 3, 1),
            ],
            ..Default::default()
        };
        let sizes: Vec<Vec<u32>> = plan
            .repack_groups(7)
            .iter()
            .map(|g| g.iter().map(|(_, n)| *n).collect())
            .collect();
        assert_eq!(sizes, vec![vec![0, 1], vec![2], vec![3]]);
        assert_eq!(plan.repack_groups(u64::MAX).len(), 1);
    }
}
