//! The index: which pack holds each blob, merged from every index object.
//!
//! Index objects are immutable and written by each writer after its packs are
//! durable; readers merge all of them, so concurrent writers never contend
//! on a shared file. A blob listed twice (two hosts stored the same data at
//! once) is harmless: any copy will do. Entries are compact (pack number,
//! offset, lengths) to keep memory near 60 bytes per blob.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Result;
use crate::id::{BlobId, BlobKind, IndexId, PackId};
use crate::pack::PackEntry;

/// One pack and its blobs, as stored in an index object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexPack {
    /// The pack.
    pub id: PackId,
    /// Its blobs.
    pub blobs: Vec<PackEntry>,
}

/// The content of one index object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexFile {
    /// Structure version.
    pub v: u32,
    /// Packs described by this object.
    pub packs: Vec<IndexPack>,
}

/// Where a blob is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack that holds it.
    pub pack: PackId,
    /// Data or tree.
    pub kind: BlobKind,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    pack: u32,
    kind: BlobKind,
    offset: u32,
    length: u32,
    raw_length: u32,
}

/// The merged in-memory index.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<PackId>,
    pack_numbers: HashMap<PackId, u32>,
    /// Per pack number: the kinds of blob it holds (bit 0 data, bit 1 tree).
    pack_kinds: Vec<u8>,
    blobs: HashMap<BlobId, Slot>,
    files: Vec<IndexId>,
    merged: HashSet<IndexId>,
    loaded: bool,
    /// Packs whose copies are used only when there is no other: packs a
    /// prune marked for deletion.
    avoid: HashSet<PackId>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every pack of an index object (once per object id).
    pub fn merge(&mut self, id: Option<IndexId>, packs: &[IndexPack]) {
        if let Some(id) = id {
            if !self.merged.insert(id) {
                return;
            }
            self.files.push(id);
        }
        for p in packs {
            self.add_pack(p.id, &p.blobs);
        }
    }

    /// An empty index that, of several copies of a blob, keeps one outside
    /// `avoid` when there is one.
    pub fn avoiding(avoid: HashSet<PackId>) -> Self {
        Index {
            avoid,
            ..Self::default()
        }
    }

    /// Makes room for about `blobs` more blobs (from the size of the
    /// index objects about to be merged).
    pub fn reserve(&mut self, blobs: usize) {
        self.blobs.reserve(blobs);
    }

    /// The packs this index avoids.
    pub fn avoided(&self) -> &HashSet<PackId> {
        &self.avoid
    }

    /// Adds one pack's blobs. The first copy of a blob wins, unless it is
    /// in an avoided pack and this one is not.
    pub fn add_pack(&mut self, id: PackId, blobs: &[PackEntry]) {
        let next = self.packs.len() as u32;
        let number = *self.pack_numbers.entry(id).or_insert(next);
        if number == next {
            self.packs.push(id);
            self.pack_kinds.push(0);
        }
        for b in blobs {
            self.pack_kinds[number as usize] |= kind_bit(b.kind);
        }
        let preferred = !self.avoid.contains(&id);
        for b in blobs {
            let slot = Slot {
                pack: number,
                kind: b.kind,
                offset: b.offset,
                length: b.length,
                raw_length: b.raw_length,
            };
            match self.blobs.entry(b.id) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(slot);
                }
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    let current = self.packs[o.get().pack as usize];
                    if preferred && self.avoid.contains(&current) {
                        o.insert(slot);
                    }
                }
            }
        }
    }

    /// Whether a blob is stored.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    /// Where a blob is stored.
    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.blobs.get(id).map(|s| BlobLocation {
            pack: self.packs[s.pack as usize],
            kind: s.kind,
            offset: s.offset,
            length: s.length,
            raw_length: s.raw_length,
        })
    }

    /// Whether every blob the index lists in `pack` is a tree blob (a
    /// pack a writer of this version made for trees only; whole tree packs
    /// are what the local tree cache keeps).
    pub fn is_tree_pack(&self, pack: &PackId) -> bool {
        self.pack_numbers
            .get(pack)
            .is_some_and(|n| self.pack_kinds[*n as usize] == kind_bit(BlobKind::Tree))
    }

    /// Number of distinct blobs.
    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Every pack the index knows.
    pub fn packs(&self) -> &[PackId] {
        &self.packs
    }

    /// Records that every index object of the store was read.
    pub fn mark_loaded(&mut self) {
        self.loaded = true;
    }

    /// Whether the store's index objects were read (not just this
    /// process's own additions).
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Ids of the index objects merged so far.
    pub fn files(&self) -> &[IndexId] {
        &self.files
    }

    /// Every blob with its location (for check and stats).
    pub fn iter(&self) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        self.blobs.iter().map(|(id, s)| {
            (
                *id,
                BlobLocation {
                    pack: self.packs[s.pack as usize],
                    kind: s.kind,
                    offset: s.offset,
                    length: s.length,
                    raw_length: s.raw_length,
                },
            )
        })
    }
}

fn kind_bit(kind: BlobKind) -> u8 {
    match kind {
        BlobKind::Data => 1,
        BlobKind::Tree => 2,
    }
}

/// Encodes an index object's plaintext.
pub fn encode_file(packs: Vec<IndexPack>) -> Result<Vec<u8>> {
    codec::to_msgpack(&IndexFile { v: 1, packs }, "index")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: BlobId, offset: u32) -> PackEntry {
        PackEntry {
            kind: BlobKind::Data,
            id,
            offset,
            length: 10,
            raw_length: 5,
        }
    }

    #[test]
    fn merge_and_lookup() {
        let (b1, b2) = (BlobId::random(), BlobId::random());
        let (p1, p2) = (PackId::random(), PackId::random());
        let mut idx = Index::new();
        idx.merge(
            Some(IndexId::random()),
            &[IndexPack {
                id: p1,
                blobs: vec![entry(b1, 0)],
            }],
        );
        idx.merge(
            Some(IndexId::random()),
            &[IndexPack {
                id: p2,
                blobs: vec![entry(b1, 7), entry(b2, 17)],
            }],
        );
        assert_eq!(idx.get(&b1).expect("b1").pack, p1, "first copy wins");
        assert_eq!(idx.get(&b2).expect("b2").offset, 17);
        assert_eq!(idx.blob_count(), 2);
        assert_eq!(idx.packs().len(), 2);
        assert_eq!(idx.files().len(), 2);
        assert!(!idx.is_tree_pack(&p1), "a data pack");
        let (t, mixed) = (PackId::random(), PackId::random());
        let tree = PackEntry {
            kind: BlobKind::Tree,
            ..entry(BlobId::random(), 0)
        };
        idx.add_pack(t, std::slice::from_ref(&tree));
        idx.add_pack(mixed, &[tree, entry(BlobId::random(), 9)]);
        assert!(idx.is_tree_pack(&t));
        assert!(!idx.is_tree_pack(&mixed), "a pack with data blobs too");
        assert!(!idx.is_tree_pack(&PackId::random()), "an unknown pack");
        assert!(!idx.contains(&BlobId::random()));
    }

    #[test]
    fn a_copy_outside_avoided_packs_wins() {
        let b = BlobId::random();
        let (marked, kept) = (PackId::random(), PackId::random());
        let mut idx = Index::avoiding([marked].into_iter().collect());
        for p in [marked, kept] {
            idx.add_pack(p, &[entry(b, 3)]);
        }
        assert_eq!(idx.get(&b).expect("b").pack, kept);
        let mut idx = Index::avoiding([marked].into_iter().collect());
        for p in [kept, marked] {
            idx.add_pack(p, &[entry(b, 3)]);
        }
        assert_eq!(idx.get(&b).expect("b").pack, kept);
    }
}
