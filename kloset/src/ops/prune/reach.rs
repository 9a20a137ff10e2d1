//! What the snapshots reference: every tree blob and data blob reachable
//! from their root trees, each tree read once however many snapshots share
//! it. Trees of one level are read in parallel.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::Snapshot;

/// Blobs reachable from snapshots, and the trees already walked.
#[derive(Debug, Default)]
pub struct Reachable {
    /// Every referenced blob (trees and data).
    pub blobs: HashSet<BlobId>,
    /// Trees whose entries were added.
    pub trees: HashSet<BlobId>,
}

impl Reachable {
    /// Adds what `snapshots` reference; trees already walked are skipped.
    /// With `collect_new`, returns the blobs that were not referenced
    /// before (otherwise an empty set, to save memory). A tree that
    /// cannot be read fails, naming the snapshot: a prune must never
    /// decide on a partial view.
    pub fn add(
        &mut self,
        repo: &Repository,
        snapshots: &[Snapshot],
        progress: &Progress,
        collect_new: bool,
    ) -> Result<HashSet<BlobId>> {
        let mut added = HashSet::new();
        for snap in snapshots {
            let mut frontier = Vec::new();
            if self.trees.insert(snap.tree) {
                frontier.push(snap.tree);
            }
            if self.blobs.insert(snap.tree) && collect_new {
                added.insert(snap.tree);
            }
            while !frontier.is_empty() {
                progress.check_cancelled()?;
                let children: Vec<Result<(Vec<BlobId>, Vec<BlobId>)>> = frontier
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
                let mut next = Vec::new();
                for child in children {
                    let (subtrees, data) = child?;
                    for t in subtrees {
                        if self.blobs.insert(t) && collect_new {
                            added.insert(t);
                        }
                        if self.trees.insert(t) {
                            next.push(t);
                        }
                    }
                    for d in data {
                        if self.blobs.insert(d) && collect_new {
                            added.insert(d);
                        }
                    }
                }
                frontier = next;
            }
        }
        Ok(added)
    }
}
