//! Restore: write a snapshot (or a sub-path of it) into a local directory.
//!
//! Two passes. The first ([`plan`]) walks the trees only: it counts what
//! will be written (for progress) and refuses to start if any target path
//! already exists as something other than a directory, unless `force` is
//! set, so a refused restore writes nothing. The second pass creates
//! directories and writes their entries in parallel: files of up to 4 MiB
//! are gathered over directory boundaries into batches fetched together
//! ([`batch`]), larger files stream in windows of chunks, and a
//! directory's metadata is set once everything in it is written. Every blob is authenticated and
//! its id verified as it is read; all-zero chunks become holes, so sparse
//! files stay sparse.
//!
//! Restoring as root into a directory that other users can write must not
//! let them redirect it. So the target is opened once (by the path the
//! caller gave), and everything below it is created and changed relative to
//! directory fds ([`crate::dirfd`]): entries are created with `O_EXCL |
//! O_NOFOLLOW`, owner, mode and times are set through the open fd (or with
//! `AT_SYMLINK_NOFOLLOW` for links), `force` replaces an entry by removing
//! it relative to its parent fd, and a directory this restore made is used
//! only if it is still the one it made (owned by this process's user). A
//! swapped-in symlink is therefore an error, never followed out of the
//! target.
//!
//! A file gets its name only once it is whole and has its metadata
//! ([`file`]): it is written unnamed (`O_TMPFILE`) and linked under its
//! name, or, over an existing entry (`force`) and where unnamed files do
//! not work, written under a temporary name (`.kloset-restore-…`) and
//! renamed. A failed restore leaves no file cut short under a restored
//! name, and with `force` a file being replaced stays as it was until its
//! new content is complete. Only a restore killed outright while writing a
//! named temporary leaves it behind; the next restore into that directory
//! removes it.
//!
//! Durability: before the restore reports success, every file system it
//! wrote to is synced (`syncfs`), so restored files and directories are on
//! stable storage; a failed sync fails the restore. While it writes, the
//! target's file system is synced in the background every 64 MiB
//! ([`writeback`]), so the disk works during the restore rather than after.

mod batch;
mod budget;
mod file;
mod plan;
mod sparse;
mod writeback;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use rustix::fs::FileType;

use crate::dirfd::{self, DirFd};
use crate::error::{Error, Result};
use crate::fetch::{MAX_REQUEST, load_blobs_spooled};
use crate::fsmeta::kind_of;
use crate::id::{BlobId, BlobKind};
use crate::pack_spool::PackSpool;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind, split_path};
use batch::{DirTask, SmallFile, SmallQueue};
use budget::ByteBudget;
use plan::{Plan, Planner};
use writeback::EarlyWriteback;

/// Chunks fetched at once for one large file.
const WINDOW_CHUNKS: usize = 8;
/// The same from a remote store, up to [`IN_FLIGHT_BYTES`] of them, in
/// requests of at most [`REMOTE_WINDOW_REQUEST`] bytes: one request at a
/// time (8 chunks are neighbours in one pack, so one request) left a large
/// file's restore from S3 at a single stream's pace.
const REMOTE_WINDOW_CHUNKS: usize = 32;
/// See [`REMOTE_WINDOW_CHUNKS`].
const REMOTE_WINDOW_REQUEST: u64 = 4 * 1024 * 1024;
/// Workers restoring from a remote store (each waits on its requests).
const REMOTE_THREADS: usize = 16;
/// Bytes of file content fetched and not yet written, at most, over all
/// workers (each is held about twice: as fetched and as decoded).
const IN_FLIGHT_BYTES: u64 = 32 * 1024 * 1024;

/// How to restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Overwrite existing files.
    pub force: bool,
    /// Restore owners (only effective as root).
    pub owners: bool,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Live counters and cancellation.
    pub progress: Arc<Progress>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            force: false,
            owners: true,
            threads: 0,
            progress: Arc::new(Progress::new()),
        }
    }
}

/// What a restore wrote.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RestoreReport {
    /// Files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks and special files.
    pub others: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Entries that could not be restored (special files as non-root, ...).
    pub errors: Vec<String>,
}

/// Finds the node at `path` inside a snapshot (`/` is the root).
pub fn find_node(repo: &Repository, snapshot: &Snapshot, path: &str) -> Result<Node> {
    let mut node = snapshot.root.clone();
    node.subtree = Some(snapshot.tree);
    for part in split_path(path)? {
        let sub = match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(id)) => id,
            _ => {
                return Err(Error::NotFound {
                    what: format!("{path} in snapshot {}", snapshot.id.short()),
                });
            }
        };
        let tree = repo.load_tree(&sub)?;
        node = tree.find(part).cloned().ok_or_else(|| Error::NotFound {
            what: format!("{path} in snapshot {}", snapshot.id.short()),
        })?;
    }
    Ok(node)
}

/// Restores `path` of `snapshot` into `target`. A directory's contents go
/// into `target`; a single file goes to `target/NAME`.
pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    path: &str,
    target: &Path,
    options: &RestoreOptions,
) -> Result<RestoreReport> {
    // A reader lock: a prune waits for this restore before deleting packs.
    let _lock = repo.read_lock("restore")?;
    let node = find_node(repo, snapshot, path)?;
    let threads = match options.threads {
        // Workers mostly wait on requests: keep many in flight.
        0 if repo.storage().is_remote() => REMOTE_THREADS,
        n => n,
    };
    let pool = super::worker_pool(threads, "restore")?;
    let existing = match DirFd::open_path(target) {
        Ok(dir) => Some(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("open", target, e)),
    };
    let spool_dir = PackSpool::dir_for(repo);
    let planner = Planner {
        repo,
        force: options.force,
        count_packs: spool_dir.is_some(),
    };
    let mut plan = Plan::default();
    if node.kind == NodeKind::Dir {
        planner.dir(&node, existing.as_ref(), target, &mut plan)?;
    } else {
        planner.entry(&node, existing.as_ref(), target, &mut plan)?;
    }
    let target_existed = existing.is_some();
    drop(existing);
    if !plan.conflicts.is_empty() {
        let shown: Vec<String> = plan
            .conflicts
            .iter()
            .take(5)
            .map(|p| p.display().to_string())
            .collect();
        return Err(Error::AlreadyExists {
            location: target.display().to_string(),
            what: format!(
                "{} existing file(s) the restore would overwrite, e.g. {}; use --force to overwrite",
                plan.conflicts.len(),
                shown.join(", ")
            ),
        });
    }
    options.progress.set_totals(plan.files, plan.bytes);
    let wanted = std::mem::take(&mut plan.wanted);
    let spool = spool_dir.and_then(|dir| PackSpool::for_restore(&dir, wanted));
    fs::create_dir_all(target).map_err(|e| Error::io("create", target, e))?;
    let root = Arc::new(DirFd::open_path(target).map_err(|e| Error::io("open", target, e))?);
    let mut r = Restorer {
        repo,
        options,
        owners: options.owners && rustix::process::geteuid().is_root(),
        uid: rustix::process::geteuid().as_raw(),
        errors: Mutex::new(Vec::new()),
        filesystems: Mutex::new(HashMap::new()),
        budget: ByteBudget::new(IN_FLIGHT_BYTES),
        small: SmallQueue::new(pool.current_num_threads()),
        spool,
        writeback: EarlyWriteback::start(root.clone()),
        run: rand::random(),
        temps: std::sync::atomic::AtomicU64::new(0),
        unnamed_files: false,
    };
    r.note_filesystem(&root, target)?;
    if target_existed {
        r.remove_temporaries(&root, target)?;
    }
    r.unnamed_files = r.unnamed_files_work(&root);
    pool.install(|| {
        if node.kind == NodeKind::Dir {
            let top = DirTask::new(node.clone(), root.clone(), target.to_path_buf());
            r.restore_dir_contents(&top)?;
            r.small
                .rest()
                .into_par_iter()
                .try_for_each(|batch| r.write_batch(batch))?;
            r.dir_done(&top)
        } else {
            r.restore_entry(&node, &root, target, &HashMap::new())
        }
    })?;
    r.writeback
        .finish()
        .map_err(|e| Error::io("sync", target, e))?;
    r.sync()?;
    Ok(RestoreReport {
        files: plan.files,
        dirs: plan.dirs,
        others: plan.others,
        bytes: plan.bytes,
        errors: r.errors.into_inner().unwrap_or_else(|p| p.into_inner()),
    })
}

struct Restorer<'a> {
    repo: &'a Repository,
    options: &'a RestoreOptions,
    owners: bool,
    /// This process's effective user id (owner of what it creates).
    uid: u32,
    errors: Mutex<Vec<String>>,
    /// One directory on each file system written to, for the final sync.
    filesystems: Mutex<HashMap<u64, Arc<DirFd>>>,
    /// What may be fetched and not yet written at once.
    budget: ByteBudget,
    /// Small files waiting to be fetched together.
    small: SmallQueue,
    /// Packs fetched whole (from a remote store).
    spool: Option<PackSpool>,
    /// Syncs the target while the restore goes on.
    writeback: EarlyWriteback,
    /// This restore's mark in temporary names, and their count.
    run: u32,
    temps: std::sync::atomic::AtomicU64,
    /// Whether files are made unnamed and linked when whole (else under
    /// temporary names): decided once, on the target.
    unnamed_files: bool,
}

/// `parent/name` for messages.
fn shown(parent: &Path, name: &[u8]) -> PathBuf {
    parent.join(OsStr::from_bytes(name))
}

impl Restorer<'_> {
    /// Remembers the file system of `dir` for the final sync.
    // `st_dev`'s type differs between architectures.
    #[allow(clippy::useless_conversion)]
    fn note_filesystem(&self, dir: &Arc<DirFd>, at: &Path) -> Result<()> {
        let st = dir.stat().map_err(|e| Error::io("stat", at, e))?;
        let mut fss = self.filesystems.lock().unwrap_or_else(|p| p.into_inner());
        fss.entry(u64::from(st.st_dev))
            .or_insert_with(|| dir.clone());
        Ok(())
    }

    /// Syncs every file system written to.
    fn sync(&self) -> Result<()> {
        let fss = self.filesystems.lock().unwrap_or_else(|p| p.into_inner());
        for dir in fss.values() {
            dir.sync_fs()
                .map_err(|e| Error::io("sync", "the restore target", e))?;
        }
        Ok(())
    }

    /// Walks the directory `dir`: its small files go to the batch
    /// queue (written by whichever walk fills a batch), everything else is
    /// restored in parallel.
    fn restore_dir_contents(&self, dir: &Arc<DirTask>) -> Result<()> {
        self.options.progress.check_cancelled()?;
        let Some(sub) = dir.node.subtree else {
            return Ok(());
        };
        let tree = Arc::new(self.repo.load_tree(&sub)?);
        let (small, other): (Vec<usize>, Vec<usize>) =
            (0..tree.entries.len()).partition(|&i| batch::fits(&tree.entries[i]));
        let full = self.small.push(dir, &tree, &small);
        full.into_par_iter()
            .try_for_each(|batch| self.write_batch(batch))?;
        let none = HashMap::new();
        other
            .par_iter()
            .try_for_each(|&i| self.restore_entry(&tree.entries[i], &dir.fd, &dir.path, &none))
    }

    /// Fetches a batch of small files together and writes them, one after
    /// another while its share of the budget is held: a parallel loop here
    /// could steal work that waits for budget.
    fn write_batch(&self, batch: Vec<SmallFile>) -> Result<()> {
        let Some(first) = batch.first() else {
            return Ok(());
        };
        self.options.progress.check_cancelled()?;
        let ids: Vec<BlobId> = batch
            .iter()
            .flat_map(|f| f.node().content.iter().copied())
            .collect();
        let _share = self.budget.take(batch.iter().map(|f| f.node().size).sum());
        let spool = self.spool.as_ref();
        let blobs = load_blobs_spooled(self.repo, BlobKind::Data, &ids, MAX_REQUEST, spool)
            .map_err(|e| {
                let at = shown(&first.dir.path, &first.node().name);
                let what = match batch.len() {
                    1 => at.display().to_string(),
                    n => format!("{} and {} other small file(s)", at.display(), n - 1),
                };
                in_restore(e, Path::new(&what))
            })?;
        for f in &batch {
            self.write_file(f.node(), &f.dir.fd, &f.dir.path, &blobs)?;
            self.dir_done(&f.dir)?;
        }
        Ok(())
    }

    /// Counts one piece of `dir` done; after the last, sets its metadata
    /// (after its contents, so their creation does not change its times).
    fn dir_done(&self, dir: &DirTask) -> Result<()> {
        if dir.done_one() {
            self.set_fd_meta(&dir.node, &*dir.fd, &dir.path)?;
        }
        Ok(())
    }

    /// Restores `node` into the directory `parent` (shown as `at`).
    fn restore_entry(
        &self,
        node: &Node,
        parent: &DirFd,
        at: &Path,
        cache: &HashMap<BlobId, Vec<u8>>,
    ) -> Result<()> {
        self.options.progress.check_cancelled()?;
        let name = &node.name[..];
        match node.kind {
            NodeKind::Dir => {
                let path = shown(at, name);
                let fd = Arc::new(self.make_dir(parent, name, &path)?);
                self.note_filesystem(&fd, &path)?;
                let dir = DirTask::new(node.clone(), fd, path);
                self.restore_dir_contents(&dir)?;
                self.dir_done(&dir)
            }
            NodeKind::File => self.write_file(node, parent, at, cache),
            NodeKind::Symlink => {
                let path = shown(at, name);
                self.replace_existing(parent, name, &path)?;
                let target = node.target.as_ref().map(|t| t.to_vec()).unwrap_or_default();
                parent
                    .symlink(&target, name)
                    .map_err(|e| Error::io("create symlink", &path, e))?;
                if self.owners {
                    parent
                        .set_link_owner(name, node.uid, node.gid)
                        .map_err(|e| Error::io("chown", &path, e))?;
                }
                parent
                    .set_link_times(name, node.mtime_ns)
                    .map_err(|e| Error::io("set times of", &path, e))
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                let path = shown(at, name);
                self.replace_existing(parent, name, &path)?;
                match self.make_special(node, parent, &path) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        self.note(format!("{}: {e}", path.display()));
                        Ok(())
                    }
                }
            }
            NodeKind::Socket => {
                self.note(format!(
                    "{}: sockets are not restored",
                    shown(at, name).display()
                ));
                Ok(())
            }
        }
    }

    fn note(&self, msg: String) {
        self.options.progress.error();
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(msg);
    }

    /// Makes (or, when it is a directory already, reuses) the directory
    /// `name` in `parent`, owner-writable while it is filled.
    fn make_dir(&self, parent: &DirFd, name: &[u8], path: &Path) -> Result<DirFd> {
        let made = match parent.mkdir(name, 0o700) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match parent.open_dir(name) {
                    Ok(dir) => {
                        dirfd::set_mode_fd(&dir, 0o700).map_err(|e| Error::io("chmod", path, e))?;
                        self.remove_temporaries(&dir, path)?;
                        return Ok(dir);
                    }
                    Err(_) if self.options.force => {
                        parent
                            .remove(name)
                            .map_err(|e| Error::io("replace", path, e))?;
                        parent
                            .mkdir(name, 0o700)
                            .map_err(|e| Error::io("create", path, e))?;
                        true
                    }
                    Err(e) => return Err(changed(path, e)),
                }
            }
            Err(e) => return Err(Error::io("create", path, e)),
        };
        let dir = parent.open_dir(name).map_err(|e| changed(path, e))?;
        let st = dir.stat().map_err(|e| Error::io("stat", path, e))?;
        if made && st.st_uid != self.uid {
            return Err(changed(
                path,
                std::io::Error::other("the directory made by the restore was replaced"),
            ));
        }
        Ok(dir)
    }

    /// With `force`, removes whatever is at `name`; without, leaves it
    /// (the plan refused existing entries, so one here appeared since).
    fn replace_existing(&self, parent: &DirFd, name: &[u8], path: &Path) -> Result<()> {
        if self.options.force && parent.lstat(name).is_ok() {
            parent
                .remove(name)
                .map_err(|e| Error::io("replace", path, e))?;
        }
        Ok(())
    }

    /// Owner, then mode (a chown clears setuid bits), then times, on `fd`.
    fn set_fd_meta(&self, node: &Node, fd: impl std::os::fd::AsFd, at: &Path) -> Result<()> {
        if self.owners {
            dirfd::set_owner_fd(&fd, node.uid, node.gid).map_err(|e| Error::io("chown", at, e))?;
        }
        dirfd::set_mode_fd(&fd, node.mode).map_err(|e| Error::io("chmod", at, e))?;
        dirfd::set_times_fd(&fd, node.mtime_ns).map_err(|e| Error::io("set times of", at, e))
    }

    /// A FIFO or device node, then its metadata through an `O_PATH` handle
    /// that must still be the node made.
    fn make_special(&self, node: &Node, parent: &DirFd, at: &Path) -> std::io::Result<()> {
        let name = &node.name[..];
        let kind = match node.kind {
            NodeKind::Fifo => FileType::Fifo,
            NodeKind::CharDevice => FileType::CharacterDevice,
            _ => FileType::BlockDevice,
        };
        parent.mknod(name, kind, 0o600, node.rdev.unwrap_or(0))?;
        let handle = parent.open_handle(name)?;
        let st = dirfd::fstat(&handle)?;
        if kind_of(st.st_mode) != node.kind || st.st_uid != self.uid {
            return Err(std::io::Error::other(format!(
                "{} was replaced while it was restored",
                at.display()
            )));
        }
        if self.owners {
            dirfd::set_owner_path(&handle, node.uid, node.gid)?;
        }
        dirfd::set_mode_path(&handle, node.mode)?;
        dirfd::set_times_path(&handle, node.mtime_ns)
    }
}

/// An entry that is not what this restore made or planned for.
fn changed(path: &Path, e: std::io::Error) -> Error {
    Error::io("restore into (it changed during the restore)", path, e)
}

/// Names the file being restored in corruption errors.
fn in_restore(e: Error, at: &Path) -> Error {
    match e {
        Error::Corrupt { object, reason } => Error::Corrupt {
            object: format!("{object} (restoring {})", at.display()),
            reason,
        },
        other => other,
    }
}
