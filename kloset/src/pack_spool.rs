//! The parts of packs that a restore from a remote store needs most of,
//! fetched once and served from unnamed local files.
//!
//! A restore's first pass notes, per data pack, the span its blobs lie in
//! (from the first wanted byte to the last) and the bytes and references it
//! will read there. A span of at least [`MIN_SPAN`] of which at least half
//! is wanted is fetched in one GET the first time any of its blobs is
//! needed, streamed into an unnamed file (`O_TMPFILE`: no name another user
//! could swap, gone when the process ends, even killed), and every later
//! read of it is a local `pread`. The file is dropped once every reference
//! counted for it was served. Other packs are read by ranges as before, and
//! so is a pack whose local copy cannot be made (a full cache disk).
//!
//! The count is per reference, not per distinct blob (a set of every blob
//! of a restore would cost memory per blob): a blob that many restored
//! files share counts once for each, so a span can be fetched for little
//! more than that one blob. The waste is bounded by the span (at most a
//! pack).
//!
//! Bounded: at most [`DEFAULT_MAX_BYTES`] (`KLOSET_SPOOL_MAX`) are held at
//! once; past that, a pack is read by ranges instead. Untrusted like the
//! store: what the spool returns is opened and verified by the caller like
//! bytes from the network, and an object shorter than the index says is
//! reported as damage of that pack.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, PackId};
use crate::index::Index;
use crate::repository::Repository;
use crate::storage::{Key, Storage};
use crate::tree_cache::private_dir;

/// Default bound of the bytes spooled at once.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Smaller spans are read by ranges: one or two requests anyway.
pub const MIN_SPAN: u64 = 1 << 20;

/// What a restore will read of one pack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Sealed bytes of the blob references (a blob referenced twice counts
    /// twice).
    pub bytes: u64,
    /// Blob references.
    pub refs: u64,
    /// Where the first wanted blob starts.
    pub start: u64,
    /// Where the last wanted blob ends.
    pub end: u64,
}

impl Wanted {
    /// Counts one reference to the sealed blob at `offset`, `length` long.
    pub fn add(&mut self, offset: u64, length: u64) {
        let end = offset + length;
        if self.refs == 0 {
            (self.start, self.end) = (offset, end);
        } else {
            (self.start, self.end) = (self.start.min(offset), self.end.max(end));
        }
        self.bytes += length;
        self.refs += 1;
    }

    /// Counts one reference to each of a file's `chunks` in the pack the
    /// index finds it in. A chunk the index lacks is not counted: reading
    /// it fails later, naming the file.
    pub fn count_chunks(
        wanted: &mut HashMap<PackId, Wanted>,
        index: &Index,
        chunks: &[BlobId],
    ) -> Result<()> {
        for chunk in chunks {
            if let Some(at) = index.get(chunk)? {
                wanted
                    .entry(at.pack)
                    .or_default()
                    .add(u64::from(at.offset), u64::from(at.length));
            }
        }
        Ok(())
    }

    fn span(&self) -> Range<u64> {
        self.start..self.end
    }
}

/// One spooled pack: its span and local copy, once fetched.
#[derive(Debug)]
struct Entry {
    span: Range<u64>,
    copy: Arc<OnceCell<Arc<Local>>>,
    /// References not served yet.
    refs_left: u64,
    /// Bytes this pack counts in [`State::held`]: none before anyone
    /// fetches it, its span's length from then on.
    held: u64,
}

/// The local copy of a span.
#[derive(Debug)]
struct Local {
    file: File,
    span: Range<u64>,
    /// Bytes the store returned (fewer than the span: a short object).
    len: u64,
}

#[derive(Debug, Default)]
struct State {
    packs: HashMap<PackId, Entry>,
    /// Bytes reserved or held by fetched copies.
    held: u64,
}

/// The spool of one restore.
#[derive(Debug)]
pub struct PackSpool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

impl PackSpool {
    /// Where a restore from `repo` can spool: the store's directory of
    /// the local cache (beside its tree cache, which
    /// [`cache_root`](crate::tree_cache::cache_root) places). `None` when
    /// the store is on local disk or the cache is off or not private to
    /// this user: then a restore need not count what it wants of each pack.
    pub fn dir_for(repo: &Repository) -> Option<PathBuf> {
        if !repo.storage().is_remote() {
            return None;
        }
        let root = repo.tree_cache()?.root().to_path_buf();
        let dir = root.join(repo.store_id().to_hex()).join("spool");
        private_dir(&root, &dir, "restore spool").then_some(dir)
    }

    /// The spool in `dir` (from [`PackSpool::dir_for`]) of a restore that
    /// reads `wanted`, bounded by `KLOSET_SPOOL_MAX`; `None` when no span
    /// is wanted enough.
    pub fn for_restore(dir: &Path, wanted: HashMap<PackId, Wanted>) -> Option<PackSpool> {
        let max_bytes = std::env::var("KLOSET_SPOOL_MAX")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_BYTES);
        let spool = PackSpool::plan(dir, wanted, max_bytes);
        if let Some(s) = &spool {
            tracing::debug!(packs = s.packs(), "restore fetches packs whole");
        }
        spool
    }

    /// A spool in `dir` for the spans of `wanted` of at least
    /// [`MIN_SPAN`] that are at least half wanted; `None` when there is
    /// none.
    pub fn plan(dir: &Path, wanted: HashMap<PackId, Wanted>, max_bytes: u64) -> Option<PackSpool> {
        let packs: HashMap<PackId, Entry> = wanted
            .into_iter()
            .filter(|(_, w)| {
                let span = w.end - w.start;
                span >= MIN_SPAN && w.bytes.saturating_mul(2) >= span
            })
            .map(|(id, w)| {
                let entry = Entry {
                    span: w.span(),
                    copy: Arc::default(),
                    refs_left: w.refs,
                    held: 0,
                };
                (id, entry)
            })
            .collect();
        if packs.is_empty() {
            return None;
        }
        Some(PackSpool {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(State { packs, held: 0 }),
        })
    }

    /// Packs the spool fetches spans of.
    pub fn packs(&self) -> usize {
        self.lock().packs.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `range` of `pack` from its local copy, fetching the span
    /// first if no one has yet. `None` when the pack is not spooled (or
    /// no longer, or the spool is full, or `range` lies outside the span):
    /// the caller reads the range from the store.
    pub async fn read(
        &self,
        storage: &Storage,
        pack: PackId,
        range: Range<u64>,
    ) -> Result<Option<Bytes>> {
        let (cell, span) = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let Some(entry) = state.packs.get_mut(&pack) else {
                return Ok(None);
            };
            if range.start < entry.span.start || range.end > entry.span.end {
                return Ok(None);
            }
            if entry.held == 0 {
                let size = entry.span.end - entry.span.start;
                if state.held + size > self.max_bytes {
                    return Ok(None);
                }
                entry.held = size;
                state.held += size;
            }
            (entry.copy.clone(), entry.span.clone())
        };
        let local = match cell
            .get_or_try_init(|| self.fetch(storage, pack, span))
            .await
        {
            Ok(local) => local.clone(),
            Err(e) if e.kind() == ErrorKind::Io => return Ok(self.give_up(pack, &e)),
            Err(e) => return Err(e),
        };
        let name = Key::Pack(pack).path();
        if range.end > local.span.start + local.len {
            return Err(Error::corrupt(
                &name,
                format!(
                    "truncated: wanted bytes {}..{}, the object ends at {}",
                    range.start,
                    range.end,
                    local.span.start + local.len
                ),
            ));
        }
        let mut out = vec![0u8; (range.end - range.start) as usize];
        let at = range.start - local.span.start;
        if let Err(e) = local.file.read_exact_at(&mut out, at) {
            let e = Error::io("read", format!("the local copy of {name}"), e);
            return Ok(self.give_up(pack, &e));
        }
        Ok(Some(Bytes::from(out)))
    }

    /// Fetches `span` of `pack` into an unnamed file (its room reserved by
    /// the caller, or again here after a failed fetch gave it back).
    async fn fetch(&self, storage: &Storage, pack: PackId, span: Range<u64>) -> Result<Arc<Local>> {
        {
            let mut guard = self.lock();
            let state = &mut *guard;
            if let Some(entry) = state.packs.get_mut(&pack)
                && entry.held == 0
            {
                entry.held = span.end - span.start;
                state.held += entry.held;
            }
        }
        let fetched = async {
            let mut file = tempfile::tempfile_in(&self.dir)
                .map_err(|e| Error::io("create a spool file in", &self.dir, e))?;
            let len = storage
                .get_range_to_file_async(&Key::Pack(pack).path(), span.clone(), &mut file)
                .await?;
            Ok::<_, Error>(Local { file, span, len })
        }
        .await;
        if fetched.is_err() {
            let mut state = self.lock();
            let held = state
                .packs
                .get_mut(&pack)
                .map_or(0, |e| std::mem::take(&mut e.held));
            state.held = state.held.saturating_sub(held);
        }
        fetched.map(Arc::new)
    }

    /// Stops spooling `pack` after a local failure (a full or failing
    /// cache disk): its blobs are read by ranges from the store instead,
    /// so the restore goes on. Returns `None`, what [`PackSpool::read`]
    /// answers for a pack it does not hold.
    fn give_up(&self, pack: PackId, e: &Error) -> Option<Bytes> {
        let mut state = self.lock();
        if let Some(entry) = state.packs.remove(&pack) {
            state.held = state.held.saturating_sub(entry.held);
            tracing::warn!(error = %e, "restore spool: reading the pack by ranges instead");
        }
        None
    }

    /// Records that `refs` references to blobs of `pack` were served; the
    /// local copy goes once every counted reference was.
    pub fn served(&self, pack: PackId, refs: u64) {
        let mut state = self.lock();
        let Some(entry) = state.packs.get_mut(&pack) else {
            return;
        };
        entry.refs_left = entry.refs_left.saturating_sub(refs);
        if entry.refs_left > 0 {
            return;
        }
        if let Some(entry) = state.packs.remove(&pack) {
            // A reader still holding the copy keeps the file open; its
            // space counts as free from now.
            state.held = state.held.saturating_sub(entry.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A remote storage over memory holding `packs` (each of `len` bytes,
    /// byte `i` of pack `p` being `p + i`).
    fn storage_with(packs: &[PackId], len: u64) -> Storage {
        let store = Arc::new(object_store::memory::InMemory::new());
        let storage =
            Storage::from_object_store(store, "", "s3://bucket/spool", None).expect("storage");
        for (p, id) in packs.iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|i| (p as u64 + i) as u8).collect();
            storage.put(Key::Pack(*id), Bytes::from(data)).expect("put");
        }
        storage
    }

    /// `refs` references of `bytes` in all, spread over `span`.
    fn wanted(span: Range<u64>, bytes: u64, refs: u64) -> Wanted {
        Wanted {
            bytes,
            refs,
            start: span.start,
            end: span.end,
        }
    }

    fn expect(p: u64, range: Range<u64>) -> Vec<u8> {
        range.map(|i| (p + i) as u8).collect()
    }

    #[test]
    fn wanted_counts_references_and_their_span() {
        let mut w = Wanted::default();
        w.add(500, 100);
        w.add(100, 50);
        w.add(500, 100);
        assert_eq!(w, wanted(100..600, 250, 3));
    }

    #[test]
    fn only_spans_wanted_for_half_their_length_are_spooled() {
        let packs = [PackId::random(), PackId::random(), PackId::random()];
        let dir = tempfile::tempdir().expect("dir");
        let w = HashMap::from([
            (packs[0], wanted(MIB..3 * MIB, MIB, 3)),
            (packs[1], wanted(0..2 * MIB, MIB - 1, 3)),
            (packs[2], wanted(0..MIB - 1, MIB - 1, 1)),
        ]);
        let spool = PackSpool::plan(dir.path(), w, 1 << 30).expect("a spool");
        assert_eq!(spool.packs(), 1, "half wanted, and at least MIN_SPAN");
        let storage = storage_with(&packs, 4 * MIB);
        let read = |p: usize, r: Range<u64>| storage.run(spool.read(&storage, packs[p], r));
        let got = read(0, 2 * MIB..2 * MIB + 4).expect("read");
        assert_eq!(got.as_deref(), Some(&expect(0, 2 * MIB..2 * MIB + 4)[..]));
        assert_eq!(spool.lock().held, 2 * MIB, "the span, not the pack");
        assert_eq!(
            read(0, MIB - 4..MIB + 4).expect("read"),
            None,
            "outside the span"
        );
        assert_eq!(read(1, 0..4).expect("read"), None);
        assert_eq!(read(2, 0..4).expect("read"), None);
    }

    #[test]
    fn the_bound_holds_and_a_fully_served_pack_makes_room() {
        let packs = [PackId::random(), PackId::random()];
        let dir = tempfile::tempdir().expect("dir");
        let w = HashMap::from([
            (packs[0], wanted(0..MIB, MIB, 2)),
            (packs[1], wanted(0..MIB, MIB, 1)),
        ]);
        // Room for one span at a time.
        let spool = PackSpool::plan(dir.path(), w, MIB + MIB / 2).expect("a spool");
        let storage = storage_with(&packs, MIB);
        let read = |p: usize, r: Range<u64>| storage.run(spool.read(&storage, packs[p], r));
        assert!(read(0, 0..2).expect("read").is_some());
        assert_eq!(spool.lock().held, MIB);
        assert_eq!(
            read(1, 0..2).expect("read"),
            None,
            "no room: read by ranges"
        );
        spool.served(packs[0], 1);
        assert_eq!(read(1, 0..2).expect("read"), None, "one reference is left");
        assert_eq!(
            read(0, MIB - 2..MIB).expect("read").as_deref(),
            Some(&expect(0, MIB - 2..MIB)[..]),
            "still served locally"
        );
        spool.served(packs[0], 1);
        assert_eq!(spool.lock().held, 0);
        assert_eq!(read(0, 0..2).expect("read"), None, "gone once served");
        assert_eq!(
            read(1, 5..7).expect("read").as_deref(),
            Some(&expect(1, 5..7)[..])
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "the copies have no names"
        );
    }

    #[test]
    fn an_object_shorter_than_the_index_says_is_damage_of_that_pack() {
        let pack = PackId::random();
        let dir = tempfile::tempdir().expect("dir");
        let w = HashMap::from([(pack, wanted(0..2 * MIB, 2 * MIB, 2))]);
        let spool = PackSpool::plan(dir.path(), w, 1 << 30).expect("a spool");
        let storage = storage_with(&[pack], MIB + 10);
        let err = storage
            .run(spool.read(&storage, pack, MIB..MIB + 20))
            .expect_err("short");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(
            err.to_string().contains(&Key::Pack(pack).path()),
            "names the pack: {err}"
        );
        let missing = PackId::random();
        let w = HashMap::from([(missing, wanted(0..MIB, MIB, 1))]);
        let spool = PackSpool::plan(dir.path(), w, 1 << 30).expect("a spool");
        let err = storage
            .run(spool.read(&storage, missing, 0..10))
            .expect_err("missing");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert_eq!(spool.lock().held, 0, "a failed fetch gives its room back");
    }

    #[test]
    fn a_local_failure_falls_back_to_ranged_reads() {
        let pack = PackId::random();
        let dir = tempfile::tempdir().expect("dir");
        let gone = dir.path().join("gone");
        let w = HashMap::from([(pack, wanted(0..MIB, MIB, 2))]);
        let spool = PackSpool::plan(&gone, w, 1 << 30).expect("a spool");
        let storage = storage_with(&[pack], MIB);
        assert_eq!(
            storage
                .run(spool.read(&storage, pack, 0..4))
                .expect("no error"),
            None,
            "no spool file can be made: read by ranges"
        );
        assert_eq!(spool.packs(), 0);
        assert_eq!(spool.lock().held, 0);
    }
}
