//! Restore through an [`Exporter`]: write a snapshot (or a sub-path of it)
//! into something other than a local directory.
//!
//! Like `ops::restore`, two passes: the first walks the trees, counts what
//! will be written and, unless `force` is set, asks the exporter whether any
//! target exists, so a refused restore writes nothing. The second pass
//! creates directories, streams each file's chunks into the exporter (a
//! window of chunks in memory at a time, each authenticated and its id
//! checked), and finishes directories after their entries. Entries the
//! exporter cannot hold (links on S3, devices) are recorded, not fatal.

use std::collections::{HashMap, VecDeque};
use std::io::Read;

use rayon::prelude::*;

use super::restore::{RestoreOptions, RestoreReport, find_node};
use crate::error::{Error, Result};
use crate::export::Exporter;
use crate::fetch::load_blobs;
use crate::id::{BlobId, BlobKind};
use crate::import::SourcePath;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind};

/// Chunks fetched at once while streaming one file.
const WINDOW_CHUNKS: usize = 4;

/// Restores `path` of `snapshot` through `exporter`. A directory's contents
/// go to the exporter's root; a single file goes to `NAME`.
pub fn export(
    repo: &Repository,
    snapshot: &Snapshot,
    path: &str,
    exporter: &dyn Exporter,
    options: &RestoreOptions,
) -> Result<RestoreReport> {
    // A reader lock: a prune waits for this restore before deleting packs.
    let _lock = repo.read_lock("restore")?;
    let node = find_node(repo, snapshot, path)?;
    let target = exporter.target();
    let x = ExportCtx {
        repo,
        exporter,
        options,
        target: &target,
        errors: std::sync::Mutex::new(Vec::new()),
    };
    let root = SourcePath::root();
    let mut plan = Plan::default();
    if node.kind == NodeKind::Dir {
        x.plan_dir(&node, &root, &mut plan)?;
    } else {
        x.plan_entry(&node, &root.join(&node.name), &mut plan)?;
    }
    if !plan.conflicts.is_empty() {
        let shown: Vec<String> = plan.conflicts.iter().take(5).map(|p| p.display()).collect();
        return Err(Error::AlreadyExists {
            location: target.clone(),
            what: format!(
                "{} existing entr{} the restore would overwrite, e.g. {}; allow overwriting to replace them",
                plan.conflicts.len(),
                if plan.conflicts.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
                shown.join(", ")
            ),
        });
    }
    options.progress.set_totals(plan.files, plan.bytes);
    let pool = super::worker_pool(options.threads, "export")?;
    pool.install(|| {
        if node.kind == NodeKind::Dir {
            x.io(&root, exporter.create_dir(&root, &node))?;
            x.export_dir_contents(&node, &root)?;
            x.io(&root, exporter.finish_dir(&root, &node))
        } else {
            x.export_entry(&node, &root.join(&node.name))
        }
    })?;
    x.io(&root, exporter.finish())?;
    Ok(RestoreReport {
        files: plan.files,
        dirs: plan.dirs,
        others: plan.others,
        bytes: plan.bytes,
        errors: x.errors.into_inner().unwrap_or_else(|p| p.into_inner()),
    })
}

#[derive(Default)]
struct Plan {
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
    conflicts: Vec<SourcePath>,
}

struct ExportCtx<'a> {
    repo: &'a Repository,
    exporter: &'a dyn Exporter,
    options: &'a RestoreOptions,
    target: &'a str,
    errors: std::sync::Mutex<Vec<String>>,
}

impl ExportCtx<'_> {
    fn io(&self, path: &SourcePath, r: std::io::Result<()>) -> Result<()> {
        r.map_err(|e| {
            Error::io(
                "restore",
                format!("{} in {}", path.display(), self.target),
                e,
            )
        })
    }

    fn note(&self, path: &SourcePath, e: impl std::fmt::Display) {
        self.options.progress.error();
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{}: {e}", path.display()));
    }

    fn plan_dir(&self, dir: &Node, at: &SourcePath, plan: &mut Plan) -> Result<()> {
        plan.dirs += 1;
        let Some(sub) = dir.subtree else {
            return Ok(());
        };
        let tree = self.repo.load_tree(&sub)?;
        for child in &tree.entries {
            self.plan_entry(child, &at.join(&child.name), plan)?;
        }
        Ok(())
    }

    fn plan_entry(&self, node: &Node, at: &SourcePath, plan: &mut Plan) -> Result<()> {
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
        if !self.options.force && self.exporter.exists(at).map_err(|e| self.io_err(at, e))? {
            plan.conflicts.push(at.clone());
        }
        Ok(())
    }

    fn io_err(&self, at: &SourcePath, e: std::io::Error) -> Error {
        Error::io("inspect", format!("{} in {}", at.display(), self.target), e)
    }

    fn export_dir_contents(&self, dir: &Node, at: &SourcePath) -> Result<()> {
        self.options.progress.check_cancelled()?;
        let Some(sub) = dir.subtree else {
            return Ok(());
        };
        let tree = self.repo.load_tree(&sub)?;
        tree.entries
            .par_iter()
            .try_for_each(|n| self.export_entry(n, &at.join(&n.name)))
    }

    fn export_entry(&self, node: &Node, at: &SourcePath) -> Result<()> {
        self.options.progress.check_cancelled()?;
        match node.kind {
            NodeKind::Dir => {
                self.io(at, self.exporter.create_dir(at, node))?;
                self.export_dir_contents(node, at)?;
                self.io(at, self.exporter.finish_dir(at, node))
            }
            NodeKind::File => {
                let mut content = ChunkStream::new(self.repo, node, &self.options.progress);
                let written = self.exporter.write_file(at, node, &mut content);
                if let Some(e) = content.failure.take() {
                    return Err(e);
                }
                self.io(at, written)?;
                if content.produced != node.size {
                    return Err(Error::corrupt(
                        format!("content of {}", at.display()),
                        format!(
                            "the exporter took {} bytes, the tree says {}",
                            content.produced, node.size
                        ),
                    ));
                }
                self.options
                    .progress
                    .files
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            NodeKind::Symlink => match self.exporter.symlink(at, node) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                    self.note(at, e);
                    Ok(())
                }
                Err(e) => self.io(at, Err(e)),
            },
            other => {
                self.note(
                    at,
                    format!("{other:?} entries are not restored to {}", self.target).to_lowercase(),
                );
                Ok(())
            }
        }
    }
}

/// A file's content as a reader: fetches a window of chunks at a time,
/// each authenticated and verified. An engine error (a corrupt pack) is
/// kept in `failure` so the restore reports it as such, not as an I/O
/// error of the exporter.
struct ChunkStream<'a> {
    repo: &'a Repository,
    ids: &'a [BlobId],
    next: usize,
    ready: VecDeque<Vec<u8>>,
    current: Vec<u8>,
    offset: usize,
    produced: u64,
    progress: &'a Progress,
    failure: Option<Error>,
}

impl<'a> ChunkStream<'a> {
    fn new(repo: &'a Repository, node: &'a Node, progress: &'a Progress) -> ChunkStream<'a> {
        ChunkStream {
            repo,
            ids: &node.content,
            next: 0,
            ready: VecDeque::new(),
            current: Vec::new(),
            offset: 0,
            produced: 0,
            progress,
            failure: None,
        }
    }

    fn refill(&mut self) -> Result<()> {
        let window = &self.ids[self.next..(self.next + WINDOW_CHUNKS).min(self.ids.len())];
        let fetched: HashMap<BlobId, Vec<u8>> = load_blobs(self.repo, BlobKind::Data, window)?;
        for id in window {
            let data = fetched.get(id).cloned().ok_or_else(|| Error::NotFound {
                what: format!("chunk {}", id.short()),
            })?;
            self.ready.push_back(data);
        }
        self.next += window.len();
        Ok(())
    }
}

impl Read for ChunkStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.offset == self.current.len() {
            if let Some(next) = self.ready.pop_front() {
                self.current = next;
                self.offset = 0;
                continue;
            }
            if self.next == self.ids.len() {
                return Ok(0);
            }
            if let Err(e) = self.progress.check_cancelled().and_then(|()| self.refill()) {
                let msg = e.to_string();
                self.failure = Some(e);
                return Err(std::io::Error::other(msg));
            }
        }
        let n = buf.len().min(self.current.len() - self.offset);
        buf[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
        self.offset += n;
        self.produced += n as u64;
        self.progress.add_bytes(n as u64);
        Ok(n)
    }
}
