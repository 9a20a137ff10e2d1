//! Restore: write a snapshot (or a sub-path of it) into a local directory.
//!
//! Two passes. The first walks the trees only: it counts what will be
//! written (for progress) and refuses to start if any target path already
//! exists as something other than a directory, unless `force` is set, so a
//! refused restore writes nothing. The second pass creates directories, then
//! writes each directory's entries in parallel, and sets directory metadata
//! after their children. Every blob is authenticated and its id verified as
//! it is read; all-zero chunks become holes, so sparse files stay sparse.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::fetch::load_blobs;
use crate::fsmeta::file_time;
use crate::id::{BlobId, BlobKind};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind, split_path};

/// Granularity of hole detection when writing files.
const HOLE_BLOCK: usize = 64 * 1024;
/// Chunks fetched at once for one large file.
const WINDOW_CHUNKS: usize = 4;
/// Bytes of small files fetched in one batch.
const BATCH_BYTES: u64 = 32 * 1024 * 1024;

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
    let node = find_node(repo, snapshot, path)?;
    let pool = super::worker_pool(options.threads, "restore")?;
    let r = Restorer {
        repo,
        options,
        owners: options.owners && is_root(),
        errors: std::sync::Mutex::new(Vec::new()),
    };
    let mut plan = Plan::default();
    if node.kind == NodeKind::Dir {
        r.plan_dir(&node, target, &mut plan)?;
    } else {
        r.plan_entry(
            &node,
            &target.join(std::ffi::OsStr::from_bytes(&node.name)),
            &mut plan,
        )?;
    }
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
    let mut report = RestoreReport::default();
    fs::create_dir_all(target).map_err(|e| Error::io("create", target, e))?;
    pool.install(|| {
        if node.kind == NodeKind::Dir {
            r.restore_dir_contents(&node, target)?;
            r.set_meta(&node, target)
        } else {
            r.restore_entry(
                &node,
                &target.join(std::ffi::OsStr::from_bytes(&node.name)),
                &HashMap::new(),
            )
        }
    })?;
    report.files = plan.files;
    report.dirs = plan.dirs;
    report.others = plan.others;
    report.bytes = plan.bytes;
    report.errors = r.errors.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(report)
}

#[derive(Default)]
struct Plan {
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
    conflicts: Vec<PathBuf>,
}

struct Restorer<'a> {
    repo: &'a Repository,
    options: &'a RestoreOptions,
    owners: bool,
    errors: std::sync::Mutex<Vec<String>>,
}

fn is_root() -> bool {
    // SAFETY-free: geteuid has no preconditions; use the std wrapper via /proc.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

impl Restorer<'_> {
    fn plan_dir(&self, dir: &Node, at: &Path, plan: &mut Plan) -> Result<()> {
        plan.dirs += 1;
        if let Ok(meta) = fs::symlink_metadata(at)
            && !meta.is_dir()
            && !self.options.force
        {
            plan.conflicts.push(at.to_path_buf());
            return Ok(());
        }
        let Some(sub) = dir.subtree else {
            return Ok(());
        };
        let tree = self.repo.load_tree(&sub)?;
        for child in &tree.entries {
            self.plan_entry(
                child,
                &at.join(std::ffi::OsStr::from_bytes(&child.name)),
                plan,
            )?;
        }
        Ok(())
    }

    fn plan_entry(&self, node: &Node, at: &Path, plan: &mut Plan) -> Result<()> {
        if node.kind == NodeKind::Dir {
            return self.plan_dir(node, at, plan);
        }
        match node.kind {
            NodeKind::File => {
                plan.files += 1;
                plan.bytes += node.size;
            }
            _ => plan.others += 1,
        }
        if !self.options.force && fs::symlink_metadata(at).is_ok() {
            plan.conflicts.push(at.to_path_buf());
        }
        Ok(())
    }

    fn restore_dir_contents(&self, dir: &Node, at: &Path) -> Result<()> {
        self.options.progress.check_cancelled()?;
        let Some(sub) = dir.subtree else {
            return Ok(());
        };
        let tree = self.repo.load_tree(&sub)?;
        // Single-chunk files are fetched in batches (few ranged reads per
        // pack); everything else streams chunk windows on its own.
        let (small, other): (Vec<&Node>, Vec<&Node>) = tree
            .entries
            .iter()
            .partition(|n| n.kind == NodeKind::File && n.content.len() == 1);
        let mut batches: Vec<Vec<&Node>> = Vec::new();
        let mut batch_bytes = 0u64;
        for node in small {
            if batches.is_empty() || batch_bytes + node.size > BATCH_BYTES {
                batches.push(Vec::new());
                batch_bytes = 0;
            }
            batch_bytes += node.size;
            if let Some(last) = batches.last_mut() {
                last.push(node);
            }
        }
        let none = HashMap::new();
        batches.par_iter().try_for_each(|batch| -> Result<()> {
            self.options.progress.check_cancelled()?;
            let ids: Vec<BlobId> = batch
                .iter()
                .flat_map(|n| n.content.iter().copied())
                .collect();
            let blobs =
                load_blobs(self.repo, BlobKind::Data, &ids).map_err(|e| in_restore(e, at))?;
            batch.par_iter().try_for_each(|n| {
                self.restore_entry(n, &at.join(std::ffi::OsStr::from_bytes(&n.name)), &blobs)
            })
        })?;
        other.par_iter().try_for_each(|n| {
            self.restore_entry(n, &at.join(std::ffi::OsStr::from_bytes(&n.name)), &none)
        })
    }

    fn restore_entry(
        &self,
        node: &Node,
        at: &Path,
        cache: &HashMap<BlobId, Vec<u8>>,
    ) -> Result<()> {
        self.options.progress.check_cancelled()?;
        match node.kind {
            NodeKind::Dir => {
                match fs::symlink_metadata(at) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(at).map_err(|e| Error::io("replace", at, e))?;
                        fs::create_dir(at).map_err(|e| Error::io("create", at, e))?;
                    }
                    Err(_) => fs::create_dir(at).map_err(|e| Error::io("create", at, e))?,
                }
                // Owner-writable while filling it; final mode set afterwards.
                fs::set_permissions(at, fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::io("chmod", at, e))?;
                self.restore_dir_contents(node, at)?;
                self.set_meta(node, at)
            }
            NodeKind::File => {
                self.write_file(node, at, cache)?;
                self.set_meta(node, at)
            }
            NodeKind::Symlink => {
                self.remove_existing(at)?;
                let target = node.target.as_ref().map(|t| t.to_vec()).unwrap_or_default();
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), at)
                    .map_err(|e| Error::io("create symlink", at, e))?;
                self.set_meta(node, at)
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                self.remove_existing(at)?;
                match make_special(node, at) {
                    Ok(()) => self.set_meta(node, at),
                    Err(e) => {
                        self.note(format!("{}: {e}", at.display()));
                        Ok(())
                    }
                }
            }
            NodeKind::Socket => {
                self.note(format!("{}: sockets are not restored", at.display()));
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

    fn remove_existing(&self, at: &Path) -> Result<()> {
        match fs::symlink_metadata(at) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(at).map_err(|e| Error::io("replace", at, e)),
            Ok(_) => fs::remove_file(at).map_err(|e| Error::io("replace", at, e)),
            Err(_) => Ok(()),
        }
    }

    fn write_file(&self, node: &Node, at: &Path, cache: &HashMap<BlobId, Vec<u8>>) -> Result<()> {
        if self.options.force
            && let Ok(m) = fs::symlink_metadata(at)
            && !m.is_file()
        {
            self.remove_existing(at)?;
        }
        let mut opts = OpenOptions::new();
        opts.write(true).mode(0o600);
        if self.options.force {
            opts.create(true).truncate(true);
        } else {
            opts.create_new(true);
        }
        let file: File = opts.open(at).map_err(|e| Error::io("create", at, e))?;
        let mut out = SparseWriter {
            file,
            at,
            pos: 0,
            pending_hole: false,
        };
        for window in node.content.chunks(WINDOW_CHUNKS) {
            self.options.progress.check_cancelled()?;
            let missing: Vec<BlobId> = window
                .iter()
                .filter(|id| !cache.contains_key(id))
                .copied()
                .collect();
            let fetched = if missing.is_empty() {
                HashMap::new()
            } else {
                load_blobs(self.repo, BlobKind::Data, &missing).map_err(|e| in_restore(e, at))?
            };
            for id in window {
                let data =
                    cache
                        .get(id)
                        .or_else(|| fetched.get(id))
                        .ok_or_else(|| Error::NotFound {
                            what: format!("chunk {} of {}", id.short(), at.display()),
                        })?;
                out.write(data)?;
                self.options.progress.add_bytes(data.len() as u64);
            }
        }
        out.finish(node.size)?;
        self.options
            .progress
            .files
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn set_meta(&self, node: &Node, at: &Path) -> Result<()> {
        let is_link = node.kind == NodeKind::Symlink;
        if self.owners {
            std::os::unix::fs::lchown(at, Some(node.uid), Some(node.gid))
                .map_err(|e| Error::io("chown", at, e))?;
        }
        if !is_link {
            fs::set_permissions(at, fs::Permissions::from_mode(node.mode & 0o7777))
                .map_err(|e| Error::io("chmod", at, e))?;
        }
        let t = file_time(node.mtime_ns);
        filetime::set_symlink_file_times(at, t, t).map_err(|e| Error::io("set times of", at, e))
    }
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

/// Writes file content, turning all-zero blocks into holes so sparse files
/// stay sparse.
struct SparseWriter<'a> {
    file: File,
    at: &'a Path,
    pos: u64,
    pending_hole: bool,
}

impl SparseWriter<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        for block in data.chunks(HOLE_BLOCK) {
            if block.iter().all(|&b| b == 0) {
                self.pending_hole = true;
            } else {
                if self.pending_hole {
                    self.file
                        .seek(SeekFrom::Start(self.pos))
                        .map_err(|e| Error::io("seek", self.at, e))?;
                    self.pending_hole = false;
                }
                self.file
                    .write_all(block)
                    .map_err(|e| Error::io("write", self.at, e))?;
            }
            self.pos += block.len() as u64;
        }
        Ok(())
    }

    /// Checks the length against the tree and extends a trailing hole.
    fn finish(self, expected: u64) -> Result<()> {
        if self.pos != expected {
            return Err(Error::corrupt(
                format!("content of {}", self.at.display()),
                format!(
                    "chunks add up to {} bytes, the tree says {expected}",
                    self.pos
                ),
            ));
        }
        self.file
            .set_len(self.pos)
            .map_err(|e| Error::io("resize", self.at, e))
    }
}

fn make_special(node: &Node, at: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    let c = CString::new(at.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let kind = match node.kind {
        NodeKind::Fifo => libc::S_IFIFO,
        NodeKind::CharDevice => libc::S_IFCHR,
        _ => libc::S_IFBLK,
    };
    let mode = kind | (node.mode & 0o7777) as libc::mode_t;
    let dev = node.rdev.unwrap_or(0) as libc::dev_t;
    mknod(&c, mode, dev)
}

#[allow(unsafe_code)]
fn mknod(path: &std::ffi::CStr, mode: libc::mode_t, dev: libc::dev_t) -> std::io::Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::mknod(path.as_ptr(), mode, dev) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
