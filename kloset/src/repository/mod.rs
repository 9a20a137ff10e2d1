//! Opening and creating a store; reading blobs, trees and snapshots.
//!
//! A [`Repository`] holds the storage, the derived keys, the configuration
//! and the merged index. Every read is authenticated: a blob is opened with
//! its kind and id as associated data, decompressed within the length the
//! index records, and its keyed hash recomputed and compared with its id.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use bytes::Bytes;
use futures::StreamExt;

use crate::codec;
use crate::crypto::{KdfParams, Keys, ObjectKind};
use crate::error::{Error, ErrorKind, Result};
use crate::header::{Header, StoreConfig};
use crate::id::{IndexId, PackId, SnapshotId, StoreId};
use crate::index::cache::Update;
use crate::index::{Index, IndexCache, IndexFile};
use crate::lock::{HeldLock, LockKind, LockTiming};
use crate::snapshot::{SNAPSHOT_VERSION, Snapshot};
use crate::storage::{INDEX_DIR, Key, SNAPSHOTS_DIR, Storage};
use crate::tree_cache::{TreeCache, cache_root};

mod read;

/// Options for creating a store.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Configuration to seal into the header.
    pub config: StoreConfig,
    /// Passphrase KDF cost.
    pub kdf: KdfParams,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            config: StoreConfig {
                v: 1,
                chunker: Default::default(),
                pack_size: 16 << 20,
                compression_level: 3,
                created_ns: now_ns(),
            },
            kdf: KdfParams::generate(),
        }
    }
}

/// Current time as Unix nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A problem met while loading index objects; the store stays usable.
#[derive(Clone, Debug)]
pub struct IndexProblem {
    /// The index object.
    pub object: String,
    /// What was wrong.
    pub error: String,
}

/// A snapshot object that could not be read: its name and the error.
pub type SnapshotProblem = (String, Error);

/// An open Kloset store.
#[derive(Debug)]
pub struct Repository {
    storage: Storage,
    keys: Arc<Keys>,
    config: StoreConfig,
    store_id: StoreId,
    header: Header,
    index: RwLock<Index>,
    index_problems: Mutex<Vec<IndexProblem>>,
    /// Packs whose copies the index uses only when there is no other.
    avoid: Mutex<HashSet<PackId>>,
    timing: LockTiming,
    /// Whole tree packs kept on local disk (stores that are not local).
    tree_cache: Option<Arc<TreeCache>>,
    /// The on-disk index of this store on this host, used once the
    /// store's index objects reach `index_memory_max` bytes.
    index_cache: Option<Arc<IndexCache>>,
    index_memory_max: u64,
}

/// Attempts at loading the index objects when some vanish between the
/// listing and the read (a prune superseded them; the superseding object
/// is written before they are deleted, so listing again finds it).
const INDEX_LOAD_ATTEMPTS: usize = 5;

/// An index object as listed: its path, and its id when the name is one.
type ListedIndex = (String, Option<IndexId>);

/// What a location holds.
#[derive(Debug)]
pub enum Probe {
    /// Nothing at all.
    Empty,
    /// A Kloset store header.
    Store(Box<Header>),
    /// Something else; the string describes it.
    Foreign(String),
}

/// Looks at a location without a passphrase.
pub fn probe(storage: &Storage) -> Result<Probe> {
    match storage.get(Key::Header) {
        Ok(bytes) => match Header::parse(&bytes)? {
            Some(h) => Ok(Probe::Store(Box::new(h))),
            None => Ok(Probe::Foreign(format!(
                "an object named {} that is not a kloset header",
                Key::Header.path()
            ))),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let objects = storage.list(None)?;
            match objects.first() {
                None => Ok(Probe::Empty),
                Some(first) => Ok(Probe::Foreign(format!(
                    "{} object(s) such as {:?}",
                    objects.len(),
                    first.path
                ))),
            }
        }
        Err(e) => Err(e),
    }
}

impl Repository {
    /// Initialises a new store in an empty location.
    pub fn create(
        storage: Storage,
        passphrase: &[u8],
        options: CreateOptions,
    ) -> Result<Repository> {
        if passphrase.is_empty() {
            return Err(Error::InvalidArgument(
                "the passphrase must not be empty".into(),
            ));
        }
        match probe(&storage)? {
            Probe::Empty => {}
            Probe::Store(_) => {
                return Err(Error::AlreadyExists {
                    location: storage.location().to_string(),
                    what: "a kloset store".into(),
                });
            }
            Probe::Foreign(what) => {
                return Err(Error::AlreadyExists {
                    location: storage.location().to_string(),
                    what: format!("other data ({what}); a store needs an empty location"),
                });
            }
        }
        let (header, opened) = Header::create(passphrase, options.kdf, &options.config)?;
        storage.put_new(Key::Header, Bytes::from(header.to_json()?))?;
        let repo = Repository::from_opened(storage, opened);
        // The index is empty; remember that it was read.
        repo.refresh_index()?;
        Ok(repo)
    }

    /// Opens an existing store: checks the header, verifies the passphrase,
    /// then loads and merges every index object.
    pub fn open(storage: Storage, passphrase: &[u8]) -> Result<Repository> {
        let header = match probe(&storage)? {
            Probe::Store(h) => h,
            Probe::Empty => {
                return Err(Error::NotAStore {
                    location: storage.location().to_string(),
                    found: None,
                });
            }
            Probe::Foreign(what) => {
                return Err(Error::NotAStore {
                    location: storage.location().to_string(),
                    found: Some(what),
                });
            }
        };
        let opened = header.open(passphrase, storage.location())?;
        let repo = Repository::from_opened(storage, opened);
        repo.refresh_index()?;
        Ok(repo)
    }

    /// The same store opened again without the passphrase (no key
    /// derivation): a fresh index, so packs written since this handle was
    /// opened (by a backup running elsewhere) are found.
    pub fn reloaded(&self) -> Result<Repository> {
        let repo = Repository {
            storage: self.storage.clone(),
            keys: self.keys.clone(),
            config: self.config.clone(),
            store_id: self.store_id,
            header: self.header.clone(),
            index: RwLock::new(Index::new()),
            index_problems: Mutex::new(Vec::new()),
            avoid: Mutex::new(self.avoid.lock().unwrap_or_else(|e| e.into_inner()).clone()),
            timing: self.timing,
            tree_cache: self.tree_cache.clone(),
            index_cache: self.index_cache.clone(),
            index_memory_max: self.index_memory_max,
        };
        repo.refresh_index()?;
        Ok(repo)
    }

    fn from_opened(storage: Storage, opened: crate::header::Opened) -> Repository {
        // A local store is its own cache; memory needs none.
        let tree_cache = storage
            .is_remote()
            .then(cache_root)
            .flatten()
            .map(|root| Arc::new(TreeCache::open(&root, opened.store_id)));
        let index_cache = (!storage.is_memory())
            .then(cache_root)
            .flatten()
            .map(|root| {
                Arc::new(IndexCache::open(
                    &root,
                    opened.store_id,
                    opened.keys.cache_mac_key(),
                ))
            });
        Repository {
            tree_cache,
            index_cache,
            index_memory_max: index_memory_max(),
            storage,
            keys: Arc::new(opened.keys),
            config: opened.config,
            store_id: opened.store_id,
            header: opened.header,
            index: RwLock::new(Index::new()),
            index_problems: Mutex::new(Vec::new()),
            avoid: Mutex::new(HashSet::new()),
            timing: LockTiming::from_env(),
        }
    }

    /// Brings the in-memory index up to date with the index objects in the
    /// store: new objects are merged; if one that was merged is gone (a
    /// prune superseded it), the whole index is read again. Readers of the
    /// index meanwhile see the old one, never an empty one.
    pub fn refresh_index(&self) -> Result<()> {
        for _ in 0..INDEX_LOAD_ATTEMPTS {
            let (listed, listed_bytes) = self.list_index_objects_sized()?;
            if let Some(cache) = self.index_cache.as_ref()
                && listed_bytes >= self.index_memory_max
            {
                let mut visit = |wanted, f: &mut dyn FnMut(IndexId, IndexFile)| {
                    self.visit_index_objects(wanted, &mut *f)
                };
                match cache.update(listed.clone(), &mut visit)? {
                    Update::Done(loaded, problems) => {
                        let avoid = self.avoid.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let mut index = Index::from_table(*loaded, avoid);
                        index.mark_loaded();
                        *self.index_mut() = index;
                        *self
                            .index_problems
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = problems;
                        return Ok(());
                    }
                    Update::Vanished => continue,
                    Update::Unusable => {} // held in memory instead
                }
            }
            let present: HashSet<IndexId> = listed.iter().filter_map(|(_, id)| *id).collect();
            let avoid = self.avoid.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let (known, full) = {
                let index = self.index();
                let full = index.on_disk();
                let known: HashSet<IndexId> = index.files().iter().copied().collect();
                let full = full
                    || !index.is_loaded()
                    || *index.avoided() != avoid
                    || known.iter().any(|id| !present.contains(id));
                (known, full)
            };
            let wanted = if full {
                listed
            } else {
                listed
                    .into_iter()
                    .filter(|(_, id)| id.is_none_or(|id| !known.contains(&id)))
                    .collect()
            };
            if full {
                // Merged as they arrive: a store's decoded index objects
                // are never all in memory at once.
                let mut index = Index::avoiding(avoid);
                index.reserve(expected_blobs(listed_bytes));
                let visited = self
                    .visit_index_objects(wanted, |id, file| index.merge(Some(id), &file.packs))?;
                let Some(problems) = visited else {
                    continue; // an object vanished between listing and reading
                };
                index.mark_loaded();
                *self.index_mut() = index;
                *self
                    .index_problems
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = problems;
            } else {
                let Some((files, problems)) = self.load_index_objects(wanted)? else {
                    continue; // an object vanished between listing and reading
                };
                let mut all_problems = self
                    .index_problems
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let mut index = self.index_mut();
                for (id, file) in &files {
                    index.merge(Some(*id), &file.packs);
                }
                all_problems.extend(problems);
            }
            return Ok(());
        }
        Err(Error::Storage {
            context: format!("reading the index of {}", self.storage.location()),
            source: object_store::Error::Generic {
                store: "kloset",
                source: "index objects kept vanishing while they were read (a prune rewriting them?); try again".into(),
            },
        })
    }

    /// The index objects in the store: each path, with its id when the
    /// name is one (a stray name is reported by the loader).
    fn list_index_objects(&self) -> Result<Vec<ListedIndex>> {
        Ok(self.list_index_objects_sized()?.0)
    }

    /// [`Self::list_index_objects`], with the objects' total size.
    fn list_index_objects_sized(&self) -> Result<(Vec<ListedIndex>, u64)> {
        let listed = self.storage.list(Some(INDEX_DIR))?;
        let bytes = listed.iter().map(|l| l.size).sum();
        let objects = listed
            .into_iter()
            .map(|l| {
                let name = l.path.rsplit('/').next().unwrap_or_default().to_string();
                (l.path, IndexId::from_hex(&name).ok())
            })
            .collect();
        Ok((objects, bytes))
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        match self.index.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Every index object with its content, for a prune. Fails if any
    /// cannot be read: a prune must not decide on a partial index.
    pub(crate) fn read_index_objects(&self) -> Result<Vec<(IndexId, IndexFile)>> {
        for _ in 0..INDEX_LOAD_ATTEMPTS {
            let listed = self.list_index_objects()?;
            let Some((files, problems)) = self.load_index_objects(listed)? else {
                continue;
            };
            if let Some(p) = problems.first() {
                return Err(Error::corrupt(
                    &p.object,
                    format!(
                        "{} (and {} more); prune stops and deletes nothing: run check",
                        p.error,
                        problems.len() - 1
                    ),
                ));
            }
            return Ok(files);
        }
        Err(Error::Storage {
            context: format!("reading the index of {}", self.storage.location()),
            source: object_store::Error::Generic {
                store: "kloset",
                source: "index objects kept vanishing while they were read; try again".into(),
            },
        })
    }

    /// Reads and decodes index objects. `Ok(None)` when one was listed but
    /// is gone now (list again).
    #[allow(clippy::type_complexity)]
    fn load_index_objects(
        &self,
        listed: Vec<(String, Option<IndexId>)>,
    ) -> Result<Option<(Vec<(IndexId, IndexFile)>, Vec<IndexProblem>)>> {
        let mut files = Vec::new();
        let problems = self.visit_index_objects(listed, |id, file| files.push((id, file)))?;
        Ok(problems.map(|p| (files, p)))
    }

    /// Reads and decodes index objects, eight at a time, handing each to
    /// `visit` as soon as it is decoded, so a caller that merges them
    /// holds one merged index and a few decoded objects, never all of
    /// them. Returns the objects that could not be read, or `Ok(None)` when
    /// one was listed but is gone now (list again; what was visited is to
    /// be thrown away).
    fn visit_index_objects(
        &self,
        listed: Vec<(String, Option<IndexId>)>,
        mut visit: impl FnMut(IndexId, IndexFile),
    ) -> Result<Option<Vec<IndexProblem>>> {
        let keys = self.keys.clone();
        let storage = self.storage.clone();
        self.storage.run(async {
            let mut results = futures::stream::iter(listed.into_iter().map(|(path, id)| {
                let keys = keys.clone();
                let storage = storage.clone();
                async move {
                    let result = match id {
                        None => Err(Error::corrupt(&path, "not a valid index object name")),
                        Some(id) => match storage.get_async(&path).await {
                            Ok(bytes) => decode_index(&keys, id, &bytes, &path),
                            Err(e) => Err(e),
                        },
                    };
                    (path, result, id)
                }
            }))
            .buffer_unordered(8);
            let mut problems = Vec::new();
            while let Some((path, result, id)) = results.next().await {
                match (result, id) {
                    (Ok(file), Some(id)) => visit(id, file),
                    (Err(e), _) if e.kind() == ErrorKind::NotFound => return Ok(None),
                    (Err(e), _) if e.is_retryable() => return Err(e),
                    (Err(e), _) => problems.push(IndexProblem {
                        object: path,
                        error: e.to_string(),
                    }),
                    (Ok(_), None) => {}
                }
            }
            Ok(Some(problems))
        })
    }

    /// The storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The derived keys.
    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// The store configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The store id.
    pub fn store_id(&self) -> StoreId {
        self.store_id
    }

    /// The store format version.
    pub fn format_version(&self) -> u32 {
        self.header.version
    }

    /// The store header as read when the store was opened.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// How long locks on this store live (`KLOSET_LOCK_STALE_AFTER`).
    pub fn lock_timing(&self) -> LockTiming {
        self.timing
    }

    /// The local tree cache, if this store uses one.
    pub fn tree_cache(&self) -> Option<&Arc<TreeCache>> {
        self.tree_cache.as_ref()
    }

    /// The same handle with another tree cache (`None`: none).
    pub fn with_tree_cache(mut self, cache: Option<TreeCache>) -> Repository {
        self.tree_cache = cache.map(Arc::new);
        self
    }

    /// The same handle with other lock timing (tests).
    pub fn with_lock_timing(mut self, timing: LockTiming) -> Repository {
        self.timing = timing;
        self
    }

    /// Takes a shared lock for reading (`operation`: restore, check, …),
    /// reads the marks, then brings the index up to date preferring copies
    /// outside marked packs, so that neither a prune that finished before
    /// the lock nor one running beside it removes what the index points to.
    pub fn read_lock(&self, operation: &str) -> Result<HeldLock> {
        let lock = HeldLock::acquire(
            &self.storage,
            &self.keys,
            LockKind::Shared,
            operation,
            self.timing,
        )?;
        let marked = crate::marks::load(&self.storage, &self.keys)?;
        self.avoid_packs(marked.packs());
        self.refresh_index()?;
        Ok(lock)
    }

    /// Makes the index prefer copies of blobs outside `packs`; the next
    /// [`Repository::refresh_index`] rebuilds it when this changes.
    pub fn avoid_packs(&self, packs: HashSet<PackId>) {
        *self.avoid.lock().unwrap_or_else(|e| e.into_inner()) = packs;
    }

    /// The packs that exist in the store.
    pub fn list_packs(&self) -> Result<HashSet<PackId>> {
        Ok(self
            .storage
            .list(Some(crate::storage::PACKS_DIR))?
            .into_iter()
            .filter_map(|l| {
                let name = l.path.rsplit('/').next()?;
                PackId::from_hex(name).ok()
            })
            .collect())
    }

    /// Rewrites the store header as version 2 (the lock protocol that
    /// prune needs), keeping the store id, keys and configuration. Only
    /// the header changes. See `ops::upgrade` for the checks around it.
    pub(crate) fn write_upgraded_header(&self) -> Result<Header> {
        let up = self.header.upgraded()?;
        self.storage.put(Key::Header, Bytes::from(up.to_json()?))?;
        Ok(up)
    }

    /// Index objects that could not be read when the index was loaded.
    pub fn index_problems(&self) -> Vec<IndexProblem> {
        self.index_problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The on-disk index cache, if the store has one on this host.
    pub fn index_cache(&self) -> Option<&Arc<IndexCache>> {
        self.index_cache.as_ref()
    }

    /// This handle with another on-disk index cache (`None`: the index
    /// stays in memory), used from `memory_max` bytes of index objects on;
    /// the index is read again.
    pub fn with_index_cache(mut self, cache: Option<IndexCache>, memory_max: u64) -> Result<Self> {
        self.index_cache = cache.map(Arc::new);
        self.index_memory_max = memory_max;
        *self.index_mut() = Index::new();
        self.refresh_index()?;
        Ok(self)
    }

    /// Read access to the merged index.
    pub fn index(&self) -> RwLockReadGuard<'_, Index> {
        match self.index.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds freshly written packs to the in-memory index.
    pub(crate) fn index_add(&self, id: Option<IndexId>, packs: &[crate::index::IndexPack]) {
        self.index_mut().merge(id, packs);
    }

    /// Reads every snapshot header, 16 at a time, and hands each to `visit`
    /// as it arrives (in no particular order) with its object path; one
    /// that cannot be read comes as its error. Memory follows what `visit`
    /// keeps, not the number of snapshots. Fails at once on an error that
    /// may pass (the store was unreachable), without visiting the rest.
    pub fn visit_snapshots(&self, mut visit: impl FnMut(&str, Result<Snapshot>)) -> Result<()> {
        let listed = self.storage.list(Some(SNAPSHOTS_DIR))?;
        let keys = self.keys.clone();
        let storage = self.storage.clone();
        self.storage.run(async {
            let mut results = futures::stream::iter(listed.into_iter().map(|l| {
                let keys = keys.clone();
                let storage = storage.clone();
                async move {
                    let name = l.path.rsplit('/').next().unwrap_or_default().to_string();
                    let result = match SnapshotId::from_hex(&name) {
                        Err(_) => Err(Error::corrupt(&l.path, "not a valid snapshot object name")),
                        Ok(id) => match storage.get_async(&l.path).await {
                            Ok(bytes) => decode_snapshot(&keys, id, &bytes, &l.path),
                            Err(e) => Err(e),
                        },
                    };
                    (l.path, result)
                }
            }))
            .buffer_unordered(16);
            while let Some((path, result)) = results.next().await {
                match result {
                    Err(e) if e.is_retryable() => return Err(e),
                    other => visit(&path, other),
                }
            }
            Ok(())
        })
    }

    /// Lists every snapshot, sorted by time. Snapshots that cannot be read
    /// are returned separately with their error.
    pub fn snapshots_with_problems(&self) -> Result<(Vec<Snapshot>, Vec<SnapshotProblem>)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        self.visit_snapshots(|path, r| match r {
            Ok(s) => good.push(s),
            Err(e) => bad.push((path.to_string(), e)),
        })?;
        good.sort_by(|a, b| a.time_ns.cmp(&b.time_ns).then(a.id.cmp(&b.id)));
        bad.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((good, bad))
    }

    /// Lists every readable snapshot, sorted by time; fails if one is damaged.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let (good, mut bad) = self.snapshots_with_problems()?;
        match bad.pop() {
            None => Ok(good),
            Some((_, e)) => Err(e),
        }
    }

    /// Resolves `latest` or an id prefix; fails, naming them, when snapshot
    /// objects that may be the one asked for cannot be read (see
    /// [`crate::snapshot::resolve_minding`]).
    pub fn resolve_snapshot(&self, spec: &str) -> Result<Snapshot> {
        self.resolve_snapshot_minding(spec, false).map(|(s, _)| s)
    }

    /// Resolves `latest` or an id prefix; with `skip_unreadable`, among the
    /// readable snapshots, returning the unreadable objects passed over.
    pub fn resolve_snapshot_minding(
        &self,
        spec: &str,
        skip_unreadable: bool,
    ) -> Result<(Snapshot, Vec<SnapshotProblem>)> {
        let (good, bad) = self.snapshots_with_problems()?;
        crate::snapshot::resolve_minding(&good, bad, spec, skip_unreadable)
    }

    /// Writes a snapshot header. Call only after its data is durable.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let name = format!("snapshot {}", snapshot.id.to_hex());
        let plain = codec::encode(
            &codec::to_msgpack(snapshot, &name)?,
            self.config.compression_level,
        );
        let sealed = self
            .keys
            .seal(ObjectKind::Snapshot, snapshot.id.as_bytes(), &plain)?;
        self.storage
            .put_new(Key::Snapshot(snapshot.id), Bytes::from(sealed))
    }
}

/// About how many blobs index objects of `bytes` list (an entry is about
/// 41 bytes sealed, ids being incompressible), capped so that a hostile
/// listing cannot make us reserve much: reserving up front saves the hash
/// table's last doubling, when the old and the new table are both held.
/// Bytes of index objects from which a store's index is kept on disk
/// (`KLOSET_INDEX_MEMORY_MAX`; 0 puts every index on disk). Below it the
/// index is a hash map in memory (about 60–120 bytes per blob), which is
/// faster; the default, 8 MiB, is about 200,000 blobs.
fn index_memory_max() -> u64 {
    std::env::var("KLOSET_INDEX_MEMORY_MAX")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(8 << 20)
}

fn expected_blobs(bytes: u64) -> usize {
    usize::try_from(bytes / 40)
        .unwrap_or(usize::MAX)
        .min(16 << 20)
}

pub(crate) fn decode_index(
    keys: &Keys,
    id: IndexId,
    bytes: &[u8],
    name: &str,
) -> Result<IndexFile> {
    let plain = keys.open(ObjectKind::Index, id.as_bytes(), bytes, name)?;
    let file: IndexFile =
        codec::from_msgpack(&codec::decode(&plain, codec::MAX_OBJECT_SIZE, name)?, name)?;
    codec::check_version(file.v, 1, name)?;
    Ok(file)
}

pub(crate) fn decode_snapshot(
    keys: &Keys,
    id: SnapshotId,
    bytes: &[u8],
    name: &str,
) -> Result<Snapshot> {
    let plain = keys.open(ObjectKind::Snapshot, id.as_bytes(), bytes, name)?;
    let snap: Snapshot =
        codec::from_msgpack(&codec::decode(&plain, codec::MAX_OBJECT_SIZE, name)?, name)?;
    codec::check_version(snap.v, SNAPSHOT_VERSION, name)?;
    if snap.id != id {
        return Err(Error::corrupt(name, "snapshot id does not match its name"));
    }
    Ok(snap)
}
