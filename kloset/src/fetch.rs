//! Batched blob reads: group the wanted blobs by pack, merge neighbouring
//! byte ranges into one request, fetch the requests concurrently, then
//! authenticate and verify every blob.
//!
//! Restoring many small files then costs about one ranged GET per pack
//! region instead of one per file, which matters on S3. Memory is bounded by
//! what the caller asks for at once.

use std::collections::HashMap;
use std::ops::Range;

use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, BlobKind, PackId};
use crate::index::BlobLocation;
use crate::pack_spool::PackSpool;
use crate::repository::Repository;
use crate::storage::Key;

/// Blobs closer than this are fetched in one request (the gap is read and dropped).
const MAX_GAP: u64 = 256 * 1024;
/// Largest single request.
pub const MAX_REQUEST: u64 = 16 * 1024 * 1024;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;
/// Fetched bytes from which opening the blobs is spread over every core.
const PARALLEL_OPEN_BYTES: u64 = 2 << 20;

struct Request {
    pack: PackId,
    range: Range<u64>,
    blobs: Vec<(BlobId, BlobLocation)>,
}

/// Loads every blob in `ids` (duplicates allowed), all of kind `kind`.
///
/// A blob or pack not found is tried once more after the index is brought
/// up to date: a prune that repacked it wrote the index object naming its
/// new copy before it deleted the old pack (FORMAT.md §16), so a reader
/// whose index predates the prune finds the blob again.
pub fn load_blobs(
    repo: &Repository,
    kind: BlobKind,
    ids: &[BlobId],
) -> Result<HashMap<BlobId, Vec<u8>>> {
    load_blobs_spooled(repo, kind, ids, MAX_REQUEST, None)
}

/// [`load_blobs`] with requests of at most `max_request` bytes (a blob
/// larger than that is one request of its own): a caller that fetches a
/// long run of neighbouring blobs (one large file) splits it so that
/// several requests are in flight. The packs that `spool` holds spans of
/// are read from their local copies (and it is told what was served).
pub fn load_blobs_spooled(
    repo: &Repository,
    kind: BlobKind,
    ids: &[BlobId],
    max_request: u64,
    spool: Option<&PackSpool>,
) -> Result<HashMap<BlobId, Vec<u8>>> {
    match load_blobs_once(repo, kind, ids, max_request, spool) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            repo.refresh_index()?;
            load_blobs_once(repo, kind, ids, max_request, spool)
        }
        done => done,
    }
}

fn load_blobs_once(
    repo: &Repository,
    kind: BlobKind,
    ids: &[BlobId],
    max_request: u64,
    spool: Option<&PackSpool>,
) -> Result<HashMap<BlobId, Vec<u8>>> {
    let mut by_pack: HashMap<PackId, Vec<(BlobId, BlobLocation)>> = HashMap::new();
    {
        let index = repo.index();
        for id in ids {
            let loc = index.get(id)?.ok_or_else(|| repo.missing_blob(kind, id))?;
            by_pack.entry(loc.pack).or_default().push((*id, loc));
        }
    }
    // References per pack, duplicates included (what a spool counted).
    let refs: Vec<(PackId, u64)> = by_pack
        .iter()
        .map(|(pack, blobs)| (*pack, blobs.len() as u64))
        .collect();
    let mut requests = Vec::new();
    for (pack, mut blobs) in by_pack {
        blobs.sort_by_key(|(_, l)| l.offset);
        blobs.dedup_by_key(|(id, _)| *id);
        let mut current: Option<Request> = None;
        for (id, loc) in blobs {
            let (start, end) = (loc.offset as u64, loc.offset as u64 + loc.length as u64);
            match &mut current {
                Some(r) if start <= r.range.end + MAX_GAP && end - r.range.start <= max_request => {
                    r.range.end = r.range.end.max(end);
                    r.blobs.push((id, loc));
                }
                _ => {
                    requests.extend(current.take());
                    current = Some(Request {
                        pack,
                        range: start..end,
                        blobs: vec![(id, loc)],
                    });
                }
            }
        }
        requests.extend(current);
    }
    let storage = repo.storage();
    let fetched: Vec<(Request, bytes::Bytes)> = storage.run(
        futures::stream::iter(requests.into_iter().map(|r| async move {
            let rel = Key::Pack(r.pack).path();
            let local = match spool {
                Some(spool) => spool.read(storage, r.pack, r.range.clone()).await?,
                None => None,
            };
            let bytes = match local {
                Some(bytes) => bytes,
                None => storage.get_range_async(&rel, r.range.clone()).await?,
            };
            Ok::<_, Error>((r, bytes))
        }))
        .buffer_unordered(CONCURRENCY)
        .try_collect(),
    )?;
    if let Some(spool) = spool {
        for (pack, n) in refs {
            spool.served(pack, n);
        }
    }
    let names: Vec<String> = fetched
        .iter()
        .map(|(r, _)| Key::Pack(r.pack).path())
        .collect();
    let mut jobs: Vec<Job<'_>> = Vec::with_capacity(ids.len());
    for ((req, bytes), pack_name) in fetched.iter().zip(&names) {
        for (id, loc) in &req.blobs {
            if loc.kind != kind {
                return Err(Error::corrupt(
                    pack_name,
                    format!(
                        "blob {} is a {:?} blob, expected {kind:?}",
                        id.short(),
                        loc.kind
                    ),
                ));
            }
            let from = (loc.offset as u64 - req.range.start) as usize;
            let sealed = bytes
                .get(from..from + loc.length as usize)
                .ok_or_else(|| Error::corrupt(pack_name, "short read"))?;
            jobs.push(Job {
                id: *id,
                raw_length: loc.raw_length,
                sealed,
                pack_name,
            });
        }
    }
    let opened = open_all(repo, kind, &jobs)?;
    Ok(opened.into_iter().collect())
}

/// One fetched blob to open.
struct Job<'a> {
    id: BlobId,
    raw_length: u32,
    sealed: &'a [u8],
    pack_name: &'a str,
}

/// Opens (authenticates, decompresses, verifies) every job. That is CPU
/// work, and a restore of one large file fetches its chunks a window at a
/// time from one worker: with at least [`PARALLEL_OPEN_BYTES`], the jobs
/// are split over one scoped thread per core. Plain threads, not the
/// caller's rayon pool, so a caller holding a share of a restore's byte
/// budget never runs stolen work that waits for that budget.
fn open_all(repo: &Repository, kind: BlobKind, jobs: &[Job<'_>]) -> Result<Vec<(BlobId, Vec<u8>)>> {
    let open = |j: &Job<'_>| {
        repo.open_blob(kind, &j.id, j.raw_length, j.sealed, j.pack_name)
            .map(|raw| (j.id, raw))
    };
    let total: u64 = jobs.iter().map(|j| j.sealed.len() as u64).sum();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if total < PARALLEL_OPEN_BYTES || threads < 2 || jobs.len() < 2 {
        return jobs.iter().map(open).collect();
    }
    // Contiguous groups of about equal bytes, one per thread.
    let share = total.div_ceil(threads as u64);
    let mut groups: Vec<&[Job<'_>]> = Vec::with_capacity(threads);
    let (mut start, mut bytes) = (0, 0u64);
    for (i, j) in jobs.iter().enumerate() {
        bytes += j.sealed.len() as u64;
        if bytes >= share {
            groups.push(&jobs[start..=i]);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < jobs.len() {
        groups.push(&jobs[start..]);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| s.spawn(move || g.iter().map(open).collect::<Result<Vec<_>>>()))
            .collect();
        let mut out = Vec::with_capacity(jobs.len());
        for h in handles {
            let part = h
                .join()
                .map_err(|_| Error::InvalidArgument("a blob-opening thread panicked".into()))??;
            out.extend(part);
        }
        Ok(out)
    })
}
