//! The merge-join a prune plans from: the index's records (every copy of
//! every blob, sorted by id on local disk) and the ids the snapshots
//! reference (sorted the same way), walked side by side, one blob id at a
//! time. Memory stays a few blocks of each, however large the store.

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::index::cache::Table;
use crate::index::record::{self, Slot};
use crate::index::run::Run;
use crate::pack::PackEntry;

use super::plan::Listing;

/// The two sorted inputs.
pub struct Join<'a> {
    /// Every index record.
    pub table: &'a Table,
    /// The plan's number of each of the table's pack numbers (a pack two
    /// index objects list has two table numbers and one plan number).
    pub numbers: &'a [u32],
    /// The referenced ids (repeats allowed), or `None` when there are none.
    pub referenced: Option<&'a Run>,
}

impl Join<'_> {
    /// Calls `visit` with every blob id that the index lists or a
    /// snapshot references, in id order, with its copies (one per pack).
    pub fn for_each(&self, visit: &mut dyn FnMut(&Listing<'_>) -> Result<()>) -> Result<()> {
        let mut overflow: Vec<(BlobId, Slot)> =
            self.table.overflow().map(|(id, s)| (*id, *s)).collect();
        overflow.sort_unstable_by_key(|(id, _)| *id);
        let decode = |r: Result<record::Record>| r.map(|r| (record::id_of(&r), record::decode(&r)));
        let mut runs = Head::new(self.table.scan()?.map(decode))?;
        let mut extra = Head::new(overflow.into_iter().map(Ok))?;
        let mut refs = Head::new(self.referenced.into_iter().flat_map(Run::scan).map(decode))?;
        let mut copies: Vec<(u32, PackEntry)> = Vec::new();
        loop {
            let Some(id) = [runs.id(), extra.id(), refs.id()]
                .into_iter()
                .flatten()
                .min()
            else {
                return Ok(());
            };
            copies.clear();
            while let Some(slot) = runs.pop_if(id)? {
                self.add_copy(&mut copies, id, &slot)?;
            }
            while let Some(slot) = extra.pop_if(id)? {
                self.add_copy(&mut copies, id, &slot)?;
            }
            let mut referenced = false;
            while refs.pop_if(id)?.is_some() {
                referenced = true;
            }
            visit(&Listing {
                id,
                referenced,
                copies: &copies,
            })?;
        }
    }

    /// Adds a copy, once per pack. A pack number the table does not know
    /// stops the prune: a copy it cannot place must not be ignored.
    fn add_copy(&self, copies: &mut Vec<(u32, PackEntry)>, id: BlobId, slot: &Slot) -> Result<()> {
        let Some(&pack) = self.numbers.get(slot.pack as usize) else {
            return Err(Error::InvalidArgument(format!(
                "prune's index table lists blob {} in pack number {}, which it does not know; prune stops and deletes nothing",
                id.short(),
                slot.pack
            )));
        };
        if copies.iter().any(|(p, _)| *p == pack) {
            return Ok(());
        }
        copies.push((
            pack,
            PackEntry {
                kind: slot.kind,
                id,
                offset: slot.offset,
                length: slot.length,
                raw_length: slot.raw_length,
            },
        ));
        Ok(())
    }
}

/// A sorted stream with its next item read ahead.
struct Head<I> {
    iter: I,
    head: Option<(BlobId, Slot)>,
}

impl<I: Iterator<Item = Result<(BlobId, Slot)>>> Head<I> {
    fn new(mut iter: I) -> Result<Self> {
        let head = iter.next().transpose()?;
        Ok(Head { iter, head })
    }

    fn id(&self) -> Option<BlobId> {
        self.head.map(|(id, _)| id)
    }

    /// The next item's slot if its id is `id`, moving on.
    fn pop_if(&mut self, id: BlobId) -> Result<Option<Slot>> {
        match self.head {
            Some((next, slot)) if next == id => {
                self.head = self.iter.next().transpose()?;
                Ok(Some(slot))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::id::{IndexId, PackId, StoreId};
    use crate::index::cache::{IndexCache, Update};
    use crate::index::sorter::Sorter;
    use crate::index::tests::entry;
    use crate::index::{IndexFile, IndexPack};

    /// Index objects sorted into a table the way a prune sorts them, the
    /// referenced ids into a run, and what the join lists.
    #[test]
    fn the_join_lists_each_id_once_with_one_copy_per_pack_and_its_references() {
        let dir = tempfile::tempdir().expect("dir");
        let key = [7u8; 32];
        let (a, b, c, unlisted) = (
            BlobId::random(),
            BlobId::random(),
            BlobId::random(),
            BlobId::random(),
        );
        let (p1, p2) = (PackId::random(), PackId::random());
        // p1 is listed by two index objects (a rewrite that died between
        // writing the new object and deleting the old one); `a` is in both
        // packs; a huge offset goes to the table's overflow.
        let first = IndexPack {
            id: p1,
            blobs: vec![entry(a, 0), entry(b, 10)],
        };
        let objects = vec![
            (IndexId::random(), vec![first.clone()]),
            (
                IndexId::random(),
                vec![
                    first,
                    IndexPack {
                        id: p2,
                        blobs: vec![entry(a, 0), entry(c, 1 << 31)],
                    },
                ],
            ),
        ];
        let cache = IndexCache::open(dir.path(), StoreId::random(), &key);
        let listed = objects
            .iter()
            .map(|(id, _)| (id.to_hex(), Some(*id)))
            .collect();
        let mut visit = |_, f: &mut dyn FnMut(IndexId, IndexFile)| {
            for (id, packs) in &objects {
                f(
                    *id,
                    IndexFile {
                        v: 1,
                        packs: packs.clone(),
                    },
                );
            }
            Ok(Some(Vec::new()))
        };
        let Update::Done(loaded, _) = cache.update(listed, &mut visit).expect("update") else {
            panic!("the table was not built");
        };
        assert_eq!(loaded.table.overflow().count(), 1, "c's copy overflows");
        let plan_number: HashMap<PackId, u32> = [(p1, 0), (p2, 1)].into_iter().collect();
        let numbers: Vec<u32> = loaded.packs.iter().map(|p| plan_number[p]).collect();

        let mut sorter = Sorter::new(dir.path(), &key);
        for id in [a, unlisted, a, c, unlisted] {
            sorter.push(record::of_id(&id)).expect("push");
        }
        let meta = sorter.finish().expect("sort").expect("a run");
        let referenced = Run::open(dir.path(), &meta, &key, 0).expect("open");

        let join = Join {
            table: &loaded.table,
            numbers: &numbers,
            referenced: Some(&referenced),
        };
        let mut seen = Vec::new();
        join.for_each(&mut |l| {
            let mut packs: Vec<u32> = l.copies.iter().map(|(p, _)| *p).collect();
            packs.sort();
            seen.push((l.id, l.referenced, packs));
            Ok(())
        })
        .expect("join");
        let mut want = vec![
            (a, true, vec![0, 1]),
            (b, false, vec![0]),
            (c, true, vec![1]),
            (unlisted, true, vec![]),
        ];
        want.sort_by_key(|(id, _, _)| *id);
        assert_eq!(seen, want);

        let no_refs = Join {
            referenced: None,
            ..join
        };
        let mut count = 0;
        no_refs
            .for_each(&mut |l| {
                assert!(!l.referenced);
                count += 1;
                Ok(())
            })
            .expect("join");
        assert_eq!(count, 3);
    }
}
