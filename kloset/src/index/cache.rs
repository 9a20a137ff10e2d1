//! The on-disk index of one store on this host: sorted runs of records and
//! a manifest naming them, the packs they number and the index objects they
//! cover, kept up to date from the store's index objects.
//!
//! The store's index objects stay the truth; this cache is disposable. It
//! is rebuilt from scratch when an index object it covers is gone (a prune
//! superseded it), when its manifest fails its MAC, or when a block failed
//! its MAC at a lookup. New index objects become a new run; when there are
//! more than [`MAX_RUNS`], the smallest are merged. Every change happens
//! under an exclusive `flock` on the directory's lock file, so the CLI and
//! the daemon can share it; readers keep their files open, so a run
//! deleted by the next update stays readable to them.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::record::{self, Slot};
use super::run::{Merge, Run, RunMeta, RunScan};
use super::sorter::{Sorter, merge_into};
use super::{IndexFile, kind_bit};
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId, StoreId};
use crate::repository::IndexProblem;

/// Runs kept before the smallest are merged.
pub const MAX_RUNS: usize = 4;
const MANIFEST: &str = "manifest";
const MANIFEST_VERSION: u32 = 2;

/// The index objects to read: each path, with its id when the name is one.
pub type Listed = Vec<(String, Option<IndexId>)>;

/// Reads the listed index objects, calling the visitor with each; `None`
/// when one vanished meanwhile.
pub type Visit<'a> =
    dyn FnMut(Listed, &mut dyn FnMut(IndexId, IndexFile)) -> Result<Option<Vec<IndexProblem>>> + 'a;

#[derive(Default, Serialize, Deserialize)]
struct Manifest {
    v: u32,
    files: Vec<IndexId>,
    packs: Vec<PackId>,
    #[serde(with = "serde_bytes")]
    pack_kinds: Vec<u8>,
    runs: Vec<RunMeta>,
    /// Entries whose numbers do not fit a record.
    overflow: Vec<(BlobId, Slot)>,
}

/// The cache directory of one store.
#[derive(Debug)]
pub struct IndexCache {
    root: PathBuf,
    dir: PathBuf,
    key: Zeroizing<[u8; 32]>,
}

/// What an update gives the index.
#[derive(Debug)]
pub struct Loaded {
    /// The runs and the overflow entries.
    pub table: Table,
    /// The index objects covered.
    pub files: Vec<IndexId>,
    /// The packs, by number.
    pub packs: Vec<PackId>,
    /// The kinds of blob in each pack.
    pub pack_kinds: Vec<u8>,
}

/// How an update ended.
#[derive(Debug)]
pub enum Update {
    /// The cache covers every readable listed object.
    Done(Box<Loaded>, Vec<IndexProblem>),
    /// An object vanished while it was read: list again.
    Vanished,
    /// The directory cannot be used (not private, not writable).
    Unusable,
}

impl IndexCache {
    /// The index cache of `store` under `root`, authenticated with `key`.
    pub fn open(root: &Path, store: StoreId, key: &[u8; 32]) -> IndexCache {
        IndexCache {
            root: root.to_path_buf(),
            dir: root.join(store.to_hex()).join("index"),
            key: Zeroizing::new(*key),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Brings the cache up to date with `listed` (the store's index
    /// objects), reading the new ones through `visit`, and opens it.
    pub fn update(&self, listed: Listed, visit: &mut Visit<'_>) -> Result<Update> {
        if !crate::tree_cache::private_dir(&self.root, &self.dir, "index cache") {
            return Ok(Update::Unusable);
        }
        let _lock = self.lock()?;
        match self.update_locked(listed.clone(), visit)? {
            Update::Done(loaded, problems) => Ok(Update::Done(loaded, problems)),
            Update::Unusable => {
                // A run could not be opened: start over, once.
                tracing::warn!(dir = %self.dir.display(), "index cache damaged; rebuilding it");
                let _ = fs::remove_file(self.dir.join(MANIFEST));
                match self.update_locked(listed, visit)? {
                    Update::Unusable => Err(Error::corrupt(
                        self.dir.display().to_string(),
                        "the index cache was rebuilt and still cannot be read",
                    )),
                    other => Ok(other),
                }
            }
            Update::Vanished => Ok(Update::Vanished),
        }
    }

    fn lock(&self) -> Result<File> {
        let path = self.dir.join("lock");
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|source| Error::Io {
                op: "opening",
                path: path.clone(),
                source,
            })?;
        file.lock().map_err(|source| Error::Io {
            op: "locking",
            path,
            source,
        })?;
        Ok(file)
    }

    fn update_locked(&self, listed: Listed, visit: &mut Visit<'_>) -> Result<Update> {
        let present: HashSet<IndexId> = listed.iter().filter_map(|(_, id)| *id).collect();
        let mut m = match self.read_manifest() {
            Some(m) if m.files.iter().all(|f| present.contains(f)) => m,
            Some(_) => {
                tracing::info!(dir = %self.dir.display(), "index objects were superseded (a prune); rebuilding the index cache");
                Manifest::default()
            }
            None => Manifest::default(),
        };
        m.v = MANIFEST_VERSION;
        let covered: HashSet<IndexId> = m.files.iter().copied().collect();
        let wanted: Listed = listed
            .into_iter()
            .filter(|(_, id)| id.is_none_or(|id| !covered.contains(&id)))
            .collect();
        let mut problems = Vec::new();
        if !wanted.is_empty() {
            let mut sorter = Sorter::new(&self.dir, &self.key);
            let mut failed = None;
            let visited = visit(wanted, &mut |id, file| {
                if failed.is_none()
                    && let Err(e) = add_object(&mut m, &mut sorter, id, &file)
                {
                    failed = Some(e);
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            let Some(found) = visited else {
                return Ok(Update::Vanished);
            };
            problems = found;
            if let Some(run) = sorter.finish()? {
                m.runs.push(run);
            }
            self.compact(&mut m)?;
            self.write_manifest(&m)?;
            self.remove_unreferenced(&m);
        }
        let mut runs = Vec::with_capacity(m.runs.len());
        let total_blocks: u64 = m.runs.iter().map(RunMeta::blocks).sum();
        let budget = (super::blocks::budget_bytes() / super::run::BLOCK_LEN) as u64;
        for meta in &m.runs {
            let share = (budget * meta.blocks()).div_ceil(total_blocks.max(1));
            match Run::open(&self.dir, meta, &self.key, share as usize) {
                Ok(run) => runs.push(run),
                Err(e) => {
                    tracing::warn!(error = %e, "index cache run unreadable");
                    return Ok(Update::Unusable);
                }
            }
        }
        let mut overflow: HashMap<BlobId, Vec<Slot>> = HashMap::new();
        for (id, slot) in m.overflow {
            overflow.entry(id).or_default().push(slot);
        }
        Ok(Update::Done(
            Box::new(Loaded {
                table: Table { runs, overflow },
                files: m.files,
                packs: m.packs,
                pack_kinds: m.pack_kinds,
            }),
            problems,
        ))
    }

    /// Keeps the runs few, so a lookup probes few: size-tiered, the two
    /// smallest are merged while the smaller is at least a quarter of the
    /// next (the runs of one long backup become one; a day's small run
    /// beside a store's big one stays apart), and the smallest while there
    /// are more than [`MAX_RUNS`]. Runs stay sorted largest first, the
    /// order lookups probe them in.
    fn compact(&self, m: &mut Manifest) -> Result<()> {
        loop {
            m.runs.sort_by_key(|r| std::cmp::Reverse(r.records));
            let n = m.runs.len();
            let tiered = n >= 2 && m.runs[n - 1].records * 4 >= m.runs[n - 2].records;
            if !tiered && n <= MAX_RUNS {
                return Ok(());
            }
            let keep = if tiered { n - 2 } else { MAX_RUNS - 1 };
            self.merge_runs(m, keep)?;
        }
    }

    /// Merges the runs after the first `keep` (largest first) into one.
    fn merge_runs(&self, m: &mut Manifest, keep: usize) -> Result<()> {
        let small = m.runs.split_off(keep);
        let opened = small
            .iter()
            .map(|meta| Run::open(&self.dir, meta, &self.key, 0))
            .collect::<Result<Vec<_>>>()?;
        let merged = merge_into(&self.dir, &self.key, opened.iter().map(Run::scan).collect())?;
        m.runs.push(merged);
        Ok(())
    }

    fn manifest_mac(&self, body: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(b"kloset index manifest\0");
        h.update(body);
        h.finalize()
    }

    fn read_manifest(&self) -> Option<Manifest> {
        let path = self.dir.join(MANIFEST);
        let bytes = fs::read(&path).ok()?;
        let (body, mac) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        if self.manifest_mac(body).as_bytes() != mac {
            tracing::warn!(path = %path.display(), "index cache manifest fails its MAC; rebuilding");
            return None;
        }
        match rmp_serde::from_slice::<Manifest>(body) {
            Ok(m) if m.v == MANIFEST_VERSION && m.packs.len() == m.pack_kinds.len() => Some(m),
            _ => {
                tracing::warn!(path = %path.display(), "index cache manifest unreadable; rebuilding");
                None
            }
        }
    }

    /// Writes the manifest under a temporary name, syncs it and renames it.
    fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let mut bytes = rmp_serde::to_vec(m).map_err(|e| Error::encode("index manifest", e))?;
        let mac = self.manifest_mac(&bytes);
        bytes.extend_from_slice(mac.as_bytes());
        let path = self.dir.join(MANIFEST);
        let tmp = self
            .dir
            .join(format!(".manifest.{}.tmp", rand::random::<u64>()));
        let io = |op, source| Error::Io {
            op,
            path: tmp.clone(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("creating", e))?;
        file.write_all(&bytes).map_err(|e| io("writing", e))?;
        file.sync_all().map_err(|e| io("syncing", e))?;
        fs::rename(&tmp, &path).map_err(|e| io("renaming", e))?;
        Ok(())
    }

    /// Deletes run and temporary files the manifest does not name (left by
    /// an earlier update, or by one that died).
    fn remove_unreferenced(&self, m: &Manifest) {
        let keep: HashSet<String> = m.runs.iter().map(RunMeta::file_name).collect();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = (name.starts_with("run-") && !keep.contains(&name))
                || (name.starts_with(".manifest.") && name.ends_with(".tmp"));
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Adds one index object's packs to the manifest and its records to the
/// sorter.
fn add_object(
    m: &mut Manifest,
    sorter: &mut Sorter<'_>,
    id: IndexId,
    file: &IndexFile,
) -> Result<()> {
    m.files.push(id);
    for p in &file.packs {
        let number = u32::try_from(m.packs.len())
            .map_err(|_| Error::InvalidArgument("more than 4 billion packs".into()))?;
        m.packs.push(p.id);
        m.pack_kinds
            .push(p.blobs.iter().fold(0, |k, b| k | kind_bit(b.kind)));
        for b in &p.blobs {
            let slot = Slot::of(number, b);
            match record::encode(&b.id, &slot) {
                Some(r) => sorter.push(r)?,
                None => m.overflow.push((b.id, slot)),
            }
        }
    }
    Ok(())
}

/// The opened runs and overflow entries.
#[derive(Debug)]
pub struct Table {
    runs: Vec<Run>,
    overflow: HashMap<BlobId, Vec<Slot>>,
}

impl Table {
    /// Every copy of `id`.
    pub fn lookup(&self, id: &BlobId, out: &mut Vec<Slot>) -> Result<()> {
        self.lookup_until(id, out, |_| false)
    }

    /// Copies of `id`, probing the runs largest first and stopping after
    /// the run that gave a copy `enough` accepts.
    pub fn lookup_until(
        &self,
        id: &BlobId,
        out: &mut Vec<Slot>,
        enough: impl Fn(&Slot) -> bool,
    ) -> Result<()> {
        for run in &self.runs {
            let before = out.len();
            run.lookup(id, out)?;
            if out[before..].iter().any(&enough) {
                return Ok(());
            }
        }
        if let Some(slots) = self.overflow.get(id) {
            out.extend_from_slice(slots);
        }
        Ok(())
    }

    /// Distinct ids (a blob in two runs counts twice: copies written by
    /// two hosts at once, which is rare).
    pub fn distinct(&self) -> u64 {
        self.runs.iter().map(|r| r.meta().distinct).sum::<u64>() + self.overflow.len() as u64
    }

    /// Every record of every run, merged in id order.
    pub fn scan(&self) -> Result<Merge<RunScan<'_>>> {
        Merge::new(self.runs.iter().map(Run::scan).collect())
    }

    /// The entries kept outside the runs.
    pub fn overflow(&self) -> impl Iterator<Item = (&BlobId, &Slot)> {
        self.overflow
            .iter()
            .flat_map(|(id, slots)| slots.iter().map(move |s| (id, s)))
    }

    /// The runs (for tests and stats).
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// A table of overflow entries only (for tests).
    #[cfg(test)]
    pub fn of_overflow(entries: Vec<(BlobId, Slot)>) -> Table {
        let mut overflow: HashMap<BlobId, Vec<Slot>> = HashMap::new();
        for (id, slot) in entries {
            overflow.entry(id).or_default().push(slot);
        }
        Table {
            runs: Vec::new(),
            overflow,
        }
    }
}
