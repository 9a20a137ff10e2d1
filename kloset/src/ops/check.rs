//! Check: verify the store's structure and, optionally, its data.
//!
//! Structure: every index object opens; every indexed pack exists and is
//! long enough; every snapshot opens; every tree of every snapshot opens and
//! validates; every chunk a file references is indexed. Read-data (all packs
//! or a random fraction) downloads packs and authenticates every blob and its
//! id. When anything is damaged, a last pass walks every snapshot and names
//! the exact snapshots and paths that the damage affects.
//!
//! Memory grows with the number of packs and trees, not of blobs: the index
//! is gone through once for each pack's extent, and once per batch of
//! [`BATCH_BLOBS`] entries for the packs read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::Result;
use crate::id::{BlobId, PackId};
use crate::index::BlobLocation;
use crate::pack::{TRAILER_LEN_SIZE, parse_trailer};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::storage::{Key, PACKS_DIR};
use crate::tree::NodeKind;

/// What to check.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Read and verify this percentage of packs (None = structure only).
    pub read_data_percent: Option<f64>,
    /// Live counters.
    pub progress: Arc<Progress>,
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The damaged or missing object.
    pub object: String,
    /// What is wrong.
    pub problem: String,
}

/// A snapshot path that damaged data affects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Affected {
    /// Snapshot id.
    pub snapshot: String,
    /// Path in the snapshot.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// The outcome of a check.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: usize,
    /// Distinct trees checked.
    pub trees: usize,
    /// Packs in the index.
    pub packs: usize,
    /// Packs downloaded and verified.
    pub packs_read: usize,
    /// Blobs authenticated.
    pub blobs_read: usize,
    /// Problems.
    pub problems: Vec<Problem>,
    /// Affected snapshot paths.
    pub affected: Vec<Affected>,
    /// Things that are not damage (e.g. unindexed packs).
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// At most this many index entries are held at once to read packs (about
/// 60 bytes each): a check of a store of any size reads its packs in
/// batches, going through the index once per batch.
const BATCH_BLOBS: u64 = 1 << 18;

/// What the index says of one pack.
#[derive(Clone, Copy, Debug, Default)]
struct PackUse {
    /// The end of its last indexed blob.
    end: u64,
    /// How many index entries point into it.
    blobs: u64,
}

/// One pass over the index: per pack, the extent and number of entries
/// (memory grows with the number of packs, not of blobs).
fn pack_uses(repo: &Repository) -> Result<HashMap<PackId, PackUse>> {
    let mut uses: HashMap<PackId, PackUse> = HashMap::new();
    for blob in repo.index().iter() {
        let (_, loc) = blob?;
        let used = uses.entry(loc.pack).or_default();
        used.end = used.end.max(loc.offset as u64 + loc.length as u64);
        used.blobs += 1;
    }
    Ok(uses)
}

/// One pass over the index: the entries of `packs`.
fn entries_of(
    repo: &Repository,
    packs: &HashSet<PackId>,
) -> Result<HashMap<PackId, Vec<(BlobId, BlobLocation)>>> {
    let mut by_pack: HashMap<PackId, Vec<(BlobId, BlobLocation)>> = HashMap::new();
    for blob in repo.index().iter() {
        let (id, loc) = blob?;
        if packs.contains(&loc.pack) {
            by_pack.entry(loc.pack).or_default().push((id, loc));
        }
    }
    Ok(by_pack)
}

/// `packs` in order, cut into runs of at most `limit` index entries (a
/// pack with more is a run of its own).
fn batches<'a>(
    packs: &'a [PackId],
    uses: &HashMap<PackId, PackUse>,
    limit: u64,
) -> Vec<&'a [PackId]> {
    let mut out = Vec::new();
    let (mut start, mut held) = (0, 0u64);
    for (i, pack) in packs.iter().enumerate() {
        let blobs = uses.get(pack).map_or(0, |u| u.blobs);
        if i > start && held + blobs > limit {
            out.push(&packs[start..i]);
            (start, held) = (i, 0);
        }
        held += blobs;
    }
    if start < packs.len() {
        out.push(&packs[start..]);
    }
    out
}

/// What marks cost while they stay: an unreadable mark makes backups count
/// every pack as marked, and a mark whose prune holds no lock (it died, or
/// the mark is an old one written back) makes them store again what its
/// packs hold. `locks` were read after `marks`, so a prune that wrote a
/// mark seen there either shows in `locks` or deleted its mark since; a
/// mark still listed afterwards is left over.
fn mark_warnings(
    repo: &Repository,
    marks: crate::marks::MarkScan,
    locks: &[crate::lock::Listed],
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (object, why) in marks.unreadable {
        warnings.push(format!(
            "{object} cannot be read as a mark of this store ({why}): while it is there every backup counts every pack as marked and stores all its data again; the next prune deletes it (or delete it once no prune runs)"
        ));
    }
    let pruning: HashSet<_> = locks
        .iter()
        .filter(|l| l.info.kind == crate::lock::LockKind::Prune)
        .filter_map(|l| l.info.holder)
        .collect();
    let left: Vec<_> = marks
        .readable
        .into_iter()
        .filter(|(_, m)| !m.holder.is_some_and(|h| pruning.contains(&h)))
        .collect();
    if left.is_empty() {
        return Ok(warnings);
    }
    let still: HashSet<String> = crate::marks::list_names(repo.storage())?
        .into_iter()
        .collect();
    for (object, mark) in left.into_iter().filter(|(o, _)| still.contains(o)) {
        warnings.push(format!(
            "{object} names {} pack(s) for a prune that holds no lock (it died, or this is an old mark written back): backups store again what those packs hold; the next prune deletes it",
            mark.packs.len()
        ));
    }
    Ok(warnings)
}

/// Runs a check.
pub fn check(repo: &Repository, options: &CheckOptions) -> Result<CheckReport> {
    check_in_batches(repo, options, BATCH_BLOBS)
}

/// [`check`], reading packs in batches of at most `batch_blobs` index
/// entries.
fn check_in_batches(
    repo: &Repository,
    options: &CheckOptions,
    batch_blobs: u64,
) -> Result<CheckReport> {
    // A reader lock: a prune waits for this check before deleting packs.
    let _lock = repo.read_lock("check")?;
    let mut report = CheckReport::default();
    let mut damaged: HashMap<BlobId, String> = HashMap::new();
    for p in repo.index_problems() {
        report.problems.push(Problem {
            object: p.object.clone(),
            problem: p.error.clone(),
        });
    }

    // Packs: present and long enough?
    let sizes: HashMap<PackId, u64> = repo
        .storage()
        .list(Some(PACKS_DIR))?
        .into_iter()
        .filter_map(|l| {
            PackId::from_hex(l.path.rsplit('/').next().unwrap_or_default())
                .ok()
                .map(|id| (id, l.size))
        })
        .collect();
    let uses = pack_uses(repo)?;
    report.packs = uses.len();
    let mut bad_packs: HashMap<PackId, String> = HashMap::new();
    for (pack, PackUse { end, .. }) in &uses {
        let why = match sizes.get(pack) {
            None => Some("missing".to_string()),
            Some(&size) if size < end + TRAILER_LEN_SIZE as u64 => Some(format!(
                "truncated: {size} bytes, the index needs more than {end}"
            )),
            _ => None,
        };
        if let Some(why) = why {
            report.problems.push(Problem {
                object: Key::Pack(*pack).path(),
                problem: why.clone(),
            });
            bad_packs.insert(*pack, why);
        }
    }
    if !bad_packs.is_empty() {
        let wanted: HashSet<PackId> = bad_packs.keys().copied().collect();
        for (pack, entries) in entries_of(repo, &wanted)? {
            let why = format!("{} is {}", Key::Pack(pack).path(), bad_packs[&pack]);
            for (blob, _) in entries {
                damaged.insert(blob, why.clone());
            }
        }
    }
    let unindexed = sizes.keys().filter(|p| !uses.contains_key(p)).count();
    if unindexed > 0 {
        report.warnings.push(format!(
            "{unindexed} pack(s) are not in any index (left by an interrupted backup, or a backup still running); prune removes them"
        ));
    }

    // Marks before locks: a prune writes its lock before its mark.
    let marks = crate::marks::scan(repo.storage(), repo.keys())?;
    let locks = crate::lock::scan_locks(repo.storage(), repo.keys())?;
    report
        .warnings
        .extend(mark_warnings(repo, marks, &locks.locks)?);
    for l in &locks.locks {
        if l.info.v < 2 {
            report.warnings.push(format!(
                "locks/{} is a version 1 lock ({}): a kloset older than this one is writing, or crashed while writing; prune waits for it or takes it over once it stays unchanged for the stale period",
                l.id.short(),
                l.info.describe()
            ));
        }
    }

    for (object, why) in locks.foreign {
        let named_as_lock = object
            .rsplit('/')
            .next()
            .is_some_and(|n| crate::id::LockId::from_hex(n).is_ok());
        let cost = if named_as_lock {
            "writers pass over it, but a prune waits for it as for a holder it cannot name (a lock damaged in storage) for up to the stale period"
        } else {
            "everyone passes over it"
        };
        report.warnings.push(format!(
            "{object} is not a lock of this store ({why}): {cost}; it is safe to delete once no kloset runs on this store"
        ));
    }

    // Snapshots and trees.
    let (snapshots, bad_snaps) = repo.snapshots_with_problems()?;
    for (object, e) in bad_snaps {
        report.problems.push(Problem {
            object,
            problem: e.to_string(),
        });
    }
    report.snapshots = snapshots.len();
    let mut visited: HashSet<BlobId> = HashSet::new();
    let mut stack: Vec<BlobId> = snapshots.iter().map(|s| s.tree).collect();
    while let Some(tree_id) = stack.pop() {
        if !visited.insert(tree_id) || damaged.contains_key(&tree_id) {
            continue;
        }
        match repo.load_tree(&tree_id) {
            Ok(tree) => {
                for node in &tree.entries {
                    if let Some(sub) = node.subtree {
                        stack.push(sub);
                    }
                    for c in &node.content {
                        if !repo.index().contains(c)? && !damaged.contains_key(c) {
                            damaged.insert(*c, "chunk is not in the index".into());
                            report.problems.push(Problem {
                                object: format!("data blob {}", c.to_hex()),
                                problem: "referenced but not in the index".into(),
                            });
                        }
                    }
                }
            }
            Err(e) => {
                report.problems.push(Problem {
                    object: format!("tree {}", tree_id.to_hex()),
                    problem: e.to_string(),
                });
                damaged.insert(tree_id, e.to_string());
            }
        }
    }
    report.trees = visited.len();

    // Read data.
    if let Some(percent) = options.read_data_percent {
        let mut packs: Vec<PackId> = uses
            .keys()
            .filter(|p| !bad_packs.contains_key(p))
            .copied()
            .collect();
        packs.sort();
        let take = ((packs.len() as f64) * percent.clamp(0.0, 100.0) / 100.0).ceil() as usize;
        if take < packs.len() {
            use rand::seq::SliceRandom;
            packs.shuffle(&mut rand::rng());
            packs.truncate(take);
        }
        let total: u64 = packs
            .iter()
            .map(|p| sizes.get(p).copied().unwrap_or(0))
            .sum();
        options.progress.set_totals(packs.len() as u64, total);
        let found: Mutex<Vec<(Option<BlobId>, Problem)>> = Mutex::new(Vec::new());
        let blobs_read = std::sync::atomic::AtomicUsize::new(0);
        for batch in batches(&packs, &uses, batch_blobs) {
            let wanted: HashSet<PackId> = batch.iter().copied().collect();
            let by_pack = entries_of(repo, &wanted)?;
            batch.par_iter().try_for_each(|pack| -> Result<()> {
                options.progress.check_cancelled()?;
                let object = Key::Pack(*pack).path();
                let mut local = Vec::new();
                match repo.storage().get(Key::Pack(*pack)) {
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(e) => local.push((
                        None,
                        Problem {
                            object: object.clone(),
                            problem: e.to_string(),
                        },
                    )),
                    Ok(bytes) => {
                        if let Err(e) = parse_trailer(repo.keys(), *pack, &bytes) {
                            local.push((
                                None,
                                Problem {
                                    object: object.clone(),
                                    problem: format!("trailer: {e}"),
                                },
                            ));
                        }
                        for (blob, loc) in by_pack.get(pack).map(Vec::as_slice).unwrap_or_default()
                        {
                            let range =
                                loc.offset as usize..loc.offset as usize + loc.length as usize;
                            let result = match bytes.get(range) {
                                Some(sealed) => repo
                                    .open_blob(loc.kind, blob, loc.raw_length, sealed, &object)
                                    .map(|_| ()),
                                None => Err(crate::error::Error::corrupt(
                                    &object,
                                    "blob lies past the end of the pack",
                                )),
                            };
                            blobs_read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if let Err(e) = result {
                                local.push((
                                    Some(*blob),
                                    Problem {
                                        object: object.clone(),
                                        problem: e.to_string(),
                                    },
                                ));
                            }
                        }
                        options.progress.file_done(bytes.len() as u64);
                    }
                }
                found
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(local);
                Ok(())
            })?;
        }
        report.packs_read = packs.len();
        report.blobs_read = blobs_read.into_inner();
        for (blob, problem) in found.into_inner().unwrap_or_else(|p| p.into_inner()) {
            if let Some(b) = blob {
                damaged.insert(b, format!("{}: {}", problem.object, problem.problem));
            }
            report.problems.push(problem);
        }
    }

    if !damaged.is_empty() {
        for s in &snapshots {
            affected_in(repo, s, &damaged, &mut report.affected);
        }
    }
    report
        .problems
        .sort_by(|a, b| a.object.cmp(&b.object).then(a.problem.cmp(&b.problem)));
    report.problems.dedup();
    Ok(report)
}

/// Walks one snapshot and lists the paths that use a damaged blob.
fn affected_in(
    repo: &Repository,
    snap: &Snapshot,
    damaged: &HashMap<BlobId, String>,
    out: &mut Vec<Affected>,
) {
    let sid = snap.id.to_hex();
    let mut stack: Vec<(BlobId, String)> = vec![(snap.tree, String::new())];
    while let Some((tree_id, path)) = stack.pop() {
        let shown = if path.is_empty() {
            "/".to_string()
        } else {
            path.clone()
        };
        if let Some(why) = damaged.get(&tree_id) {
            out.push(Affected {
                snapshot: sid.clone(),
                path: shown,
                reason: format!(
                    "directory listing is damaged ({why}); everything below it is unreachable"
                ),
            });
            continue;
        }
        let Ok(tree) = repo.load_tree(&tree_id) else {
            continue;
        };
        for node in &tree.entries {
            let child = format!("{path}/{}", node.name_lossy());
            match (node.kind, node.subtree) {
                (NodeKind::Dir, Some(sub)) => stack.push((sub, child)),
                _ => {
                    if let Some(why) = node.content.iter().find_map(|c| damaged.get(c)) {
                        out.push(Affected {
                            snapshot: sid.clone(),
                            path: child,
                            reason: why.clone(),
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlobKind;
    use crate::writer::Writer;

    #[test]
    fn packs_are_cut_into_batches_of_bounded_entries() {
        let packs: Vec<PackId> = (0..5).map(|_| PackId::random()).collect();
        let uses: HashMap<PackId, PackUse> = packs
            .iter()
            .zip([3, 3, 3, 10, 1])
            .map(|(p, blobs)| (*p, PackUse { end: 0, blobs }))
            .collect();
        let cut: Vec<usize> = batches(&packs, &uses, 6).iter().map(|b| b.len()).collect();
        assert_eq!(cut, [2, 1, 1, 1]);
        assert_eq!(batches(&packs, &uses, 100).len(), 1);
        assert!(batches(&[], &uses, 6).is_empty());
    }

    #[test]
    fn read_data_in_small_batches_reads_every_blob_once_and_names_a_damaged_pack() {
        let storage = crate::Storage::open(&crate::Location::Memory, false).expect("storage");
        let mut options = crate::repository::CreateOptions {
            kdf: crate::crypto::KdfParams::with_cost(64, 1, 1),
            ..Default::default()
        };
        options.config.pack_size = 64 << 10;
        let repo = Repository::create(storage, b"pass", options).expect("create");
        let writer = Writer::new(&repo).expect("writer");
        for _ in 0..100 {
            let blob: Vec<u8> = (0..9_000).map(|_| rand::random::<u8>()).collect();
            writer.save_blob(BlobKind::Data, &blob).expect("save");
        }
        writer.finish().expect("finish");
        let all = CheckOptions {
            read_data_percent: Some(100.0),
            ..Default::default()
        };
        let report = check_in_batches(&repo, &all, 10).expect("check");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!((report.packs_read, report.blobs_read), (15, 100));

        let pack = repo.storage().list(Some(PACKS_DIR)).expect("list")[7]
            .path
            .clone();
        let id = PackId::from_hex(pack.rsplit('/').next().expect("name")).expect("id");
        let mut bytes = repo.storage().get(Key::Pack(id)).expect("get").to_vec();
        bytes[100] ^= 1;
        repo.storage()
            .put(Key::Pack(id), bytes.into())
            .expect("put damaged pack");
        let report = check_in_batches(&repo, &all, 10).expect("check");
        assert_eq!(report.blobs_read, 100);
        assert!(
            report.problems.iter().any(|p| p.object == pack),
            "{pack} named: {:?}",
            report.problems
        );
        assert!(report.problems.iter().all(|p| p.object == pack));
    }
}
