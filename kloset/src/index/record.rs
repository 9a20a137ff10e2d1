//! One blob's entry in the on-disk index: 47 bytes, the id first, so
//! records sort (and are searched) by id.
//!
//! Layout: the 32-byte blob id, the pack number (`u32`, big-endian), then
//! 88 bits, big-endian: offset (30 bits), sealed length (28), plaintext
//! length (29) and the kind (1, set for trees). An entry whose numbers do
//! not fit (a pack over 1 GiB, say) is not a record: the cache keeps it in
//! its manifest instead.

use serde::{Deserialize, Serialize};

use crate::id::{BlobId, BlobKind, ID_LEN};
use crate::pack::PackEntry;

/// Bytes per record.
pub const RECORD_LEN: usize = 47;

/// One encoded record.
pub type Record = [u8; RECORD_LEN];

const OFFSET_BITS: u32 = 30;
const LENGTH_BITS: u32 = 28;
const RAW_BITS: u32 = 29;

/// Where a blob is, by pack number (the index's own numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// Index of the pack in the index's pack list.
    pub pack: u32,
    /// Data or tree.
    pub kind: BlobKind,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

impl Slot {
    /// The slot of a pack entry in pack number `pack`.
    pub fn of(pack: u32, e: &PackEntry) -> Slot {
        Slot {
            pack,
            kind: e.kind,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
        }
    }
}

/// The record of `id` at `slot`, or `None` when a number does not fit.
pub fn encode(id: &BlobId, slot: &Slot) -> Option<Record> {
    if slot.offset >> OFFSET_BITS != 0
        || slot.length >> LENGTH_BITS != 0
        || slot.raw_length >> RAW_BITS != 0
    {
        return None;
    }
    let tree = u128::from(slot.kind == BlobKind::Tree);
    let packed = u128::from(slot.offset) << (LENGTH_BITS + RAW_BITS + 1)
        | u128::from(slot.length) << (RAW_BITS + 1)
        | u128::from(slot.raw_length) << 1
        | tree;
    let mut r = [0u8; RECORD_LEN];
    r[..ID_LEN].copy_from_slice(id.as_bytes());
    r[ID_LEN..ID_LEN + 4].copy_from_slice(&slot.pack.to_be_bytes());
    r[ID_LEN + 4..].copy_from_slice(&packed.to_be_bytes()[5..]);
    Some(r)
}

/// A record that carries only `id` (its slot all zero): for sorting sets
/// of ids with the index's own external sort.
pub fn of_id(id: &BlobId) -> Record {
    let mut r = [0u8; RECORD_LEN];
    r[..ID_LEN].copy_from_slice(id.as_bytes());
    r
}

/// The id of a record.
pub fn id_of(r: &[u8]) -> BlobId {
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&r[..ID_LEN]);
    BlobId::from_bytes(id)
}

/// The first 8 bytes of an id, as a number (what the fences hold).
pub fn prefix(id: &[u8]) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&id[..8]);
    u64::from_be_bytes(p)
}

/// The slot of a record (`r` is [`RECORD_LEN`] bytes).
pub fn decode(r: &[u8]) -> Slot {
    let mut pack = [0u8; 4];
    pack.copy_from_slice(&r[ID_LEN..ID_LEN + 4]);
    let mut wide = [0u8; 16];
    wide[5..].copy_from_slice(&r[ID_LEN + 4..RECORD_LEN]);
    let packed = u128::from_be_bytes(wide);
    let field = |shift: u32, bits: u32| ((packed >> shift) & ((1u128 << bits) - 1)) as u32;
    Slot {
        pack: u32::from_be_bytes(pack),
        kind: if packed & 1 == 1 {
            BlobKind::Tree
        } else {
            BlobKind::Data
        },
        offset: field(LENGTH_BITS + RAW_BITS + 1, OFFSET_BITS),
        length: field(RAW_BITS + 1, LENGTH_BITS),
        raw_length: field(1, RAW_BITS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_at_the_limits_and_refuse_what_does_not_fit() {
        let id = BlobId::random();
        for slot in [
            Slot {
                pack: u32::MAX,
                kind: BlobKind::Tree,
                offset: (1 << 30) - 1,
                length: (1 << 28) - 1,
                raw_length: (1 << 29) - 1,
            },
            Slot {
                pack: 0,
                kind: BlobKind::Data,
                offset: 0,
                length: 1,
                raw_length: 0,
            },
            Slot {
                pack: 7,
                kind: BlobKind::Data,
                offset: 123_456_789,
                length: 16 << 20,
                raw_length: 16 << 20,
            },
        ] {
            let r = encode(&id, &slot).expect("fits");
            assert_eq!(decode(&r), slot);
            assert_eq!(id_of(&r), id);
        }
        let base = Slot {
            pack: 1,
            kind: BlobKind::Data,
            offset: 0,
            length: 0,
            raw_length: 0,
        };
        for too_big in [
            Slot {
                offset: 1 << 30,
                ..base
            },
            Slot {
                length: 1 << 28,
                ..base
            },
            Slot {
                raw_length: 1 << 29,
                ..base
            },
        ] {
            assert!(encode(&id, &too_big).is_none());
        }
    }
}
