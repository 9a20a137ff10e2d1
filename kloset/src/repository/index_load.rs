//! Loading the store's index: listing and reading index objects (streamed,
//! 8 at a time), and keeping the merged index, in memory or on disk,
//! up to date with them.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, RwLockReadGuard};

use futures::StreamExt;

use super::{IndexProblem, Repository};
use crate::codec;
use crate::crypto::{Keys, ObjectKind};
use crate::error::{Error, ErrorKind, Result};
use crate::id::IndexId;
use crate::index::cache::{Loaded, Update};
use crate::index::{Index, IndexCache, IndexFile};
use crate::storage::INDEX_DIR;

/// Attempts at loading the index objects when some vanish between the
/// listing and the read (a prune superseded them; the superseding object
/// is written before they are deleted, so listing again finds it).
const INDEX_LOAD_ATTEMPTS: usize = 5;

/// An index object as listed: its path, and its id when the name is one.
pub(crate) type ListedIndex = (String, Option<IndexId>);

/// Stops a prune at the first index object that could not be read.
fn stop_on_problems(problems: &[IndexProblem]) -> Result<()> {
    match problems.first() {
        None => Ok(()),
        Some(p) => Err(Error::corrupt(
            &p.object,
            format!(
                "{} (and {} more); prune stops and deletes nothing: run check",
                p.error,
                problems.len() - 1
            ),
        )),
    }
}

/// Index objects vanished while they were read, time after time.
fn vanishing(repo: &Repository) -> Error {
    Error::Storage {
        context: format!("reading the index of {}", repo.storage.location()),
        source: object_store::Error::Generic {
            store: "kloset",
            source: "index objects kept vanishing while they were read; try again".into(),
        },
    }
}

impl Repository {
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

    /// Every index object of the store sorted into an on-disk table under
    /// `scratch` (a private directory this process owns), for a prune:
    /// every copy of every blob, whatever the size of the store. Fails if
    /// any index object cannot be read: a prune must not decide on a
    /// partial index.
    pub(crate) fn index_table_in(&self, scratch: &Path) -> Result<Loaded> {
        let cache = IndexCache::open(scratch, self.store_id, &rand::random::<[u8; 32]>());
        for _ in 0..INDEX_LOAD_ATTEMPTS {
            let listed = self.list_index_objects()?;
            let mut visit = |wanted, f: &mut dyn FnMut(IndexId, IndexFile)| {
                self.visit_index_objects(wanted, &mut *f)
            };
            match cache.update(listed, &mut visit)? {
                Update::Done(loaded, problems) => {
                    stop_on_problems(&problems)?;
                    return Ok(*loaded);
                }
                Update::Vanished => continue,
                Update::Unusable => {
                    return Err(Error::InvalidArgument(format!(
                        "prune cannot use its scratch directory {}: not a private directory of this user",
                        scratch.display()
                    )));
                }
            }
        }
        Err(vanishing(self))
    }

    /// The store's index objects: each path, with its id when the name is
    /// one.
    pub(crate) fn list_index_objects(&self) -> Result<Vec<ListedIndex>> {
        Ok(self.list_index_objects_sized()?.0)
    }

    /// Reads the listed index objects, for a prune's index rewrite. Fails
    /// if one cannot be read or is gone.
    pub(crate) fn read_index_objects(
        &self,
        listed: Vec<ListedIndex>,
    ) -> Result<Vec<(IndexId, IndexFile)>> {
        let Some((files, problems)) = self.load_index_objects(listed)? else {
            return Err(vanishing(self));
        };
        stop_on_problems(&problems)?;
        Ok(files)
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
}

/// Bytes of index objects from which a store's index is kept on disk
/// (`KLOSET_INDEX_MEMORY_MAX`; 0 puts every index on disk). Below it the
/// index is a hash map in memory (about 60–120 bytes per blob), which is
/// faster; the default, 8 MiB, is about 200,000 blobs.
pub(super) fn index_memory_max() -> u64 {
    std::env::var("KLOSET_INDEX_MEMORY_MAX")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(8 << 20)
}

/// About how many blobs index objects of `bytes` list (an entry is about
/// 41 bytes sealed, ids being incompressible), capped so that a hostile
/// listing cannot make us reserve much: reserving up front saves the hash
/// table's last doubling, when the old and the new table are both held.
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
