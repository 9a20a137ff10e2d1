//! The index: which pack holds each blob, merged from every index object.
//!
//! Index objects are immutable and written by each writer after its packs are
//! durable; readers merge all of them, so concurrent writers never contend
//! on a shared file. A blob listed twice (two hosts stored the same data at
//! once) is harmless: any copy will do. Entries are compact (pack number,
//! offset, lengths) to keep memory near 60 bytes per blob; a large store's
//! index lives on disk instead ([`cache`]), at 48 bytes per blob and a few
//! megabytes of memory per hundred million blobs.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Result;
use crate::id::{BlobId, BlobKind, IndexId, PackId};
use crate::pack::PackEntry;

mod blocks;
pub mod cache;
pub(crate) mod record;
pub(crate) mod run;
pub(crate) mod sorter;

pub use cache::IndexCache;
use cache::{Loaded, Table};
use record::Slot;

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
    /// Whether every blob of the pack is a tree (a pack the local tree
    /// cache keeps whole).
    pub tree_pack: bool,
}

/// The merged index: in memory, or an on-disk table ([`IndexCache`]) with
/// the blobs added since it was read in memory beside it.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<PackId>,
    /// Per pack number: the kinds of blob it holds (bit 0 data, bit 1 tree).
    pack_kinds: Vec<u8>,
    /// Numbers of the packs added in memory.
    pack_numbers: HashMap<PackId, u32>,
    /// Blobs held in memory: all of them without a table; with one, the
    /// ones added since the table was read.
    blobs: HashMap<BlobId, Slot>,
    table: Option<Table>,
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

    /// An index over an on-disk table, avoiding `avoid` like
    /// [`Index::avoiding`].
    pub fn from_table(loaded: Loaded, avoid: HashSet<PackId>) -> Self {
        Index {
            merged: loaded.files.iter().copied().collect(),
            files: loaded.files,
            packs: loaded.packs,
            pack_kinds: loaded.pack_kinds,
            table: Some(loaded.table),
            avoid,
            ..Self::default()
        }
    }

    /// Whether the index is an on-disk table.
    pub fn on_disk(&self) -> bool {
        self.table.is_some()
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
            let slot = Slot::of(number, b);
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

    fn is_avoided(&self, s: &Slot) -> bool {
        !self.avoid.is_empty()
            && self
                .packs
                .get(s.pack as usize)
                .is_some_and(|p| self.avoid.contains(p))
    }

    /// The location of a slot. A pack number the index does not know can
    /// only come from a damaged on-disk table: an error, never a panic.
    fn location(&self, s: &Slot) -> Result<BlobLocation> {
        let n = s.pack as usize;
        let (Some(pack), Some(kinds)) = (self.packs.get(n), self.pack_kinds.get(n)) else {
            return Err(crate::error::Error::corrupt(
                "the on-disk index",
                format!("pack number {n} is not in its pack list; delete the index cache"),
            ));
        };
        Ok(BlobLocation {
            pack: *pack,
            kind: s.kind,
            offset: s.offset,
            length: s.length,
            raw_length: s.raw_length,
            tree_pack: *kinds == kind_bit(BlobKind::Tree),
        })
    }

    /// Whether a blob is stored. Fails only when the on-disk table cannot
    /// be read (it is then rebuilt at the next open).
    pub fn contains(&self, id: &BlobId) -> Result<bool> {
        if self.blobs.contains_key(id) {
            return Ok(true);
        }
        let Some(table) = &self.table else {
            return Ok(false);
        };
        let mut copies = Vec::new();
        table.lookup_until(id, &mut copies, |_| true)?;
        Ok(!copies.is_empty())
    }

    /// Where a blob is stored: a copy outside the avoided packs if there is
    /// one.
    pub fn get(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        let in_memory = self.blobs.get(id);
        if let Some(s) = in_memory
            && (self.table.is_none() || !self.is_avoided(s))
        {
            return self.location(s).map(Some);
        }
        let Some(table) = &self.table else {
            return Ok(None);
        };
        let mut copies = Vec::new();
        table.lookup_until(id, &mut copies, |s| !self.is_avoided(s))?;
        let best = copies
            .iter()
            .find(|s| !self.is_avoided(s))
            .or(in_memory)
            .or(copies.first());
        best.map(|s| self.location(s)).transpose()
    }

    /// Whether every blob the index lists in `pack` is a tree blob (a
    /// pack a writer of this version made for trees only; whole tree packs
    /// are what the local tree cache keeps).
    pub fn is_tree_pack(&self, pack: &PackId) -> bool {
        let number = match self.pack_numbers.get(pack) {
            Some(n) => Some(*n as usize),
            None => self.packs.iter().position(|p| p == pack),
        };
        number.is_some_and(|n| self.pack_kinds[n] == kind_bit(BlobKind::Tree))
    }

    /// Number of distinct blobs (with an on-disk table, a blob stored
    /// twice by two hosts at once may count twice).
    pub fn blob_count(&self) -> usize {
        let on_disk = self.table.as_ref().map_or(0, Table::distinct);
        self.blobs.len() + on_disk as usize
    }

    /// Blobs held in the in-memory map (all of them without a table).
    pub fn memory_blobs(&self) -> usize {
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

    /// Every blob once, with its location (for check and stats). Reading
    /// the on-disk table can fail; the iterator then yields the error and
    /// stops.
    pub fn iter(&self) -> Box<dyn Iterator<Item = Result<(BlobId, BlobLocation)>> + '_> {
        let in_memory = self
            .blobs
            .iter()
            .map(|(id, s)| self.location(s).map(|l| (*id, l)));
        let Some(table) = &self.table else {
            return Box::new(in_memory);
        };
        let overflow = table
            .overflow()
            .map(|(id, s)| self.location(s).map(|l| (*id, l)));
        let on_disk: Box<dyn Iterator<Item = Result<(BlobId, BlobLocation)>>> = match table.scan() {
            Ok(scan) => Box::new(OncePerId {
                index: self,
                records: scan,
                held: None,
            }),
            Err(e) => Box::new(std::iter::once(Err(e))),
        };
        Box::new(on_disk.chain(overflow).chain(in_memory))
    }
}

/// Groups a sorted record stream by id and yields the preferred copy.
struct OncePerId<'a, I> {
    index: &'a Index,
    records: I,
    held: Option<(BlobId, Slot)>,
}

impl<I: Iterator<Item = Result<record::Record>>> Iterator for OncePerId<'_, I> {
    type Item = Result<(BlobId, BlobLocation)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some(next) = self.records.next() else {
                let (id, s) = self.held.take()?;
                return Some(self.index.location(&s).map(|l| (id, l)));
            };
            let r = match next {
                Ok(r) => r,
                Err(e) => {
                    self.held = None;
                    return Some(Err(e));
                }
            };
            let (id, slot) = (record::id_of(&r), record::decode(&r));
            match self.held {
                Some((held, s)) if held == id => {
                    if self.index.is_avoided(&s) && !self.index.is_avoided(&slot) {
                        self.held = Some((id, slot));
                    }
                }
                _ => {
                    if let Some((held, s)) = self.held.replace((id, slot)) {
                        return Some(self.index.location(&s).map(|l| (held, l)));
                    }
                }
            }
        }
    }
}

pub(crate) fn kind_bit(kind: BlobKind) -> u8 {
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
pub(crate) mod tests {
    use super::*;

    /// A data blob's entry of 10 sealed bytes at `offset`.
    pub(crate) fn entry(id: BlobId, offset: u32) -> PackEntry {
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
        assert_eq!(
            idx.get(&b1).expect("read").expect("b1").pack,
            p1,
            "first copy wins"
        );
        assert_eq!(idx.get(&b2).expect("read").expect("b2").offset, 17);
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
        assert!(!idx.contains(&BlobId::random()).expect("read"));
    }

    #[test]
    fn a_copy_outside_avoided_packs_wins() {
        let b = BlobId::random();
        let (marked, kept) = (PackId::random(), PackId::random());
        let mut idx = Index::avoiding([marked].into_iter().collect());
        for p in [marked, kept] {
            idx.add_pack(p, &[entry(b, 3)]);
        }
        assert_eq!(idx.get(&b).expect("read").expect("b").pack, kept);
        let mut idx = Index::avoiding([marked].into_iter().collect());
        for p in [kept, marked] {
            idx.add_pack(p, &[entry(b, 3)]);
        }
        assert_eq!(idx.get(&b).expect("read").expect("b").pack, kept);
    }

    #[test]
    fn a_pack_number_outside_the_pack_list_is_an_error_not_a_panic() {
        let (good, bad) = (BlobId::random(), BlobId::random());
        let slot = |pack| Slot {
            pack,
            kind: BlobKind::Data,
            offset: 0,
            length: 10,
            raw_length: 5,
        };
        let loaded = Loaded {
            table: Table::of_overflow(vec![(good, slot(0)), (bad, slot(7))]),
            files: Vec::new(),
            packs: vec![PackId::random()],
            pack_kinds: vec![kind_bit(BlobKind::Data)],
        };
        let idx = Index::from_table(loaded, [PackId::random()].into_iter().collect());
        assert!(idx.get(&good).expect("good").is_some());
        assert!(idx.get(&bad).is_err());
        assert!(idx.contains(&bad).expect("contains only looks"));
        assert!(idx.iter().any(|r| r.is_err()));
    }
}
