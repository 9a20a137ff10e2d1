//! Reading one blob: from the index's location, through the local tree
//! cache for tree packs of a remote store, authenticated and verified.

use crate::codec;
use crate::crypto::ObjectKind;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, BlobKind};
use crate::index::BlobLocation;
use crate::storage::Key;
use crate::tree::Tree;

use super::Repository;

impl Repository {
    /// Reads, authenticates, decompresses and verifies one blob. Not found
    /// (in the index or its pack), it is tried once more after the index is
    /// brought up to date: a prune that moved it wrote the index object
    /// naming its new copy before it deleted the old pack (FORMAT.md §16).
    pub fn load_blob(&self, kind: BlobKind, id: &BlobId) -> Result<Vec<u8>> {
        match self.load_blob_once(kind, id) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.refresh_index()?;
                self.load_blob_once(kind, id)
            }
            done => done,
        }
    }

    fn load_blob_once(&self, kind: BlobKind, id: &BlobId) -> Result<Vec<u8>> {
        let (loc, tree_pack) = {
            let index = self.index();
            let loc = index.get(id)?.ok_or_else(|| self.missing_blob(kind, id))?;
            (loc, kind == BlobKind::Tree && loc.tree_pack)
        };
        if tree_pack && self.tree_cache.is_some() {
            return self.load_through_cache(kind, id, &loc);
        }
        let sealed = self.storage.get_range(
            Key::Pack(loc.pack),
            loc.offset as u64..loc.offset as u64 + loc.length as u64,
        )?;
        self.open_blob(
            kind,
            id,
            loc.raw_length,
            &sealed,
            &Key::Pack(loc.pack).path(),
        )
    }

    /// Opens a sealed blob already fetched (for callers reading whole packs).
    pub fn open_blob(
        &self,
        kind: BlobKind,
        id: &BlobId,
        raw_length: u32,
        sealed: &[u8],
        pack: &str,
    ) -> Result<Vec<u8>> {
        let name = format!("{kind:?} blob {} in {pack}", id.short()).to_lowercase();
        let plain = self
            .keys
            .open(ObjectKind::from(kind), id.as_bytes(), sealed, &name)?;
        let raw = codec::decode(&plain, raw_length as usize, &name)?;
        if raw.len() != raw_length as usize || self.keys.blob_id(kind, &raw) != *id {
            return Err(Error::corrupt(name, "content does not match its id"));
        }
        Ok(raw)
    }

    /// The error for a blob the index does not have. When index objects
    /// could not be read, the blob may be listed in one of them: the error
    /// names the first (by name) and counts the others.
    pub fn missing_blob(&self, kind: BlobKind, id: &BlobId) -> Error {
        let mut unreadable: Vec<String> = self
            .index_problems()
            .into_iter()
            .map(|p| p.object)
            .collect();
        unreadable.sort();
        unreadable.dedup();
        let hint = match unreadable.as_slice() {
            [] => String::new(),
            [one] => format!(" (index object {one} could not be read; run check)"),
            [first, more @ ..] => format!(
                " (index object {first} and {} more could not be read; run check)",
                more.len()
            ),
        };
        let kind = format!("{kind:?}").to_lowercase();
        Error::NotFound {
            what: format!("{kind} blob {} in the index{hint}", id.short()),
        }
    }

    /// Loads and validates a tree.
    pub fn load_tree(&self, id: &BlobId) -> Result<Tree> {
        let raw = self.load_blob(BlobKind::Tree, id)?;
        Tree::decode(&raw, &format!("tree {}", id.short()))
    }

    /// A blob of a tree pack: from the cached pack when it opens, else the
    /// whole pack is fetched (one request serves every tree in it), the
    /// blob opened, and the pack cached.
    fn load_through_cache(
        &self,
        kind: BlobKind,
        id: &BlobId,
        loc: &BlobLocation,
    ) -> Result<Vec<u8>> {
        let Some(cache) = &self.tree_cache else {
            return Err(Error::InvalidArgument("no tree cache".into()));
        };
        let pack_name = Key::Pack(loc.pack).path();
        if let Some(sealed) = cache.get(loc) {
            match self.open_blob(kind, id, loc.raw_length, &sealed, &pack_name) {
                Ok(raw) => return Ok(raw),
                // Damaged or planted: the store decides.
                Err(_) => cache.forget(&loc.pack),
            }
        }
        let pack = self.storage.get(Key::Pack(loc.pack))?;
        let (start, end) = (
            loc.offset as usize,
            loc.offset as usize + loc.length as usize,
        );
        let sealed = pack
            .get(start..end)
            .ok_or_else(|| Error::corrupt(&pack_name, "short read"))?;
        let raw = self.open_blob(kind, id, loc.raw_length, sealed, &pack_name)?;
        cache.put(&loc.pack, &pack);
        Ok(raw)
    }
}
