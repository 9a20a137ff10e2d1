//! Small files of many directories fetched together. A backup stores files
//! roughly in tree order, so the files of neighbouring directories lie
//! near each other in a pack: gathering them over directory boundaries
//! makes a restore from S3 a few ranged reads per batch instead of at
//! least one per directory (sysroot: 2,211 requests before, 928-947 after;
//! docs/performance.md). Files of up to [`SMALL_FILE`] go into batches
//! whatever their number of chunks; that did not change the count
//! measurably against single-chunk files only (937 against 928-947).
//!
//! A directory's metadata (mode, owner, times) is set after everything
//! inside it is written, so each directory counts what is still open in
//! it: its own walk and every small file queued from it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::dirfd::DirFd;
use crate::tree::{Node, NodeKind, Tree};

/// Bytes of small files fetched in one batch.
pub(super) const BATCH_BYTES: u64 = 8 * 1024 * 1024;
/// The largest file that goes into a batch; larger ones stream in windows.
pub(super) const SMALL_FILE: u64 = 4 * 1024 * 1024;
/// Directories one batch may span: each holds its directory fd open until
/// the batch is written.
pub(super) const BATCH_DIRS: usize = 32;

/// Whether `node` is a file restored in a batch.
pub(super) fn fits(node: &Node) -> bool {
    node.kind == NodeKind::File && !node.content.is_empty() && node.size <= SMALL_FILE
}

/// A directory being restored.
pub(super) struct DirTask {
    /// Its node (for the metadata set at the end).
    pub node: Node,
    /// The directory, open.
    pub fd: Arc<DirFd>,
    /// Its path, for messages.
    pub path: PathBuf,
    /// Its walk plus its small files not yet written.
    open: AtomicUsize,
}

impl DirTask {
    /// A directory whose walk has started.
    pub fn new(node: Node, fd: Arc<DirFd>, path: PathBuf) -> Arc<DirTask> {
        Arc::new(DirTask {
            node,
            fd,
            path,
            open: AtomicUsize::new(1),
        })
    }

    /// One piece of work in the directory is done; true for the last one,
    /// after which its metadata is due.
    pub fn done_one(&self) -> bool {
        self.open.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// A small file waiting for its batch.
pub(super) struct SmallFile {
    /// Its directory.
    pub dir: Arc<DirTask>,
    tree: Arc<Tree>,
    at: usize,
}

impl SmallFile {
    /// The file's node.
    pub fn node(&self) -> &Node {
        &self.tree.entries[self.at]
    }
}

/// Small files gathered until a batch is full, one queue per worker: a
/// worker walks mostly one subtree at a time, so its batch holds fewer
/// pack regions than one queue shared by every worker (937 requests for
/// the sysroot against 983-997 with one queue).
pub(super) struct SmallQueue {
    pending: Vec<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    files: Vec<SmallFile>,
    bytes: u64,
    dirs: usize,
}

impl Pending {
    fn take(&mut self) -> Vec<SmallFile> {
        self.bytes = 0;
        self.dirs = 0;
        std::mem::take(&mut self.files)
    }
}

impl SmallQueue {
    /// Queues for a pool of `workers` threads (and one for callers outside
    /// it).
    pub fn new(workers: usize) -> SmallQueue {
        SmallQueue {
            pending: (0..=workers).map(|_| Mutex::default()).collect(),
        }
    }

    /// Queues the entries `at` of `tree`, small files of `dir`, and
    /// returns the batches that are full.
    pub fn push(&self, dir: &Arc<DirTask>, tree: &Arc<Tree>, at: &[usize]) -> Vec<Vec<SmallFile>> {
        if at.is_empty() {
            return Vec::new();
        }
        dir.open.fetch_add(at.len(), Ordering::AcqRel);
        let mut full = Vec::new();
        let mine = rayon::current_thread_index()
            .filter(|&i| i < self.pending.len() - 1)
            .unwrap_or(self.pending.len() - 1);
        let mut pending = self.pending[mine].lock().unwrap_or_else(|p| p.into_inner());
        pending.dirs += 1;
        for &i in at {
            let size = tree.entries[i].size;
            if !pending.files.is_empty()
                && (pending.bytes + size > BATCH_BYTES || pending.dirs > BATCH_DIRS)
            {
                full.push(pending.take());
                pending.dirs = 1;
            }
            pending.bytes += size;
            pending.files.push(SmallFile {
                dir: dir.clone(),
                tree: tree.clone(),
                at: i,
            });
        }
        full
    }

    /// Whatever is queued, once the walk is over.
    pub fn rest(&self) -> Vec<Vec<SmallFile>> {
        self.pending
            .iter()
            .map(|p| p.lock().unwrap_or_else(|p| p.into_inner()).take())
            .filter(|batch| !batch.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobId;

    fn file(name: &str, size: u64) -> Node {
        Node {
            name: name.as_bytes().to_vec().into(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            device: 0,
            size,
            target: None,
            rdev: None,
            content: vec![BlobId::random()],
            subtree: None,
        }
    }

    fn dir(tmp: &std::path::Path, name: &str) -> Arc<DirTask> {
        let path = tmp.join(name);
        std::fs::create_dir(&path).expect("mkdir");
        let fd = Arc::new(DirFd::open_path(&path).expect("open"));
        let mut node = file(name, 0);
        node.kind = NodeKind::Dir;
        DirTask::new(node, fd, path)
    }

    #[test]
    fn batches_span_directories_up_to_their_bytes_and_directory_count() {
        let tmp = tempfile::tempdir().expect("tmp");
        let queue = SmallQueue::new(0);
        let tree = Arc::new(Tree {
            v: 1,
            entries: (0..4).map(|i| file(&format!("f{i}"), 3 << 20)).collect(),
        });
        let a = dir(tmp.path(), "a");
        // 4 files of 3 MiB: two fit in a batch of 8 MiB.
        let full = queue.push(&a, &tree, &[0, 1, 2, 3]);
        assert_eq!(full.iter().map(Vec::len).collect::<Vec<_>>(), vec![2]);
        let b = dir(tmp.path(), "b");
        let full = queue.push(&b, &tree, &[0]);
        assert_eq!(full.iter().map(Vec::len).collect::<Vec<_>>(), vec![2]);
        let rest: Vec<SmallFile> = queue.rest().into_iter().flatten().collect();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].node().name.as_ref() as &[u8], b"f0");
        // a: its walk and 4 files; b: its walk and 1 file.
        assert!((0..4).all(|_| !a.done_one()) && a.done_one());
        assert!(!b.done_one() && b.done_one());

        let tiny = Arc::new(Tree {
            v: 1,
            entries: vec![file("x", 1)],
        });
        let mut batches = Vec::new();
        for i in 0..BATCH_DIRS * 2 {
            let d = dir(tmp.path(), &format!("d{i}"));
            batches.extend(queue.push(&d, &tiny, &[0]));
        }
        batches.extend(queue.rest());
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![BATCH_DIRS, BATCH_DIRS],
            "a batch spans at most BATCH_DIRS directories"
        );
    }
}
