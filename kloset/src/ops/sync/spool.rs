//! What a sync will read of each pack of a remote source, counted before
//! the copy, so that the packs it needs most of come down once, whole,
//! into the restore's [`PackSpool`] rather than one ranged request per
//! chunk. A sync reads every file of the snapshot (its copy has no parent
//! to skip unchanged files by), so the count is exact: every path of
//! every file, as the copy's walk will open it.

use std::collections::HashMap;

use crate::error::Result;
use crate::id::PackId;
use crate::pack_spool::{PackSpool, Wanted};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::NodeKind;

/// The spool for copying `snap` out of `source`, or `None` when the source
/// is on local disk, has no usable cache, or no pack is wanted enough.
pub(super) fn spool_for(
    source: &Repository,
    snap: &Snapshot,
    progress: &Progress,
) -> Result<Option<PackSpool>> {
    let Some(dir) = PackSpool::dir_for(source) else {
        return Ok(None);
    };
    let mut wanted: HashMap<PackId, Wanted> = HashMap::new();
    // Per path, not per distinct tree: two directories with the same
    // content are both read by the copy.
    let mut trees = vec![snap.tree];
    while let Some(id) = trees.pop() {
        progress.check_cancelled()?;
        let tree = source.load_tree(&id)?;
        let index = source.index();
        for node in &tree.entries {
            match (node.kind, node.subtree) {
                (NodeKind::Dir, Some(sub)) => trees.push(sub),
                (NodeKind::File, _) => Wanted::count_chunks(&mut wanted, &index, &node.content)?,
                _ => {}
            }
        }
    }
    Ok(PackSpool::for_restore(&dir, wanted))
}
