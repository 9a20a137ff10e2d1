//! Copying one snapshot: the backup's walk over the source snapshot,
//! writing through a target writer that indexes each pack at once.

use crate::error::Result;
use crate::ops::backup::{BackupOptions, CopyOf, ParentPolicy, backup_with};
use crate::repository::Repository;
use crate::snapshot::{Origin, Snapshot};

use super::SyncOptions;
use super::reader::SnapshotImporter;

/// Copies `snap` of `source` into `target`; returns the copy's header.
pub(super) fn copy_snapshot(
    source: &Repository,
    target: &Repository,
    snap: &Snapshot,
    origin: Origin,
    options: &SyncOptions,
) -> Result<Snapshot> {
    let spool = super::spool::spool_for(source, snap, &options.progress)?;
    let importer = SnapshotImporter::new(source, snap, spool.as_ref());
    let backup = BackupOptions {
        source: Some(snap.source.clone()),
        host: Some(snap.host.clone()),
        tags: snap.tags.clone(),
        excludes: Vec::new(),
        parent: ParentPolicy::None,
        threads: options.threads,
        progress: options.progress.clone(),
        // A copy with holes would be worse than none: any source blob that
        // cannot be read fails this snapshot's copy.
        all_or_nothing: true,
    };
    let prepare = |w: &crate::writer::Writer<'_>| w.index_each_pack();
    let copy = CopyOf {
        original: snap,
        origin,
        prepare: &prepare,
    };
    backup_with(target, &importer, &backup, Some(&copy))
}
