//! Repacking: the chosen copies of blobs in mostly unused packs are copied,
//! still sealed, into new packs, and a new index object lists them. Each
//! copied blob is opened and checked first, so a damaged blob is never
//! spread. The old packs are deleted later, by the sweep, once the mark
//! has been seen by everyone (FORMAT.md §16).
//!
//! Crash safety: new packs are written before the index object that lists
//! them; a crash leaves unindexed packs, which the next prune removes. The
//! old packs are untouched here.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::id::PackId;
use crate::index::IndexPack;
use crate::pack::{PackBuilder, PackEntry};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::storage::Key;
use crate::writer::write_index;

/// Blobs per index object written by a repack or an index rewrite.
pub(super) const INDEX_BLOBS: usize = 100_000;

/// What a repack wrote.
#[derive(Debug, Default)]
pub struct Repacked {
    /// The new packs and their blobs (already indexed).
    pub packs: Vec<IndexPack>,
    /// Bytes written (new packs).
    pub bytes_written: u64,
    /// Index objects written for them.
    pub index_written: usize,
}

/// Copies `blobs` of each pack into new packs and indexes them.
pub fn repack(
    repo: &Repository,
    packs: &[(PackId, Vec<PackEntry>)],
    progress: &Progress,
) -> Result<Repacked> {
    let pack_size = repo.config().pack_size as usize;
    let mut out = Repacked::default();
    let mut builder = PackBuilder::new(pack_size);
    for (pack, entries) in packs {
        progress.check_cancelled()?;
        let key = Key::Pack(*pack);
        let bytes = repo.storage().get(key)?;
        for e in entries {
            let range = e.offset as usize..e.offset as usize + e.length as usize;
            let sealed = bytes.get(range).ok_or_else(|| {
                Error::corrupt(
                    key.path(),
                    "shorter than its index says; prune stops: run check",
                )
            })?;
            // Authenticate before copying, so damage is not spread.
            repo.open_blob(e.kind, &e.id, e.raw_length, sealed, &key.path())?;
            builder.push(e.kind, e.id, e.raw_length, sealed);
            progress.add_bytes(u64::from(e.length));
            if builder.len() >= pack_size {
                let full = std::mem::replace(&mut builder, PackBuilder::new(pack_size));
                out.bytes_written += upload(repo, full, &mut out.packs)?;
            }
        }
    }
    if !builder.is_empty() {
        out.bytes_written += upload(repo, builder, &mut out.packs)?;
    }
    out.index_written = write_indexes(repo, &out.packs)?;
    Ok(out)
}

/// Writes index objects that list `packs`, at most [`INDEX_BLOBS`] blobs
/// each; returns how many were written.
pub(super) fn write_indexes(repo: &Repository, packs: &[IndexPack]) -> Result<usize> {
    let chunks = chunks_by_blobs(packs);
    for chunk in &chunks {
        write_index(
            repo.storage(),
            repo.keys(),
            repo.config().compression_level,
            chunk,
        )?;
    }
    Ok(chunks.len())
}

fn upload(repo: &Repository, builder: PackBuilder, done: &mut Vec<IndexPack>) -> Result<u64> {
    let finished = builder.finish(repo.keys())?;
    let size = finished.bytes.len() as u64;
    repo.storage()
        .put_new(Key::Pack(finished.id), Bytes::clone(&finished.bytes))?;
    done.push(IndexPack {
        id: finished.id,
        blobs: finished.entries,
    });
    Ok(size)
}

/// Splits packs into runs of at most [`INDEX_BLOBS`] blobs (a pack is never
/// split).
fn chunks_by_blobs(packs: &[IndexPack]) -> Vec<&[IndexPack]> {
    let mut out = Vec::new();
    let (mut start, mut blobs) = (0, 0);
    for (i, p) in packs.iter().enumerate() {
        if blobs > 0 && blobs + p.blobs.len() > INDEX_BLOBS {
            out.push(&packs[start..i]);
            start = i;
            blobs = 0;
        }
        blobs += p.blobs.len();
    }
    if start < packs.len() {
        out.push(&packs[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobKind;

    #[test]
    fn index_chunks_never_split_a_pack() {
        let pack = |n: usize| IndexPack {
            id: PackId::random(),
            blobs: vec![
                PackEntry {
                    kind: BlobKind::Data,
                    id: crate::id::BlobId::random(),
                    offset: 0,
                    length: 1,
                    raw_length: 1,
                };
                n
            ],
        };
        let packs = vec![pack(60_000), pack(60_000), pack(10)];
        let chunks = chunks_by_blobs(&packs);
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(chunks_by_blobs(&[]).is_empty());
    }
}
