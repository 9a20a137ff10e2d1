//! Identifiers: 32-byte digests and random names, one newtype per use.
//!
//! Blob ids (chunks and trees) are keyed BLAKE3 digests of the plaintext,
//! keyed with a sub-key of the master key: equal data gets the same id inside
//! one store, and ids reveal nothing about content to someone without the key.
//! Pack, index and snapshot ids are random, so two writers never pick the same
//! object name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Length of every identifier in bytes.
pub const ID_LEN: usize = 32;

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; ID_LEN]);

        impl $name {
            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }

            /// A fresh random id.
            pub fn random() -> Self {
                Self(rand::random())
            }

            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex characters, for display.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// Parses 64 hex characters.
            pub fn from_hex(s: &str) -> Result<Self> {
                let mut out = [0u8; ID_LEN];
                hex::decode_to_slice(s, &mut out).map_err(|_| {
                    Error::InvalidArgument(format!("{} must be 64 hex characters, got {s:?}", $what))
                })?;
                Ok(Self(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::from_hex(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                // Binary formats (the store) get 32 raw bytes; JSON gets hex.
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    return Self::from_hex(&s).map_err(serde::de::Error::custom);
                }
                let bytes = serde_bytes::ByteBuf::deserialize(d)?;
                let arr: [u8; ID_LEN] = bytes.as_slice().try_into().map_err(|_| {
                    serde::de::Error::invalid_length(bytes.len(), &"32 bytes")
                })?;
                Ok(Self(arr))
            }
        }
    };
}

define_id!(
    /// A blob (chunk or tree) id: keyed BLAKE3 of its plaintext.
    BlobId,
    "blob id"
);
define_id!(
    /// A pack object id (random).
    PackId,
    "pack id"
);
define_id!(
    /// An index object id (random).
    IndexId,
    "index id"
);
define_id!(
    /// A snapshot id (random).
    SnapshotId,
    "snapshot id"
);
define_id!(
    /// A lock object id (random, new at every refresh).
    LockId,
    "lock id"
);
define_id!(
    /// Who holds a lock: random, fixed for the life of the holder while its
    /// lock object is rewritten under new [`LockId`]s.
    HolderId,
    "holder id"
);
define_id!(
    /// A mark object id (random).
    MarkId,
    "mark id"
);
define_id!(
    /// The store's id, fixed at creation (random).
    StoreId,
    "store id"
);

/// What a blob holds. Stored in pack trailers and indexes and bound into each
/// blob's associated data, so a tree can never be read as a chunk or back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    /// File content.
    Data,
    /// A serialized directory tree node.
    Tree,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = BlobId::random();
        assert_eq!(BlobId::from_hex(&id.to_hex()).expect("parse"), id);
        assert_eq!(id.short().len(), 8);
        assert!(BlobId::from_hex("abc").is_err());
    }

    #[test]
    fn serde_round_trip_as_bytes() {
        let id = PackId::random();
        let buf = rmp_serde::to_vec(&id).expect("encode");
        assert_eq!(buf.len(), 2 + ID_LEN, "bin8 header + 32 bytes");
        let back: PackId = rmp_serde::from_slice(&buf).expect("decode");
        assert_eq!(back, id);
        let short: std::result::Result<PackId, _> = rmp_serde::from_slice(
            &rmp_serde::to_vec(&serde_bytes::Bytes::new(&[1, 2])).expect("encode"),
        );
        assert!(short.is_err());
        let json = serde_json::to_string(&id).expect("json");
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        assert_eq!(serde_json::from_str::<PackId>(&json).expect("back"), id);
    }
}
