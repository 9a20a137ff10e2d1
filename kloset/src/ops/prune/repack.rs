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
use crate::id::{BlobKind, PackId};
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

/// Copies `blobs` of each pack into new packs and indexes them. Tree
/// blobs and data blobs go to separate packs, as a writer's do, so a
/// repacked old store gains tree packs the tree cache can keep.
pub fn repack(
    repo: &Repository,
    packs: &[(PackId, Vec<PackEntry>)],
    progress: &Progress,
) -> Result<Repacked> {
    let pack_size = repo.config().pack_size as usize;
    let mut out = Repacked::default();
    // One pack being filled per blob kind: data, tree.
    let mut builders = [PackBuilder::new(pack_size), PackBuilder::new(0)];
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
            let builder = &mut builders[usize::from(e.kind == BlobKind::Tree)];
            builder.push(e.kind, e.id, e.raw_length, sealed);
            progress.add_bytes(u64::from(e.length));
            if builder.len() >= pack_size {
                let full = std::mem::replace(builder, PackBuilder::new(pack_size));
                out.bytes_written += upload(repo, full, &mut out.packs)?;
            }
        }
    }
    for builder in builders {
        if !builder.is_empty() {
            out.bytes_written += upload(repo, builder, &mut out.packs)?;
        }
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

/// Writes the full index objects that `packs` make (all but the last
/// chunk of [`INDEX_BLOBS`] blobs) and keeps the rest in `packs`; returns
/// how many were written.
pub(super) fn write_full_indexes(repo: &Repository, packs: &mut Vec<IndexPack>) -> Result<usize> {
    let full = {
        let chunks = chunks_by_blobs(packs);
        if chunks.len() < 2 {
            return Ok(0);
        }
        chunks[..chunks.len() - 1]
            .iter()
            .map(|c| c.len())
            .sum::<usize>()
    };
    let written = write_indexes(repo, &packs[..full])?;
    packs.drain(..full);
    Ok(written)
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
    use crate::crypto::ObjectKind;

    /// A store with one pack mixing data and tree blobs, as writers before
    /// separate tree packs made them.
    fn store_with_a_mixed_pack() -> (Repository, PackId, Vec<PackEntry>) {
        let storage = crate::Storage::open(&crate::Location::Memory, false).expect("storage");
        let options = crate::repository::CreateOptions {
            kdf: crate::crypto::KdfParams::with_cost(64, 1, 1),
            ..Default::default()
        };
        let repo = Repository::create(storage, b"pass", options).expect("create");
        let mut builder = PackBuilder::new(0);
        for (kind, raw) in [
            (BlobKind::Data, &b"file content"[..]),
            (BlobKind::Tree, b"a tree"),
            (BlobKind::Data, b"more content"),
        ] {
            let id = repo.keys().blob_id(kind, raw);
            let plain = crate::codec::encode(raw, 3);
            let sealed = repo
                .keys()
                .seal(ObjectKind::from(kind), id.as_bytes(), &plain)
                .expect("seal");
            builder.push(kind, id, raw.len() as u32, &sealed);
        }
        let mut done = Vec::new();
        upload(&repo, builder, &mut done).expect("upload");
        let IndexPack { id, blobs } = done.remove(0);
        (repo, id, blobs)
    }

    #[test]
    fn a_mixed_pack_is_repacked_into_a_data_pack_and_a_tree_pack() {
        let (repo, pack, entries) = store_with_a_mixed_pack();
        let out = repack(&repo, &[(pack, entries)], &Progress::new()).expect("repack");
        assert_eq!(out.packs.len(), 2, "{:?}", out.packs);
        let kinds: Vec<Vec<BlobKind>> = out
            .packs
            .iter()
            .map(|p| p.blobs.iter().map(|b| b.kind).collect())
            .collect();
        assert_eq!(
            kinds,
            [vec![BlobKind::Data, BlobKind::Data], vec![BlobKind::Tree]]
        );
        repo.refresh_index().expect("refresh");
        assert!(repo.index().is_tree_pack(&out.packs[1].id));
        for p in &out.packs {
            for b in &p.blobs {
                repo.load_blob(b.kind, &b.id).expect("the copy reads back");
            }
        }
    }

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
