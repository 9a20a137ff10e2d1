//! The concurrent blob writer: deduplicate, compress, seal, pack, upload.
//!
//! Any number of threads call [`Writer::save_blob`] at once; each does its
//! own hashing, compression and encryption, so that work spreads over all
//! cores. Sealed blobs go into the current pack of their kind (tree blobs
//! and data blobs never share a pack, so readers can cache whole tree
//! packs, see [`crate::tree_cache`]); a full pack is handed to a
//! bounded channel drained by uploader threads, so memory stays bounded by
//! `(uploaders + 2) × pack_size` plus what the callers hold.
//!
//! Crash safety: an index object is written only after the packs it lists
//! are durable, and [`Writer::finish`] returns only after every pack and
//! index is durable. The caller then commits its snapshot through the
//! returned [`Commit`], which still holds the writer's lock.
//!
//! Prune safety (FORMAT.md §16): the writer takes its shared lock, then
//! reads the marks, then brings the index up to date and lists the packs.
//! It never deduplicates against a blob whose indexed copy is in a marked
//! pack or in a pack the listing does not show. It holds its lock until
//! the snapshot object is written, and commits only while the lock is
//! provably its own (`HeldLock::ensure_alive` before, `within_fence`
//! after; a snapshot written too late is deleted again).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::codec;
use crate::crypto::{Keys, ObjectKind};
use crate::error::{Error, Result};
use crate::id::{BlobId, BlobKind, IndexId};
use crate::index::{IndexPack, encode_file};
use crate::lock::{HeldLock, LockFence, LockKind};
use crate::marks::Marked;
use crate::pack::{FinishedPack, PackBuilder};
use crate::repository::Repository;
use crate::storage::{Key, Storage};
use crate::tree_cache::TreeCache;

/// Blobs listed before an intermediate index object is written, so a crash
/// in a long backup leaves most of its data indexed.
const INDEX_FLUSH_BLOBS: usize = 100_000;
/// Blobs per pack at most, so a trailer stays far below the readers' bound
/// (about 70 bytes per entry) even for huge packs of tiny blobs.
const MAX_PACK_BLOBS: usize = 200_000;
/// Uploads in flight at once.
const UPLOADERS: usize = 3;
/// Blobs of this session held in the in-memory index before the index is
/// read again, so that, on a store with an on-disk index, they move there.
const SPILL_BLOBS: usize = 100_000;

/// Counters of what a writer added.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Blobs added.
    pub blobs_added: AtomicU64,
    /// Their plaintext bytes.
    pub bytes_added: AtomicU64,
    /// Bytes written to storage for them.
    pub bytes_stored: AtomicU64,
    /// Packs uploaded.
    pub packs: AtomicU64,
}

#[derive(Default)]
struct Shared {
    uploaded: Mutex<Vec<IndexPack>>,
    uploaded_blobs: AtomicU64,
    written_indexes: Mutex<Vec<(IndexId, Vec<IndexPack>)>>,
    /// An uploader wrote an index object the writer has not absorbed yet.
    indexed: AtomicBool,
    error: Mutex<Option<Error>>,
    index_each_pack: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Shared {
    fn fail(&self, e: Error) {
        let mut slot = lock(&self.error);
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn failed(&self) -> Option<String> {
        lock(&self.error).as_ref().map(|e| e.to_string())
    }
}

/// Writes blobs into packs and packs into the store.
pub struct Writer<'r> {
    repo: &'r Repository,
    lock: Option<HeldLock>,
    marked: Marked,
    /// The pack being filled, per blob kind ([`kind_slot`]).
    current: [Mutex<PackBuilder>; 2],
    pending: Mutex<HashSet<BlobId>>,
    tx: Option<Sender<FinishedPack>>,
    shared: Arc<Shared>,
    uploaders: Vec<JoinHandle<()>>,
    stats: WriterStats,
    /// In-memory blobs at which the index is next read again.
    spill_at: AtomicUsize,
}

impl std::fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("stats", &self.stats)
            .finish()
    }
}

impl<'r> Writer<'r> {
    /// A writer for a backup: see [`Writer::for_operation`].
    pub fn new(repo: &'r Repository) -> Result<Self> {
        Self::for_operation(repo, "backup")
    }

    /// Takes a shared lock for `operation`, reads the garbage-collection
    /// marks, brings the index up to date, lists the packs, and starts the
    /// uploader threads.
    pub fn for_operation(repo: &'r Repository, operation: &str) -> Result<Self> {
        repo.header().check_writable()?;
        let lock = HeldLock::acquire(
            repo.storage(),
            repo.keys(),
            LockKind::Shared,
            operation,
            repo.lock_timing(),
        )?;
        let mut marked = crate::marks::load(repo.storage(), repo.keys())?;
        repo.avoid_packs(marked.packs());
        repo.refresh_index()?;
        let listed = repo.list_packs()?;
        let missing: Vec<_> = repo
            .index()
            .packs()
            .iter()
            .filter(|p| !listed.contains(p))
            .copied()
            .collect();
        marked.add(missing);
        let (tx, rx) = bounded::<FinishedPack>(1);
        let shared = Arc::new(Shared::default());
        let mut uploaders = Vec::new();
        for i in 0..UPLOADERS {
            let rx = rx.clone();
            let shared = shared.clone();
            let storage = repo.storage().clone();
            let keys = repo.keys().clone();
            let level = repo.config().compression_level;
            let fence = lock.fence();
            let cache = repo.tree_cache().cloned();
            let handle = std::thread::Builder::new()
                .name(format!("kloset-upload-{i}"))
                .spawn(move || upload_loop(rx, shared, storage, keys, level, fence, cache))
                .map_err(|e| {
                    Error::io("start uploader thread for", repo.storage().location(), e)
                })?;
            uploaders.push(handle);
        }
        Ok(Writer {
            repo,
            lock: Some(lock),
            marked,
            current: [
                Mutex::new(PackBuilder::new(repo.config().pack_size as usize)),
                Mutex::new(PackBuilder::new(0)),
            ],
            pending: Mutex::new(HashSet::new()),
            tx: Some(tx),
            shared,
            uploaders,
            stats: WriterStats::default(),
            spill_at: AtomicUsize::new(SPILL_BLOBS),
        })
    }

    /// Makes every uploaded pack indexed at once: a small index object is
    /// written right after each pack, so a process killed part-way loses
    /// at most the packs still in flight, and a rerun deduplicates against
    /// everything else. [`Writer::finish`] then writes one merged index and
    /// only after it deletes the per-pack ones it supersedes (FORMAT.md
    /// §16). Used by sync, whose runs are long and resumable.
    pub fn index_each_pack(&self) {
        self.shared.index_each_pack.store(true, Ordering::SeqCst);
    }

    /// What was added so far.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Whether the store already has a usable copy of a blob, or this
    /// writer is adding one. Copies in packs marked for deletion do not count.
    pub fn has_blob(&self, id: &BlobId) -> bool {
        self.indexed_usable(id) || lock(&self.pending).contains(id)
    }

    fn indexed_usable(&self, id: &BlobId) -> bool {
        match self.repo.index().get(id) {
            Ok(Some(loc)) => !self.marked.contains(&loc.pack),
            Ok(None) => false,
            Err(e) => {
                // Storing the blob again is safe; the cache is rebuilt at
                // the next open.
                tracing::warn!(error = %e, "index lookup failed; storing the blob again");
                false
            }
        }
    }

    /// Moves what the uploaders indexed so far into the repository's index
    /// and out of `pending`, so a long backup holds each new blob once (in
    /// the index) instead of three times (index, pending set, written
    /// entries). A blob is in the index before it leaves `pending`, so
    /// [`Writer::has_blob`] never misses it. Not for writers that index each
    /// pack (sync): their per-pack objects are merged and deleted at the end.
    fn absorb_indexed(&self) {
        if self.shared.index_each_pack.load(Ordering::SeqCst)
            // Read before swapping: a swap on every save would write the
            // shared flag's cache line from every worker.
            || !self.shared.indexed.load(Ordering::Relaxed)
            || !self.shared.indexed.swap(false, Ordering::SeqCst)
        {
            return;
        }
        let written = std::mem::take(&mut *lock(&self.shared.written_indexes));
        for (id, packs) in written {
            self.repo.index_add(Some(id), &packs);
            let mut pending = lock(&self.pending);
            for blob in packs.iter().flat_map(|p| &p.blobs) {
                pending.remove(&blob.id);
            }
        }
        self.spill_to_disk();
    }

    /// On a store with an on-disk index, once this session's blobs in
    /// memory reach [`SPILL_BLOBS`] more, reads the index again: the index
    /// objects written so far become a run of the on-disk table and the
    /// in-memory map starts empty. (On a small store the index stays in
    /// memory, and is read again only every [`SPILL_BLOBS`].)
    fn spill_to_disk(&self) {
        if self.repo.index_cache().is_none() {
            return;
        }
        let at = self.spill_at.load(Ordering::Relaxed);
        if self.repo.index().memory_blobs() < at
            || self
                .spill_at
                .compare_exchange(at, usize::MAX, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return; // not yet, or another thread is at it
        }
        if let Err(e) = self.repo.refresh_index() {
            tracing::warn!(error = %e, "could not move this backup's blobs to the on-disk index; they stay in memory");
        }
        let held = self.repo.index().memory_blobs();
        self.spill_at.store(held + SPILL_BLOBS, Ordering::SeqCst);
    }

    /// Stores one blob unless the store already has it. Returns its id and
    /// whether it was new. Safe to call from many threads at once.
    pub fn save_blob(&self, kind: BlobKind, raw: &[u8]) -> Result<(BlobId, bool)> {
        self.absorb_indexed();
        if let Some(msg) = self.shared.failed() {
            return Err(Error::InvalidArgument(format!(
                "an earlier upload failed: {msg}"
            )));
        }
        if raw.len() > codec::MAX_OBJECT_SIZE {
            return Err(Error::InvalidArgument(format!(
                "a {kind:?} blob of {} bytes is larger than the 1 GiB limit (a directory with too many entries?)",
                raw.len()
            )));
        }
        let id = self.repo.keys().blob_id(kind, raw);
        if self.indexed_usable(&id) || !lock(&self.pending).insert(id) {
            return Ok((id, false));
        }
        let encoded = codec::encode(raw, self.repo.config().compression_level);
        let sealed = self
            .repo
            .keys()
            .seal(ObjectKind::from(kind), id.as_bytes(), &encoded)?;
        self.stats.blobs_added.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_added
            .fetch_add(raw.len() as u64, Ordering::Relaxed);
        self.stats
            .bytes_stored
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        let full = {
            // A pack is finished before the blob that would take it past
            // the pack size, so a data pack's buffer (allocated at the pack
            // size) never grows: growing doubles it.
            let pack_size = self.repo.config().pack_size as usize;
            let mut current = lock(&self.current[kind_slot(kind)]);
            let full = !current.is_empty()
                && (current.len() + sealed.len() > pack_size
                    || current.blob_count() >= MAX_PACK_BLOBS);
            let fresh = || {
                PackBuilder::new(match kind {
                    BlobKind::Data => pack_size,
                    BlobKind::Tree => 0, // grows as needed: most tree packs are small
                })
            };
            let finished = full.then(|| std::mem::replace(&mut *current, fresh()));
            current.push(kind, id, raw.len() as u32, &sealed);
            finished
        };
        if let Some(pack) = full {
            self.send(pack)?;
        }
        Ok((id, true))
    }

    fn send(&self, pack: PackBuilder) -> Result<()> {
        let finished = pack.finish(self.repo.keys())?;
        self.stats.packs.fetch_add(1, Ordering::Relaxed);
        match &self.tx {
            Some(tx) => tx
                .send(finished)
                .map_err(|_| Error::InvalidArgument("the uploaders stopped".into())),
            None => Err(Error::InvalidArgument("writer already finished".into())),
        }
    }

    /// Uploads what is left, waits for every upload, writes the index, and
    /// adds the new packs to the repository's in-memory index. When this
    /// returns `Ok`, everything saved is durable and indexed, and the
    /// returned [`Commit`] still holds the lock.
    pub fn finish(mut self) -> Result<Commit<'r>> {
        let mut sent = Ok(());
        for slot in &self.current {
            let last = std::mem::replace(&mut *lock(slot), PackBuilder::new(0));
            if !last.is_empty() && sent.is_ok() {
                sent = self.send(last);
            }
        }
        self.tx = None;
        for h in self.uploaders.drain(..) {
            if h.join().is_err() {
                self.shared
                    .fail(Error::InvalidArgument("an uploader thread panicked".into()));
            }
        }
        sent?;
        if let Some(e) = lock(&self.shared.error).take() {
            return Err(e);
        }
        let rest = std::mem::take(&mut *lock(&self.shared.uploaded));
        if !rest.is_empty() {
            // As in the uploaders: never index packs a prune that took this
            // writer over may have deleted.
            if let Some(held) = &self.lock {
                held.ensure_alive()?;
            }
            let id = write_index(
                self.repo.storage(),
                self.repo.keys(),
                self.repo.config().compression_level,
                &rest,
            )?;
            lock(&self.shared.written_indexes).push((id, rest));
        }
        let mut written = std::mem::take(&mut *lock(&self.shared.written_indexes));
        if self.shared.index_each_pack.load(Ordering::SeqCst) && written.len() > 1 {
            // Merge the per-pack indexes: the merged one is durable before
            // any of those it supersedes is deleted, and written only while
            // the lock is ours, like every index object.
            if let Some(held) = &self.lock {
                held.ensure_alive()?;
            }
            let all: Vec<IndexPack> = written.iter().flat_map(|(_, p)| p.clone()).collect();
            let id = write_index(
                self.repo.storage(),
                self.repo.keys(),
                self.repo.config().compression_level,
                &all,
            )?;
            for (old, _) in &written {
                // Best effort: a leftover only duplicates entries.
                let _ = self.repo.storage().delete(&Key::Index(*old).path());
            }
            written = vec![(id, all)];
        }
        for (id, packs) in written {
            self.repo.index_add(Some(id), &packs);
        }
        let held = self.lock.take().ok_or_else(|| {
            Error::InvalidArgument("the writer's lock was already handed on".into())
        })?;
        Ok(Commit {
            repo: self.repo,
            lock: held,
        })
    }
}

/// Which of the writer's current packs takes blobs of `kind`.
fn kind_slot(kind: BlobKind) -> usize {
    match kind {
        BlobKind::Data => 0,
        BlobKind::Tree => 1,
    }
}

/// A finished writer's data, durable and indexed, waiting for the snapshot
/// that refers to it. Holds the writer's lock until then; dropping it
/// releases the lock and commits nothing.
#[derive(Debug)]
pub struct Commit<'r> {
    repo: &'r Repository,
    lock: HeldLock,
}

impl Commit<'_> {
    /// Writes the snapshot object while the lock is provably ours, then
    /// releases the lock. If the lock was lost, nothing is written (or what
    /// was written too late is deleted again) and the error says so.
    pub fn commit(self, snapshot: &crate::snapshot::Snapshot) -> Result<()> {
        self.lock.ensure_alive()?;
        self.repo.save_snapshot(snapshot)?;
        if let Err(e) = self.lock.within_fence() {
            // Written after the lock may have been taken over: a prune may
            // not have seen it. Take it back; the data stays for a retry.
            let _ = self
                .repo
                .storage()
                .delete(&Key::Snapshot(snapshot.id).path());
            return Err(e);
        }
        drop(self.lock);
        Ok(())
    }

    /// The lock (tests).
    pub fn lock(&self) -> &HeldLock {
        &self.lock
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        // Abandoned without finish (error or cancel): stop the uploaders.
        // Uploaded packs stay unreferenced until prune collects them.
        self.tx = None;
        for h in self.uploaders.drain(..) {
            let _ = h.join();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn upload_loop(
    rx: Receiver<FinishedPack>,
    shared: Arc<Shared>,
    storage: Storage,
    keys: Arc<Keys>,
    level: i32,
    fence: LockFence,
    cache: Option<Arc<TreeCache>>,
) {
    for pack in rx {
        if shared.failed().is_some() {
            continue; // drain so senders never block
        }
        let tree_pack = pack.entries.iter().all(|e| e.kind == BlobKind::Tree);
        if let Err(e) = storage.put_new(Key::Pack(pack.id), pack.bytes.clone()) {
            shared.fail(e);
            continue;
        }
        if let (Some(cache), true) = (&cache, tree_pack) {
            cache.put(&pack.id, &pack.bytes);
        }
        let n = pack.entries.len() as u64;
        let batch = {
            let mut up = lock(&shared.uploaded);
            up.push(IndexPack {
                id: pack.id,
                blobs: pack.entries,
            });
            let total = shared.uploaded_blobs.fetch_add(n, Ordering::Relaxed) + n;
            if total as usize >= INDEX_FLUSH_BLOBS || shared.index_each_pack.load(Ordering::SeqCst)
            {
                shared.uploaded_blobs.store(0, Ordering::Relaxed);
                Some(std::mem::take(&mut *up))
            } else {
                None
            }
        };
        if let Some(batch) = batch {
            // A holder taken over may have had these packs deleted as
            // unreferenced: an index must not list them then.
            if let Err(e) = fence.ensure_alive() {
                shared.fail(e);
                continue;
            }
            match write_index(&storage, &keys, level, &batch) {
                Ok(id) => {
                    lock(&shared.written_indexes).push((id, batch));
                    shared.indexed.store(true, Ordering::SeqCst);
                }
                Err(e) => shared.fail(e),
            }
        }
    }
}

/// Writes one index object listing `packs`; returns its id.
pub fn write_index(
    storage: &Storage,
    keys: &Keys,
    level: i32,
    packs: &[IndexPack],
) -> Result<IndexId> {
    let id = IndexId::random();
    let plain = codec::encode(&encode_file(packs.to_vec())?, level);
    let sealed = keys.seal(ObjectKind::Index, id.as_bytes(), &plain)?;
    storage.put_new(Key::Index(id), Bytes::from(sealed))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_is_closed_before_a_blob_would_take_it_past_the_pack_size() {
        let storage = crate::Storage::open(&crate::Location::Memory, false).expect("storage");
        let mut options = crate::repository::CreateOptions {
            kdf: crate::crypto::KdfParams::with_cost(64, 1, 1),
            ..Default::default()
        };
        let pack_size: u64 = 64 << 10;
        options.config.pack_size = pack_size as u32;
        let repo = Repository::create(storage, b"pass", options).expect("create");
        let writer = Writer::new(&repo).expect("writer");
        // Incompressible blobs of 9,000 bytes: 7 fit in 64 KiB, an 8th
        // would not (closing a pack after it reached the size made packs of
        // 8 blobs, 72 kB).
        let blobs: Vec<Vec<u8>> = (0..100)
            .map(|_| (0..9_000).map(|_| rand::random::<u8>()).collect())
            .collect();
        for blob in &blobs {
            assert!(writer.save_blob(BlobKind::Data, blob).expect("save").1);
        }
        writer.finish().expect("finish");
        let packs = repo.storage().list(Some("packs")).expect("list");
        assert_eq!(packs.len(), 15, "100 blobs, 7 a pack: {packs:?}");
        for pack in &packs {
            // The trailer of 7 entries is well under 2 KiB.
            assert!(pack.size <= pack_size + 2048, "{pack:?}");
        }
        for blob in &blobs {
            let id = repo.keys().blob_id(BlobKind::Data, blob);
            assert_eq!(&repo.load_blob(BlobKind::Data, &id).expect("read"), blob);
        }
    }

    #[test]
    fn a_long_backup_moves_indexed_blobs_out_of_pending_and_still_deduplicates() {
        let storage = crate::Storage::open(&crate::Location::Memory, false).expect("storage");
        let options = crate::repository::CreateOptions {
            kdf: crate::crypto::KdfParams::with_cost(64, 1, 1),
            ..Default::default()
        };
        let repo = Repository::create(storage, b"pass", options).expect("create");
        let writer = Writer::new(&repo).expect("writer");
        let blob = |i: u64| i.to_le_bytes().repeat(3);
        let n = INDEX_FLUSH_BLOBS as u64 * 5 / 2;
        for i in 0..n {
            assert!(writer.save_blob(BlobKind::Data, &blob(i)).expect("save").1);
        }
        // The uploaders index the first full pack (200,000 blobs) while
        // saves go on; a later save absorbs that index object.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let (_, new) = writer.save_blob(BlobKind::Data, &blob(0)).expect("again");
            assert!(!new, "a saved blob is known, pending or absorbed");
            let pending = lock(&writer.pending).len();
            if pending <= n as usize - INDEX_FLUSH_BLOBS {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{pending} of {n} blobs still pending"
            );
            std::thread::yield_now();
        }
        for i in (0..n).step_by(997) {
            assert!(writer.has_blob(&repo.keys().blob_id(BlobKind::Data, &blob(i))));
        }
        writer.finish().expect("finish");
        assert_eq!(repo.index().blob_count() as u64, n);
        for i in (0..n).step_by(4999) {
            let id = repo.keys().blob_id(BlobKind::Data, &blob(i));
            assert_eq!(repo.load_blob(BlobKind::Data, &id).expect("read"), blob(i));
        }
    }
}
