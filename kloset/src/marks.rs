//! Garbage-collection marks: packs that a prune intends to delete.
//!
//! A mark object (`marks/ID`) lists packs. Writers read every mark after
//! taking their shared lock and never deduplicate against a blob stored in
//! a marked pack (they store a fresh copy instead), so no new reference to a
//! marked pack can appear. That lets a future prune delete a marked pack
//! once every writer whose lock predates the mark has finished and no
//! snapshot refers to the pack. An unreadable mark is treated as marking
//! every pack: safe, at the cost of re-uploading data.

use std::collections::HashSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::{Keys, ObjectKind};
use crate::error::{ErrorKind, Result};
use crate::id::{HolderId, MarkId, PackId};
use crate::storage::{Key, MARKS_DIR, Storage};

/// The content of a mark object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkFile {
    /// Structure version (2 adds `holder`).
    pub v: u32,
    /// When the mark was made, Unix nanoseconds, by the prune's clock
    /// (shown only).
    pub time_ns: i64,
    /// Packs to be deleted unless referenced again.
    pub packs: Vec<PackId>,
    /// The prune that wrote it (its lock's holder id).
    #[serde(default)]
    pub holder: Option<HolderId>,
}

/// Packs a writer must not deduplicate against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Marked {
    /// No marks.
    #[default]
    None,
    /// These packs.
    Packs(HashSet<PackId>),
    /// A mark could not be read: treat every pack as marked.
    All,
}

impl Marked {
    /// The marked packs (empty for `All`, which no index can prefer around).
    pub fn packs(&self) -> HashSet<PackId> {
        match self {
            Marked::Packs(set) => set.clone(),
            Marked::None | Marked::All => HashSet::new(),
        }
    }

    /// Adds packs not to deduplicate against (for example packs that the
    /// index lists but the store does not have).
    pub fn add(&mut self, packs: impl IntoIterator<Item = PackId>) {
        let mut packs = packs.into_iter().peekable();
        if packs.peek().is_none() {
            return;
        }
        match self {
            Marked::All => {}
            Marked::Packs(set) => set.extend(packs),
            Marked::None => *self = Marked::Packs(packs.collect()),
        }
    }

    /// Whether `pack` may be deleted by a prune in progress.
    pub fn contains(&self, pack: &PackId) -> bool {
        match self {
            Marked::None => false,
            Marked::Packs(set) => set.contains(pack),
            Marked::All => true,
        }
    }
}

/// Every object under `marks/`, read.
#[derive(Debug, Default)]
pub struct MarkScan {
    /// What writers must not deduplicate against.
    pub marked: Marked,
    /// Objects under `marks/` that cannot be read (a name that is no mark
    /// id, a seal that does not open under this store's key, bytes that do
    /// not decode), with why; each makes `marked` [`Marked::All`].
    pub unreadable: Vec<(String, String)>,
    /// The marks read, by object name.
    pub readable: Vec<(String, MarkFile)>,
}

/// Reads every object under `marks/`. A failure to reach the store is an
/// error; an unreadable object is not (it is in `unreadable`).
pub fn scan(storage: &Storage, keys: &Keys) -> Result<MarkScan> {
    let mut unreadable = Vec::new();
    let mut gone = false;
    let mut readable = Vec::new();
    let listed = storage.list(Some(MARKS_DIR))?;
    for l in &listed {
        let name = l.path.as_str();
        let Some(id) = name
            .rsplit('/')
            .next()
            .and_then(|n| MarkId::from_hex(n).ok())
        else {
            unreadable.push((name.to_owned(), "the name is no mark id".to_owned()));
            continue;
        };
        let file = storage
            .get(Key::Mark(id))
            .and_then(|bytes| decode_mark(keys, id, &bytes, name));
        match file {
            Ok(f) => readable.push((name.to_owned(), f)),
            Err(e) if e.is_retryable() => return Err(e),
            // Deleted since the listing (a prune clearing marks): what it
            // named is not known, so every pack counts as marked.
            Err(e) if e.kind() == ErrorKind::NotFound => gone = true,
            Err(e) => unreadable.push((name.to_owned(), e.to_string())),
        }
    }
    let marked = if gone || !unreadable.is_empty() {
        Marked::All
    } else if listed.is_empty() {
        Marked::None
    } else {
        Marked::Packs(
            readable
                .iter()
                .flat_map(|(_, f)| f.packs.iter().copied())
                .collect(),
        )
    };
    Ok(MarkScan {
        marked,
        unreadable,
        readable,
    })
}

/// Reads every mark object, for a writer or reader: an unreadable one is
/// logged, naming it, and marks every pack.
pub fn load(storage: &Storage, keys: &Keys) -> Result<Marked> {
    let scan = scan(storage, keys)?;
    for (name, why) in &scan.unreadable {
        tracing::warn!(
            object = %name,
            error = %why,
            "a mark cannot be read, so every pack counts as marked: backups store all their data again \
             until a prune deletes the mark (`kloset check` names it)"
        );
    }
    Ok(scan.marked)
}

/// Opens and decodes a mark object's bytes.
pub(crate) fn decode_mark(keys: &Keys, id: MarkId, bytes: &[u8], name: &str) -> Result<MarkFile> {
    let plain = keys.open(ObjectKind::Mark, id.as_bytes(), bytes, name)?;
    codec::from_msgpack::<MarkFile>(&codec::decode(&plain, codec::MAX_OBJECT_SIZE, name)?, name)
}

/// Writes a mark object for the prune `holder`.
pub fn write(
    storage: &Storage,
    keys: &Keys,
    time_ns: i64,
    packs: Vec<PackId>,
    holder: Option<HolderId>,
) -> Result<MarkId> {
    let id = MarkId::random();
    let plain = codec::encode(
        &codec::to_msgpack(
            &MarkFile {
                v: 2,
                time_ns,
                packs,
                holder,
            },
            "mark",
        )?,
        3,
    );
    let sealed = keys.seal(ObjectKind::Mark, id.as_bytes(), &plain)?;
    storage.put_new(Key::Mark(id), Bytes::from(sealed))?;
    Ok(id)
}

/// The names of every object under `marks/` (readable or not).
pub fn list_names(storage: &Storage) -> Result<Vec<String>> {
    Ok(storage
        .list(Some(MARKS_DIR))?
        .into_iter()
        .map(|l| l.path)
        .collect())
}

/// Deletes a mark object by name. Always safe: a mark only keeps writers
/// from deduplicating against the packs it lists.
pub fn delete(storage: &Storage, name: &str) -> Result<()> {
    storage.delete(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::storage::Location;

    #[test]
    fn marks_round_trip_and_damaged_marks_mark_everything() {
        let storage = Storage::open(&Location::Memory, false).expect("storage");
        let keys = Keys::derive(&MasterKey::generate());
        assert_eq!(load(&storage, &keys).expect("load"), Marked::None);
        let (a, b) = (PackId::random(), PackId::random());
        write(&storage, &keys, 1, vec![a], None).expect("mark");
        let marked = load(&storage, &keys).expect("load");
        assert!(marked.contains(&a) && !marked.contains(&b));
        let other_keys = Keys::derive(&MasterKey::generate());
        write(&storage, &other_keys, 2, vec![b], None).expect("foreign mark");
        assert_eq!(
            load(&storage, &keys).expect("load"),
            Marked::All,
            "an unreadable mark marks every pack"
        );
    }
}
