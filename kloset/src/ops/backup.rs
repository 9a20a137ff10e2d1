//! Backup: walk an importer's tree (a local directory by default), store new
//! content, write a snapshot last.
//!
//! Directories are walked depth first; the entries of each directory are
//! processed in parallel on a rayon pool (reading, chunking, hashing,
//! compressing and sealing happen on the worker threads), then the
//! directory's tree blob is stored. A file whose size, mtime, ctime and inode
//! match the parent snapshot is not read again. Unreadable files (a file
//! that vanished since it was listed, too) are recorded in the snapshot and
//! skipped; a file whose size changed while it was read is kept as read
//! (its size is its content's) and recorded. The snapshot header is written only after the
//! writer has made every pack and index durable.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use globset::{Glob, GlobSet, GlobSetBuilder};
use rayon::prelude::*;

use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::fsmeta::{hostname, unchanged};
use crate::id::{BlobId, BlobKind, SnapshotId};
use crate::import::{FsImporter, Importer, SourcePath};
use crate::progress::Progress;
use crate::repository::{Repository, now_ns};
use crate::snapshot::{FileError, SNAPSHOT_VERSION, Snapshot, SnapshotStats};
use crate::tree::{Node, NodeKind, Tree, is_safe_name};
use crate::writer::Writer;

/// How to choose the parent snapshot for change detection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ParentPolicy {
    /// The latest snapshot with the same host and source.
    #[default]
    Latest,
    /// This snapshot.
    Snapshot(SnapshotId),
    /// None: read every file.
    None,
}

/// What to back up and how.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Source name recorded in the snapshot (defaults to the path).
    pub source: Option<String>,
    /// Host recorded in the snapshot (defaults to this host).
    pub host: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Glob patterns; a match on the relative path or the name skips an entry.
    pub excludes: Vec<String>,
    /// Parent for change detection.
    pub parent: ParentPolicy,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Live counters and cancellation.
    pub progress: Arc<Progress>,
    /// Fail without writing a snapshot if any entry cannot be read (for
    /// sources such as database dumps, where a partial snapshot is useless).
    pub all_or_nothing: bool,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            source: None,
            host: None,
            tags: Vec::new(),
            excludes: Vec::new(),
            parent: ParentPolicy::Latest,
            threads: 0,
            progress: Arc::new(Progress::new()),
            all_or_nothing: false,
        }
    }
}

#[derive(Default)]
struct Counters {
    files: AtomicU64,
    dirs: AtomicU64,
    others: AtomicU64,
    bytes: AtomicU64,
    unchanged: AtomicU64,
}

struct Ctx<'r> {
    repo: &'r Repository,
    importer: &'r dyn Importer,
    writer: Writer<'r>,
    excludes: GlobSet,
    progress: Arc<Progress>,
    errors: Mutex<Vec<FileError>>,
    counters: Counters,
    chunkers: Mutex<Vec<Chunker>>,
}

/// Why a file was not stored: its own I/O (recorded, the backup goes on)
/// or something that stops the backup.
pub(super) enum FileFailure {
    Io(std::io::Error),
    Fatal(Error),
}

impl From<std::io::Error> for FileFailure {
    fn from(e: std::io::Error) -> Self {
        FileFailure::Io(e)
    }
}

/// Backs up the directory or regular file `root` and returns the new
/// snapshot (a file is stored as the one entry of its snapshot's root).
pub fn backup(repo: &Repository, root: &Path, options: &BackupOptions) -> Result<Snapshot> {
    backup_from(repo, &FsImporter::new(root), options)
}

/// Backs up what `importer` presents and returns the new snapshot.
pub fn backup_from(
    repo: &Repository,
    importer: &dyn Importer,
    options: &BackupOptions,
) -> Result<Snapshot> {
    backup_with(repo, importer, options, None)
}

/// What a copy made by sync keeps of its original instead of taking it
/// from the backup: identity, time, host and recorded errors.
pub(crate) struct CopyOf<'a> {
    /// The original snapshot.
    pub original: &'a Snapshot,
    /// Its identity (recorded as the copy's origin).
    pub origin: crate::snapshot::Origin,
    /// Called with the writer before anything is stored.
    pub prepare: &'a (dyn Fn(&Writer<'_>) + Sync),
}

/// The backup, or a sync's copy when `copy` is given: then the parent is
/// none and the snapshot header repeats the original's.
pub(crate) fn backup_with(
    repo: &Repository,
    importer: &dyn Importer,
    options: &BackupOptions,
    copy: Option<&CopyOf<'_>>,
) -> Result<Snapshot> {
    let started = Instant::now();
    let time_ns = copy.map_or_else(now_ns, |c| c.original.time_ns);
    let origin = importer.origin();
    let mut root_node = importer
        .root()
        .map_err(|e| Error::io("read", origin.as_str(), e))?;
    if root_node.kind != NodeKind::Dir {
        return Err(Error::InvalidArgument(format!(
            "{origin} is not a directory"
        )));
    }
    let source = options.source.clone().unwrap_or_else(|| origin.clone());
    let host = options.host.clone().unwrap_or_else(hostname);
    let parent = match &options.parent {
        _ if copy.is_some() => None,
        ParentPolicy::None => None,
        ParentPolicy::Snapshot(id) => Some(repo.resolve_snapshot(&id.to_hex())?),
        ParentPolicy::Latest => {
            let (snaps, _) = repo.snapshots_with_problems()?;
            snaps
                .into_iter()
                .rev()
                .find(|s| s.host == host && s.source == source)
        }
    };
    let mut excludes = GlobSetBuilder::new();
    for pattern in &options.excludes {
        let glob = Glob::new(pattern)
            .map_err(|e| Error::InvalidArgument(format!("bad exclude pattern {pattern:?}: {e}")))?;
        excludes.add(glob);
    }
    let writer = Writer::for_operation(repo, if copy.is_some() { "sync" } else { "backup" })?;
    if let Some(c) = copy {
        (c.prepare)(&writer);
    }
    let ctx = Ctx {
        repo,
        importer,
        writer,
        excludes: excludes
            .build()
            .map_err(|e| Error::InvalidArgument(format!("bad exclude patterns: {e}")))?,
        progress: options.progress.clone(),
        errors: Mutex::new(Vec::new()),
        counters: Counters::default(),
        chunkers: Mutex::new(Vec::new()),
    };
    let pool = super::worker_pool(options.threads, "backup")?;
    let parent_tree = parent.as_ref().map(|p| p.tree);
    let tree =
        pool.install(|| ctx.backup_dir(&SourcePath::root(), &root_node, parent_tree.as_ref()))?;
    let Some(tree) = tree else {
        // The root could not be listed: its recorded error says why (for
        // a sync, which object of the source store could not be read).
        let root = SourcePath::root().display();
        let errors = ctx.errors.lock().unwrap_or_else(|p| p.into_inner());
        let why = errors
            .iter()
            .find(|e| e.path == root)
            .or(errors.first())
            .map_or_else(|| "unreadable".to_string(), |e| e.error.clone());
        return Err(Error::io(
            "read directory",
            origin.as_str(),
            std::io::Error::other(why),
        ));
    };
    ctx.progress.check_cancelled()?;
    let Ctx {
        writer,
        counters,
        errors,
        ..
    } = ctx;
    let stats = writer.stats();
    let (blobs_added, bytes_added, bytes_stored) = (
        stats.blobs_added.load(Ordering::Relaxed),
        stats.bytes_added.load(Ordering::Relaxed),
        stats.bytes_stored.load(Ordering::Relaxed),
    );
    let commit = writer.finish()?;
    let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    if options.all_or_nothing && !errors.is_empty() {
        let shown: Vec<String> = errors
            .iter()
            .take(3)
            .map(|e| format!("{}: {}", e.path, e.error))
            .collect();
        return Err(Error::Incomplete(format!(
            "{} entr{} of {origin} could not be read, so no snapshot was written: {}",
            errors.len(),
            if errors.len() == 1 { "y" } else { "ies" },
            shown.join("; ")
        )));
    }
    root_node.name = serde_bytes::ByteBuf::new();
    root_node.subtree = Some(tree);
    if let Some(c) = copy {
        let mut kept = c.original.errors.clone();
        kept.extend(errors);
        errors = kept;
    }
    let snapshot = Snapshot {
        v: SNAPSHOT_VERSION,
        id: SnapshotId::random(),
        time_ns,
        host,
        source,
        tags: options.tags.clone(),
        parent: parent.map(|p| p.id),
        tree,
        root: root_node,
        stats: SnapshotStats {
            files: counters.files.into_inner(),
            dirs: counters.dirs.into_inner() + 1,
            others: counters.others.into_inner(),
            bytes: counters.bytes.into_inner(),
            files_unchanged: counters.unchanged.into_inner(),
            blobs_added,
            bytes_added,
            bytes_stored,
            duration_ms: started.elapsed().as_millis() as u64,
        },
        errors,
        utc_offset_s: Some(local_utc_offset(time_ns)),
        origin: None,
    };
    let snapshot = match copy {
        None => snapshot,
        Some(c) => Snapshot {
            host: c.original.host.clone(),
            source: c.original.source.clone(),
            tags: c.original.tags.clone(),
            utc_offset_s: c.original.utc_offset_s,
            origin: Some(c.origin),
            ..snapshot
        },
    };
    commit.commit(&snapshot)?;
    Ok(snapshot)
}

impl Ctx<'_> {
    fn record(&self, path: &SourcePath, error: impl std::fmt::Display) {
        self.progress.error();
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        errors.push(FileError {
            path: path.display(),
            error: error.to_string(),
        });
    }

    fn excluded(&self, path: &SourcePath) -> bool {
        !self.excludes.is_empty()
            && (self
                .excludes
                .is_match(Path::new(OsStr::from_bytes(path.as_bytes())))
                || self
                    .excludes
                    .is_match(Path::new(OsStr::from_bytes(path.name()))))
    }

    /// Stores one directory, listed as `node`; `Ok(None)` if it could not
    /// be read (recorded).
    fn backup_dir(
        &self,
        dir: &SourcePath,
        node: &Node,
        parent: Option<&BlobId>,
    ) -> Result<Option<BlobId>> {
        self.progress.check_cancelled()?;
        let result = self.backup_listed(dir, node, parent);
        self.importer.leave(dir);
        result
    }

    fn backup_listed(
        &self,
        dir: &SourcePath,
        node: &Node,
        parent: Option<&BlobId>,
    ) -> Result<Option<BlobId>> {
        let mut listed = match self.importer.list(dir, node) {
            Ok(l) => l,
            Err(e) => {
                self.record(dir, e);
                return Ok(None);
            }
        };
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        listed.dedup_by(|a, b| a.name == b.name);
        let parent_tree = parent.and_then(|id| self.repo.load_tree(id).ok());
        let nodes: Vec<Result<Option<Node>>> = listed
            .into_par_iter()
            .map(|entry| {
                let path = dir.join(&entry.name);
                if !is_safe_name(&entry.name) {
                    self.record(
                        &path,
                        "this name cannot be stored in a snapshot (empty, `.`, `..`, or holds `/` or NUL)",
                    );
                    return Ok(None);
                }
                let old = parent_tree.as_ref().and_then(|t| t.find(&entry.name));
                match entry.node {
                    Ok(mut node) => {
                        node.name = serde_bytes::ByteBuf::from(entry.name);
                        self.backup_entry(&path, node, old)
                    }
                    Err(e) => {
                        if !self.excluded(&path) {
                            self.record(&path, e);
                        }
                        Ok(None)
                    }
                }
            })
            .collect();
        let mut entries = Vec::with_capacity(nodes.len());
        for n in nodes {
            if let Some(node) = n? {
                entries.push(node);
            }
        }
        let tree = Tree::new(entries);
        let (id, _) = self.writer.save_blob(BlobKind::Tree, &tree.encode()?)?;
        Ok(Some(id))
    }

    fn backup_entry(
        &self,
        path: &SourcePath,
        mut node: Node,
        old: Option<&Node>,
    ) -> Result<Option<Node>> {
        self.progress.check_cancelled()?;
        if self.excluded(path) {
            return Ok(None);
        }
        node.content.clear();
        node.subtree = None;
        match node.kind {
            NodeKind::Dir => {
                let parent_sub = old
                    .filter(|o| o.kind == NodeKind::Dir)
                    .and_then(|o| o.subtree);
                match self.backup_dir(path, &node, parent_sub.as_ref())? {
                    Some(id) => node.subtree = Some(id),
                    None => return Ok(None),
                }
                self.counters.dirs.fetch_add(1, Ordering::Relaxed);
            }
            NodeKind::Symlink => {
                if node.target.is_none() {
                    self.record(path, "the importer gave no link target");
                    return Ok(None);
                }
                self.counters.others.fetch_add(1, Ordering::Relaxed);
            }
            NodeKind::File => {
                if let Some(old) = old.filter(|o| {
                    unchanged(o, &node) && o.content.iter().all(|c| self.writer.has_blob(c))
                }) {
                    node.content = old.content.clone();
                    self.counters.unchanged.fetch_add(1, Ordering::Relaxed);
                    self.progress.add_bytes(node.size);
                } else {
                    match self.read_file(path, &node) {
                        Ok((content, size, opened)) => {
                            if let Some(opened) = opened {
                                // The snapshot keeps what was read (its size
                                // is the content's), and says the file was
                                // moving: the backup ends partial.
                                if opened.size != size {
                                    self.record(
                                        path,
                                        format!(
                                            "changed size while it was read ({} bytes when \
                                             opened, {size} read); the snapshot holds what was read",
                                            opened.size
                                        ),
                                    );
                                }
                                node = Node {
                                    name: node.name,
                                    ..opened
                                };
                            }
                            node.content = content;
                            node.size = size;
                        }
                        Err(FileFailure::Io(e)) => {
                            self.record(path, e);
                            return Ok(None);
                        }
                        Err(FileFailure::Fatal(e)) => return Err(e),
                    }
                }
                self.counters.files.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes.fetch_add(node.size, Ordering::Relaxed);
                self.progress.file_finished();
            }
            _ => {
                self.counters.others.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(Some(node))
    }

    fn read_file(
        &self,
        path: &SourcePath,
        node: &Node,
    ) -> std::result::Result<(Vec<BlobId>, u64, Option<Node>), FileFailure> {
        let opened = self.importer.open(path, node)?;
        let file = opened.reader;
        let mut chunker = self
            .chunkers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| {
                Chunker::new(self.repo.config().chunker, self.repo.keys().chunker_seed())
            });
        if node.size >= super::large_file::MIN_SIZE {
            let result = super::large_file::store(&mut chunker, file, &self.writer, &self.progress);
            self.chunkers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(chunker);
            let (content, size) = result?;
            return Ok((content, size, opened.node));
        }
        let mut content = Vec::new();
        let result = chunker.chunk(file, |chunk| {
            self.progress
                .check_cancelled()
                .map_err(FileFailure::Fatal)?;
            let (id, _) = self
                .writer
                .save_blob(BlobKind::Data, chunk)
                .map_err(FileFailure::Fatal)?;
            content.push(id);
            self.progress.add_bytes(chunk.len() as u64);
            Ok::<(), FileFailure>(())
        });
        self.chunkers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(chunker);
        let size = result?;
        Ok((content, size, opened.node))
    }
}

/// This host's offset from UTC at `time_ns`, in seconds east of UTC.
pub fn local_utc_offset(time_ns: i64) -> i32 {
    use chrono::{Local, Offset, TimeZone};
    Local
        .timestamp_nanos(time_ns)
        .offset()
        .fix()
        .local_minus_utc()
}
