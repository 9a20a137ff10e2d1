//! Packs: many sealed blobs in one object, followed by a sealed trailer that
//! lists them, so a bucket holds few large objects and the index can always
//! be rebuilt from the packs alone.
//!
//! Layout: `blob_0 .. blob_n-1 | sealed trailer | trailer length (u32 LE)`.
//! Each blob is sealed on its own (kind and blob id in its associated data),
//! so one blob can be read with a single ranged GET. The trailer is sealed
//! with the pack id in its associated data: a pack renamed to another id
//! fails to open.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::{Keys, ObjectKind};
use crate::error::{Error, Result};
use crate::id::{BlobId, BlobKind, PackId};
use crate::storage::{Key, Storage};

/// Length of the trailer-length field at the very end of a pack.
pub const TRAILER_LEN_SIZE: usize = 4;
/// Upper bound on a trailer (protects readers from hostile lengths).
const MAX_TRAILER: usize = 64 << 20;

/// One blob's place in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// Data or tree.
    pub kind: BlobKind,
    /// Keyed hash of the plaintext.
    pub id: BlobId,
    /// Byte offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the plaintext before compression.
    pub raw_length: u32,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Trailer {
    pub(crate) v: u32,
    pub(crate) blobs: Vec<PackEntry>,
}

/// Accumulates sealed blobs into one pack.
#[derive(Debug)]
pub struct PackBuilder {
    id: PackId,
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack, ready to upload.
#[derive(Debug)]
pub struct FinishedPack {
    /// Its id.
    pub id: PackId,
    /// The bytes to store.
    pub bytes: Bytes,
    /// What it holds.
    pub entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// A new empty pack with a fresh random id.
    pub fn new(capacity: usize) -> Self {
        PackBuilder {
            id: PackId::random(),
            buf: Vec::with_capacity(capacity),
            entries: Vec::new(),
        }
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Number of blobs so far.
    pub fn blob_count(&self) -> usize {
        self.entries.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends one sealed blob.
    pub fn push(&mut self, kind: BlobKind, id: BlobId, raw_length: u32, sealed: &[u8]) {
        self.entries.push(PackEntry {
            kind,
            id,
            offset: self.buf.len() as u32,
            length: sealed.len() as u32,
            raw_length,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Seals the trailer and returns the pack.
    pub fn finish(mut self, keys: &Keys) -> Result<FinishedPack> {
        let trailer = Trailer {
            v: 1,
            blobs: self.entries.clone(),
        };
        let plain = codec::encode(&codec::to_msgpack(&trailer, "pack trailer")?, 3);
        let sealed = keys.seal(ObjectKind::PackTrailer, self.id.as_bytes(), &plain)?;
        // Exactly: growing a full 16 MiB buffer by doubling would hold
        // 32 MiB per pack in flight.
        self.buf.reserve_exact(sealed.len() + TRAILER_LEN_SIZE);
        self.buf.extend_from_slice(&sealed);
        self.buf
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        Ok(FinishedPack {
            id: self.id,
            bytes: Bytes::from(self.buf),
            entries: self.entries,
        })
    }
}

/// Parses and authenticates the trailer of a whole pack held in memory.
pub fn parse_trailer(keys: &Keys, id: PackId, pack: &[u8]) -> Result<Vec<PackEntry>> {
    let name = Key::Pack(id).path();
    let len = trailer_len(pack, pack.len() as u64, &name)?;
    let trailer_start = pack.len() - TRAILER_LEN_SIZE - len as usize;
    open_trailer(
        keys,
        id,
        &pack[trailer_start..pack.len() - TRAILER_LEN_SIZE],
        trailer_start as u64,
    )
}

/// Reads a pack's trailer with two ranged reads (no need to fetch the pack).
pub fn read_trailer(
    storage: &Storage,
    keys: &Keys,
    id: PackId,
    size: u64,
) -> Result<Vec<PackEntry>> {
    let name = Key::Pack(id).path();
    if size < TRAILER_LEN_SIZE as u64 {
        return Err(Error::corrupt(&name, "too short to be a pack"));
    }
    let len_bytes = storage.get_range(Key::Pack(id), size - TRAILER_LEN_SIZE as u64..size)?;
    let len = trailer_len(&len_bytes, size, &name)?;
    let start = size - TRAILER_LEN_SIZE as u64 - len;
    let sealed = storage.get_range(Key::Pack(id), start..size - TRAILER_LEN_SIZE as u64)?;
    open_trailer(keys, id, &sealed, start)
}

/// Decodes the trailer length from the last 4 bytes of `tail` and checks it
/// against the pack size.
fn trailer_len(tail: &[u8], pack_size: u64, name: &str) -> Result<u64> {
    if tail.len() < TRAILER_LEN_SIZE || pack_size < TRAILER_LEN_SIZE as u64 {
        return Err(Error::corrupt(name, "too short to be a pack"));
    }
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(&tail[tail.len() - TRAILER_LEN_SIZE..]);
    let len = u32::from_le_bytes(len4) as u64;
    if len + TRAILER_LEN_SIZE as u64 > pack_size || len as usize > MAX_TRAILER {
        return Err(Error::corrupt(name, "trailer length out of range"));
    }
    Ok(len)
}

/// Opens a sealed trailer; every listed blob must lie in `0..blobs_end`.
fn open_trailer(keys: &Keys, id: PackId, sealed: &[u8], blobs_end: u64) -> Result<Vec<PackEntry>> {
    let name = Key::Pack(id).path();
    let plain = keys.open(ObjectKind::PackTrailer, id.as_bytes(), sealed, &name)?;
    let trailer: Trailer =
        codec::from_msgpack(&codec::decode(&plain, MAX_TRAILER * 4, &name)?, &name)?;
    codec::check_version(trailer.v, 1, &name)?;
    if trailer
        .blobs
        .iter()
        .any(|e| e.offset as u64 + e.length as u64 > blobs_end)
    {
        return Err(Error::corrupt(
            &name,
            "trailer lists a blob outside the pack",
        ));
    }
    Ok(trailer.blobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn pack_of(keys: &Keys, n: usize) -> FinishedPack {
        let mut b = PackBuilder::new(1024);
        for i in 0..n {
            let raw = vec![i as u8; 100 + i];
            let id = keys.blob_id(BlobKind::Data, &raw);
            let sealed = keys
                .seal(ObjectKind::Data, id.as_bytes(), &codec::encode(&raw, 3))
                .expect("seal");
            b.push(BlobKind::Data, id, raw.len() as u32, &sealed);
        }
        b.finish(keys).expect("finish")
    }

    #[test]
    fn trailer_round_trip_and_blob_access() {
        let keys = Keys::derive(&MasterKey::generate());
        let p = pack_of(&keys, 5);
        let entries = parse_trailer(&keys, p.id, &p.bytes).expect("trailer");
        assert_eq!(entries, p.entries);
        let e = entries[3];
        let sealed = &p.bytes[e.offset as usize..(e.offset + e.length) as usize];
        let plain = keys
            .open(ObjectKind::Data, e.id.as_bytes(), sealed, "b")
            .expect("open");
        assert_eq!(
            codec::decode(&plain, e.raw_length as usize, "b").expect("decode"),
            vec![3u8; 103]
        );
    }

    #[test]
    fn renamed_truncated_or_garbage_packs_fail() {
        let keys = Keys::derive(&MasterKey::generate());
        let p = pack_of(&keys, 3);
        assert!(
            parse_trailer(&keys, PackId::random(), &p.bytes).is_err(),
            "renamed"
        );
        assert!(
            parse_trailer(&keys, p.id, &p.bytes[..p.bytes.len() - 1]).is_err(),
            "truncated"
        );
        assert!(parse_trailer(&keys, p.id, b"xy").is_err());
        assert!(parse_trailer(&keys, p.id, &[0xff; 64]).is_err());
    }

    #[test]
    fn trailer_read_with_ranged_gets() {
        let keys = Keys::derive(&MasterKey::generate());
        let p = pack_of(&keys, 4);
        let storage = Storage::open(&crate::storage::Location::Memory, false).expect("storage");
        storage
            .put_new(Key::Pack(p.id), p.bytes.clone())
            .expect("put");
        let entries = read_trailer(&storage, &keys, p.id, p.bytes.len() as u64).expect("trailer");
        assert_eq!(entries, p.entries);
        assert!(read_trailer(&storage, &keys, p.id, 3).is_err());
    }
}
