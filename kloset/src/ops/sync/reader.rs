//! The source side of a sync: a source snapshot presented as an importer,
//! so the backup's walk re-chunks its files with the target's keys.
//!
//! Listing a directory loads its tree blob from the source; the content
//! chunk ids of its files are remembered until the walk leaves the
//! directory, and opening a file streams those chunks in order, a few at
//! a time (neighbours in one request, several requests in flight, and
//! through the sync's pack spool when it has one). Metadata (times,
//! owners, inode and device) is passed through unchanged.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::Mutex;

use crate::fetch::{MAX_REQUEST, load_blobs_spooled};
use crate::id::{BlobId, BlobKind};
use crate::import::{Importer, Listed, Opened, SourcePath};
use crate::pack_spool::PackSpool;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind};

/// A source snapshot as an importer.
pub(crate) struct SnapshotImporter<'r> {
    repo: &'r Repository,
    snapshot: &'r Snapshot,
    /// Content of the files and subtrees of the directories of listed,
    /// not yet left directories (the walk clears them from the nodes it
    /// passes back).
    contents: Mutex<HashMap<SourcePath, Vec<BlobId>>>,
    /// Local copies of the packs the copy reads most of.
    spool: Option<&'r PackSpool>,
}

impl<'r> SnapshotImporter<'r> {
    pub(crate) fn new(
        repo: &'r Repository,
        snapshot: &'r Snapshot,
        spool: Option<&'r PackSpool>,
    ) -> Self {
        SnapshotImporter {
            repo,
            snapshot,
            contents: Mutex::new(HashMap::new()),
            spool,
        }
    }

    fn contents(&self) -> std::sync::MutexGuard<'_, HashMap<SourcePath, Vec<BlobId>>> {
        self.contents.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn to_io(e: crate::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Importer for SnapshotImporter<'_> {
    fn origin(&self) -> String {
        format!(
            "snapshot {} of {}",
            self.snapshot.id.to_hex(),
            self.repo.storage().location()
        )
    }

    fn root(&self) -> std::io::Result<Node> {
        let mut root = self.snapshot.root.clone();
        root.kind = NodeKind::Dir;
        root.subtree = Some(self.snapshot.tree);
        Ok(root)
    }

    fn list(&self, dir: &SourcePath, listed: &Node) -> std::io::Result<Vec<Listed>> {
        let remembered = self.contents().remove(dir).and_then(|v| v.first().copied());
        let id = listed
            .subtree
            .or(remembered)
            .or_else(|| dir.is_root().then_some(self.snapshot.tree))
            .ok_or_else(|| std::io::Error::other("a directory without a subtree"))?;
        let tree = self.repo.load_tree(&id).map_err(to_io)?;
        let mut contents = self.contents();
        Ok(tree
            .entries
            .into_iter()
            .map(|node| {
                match (node.kind, node.subtree) {
                    (NodeKind::File, _) => {
                        contents.insert(dir.join(&node.name), node.content.clone());
                    }
                    (NodeKind::Dir, Some(sub)) => {
                        contents.insert(dir.join(&node.name), vec![sub]);
                    }
                    _ => {}
                }
                Listed {
                    name: node.name.to_vec(),
                    node: Ok(node),
                }
            })
            .collect())
    }

    fn open(&self, path: &SourcePath, _listed: &Node) -> std::io::Result<Opened<'_>> {
        let chunks = self
            .contents()
            .remove(path)
            .ok_or_else(|| std::io::Error::other("not a listed file"))?;
        Ok(Opened::reader(Box::new(ChunkReader {
            repo: self.repo,
            spool: self.spool,
            chunks: chunks.into_iter(),
            loaded: VecDeque::new(),
            current: Vec::new(),
            at: 0,
        })))
    }

    fn leave(&self, dir: &SourcePath) {
        // Files not opened (excluded or failed): forget their content.
        self.contents()
            .retain(|p, _| p.parent().as_ref() != Some(dir));
    }
}

/// Chunks of a file fetched at once.
const WINDOW: usize = 4;

/// Streams a file's chunks from the source store, [`WINDOW`] at a time.
struct ChunkReader<'r> {
    repo: &'r Repository,
    spool: Option<&'r PackSpool>,
    chunks: std::vec::IntoIter<BlobId>,
    /// Fetched chunks not read yet, in order.
    loaded: VecDeque<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl ChunkReader<'_> {
    /// Fetches the next window of chunks; `false` at the end of the file.
    fn fetch(&mut self) -> std::io::Result<bool> {
        let ids: Vec<BlobId> = self.chunks.by_ref().take(WINDOW).collect();
        if ids.is_empty() {
            return Ok(false);
        }
        let blobs = load_blobs_spooled(self.repo, BlobKind::Data, &ids, MAX_REQUEST, self.spool)
            .map_err(to_io)?;
        for id in &ids {
            let blob = blobs
                .get(id)
                .ok_or_else(|| std::io::Error::other(format!("chunk {} not loaded", id.short())))?;
            self.loaded.push_back(blob.clone());
        }
        Ok(true)
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.current.len() {
            if self.loaded.is_empty() && !self.fetch()? {
                return Ok(0);
            }
            if let Some(next) = self.loaded.pop_front() {
                self.current = next;
                self.at = 0;
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
