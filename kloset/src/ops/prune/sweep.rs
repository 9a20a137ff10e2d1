//! The destructive end of a prune, in the order that keeps every reader
//! whole: first new index objects that list what survives of every index
//! object naming a doomed pack, then those old index objects, then the
//! packs. A crash anywhere leaves either both index versions (a pack listed
//! twice is harmless) or packs no index lists (the next prune removes
//! them); never an index entry for a deleted pack that a fresh reader
//! could see without a newer object superseding it.

use std::collections::HashSet;

use futures::StreamExt;

use crate::error::Result;
use crate::id::{IndexId, PackId};
use crate::index::IndexPack;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::storage::Key;

use super::repack::{write_full_indexes, write_indexes};

/// What the index rewrite did.
#[derive(Debug, Default, Clone, Copy)]
pub struct IndexRewrite {
    /// Index objects written.
    pub written: usize,
    /// Index objects deleted.
    pub deleted: usize,
}

/// Index objects read at a time by the rewrite.
const REWRITE_BATCH: usize = 8;

/// Rewrites every index object that lists a pack in `doomed`: what it
/// lists of other packs goes into new index objects, written first; then
/// the old objects are deleted. Objects are read a few at a time and what
/// survives is written as it reaches a full index object, so memory stays
/// one index object's worth, however large the store.
pub fn rewrite_indexes(repo: &Repository, doomed: &HashSet<PackId>) -> Result<IndexRewrite> {
    let mut survivors: Vec<IndexPack> = Vec::new();
    let mut old: Vec<IndexId> = Vec::new();
    let mut kept_packs: HashSet<PackId> = HashSet::new();
    let mut written = 0;
    let listed = repo.list_index_objects()?;
    for batch in listed.chunks(REWRITE_BATCH) {
        for (id, file) in repo.read_index_objects(batch.to_vec())? {
            if !file.packs.iter().any(|p| doomed.contains(&p.id)) {
                continue;
            }
            old.push(id);
            for pack in file.packs {
                if !doomed.contains(&pack.id) && kept_packs.insert(pack.id) {
                    survivors.push(pack);
                }
            }
        }
        written += write_full_indexes(repo, &mut survivors)?;
    }
    written += write_indexes(repo, &survivors)?;
    delete_all(repo, old.iter().map(|id| Key::Index(*id).path()).collect())?;
    Ok(IndexRewrite {
        written,
        deleted: old.len(),
    })
}

/// Deletes the packs (with their sizes), counting their bytes on
/// `progress`; `still_ours` is asked before every batch (the prune's lock
/// fence).
pub fn delete_packs(
    repo: &Repository,
    packs: &[(PackId, u64)],
    progress: &Progress,
    still_ours: &dyn Fn() -> Result<()>,
) -> Result<()> {
    for chunk in packs.chunks(64) {
        progress.check_cancelled()?;
        still_ours()?;
        delete_all(
            repo,
            chunk.iter().map(|(p, _)| Key::Pack(*p).path()).collect(),
        )?;
        progress.add_bytes(chunk.iter().map(|(_, size)| size).sum());
    }
    Ok(())
}

/// Deletes objects by relative name, several at once; a missing object is
/// not an error.
fn delete_all(repo: &Repository, names: Vec<String>) -> Result<()> {
    let storage = repo.storage().clone();
    let results: Vec<Result<()>> = repo.storage().run(async {
        futures::stream::iter(names.into_iter().map(|name| {
            let storage = storage.clone();
            async move { storage.delete_async(&name).await }
        }))
        .buffer_unordered(16)
        .collect()
        .await
    });
    results.into_iter().collect()
}
