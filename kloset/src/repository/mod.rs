//! Opening and creating a store; reading blobs, trees and snapshots.
//!
//! A [`Repository`] holds the storage, the derived keys, the configuration
//! and the merged index. Every read is authenticated: a blob is opened with
//! its kind and id as associated data, decompressed within the length the
//! index records, and its keyed hash recomputed and compared with its id.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use futures::StreamExt;

use crate::codec;
use crate::crypto::{KdfParams, Keys, ObjectKind};
use crate::error::{Error, ErrorKind, Result};
use crate::header::{Header, StoreConfig};
use crate::id::{PackId, SnapshotId, StoreId};
use crate::index::{Index, IndexCache};
use crate::lock::{HeldLock, LockKind, LockTiming};
use crate::snapshot::{SNAPSHOT_VERSION, Snapshot};
use crate::storage::{Key, SNAPSHOTS_DIR, Storage};
use crate::tree_cache::{TreeCache, cache_root};

pub(crate) mod index_load;
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
                compression_level: crate::header::DEFAULT_COMPRESSION_LEVEL,
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
            index_memory_max: index_load::index_memory_max(),
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
