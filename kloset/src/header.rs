//! The store header: the only object stored unencrypted.
//!
//! It holds what is needed to open the store and nothing else: the format
//! version, the store id, the Argon2id parameters and salt, the master key
//! wrapped by the passphrase-derived key, and the store configuration sealed
//! with the master key. A wrong passphrase fails to unwrap the key, so it is
//! detected before anything is read or written.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::codec;
use crate::crypto::{KdfParams, Keys, MasterKey, ObjectKind, unwrap_master_key, wrap_master_key};
use crate::error::{Error, Result};
use crate::id::StoreId;

/// The `magic` field of every store header.
pub const MAGIC: &str = "kloset";
/// The store format version this library writes and the highest it reads.
pub const FORMAT_VERSION: u32 = 2;
/// The lock, mark and prune protocol of FORMAT.md §16 (version 2).
pub const FEATURE_LOCKS_V2: &str = "locks-v2";
/// Features this library implements; a store that lists another one was
/// written by a newer kloset whose writers follow rules this one does not
/// know, so this one refuses to write to it (reading is fine).
pub const KNOWN_FEATURES: &[&str] = &[FEATURE_LOCKS_V2];

/// The store header, serialized as JSON (object `kloset`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always `"kloset"`.
    pub magic: String,
    /// Format version of the whole store.
    pub version: u32,
    /// The store's id, 64 hex characters.
    pub store_id: String,
    /// Passphrase key derivation.
    pub kdf: KdfParams,
    /// Hex of the sealed master key (`ObjectKind::MasterKey`, id = store id).
    pub master_key: String,
    /// Hex of the sealed configuration (`ObjectKind::Config`, id = store id).
    pub config: String,
    /// Protocol features every writer of this store must implement
    /// (version 2; absent in version 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// BLAKE3 (hex) of this header serialized with `checksum` empty. It
    /// cannot stop a forger (nothing without the key can), but it tells a
    /// damaged header apart from a wrong passphrase, and catches changes
    /// that parse to the same values (such as hex case).
    pub checksum: String,
}

/// Just enough of the header to check magic and version before anything else.
#[derive(Deserialize)]
struct Probe {
    magic: Option<String>,
    version: Option<u32>,
}

/// Store configuration, sealed inside the header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Structure version.
    pub v: u32,
    /// Content-defined chunking parameters.
    pub chunker: ChunkerParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// zstd level for blobs and metadata.
    pub compression_level: i32,
    /// Creation time, Unix nanoseconds.
    pub created_ns: i64,
}

/// zstd level of a new store: 21% faster than level 3 for 3.3% more bytes
/// on the sysroot corpus (docs/performance.md, "Tuning").
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 2;

/// Smallest and largest accepted target pack sizes.
pub const PACK_SIZE_RANGE: std::ops::RangeInclusive<u32> = (64 * 1024)..=(1 << 30);

impl StoreConfig {
    fn validate(&self) -> Result<()> {
        self.chunker.validate()?;
        if !PACK_SIZE_RANGE.contains(&self.pack_size) {
            return Err(Error::InvalidArgument(format!(
                "pack size {} is outside {}..={} bytes",
                self.pack_size,
                PACK_SIZE_RANGE.start(),
                PACK_SIZE_RANGE.end()
            )));
        }
        if !(1..=19).contains(&self.compression_level) {
            return Err(Error::InvalidArgument(format!(
                "compression level {} is outside 1..=19",
                self.compression_level
            )));
        }
        Ok(())
    }
}

/// A header plus what opening it produced.
#[derive(Debug)]
pub struct Opened {
    /// The header as read.
    pub header: Header,
    /// The store id.
    pub store_id: StoreId,
    /// Derived keys.
    pub keys: Keys,
    /// The decrypted configuration.
    pub config: StoreConfig,
}

impl Header {
    /// Builds a new header for a fresh store.
    pub fn create(
        passphrase: &[u8],
        kdf: KdfParams,
        config: &StoreConfig,
    ) -> Result<(Header, Opened)> {
        config.validate()?;
        let store_id = StoreId::random();
        let master = MasterKey::generate();
        let wrapped = wrap_master_key(&master, &kdf, passphrase, store_id.as_bytes())?;
        let keys = Keys::derive(&master);
        let plain = codec::encode(&codec::to_msgpack(config, "store configuration")?, 3);
        let sealed = keys.seal(ObjectKind::Config, store_id.as_bytes(), &plain)?;
        let mut header = Header {
            magic: MAGIC.into(),
            version: FORMAT_VERSION,
            store_id: store_id.to_hex(),
            kdf,
            master_key: hex::encode(wrapped),
            config: hex::encode(sealed),
            features: KNOWN_FEATURES.iter().map(|f| f.to_string()).collect(),
            checksum: String::new(),
        };
        header.checksum = header.compute_checksum()?;
        Ok((
            header.clone(),
            Opened {
                header,
                store_id,
                keys,
                config: config.clone(),
            },
        ))
    }

    /// This header as a version 1 store has it (no `features`), with its
    /// checksum: for tests of `upgrade` and of version 1 stores.
    #[doc(hidden)]
    pub fn as_version_1(&self) -> Result<Header> {
        let mut h = self.clone();
        h.version = 1;
        h.features.clear();
        h.checksum = h.compute_checksum()?;
        Ok(h)
    }

    fn compute_checksum(&self) -> Result<String> {
        let mut unsummed = self.clone();
        unsummed.checksum = String::new();
        let canonical = serde_json::to_vec(&unsummed)
            .map_err(|e| Error::encode("store header (object kloset)", e))?;
        Ok(blake3::hash(&canonical).to_hex().to_string())
    }

    /// Serializes the header as pretty JSON.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| Error::encode("store header (object kloset)", e))
    }

    /// Parses a header; `Ok(None)` means the object is not a kloset header.
    pub fn parse(bytes: &[u8]) -> Result<Option<Header>> {
        let Ok(probe) = serde_json::from_slice::<Probe>(bytes) else {
            return Ok(None);
        };
        if probe.magic.as_deref() != Some(MAGIC) {
            return Ok(None);
        }
        codec::check_version(probe.version.unwrap_or(0), FORMAT_VERSION, "store header")?;
        let header: Header = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt("store header (object kloset)", e.to_string()))?;
        if header.checksum != header.compute_checksum()? {
            return Err(Error::corrupt(
                "store header (object kloset)",
                "checksum mismatch: the header is damaged",
            ));
        }
        Ok(Some(header))
    }

    /// Unlocks the header with `passphrase`.
    pub fn open(&self, passphrase: &[u8], location: &str) -> Result<Opened> {
        let store_id = StoreId::from_hex(&self.store_id)
            .map_err(|_| Error::corrupt("store header", "bad store id"))?;
        let wrapped = hex::decode(&self.master_key)
            .map_err(|_| Error::corrupt("store header", "master key is not hex"))?;
        let master = unwrap_master_key(
            &wrapped,
            &self.kdf,
            passphrase,
            store_id.as_bytes(),
            location,
        )?;
        let keys = Keys::derive(&master);
        let sealed = hex::decode(&self.config)
            .map_err(|_| Error::corrupt("store header", "config is not hex"))?;
        let plain = keys.open(
            ObjectKind::Config,
            store_id.as_bytes(),
            &sealed,
            "store config",
        )?;
        let config: StoreConfig = codec::from_msgpack(
            &codec::decode(&plain, 1 << 20, "store config")?,
            "store config",
        )?;
        codec::check_version(config.v, 1, "store config")?;
        config
            .validate()
            .map_err(|e| Error::corrupt("store config", e.to_string()))?;
        Ok(Opened {
            header: self.clone(),
            store_id,
            keys,
            config,
        })
    }

    /// Fails unless this library may write to the store: every feature it
    /// lists must be known.
    pub fn check_writable(&self) -> Result<()> {
        match self
            .features
            .iter()
            .find(|f| !KNOWN_FEATURES.contains(&f.as_str()))
        {
            None => Ok(()),
            Some(f) => Err(Error::UnsupportedVersion {
                object: format!("the store's write protocol (feature {f:?})"),
                version: self.version,
                supported: FORMAT_VERSION,
            }),
        }
    }

    /// Whether the store follows the version 2 lock protocol, which prune
    /// needs.
    pub fn has_locks_v2(&self) -> bool {
        self.version >= 2 && self.features.iter().any(|f| f == FEATURE_LOCKS_V2)
    }

    /// This header moved to version 2 with every known feature: the same
    /// store id, keys and configuration.
    pub fn upgraded(&self) -> Result<Header> {
        let mut h = self.clone();
        h.version = FORMAT_VERSION;
        for f in KNOWN_FEATURES {
            if !h.features.iter().any(|g| g == f) {
                h.features.push(f.to_string());
            }
        }
        h.checksum = h.compute_checksum()?;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StoreConfig {
        StoreConfig {
            v: 1,
            chunker: ChunkerParams::default(),
            pack_size: 1 << 20,
            compression_level: 3,
            created_ns: 0,
        }
    }

    #[test]
    fn create_parse_open() {
        let (h, _) =
            Header::create(b"pw", KdfParams::with_cost(64, 1, 1), &config()).expect("create");
        let parsed = Header::parse(&h.to_json().expect("json"))
            .expect("parse")
            .expect("is header");
        let opened = parsed.open(b"pw", "loc").expect("open");
        assert_eq!(opened.config, config());
        let err = parsed.open(b"nope", "loc").expect_err("wrong");
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        assert!(
            !err.to_string().contains("nope"),
            "never echo the passphrase"
        );
    }

    #[test]
    fn foreign_and_future_headers() {
        assert!(Header::parse(b"not json").expect("ok").is_none());
        assert!(
            Header::parse(br#"{"magic":"other"}"#)
                .expect("ok")
                .is_none()
        );
        let err = Header::parse(br#"{"magic":"kloset","version":99}"#).expect_err("future");
        assert_eq!(err.kind(), crate::error::ErrorKind::Unsupported);
    }

    #[test]
    fn every_changed_byte_of_the_header_is_detected() {
        let (h, _) =
            Header::create(b"pw", KdfParams::with_cost(64, 1, 1), &config()).expect("create");
        let json = h.to_json().expect("json");
        for i in 0..json.len() {
            for mask in [0x01u8, 0x20, 0x80] {
                let mut bad = json.clone();
                bad[i] ^= mask;
                let opened = match Header::parse(&bad) {
                    Ok(Some(h)) => h.open(b"pw", "loc").is_ok(),
                    Ok(None) | Err(_) => false,
                };
                assert!(
                    !opened,
                    "byte {i} ^ {mask:#x} ({:?}) went unnoticed",
                    json[i] as char
                );
            }
        }
    }

    #[test]
    fn version_1_headers_read_and_upgrade_keeping_keys() {
        let (mut h, _) =
            Header::create(b"pw", KdfParams::with_cost(64, 1, 1), &config()).expect("create");
        assert!(h.has_locks_v2());
        h.version = 1;
        h.features.clear();
        h.checksum = h.compute_checksum().expect("checksum");
        let json = String::from_utf8(h.to_json().expect("json")).expect("utf8");
        assert!(
            !json.contains("features"),
            "a version 1 header has none: {json}"
        );
        let v1 = Header::parse(json.as_bytes())
            .expect("parse")
            .expect("header");
        assert!(!v1.has_locks_v2());
        v1.check_writable().expect("writable");
        let up = v1.upgraded().expect("upgrade");
        let up = Header::parse(&up.to_json().expect("json"))
            .expect("parse")
            .expect("header");
        assert!(up.has_locks_v2());
        assert_eq!((up.version, &up.store_id), (2, &v1.store_id));
        up.open(b"pw", "loc").expect("same passphrase, same keys");
        let mut future = up.clone();
        future.features.push("teleport".into());
        future.checksum = future.compute_checksum().expect("checksum");
        let e = future.check_writable().expect_err("unknown feature");
        assert!(e.to_string().contains("teleport"), "{e}");
    }

    #[test]
    fn tampered_config_is_detected() {
        let (mut h, _) =
            Header::create(b"pw", KdfParams::with_cost(64, 1, 1), &config()).expect("create");
        let mut sealed = hex::decode(&h.config).expect("hex");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        h.config = hex::encode(sealed);
        h.checksum = h.compute_checksum().expect("checksum");
        assert_eq!(
            h.open(b"pw", "loc").expect_err("tampered").kind(),
            crate::error::ErrorKind::Corrupt
        );
    }
}
