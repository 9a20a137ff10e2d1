//! What the snapshots reference: every tree blob and data blob reachable
//! from their root trees, each tree read once however many snapshots share
//! it. Trees of one level are read in parallel. The blobs found go to the
//! caller (a prune sorts them on disk), so only the trees walked are held
//! in memory: one entry per directory, not per blob.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::Snapshot;

/// Trees read at once per core: enough to keep every core busy, few
/// enough that the ids they list (a directory of large files lists many)
/// stay a few megabytes rather than a whole level of the store's trees.
const TREES_PER_CORE: usize = 2;

/// The trees already walked.
#[derive(Debug, Default)]
pub struct Reachable {
    trees: HashSet<BlobId>,
}

impl Reachable {
    /// Walks the trees of `snapshots` that were not walked before and
    /// hands `found` every blob they reference (trees and data; a blob
    /// may come more than once). A blob referenced only from trees
    /// walked before is not handed again. A tree that cannot be read
    /// fails, naming the snapshot: a prune must never decide on a
    /// partial view.
    pub fn add(
        &mut self,
        repo: &Repository,
        snapshots: &[Snapshot],
        progress: &Progress,
        found: &mut dyn FnMut(BlobId) -> Result<()>,
    ) -> Result<()> {
        let at_once = rayon::current_num_threads() * TREES_PER_CORE;
        for snap in snapshots {
            let mut frontier = Vec::new();
            if self.trees.insert(snap.tree) {
                found(snap.tree)?;
                frontier.push(snap.tree);
            }
            while !frontier.is_empty() {
                let mut next = Vec::new();
                for slice in frontier.chunks(at_once) {
                    progress.check_cancelled()?;
                    self.walk_slice(repo, snap, slice, &mut next, found)?;
                }
                frontier = next;
            }
        }
        Ok(())
    }

    /// Reads the trees of `slice` in parallel, hands `found` what they
    /// reference, and adds their subtrees not walked before to `next`.
    fn walk_slice(
        &mut self,
        repo: &Repository,
        snap: &Snapshot,
        slice: &[BlobId],
        next: &mut Vec<BlobId>,
        found: &mut dyn FnMut(BlobId) -> Result<()>,
    ) -> Result<()> {
        let children: Vec<Result<(Vec<BlobId>, Vec<BlobId>)>> = slice
                    .par_iter()
                    .map(|id| {
                        let tree = repo.load_tree(id).map_err(|e| {
                            Error::InvalidArgument(format!(
                                "cannot read tree {} of snapshot {} ({e}); prune stops and deletes nothing: run check",
                                id.short(),
                                snap.id.short()
                            ))
                        })?;
                        let mut subtrees = Vec::new();
                        let mut data = Vec::new();
                        for node in &tree.entries {
                            subtrees.extend(node.subtree);
                            data.extend(node.content.iter().copied());
                        }
                        Ok((subtrees, data))
                    })
                    .collect();
        for child in children {
            let (subtrees, data) = child?;
            for t in subtrees {
                if self.trees.insert(t) {
                    found(t)?;
                    next.push(t);
                }
            }
            for d in data {
                found(d)?;
            }
        }
        Ok(())
    }
}
