//! Which packs a prune deletes, repacks or keeps. Pure: it sees what the
//! index lists, what the store holds and what the snapshots reference.
//!
//! Every referenced blob keeps exactly one chosen copy: packs are visited
//! from the most referenced bytes down, and a blob's first copy met is the
//! one kept. A pack with no chosen copy is deleted; one whose unused share
//! is above the threshold is repacked (its chosen copies are written into
//! new packs), most unused first, up to a byte budget per run.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::id::{BlobId, PackId};
use crate::pack::PackEntry;

/// One indexed pack that the store holds.
#[derive(Clone, Debug)]
pub struct PackInfo {
    /// The pack.
    pub id: PackId,
    /// Its object size.
    pub size: u64,
    /// Its blobs, as the index lists them.
    pub blobs: Vec<PackEntry>,
}

/// A blob in a pack that this prune will delete.
#[derive(Clone, Debug, Default)]
pub struct Doomed {
    /// Whether a referenced copy survives elsewhere (a kept pack, or the
    /// copy a repack writes).
    pub safe: bool,
    /// The doomed packs holding it.
    pub packs: Vec<PackId>,
}

/// What to do with each pack.
#[derive(Debug, Default)]
pub struct PrunePlan {
    /// Packs kept as they are.
    pub keep: Vec<PackId>,
    /// Packs none of whose blobs is needed.
    pub delete: Vec<PackId>,
    /// Packs to rewrite, with the blobs to copy out of each.
    pub repack: Vec<(PackId, Vec<PackEntry>)>,
    /// Packs the store holds that no index lists.
    pub orphans: Vec<PackId>,
    /// Blobs in deleted or repacked packs.
    pub doomed: HashMap<BlobId, Doomed>,
    /// Referenced blobs found in no pack (the store is damaged; `check`).
    pub unfound: usize,
    /// Sizes, for the report.
    pub sizes: PlanSizes,
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

/// Plans a prune.
pub fn plan(
    packs: Vec<PackInfo>,
    orphans: Vec<(PackId, u64)>,
    referenced: &HashSet<BlobId>,
    limits: Thresholds,
) -> PrunePlan {
    let mut out = PrunePlan::default();
    let mut order: Vec<(u64, PackInfo)> = packs
        .into_iter()
        .map(|p| {
            let used = p
                .blobs
                .iter()
                .filter(|e| referenced.contains(&e.id))
                .map(|e| u64::from(e.length))
                .sum();
            (used, p)
        })
        .collect();
    // Most referenced bytes first, then by id for a stable choice.
    order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    let mut chosen: HashSet<BlobId> = HashSet::new();
    // (pack, positions of its chosen blobs, chosen bytes, blob bytes);
    // positions, not entries, to keep 4 bytes a live blob rather than 48.
    let mut tally: Vec<(PackInfo, Vec<u32>, u64, u64)> = Vec::new();
    for (_, pack) in order {
        let mut mine = Vec::new();
        let mut kept = 0u64;
        let mut total = 0u64;
        for (at, e) in pack.blobs.iter().enumerate() {
            total += u64::from(e.length);
            if referenced.contains(&e.id) && chosen.insert(e.id) {
                mine.push(at as u32);
                kept += u64::from(e.length);
            }
        }
        out.sizes.packs += 1;
        out.sizes.bytes += pack.size;
        out.sizes.used_bytes += kept;
        tally.push((pack, mine, kept, total));
    }
    out.unfound = referenced.iter().filter(|b| !chosen.contains(b)).count();
    // Repack candidates: most unused bytes first, within the budget.
    let mut candidates: Vec<usize> = tally
        .iter()
        .enumerate()
        .filter(|(_, (_, _, kept, total))| {
            *kept > 0 && *total > 0 && (1.0 - *kept as f64 / *total as f64) > limits.max_unused
        })
        .map(|(i, _)| i)
        .collect();
    candidates.sort_by_key(|&i| std::cmp::Reverse(tally[i].3 - tally[i].2));
    let mut budget = limits.max_repack_bytes;
    let mut repack: HashSet<usize> = HashSet::new();
    for i in candidates {
        if tally[i].0.size <= budget {
            budget -= tally[i].0.size;
            repack.insert(i);
        }
    }
    for (i, (pack, mine, kept, _)) in tally.into_iter().enumerate() {
        let doomed = if kept == 0 {
            out.sizes.delete_bytes += pack.size;
            out.delete.push(pack.id);
            true
        } else if repack.contains(&i) {
            out.sizes.repack_bytes += pack.size;
            out.sizes.repack_copy_bytes += kept;
            let entries = mine.iter().map(|&at| pack.blobs[at as usize]).collect();
            out.repack.push((pack.id, entries));
            true
        } else {
            out.keep.push(pack.id);
            false
        };
        if doomed {
            for e in &pack.blobs {
                let d = out.doomed.entry(e.id).or_default();
                d.packs.push(pack.id);
                // A referenced blob has exactly one chosen copy: in a kept
                // pack, or the one a repack copies out. Either survives.
                if referenced.contains(&e.id) && chosen.contains(&e.id) {
                    d.safe = true;
                }
            }
        }
    }
    for (id, size) in orphans {
        out.sizes.packs += 1;
        out.sizes.bytes += size;
        out.sizes.delete_bytes += size;
        out.orphans.push(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(blobs: &[(BlobId, u32)]) -> PackInfo {
        let mut offset = 0;
        let entries = blobs
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
        PackInfo {
            id: PackId::random(),
            size: u64::from(offset) + 100,
            blobs: entries,
        }
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
        let referenced: HashSet<BlobId> = [b[0], b[1], b[4]].into_iter().collect();
        let orphan = PackId::random();
        let p = plan(
            vec![full.clone(), dead.clone(), sparse.clone()],
            vec![(orphan, 7)],
            &referenced,
            LIMITS,
        );
        assert_eq!(p.keep, vec![full.id]);
        assert_eq!(p.delete, vec![dead.id]);
        assert_eq!(p.repack.len(), 1);
        assert_eq!(
            (p.repack[0].0, ids(&p.repack[0].1)),
            (sparse.id, vec![b[4]])
        );
        assert_eq!(p.orphans, vec![orphan]);
        assert_eq!(p.unfound, 0);
        assert!(p.doomed[&b[4]].safe, "copied out by the repack");
        assert!(!p.doomed[&b[2]].safe && !p.doomed[&b[5]].safe);
        assert!(!p.doomed.contains_key(&b[0]));
    }

    #[test]
    fn a_blob_stored_twice_keeps_one_copy_and_the_other_pack_can_go() {
        let (a, x) = (BlobId::random(), BlobId::random());
        let first = pack(&[(a, 100), (x, 100)]);
        let dup = pack(&[(a, 100)]);
        let referenced: HashSet<BlobId> = [a, x].into_iter().collect();
        let p = plan(
            vec![dup.clone(), first.clone()],
            vec![],
            &referenced,
            LIMITS,
        );
        assert_eq!(p.keep, vec![first.id], "the pack with more used bytes wins");
        assert_eq!(p.delete, vec![dup.id]);
        assert!(p.doomed[&a].safe, "the other copy survives");
    }

    #[test]
    fn the_repack_budget_and_missing_blobs() {
        let b: Vec<BlobId> = (0..4).map(|_| BlobId::random()).collect();
        let s1 = pack(&[(b[0], 10), (b[1], 1000)]);
        let s2 = pack(&[(b[2], 10), (b[3], 500)]);
        let referenced: HashSet<BlobId> = [b[0], b[2], BlobId::random()].into_iter().collect();
        let limits = Thresholds {
            max_unused: 0.5,
            max_repack_bytes: s1.size,
        };
        let p = plan(vec![s1.clone(), s2.clone()], vec![], &referenced, limits);
        assert_eq!(p.repack.len(), 1, "within the budget");
        assert_eq!(p.repack[0].0, s1.id, "most unused first");
        assert_eq!(p.keep, vec![s2.id]);
        assert_eq!(p.unfound, 1);
    }
}
