//! Key hierarchy, authenticated encryption of every object, passphrase wrapping.
//!
//! Invariants (see FORMAT.md, "Encryption"):
//! - Every sealed object gets a fresh random 24-byte XChaCha20 nonce from the
//!   OS-seeded CSPRNG; no code path takes a nonce from the caller, so reuse is
//!   impossible by construction.
//! - The associated data binds an object to its kind and its id, so an object
//!   copied to another name or swapped for another fails to open.
//! - Sub-keys come from the master key through BLAKE3 `derive_key` with
//!   distinct contexts; the raw master key is never used to encrypt or hash.
//! - Every key type zeroizes its bytes on drop.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::id::{BlobId, BlobKind, ID_LEN};

/// Bytes of nonce in front of every sealed object.
pub const NONCE_LEN: usize = 24;
/// Bytes of Poly1305 tag at the end of every sealed object.
pub const TAG_LEN: usize = 16;
/// Sealing overhead per object.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

const AD_PREFIX: &[u8; 7] = b"kloset1";
const CONTEXT_DATA_ID_KEY: &str = "kloset 2026-11-22 data blob id key v1";
const CONTEXT_TREE_ID_KEY: &str = "kloset 2026-11-22 tree blob id key v1";
const CONTEXT_CACHE_MAC_KEY: &str = "kloset 2026-12-06 local cache mac key v1";
const CONTEXT_ENC_KEY: &str = "kloset 2026-11-22 object encryption key v1";
const CONTEXT_CHUNKER_SEED: &str = "kloset 2026-11-22 chunker seed v1";

/// The kind of a sealed object, bound into its associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    /// A file content chunk (blob).
    Data = 1,
    /// A directory tree node (blob).
    Tree = 2,
    /// The trailer at the end of a pack.
    PackTrailer = 3,
    /// An index object.
    Index = 4,
    /// A snapshot header.
    Snapshot = 5,
    /// The store configuration inside the header.
    Config = 6,
    /// The master key wrapped by the passphrase key.
    MasterKey = 7,
    /// A lock object.
    Lock = 8,
    /// A garbage-collection mark.
    Mark = 9,
}

impl From<crate::id::BlobKind> for ObjectKind {
    fn from(kind: crate::id::BlobKind) -> Self {
        match kind {
            crate::id::BlobKind::Data => ObjectKind::Data,
            crate::id::BlobKind::Tree => ObjectKind::Tree,
        }
    }
}

fn associated_data(kind: ObjectKind, id: &[u8; ID_LEN]) -> [u8; 7 + 1 + ID_LEN] {
    let mut ad = [0u8; 7 + 1 + ID_LEN];
    ad[..7].copy_from_slice(AD_PREFIX);
    ad[7] = kind as u8;
    ad[8..].copy_from_slice(id);
    ad
}

fn seal_with(
    cipher: &XChaCha20Poly1305,
    kind: ObjectKind,
    id: &[u8; ID_LEN],
    plain: &[u8],
) -> Result<Vec<u8>> {
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let nonce = XNonce::from(nonce_bytes);
    let ad = associated_data(kind, id);
    // Encryption fails only for messages larger than ~256 GiB; an error
    // (never an empty object) so that nothing is written if it ever does.
    let ct = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: &ad,
            },
        )
        .map_err(|_| {
            Error::encode(
                format!("{kind:?} object"),
                format!("encryption failed for {} bytes", plain.len()),
            )
        })?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open_with(
    cipher: &XChaCha20Poly1305,
    kind: ObjectKind,
    id: &[u8; ID_LEN],
    sealed: &[u8],
) -> std::result::Result<Vec<u8>, &'static str> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err("too short to be a sealed object");
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).map_err(|_| "bad nonce length")?;
    let ad = associated_data(kind, id);
    cipher
        .decrypt(&nonce, Payload { msg: ct, aad: &ad })
        .map_err(|_| "authentication failed (damaged, truncated, or not this object)")
}

/// The store's 32-byte master key. Never used directly: see [`Keys`].
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Self {
        MasterKey(rand::random())
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Sub-keys derived from the master key.
pub struct Keys {
    data_id_key: Zeroizing<[u8; 32]>,
    tree_id_key: Zeroizing<[u8; 32]>,
    cache_mac_key: Zeroizing<[u8; 32]>,
    cipher: XChaCha20Poly1305,
    chunker_seed: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// Derives every sub-key from the master key.
    pub fn derive(master: &MasterKey) -> Self {
        let data_id_key = Zeroizing::new(blake3::derive_key(CONTEXT_DATA_ID_KEY, &master.0));
        let tree_id_key = Zeroizing::new(blake3::derive_key(CONTEXT_TREE_ID_KEY, &master.0));
        let enc_key = Zeroizing::new(blake3::derive_key(CONTEXT_ENC_KEY, &master.0));
        let cache_mac_key = Zeroizing::new(blake3::derive_key(CONTEXT_CACHE_MAC_KEY, &master.0));
        let seed = Zeroizing::new(blake3::derive_key(CONTEXT_CHUNKER_SEED, &master.0));
        let mut seed8 = [0u8; 8];
        seed8.copy_from_slice(&seed[..8]);
        Keys {
            data_id_key,
            tree_id_key,
            cache_mac_key,
            cipher: XChaCha20Poly1305::new(&(*enc_key).into()),
            chunker_seed: u64::from_le_bytes(seed8),
        }
    }

    /// The keyed BLAKE3 id of a blob's plaintext. Each kind has its own
    /// key, so a chunk and a tree with the same bytes never share an id.
    pub fn blob_id(&self, kind: BlobKind, plain: &[u8]) -> BlobId {
        let key = match kind {
            BlobKind::Data => &self.data_id_key,
            BlobKind::Tree => &self.tree_id_key,
        };
        BlobId::from_bytes(*blake3::keyed_hash(key, plain).as_bytes())
    }

    /// An incremental [`Keys::blob_id`]: feeding it a blob's plaintext in
    /// pieces gives the same id (for readers that stream a blob).
    pub fn blob_hasher(&self, kind: BlobKind) -> blake3::Hasher {
        let key = match kind {
            BlobKind::Data => &self.data_id_key,
            BlobKind::Tree => &self.tree_id_key,
        };
        blake3::Hasher::new_keyed(key)
    }

    /// The key that authenticates this host's local caches of the store
    /// (the on-disk index): a cache that another store or a tamperer wrote
    /// fails its MACs.
    pub fn cache_mac_key(&self) -> &[u8; 32] {
        &self.cache_mac_key
    }

    /// The seed that keys the chunker's gear table.
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// Seals `plain` as an object of `kind` named `id`. Fails (rather than
    /// returning an empty object) if the cipher refuses the message.
    pub fn seal(&self, kind: ObjectKind, id: &[u8; ID_LEN], plain: &[u8]) -> Result<Vec<u8>> {
        seal_with(&self.cipher, kind, id, plain)
    }

    /// Opens an object sealed by [`Keys::seal`] with the same kind and id.
    /// `name` is used in the error.
    pub fn open(
        &self,
        kind: ObjectKind,
        id: &[u8; ID_LEN],
        sealed: &[u8],
        name: &str,
    ) -> Result<Vec<u8>> {
        open_with(&self.cipher, kind, id, sealed).map_err(|reason| Error::corrupt(name, reason))
    }
}

/// Argon2id lanes of a new store's passphrase key.
pub const DEFAULT_LANES: u32 = 4;

/// Argon2id parameters and salt, stored in the clear in the store header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Always `"argon2id"` in version 1.
    pub algorithm: String,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// 16 random bytes, hex.
    pub salt: String,
}

impl KdfParams {
    /// Default parameters with a fresh salt: 64 MiB, 3 passes, 4 lanes
    /// (RFC 9106's second recommended option). The lanes are filled on
    /// every core, so opening a store waits a fraction of the time an
    /// attacker spends per guess.
    pub fn generate() -> Self {
        Self::with_cost(64 * 1024, 3, DEFAULT_LANES)
    }

    /// Parameters of the given cost with a fresh salt.
    pub fn with_cost(memory_kib: u32, iterations: u32, parallelism: u32) -> Self {
        let salt: [u8; 16] = rand::random();
        KdfParams {
            algorithm: "argon2id".into(),
            memory_kib,
            iterations,
            parallelism,
            salt: hex::encode(salt),
        }
    }

    /// Derives the key-encryption key from a passphrase.
    fn derive(&self, passphrase: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        if self.algorithm != "argon2id" {
            return Err(Error::corrupt(
                "store header",
                format!("unknown KDF {:?}", self.algorithm),
            ));
        }
        // Bounds keep a hostile header from making us allocate without limit.
        if !(8..=4 * 1024 * 1024).contains(&self.memory_kib)
            || !(1..=64).contains(&self.iterations)
            || !(1..=64).contains(&self.parallelism)
        {
            return Err(Error::corrupt(
                "store header",
                "KDF parameters out of the accepted range",
            ));
        }
        let salt = hex::decode(&self.salt)
            .map_err(|_| Error::corrupt("store header", "KDF salt is not hex"))?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| {
                    Error::corrupt("store header", format!("invalid KDF parameters: {e}"))
                })?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, &salt, out.as_mut())
            .map_err(|e| Error::corrupt("store header", format!("KDF failed: {e}")))?;
        Ok(out)
    }
}

/// Wraps the master key with a passphrase-derived key. `store_id` is bound
/// into the associated data.
pub fn wrap_master_key(
    master: &MasterKey,
    kdf: &KdfParams,
    passphrase: &[u8],
    store_id: &[u8; ID_LEN],
) -> Result<Vec<u8>> {
    let kek = kdf.derive(passphrase)?;
    let cipher = XChaCha20Poly1305::new(&(*kek).into());
    seal_with(&cipher, ObjectKind::MasterKey, store_id, &master.0)
}

/// Unwraps the master key; a wrong passphrase fails authentication and is
/// reported as [`Error::WrongPassphrase`].
pub fn unwrap_master_key(
    wrapped: &[u8],
    kdf: &KdfParams,
    passphrase: &[u8],
    store_id: &[u8; ID_LEN],
    location: &str,
) -> Result<MasterKey> {
    let kek = kdf.derive(passphrase)?;
    let cipher = XChaCha20Poly1305::new(&(*kek).into());
    let plain = Zeroizing::new(
        open_with(&cipher, ObjectKind::MasterKey, store_id, wrapped).map_err(|_| {
            Error::WrongPassphrase {
                location: location.to_string(),
            }
        })?,
    );
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| Error::corrupt("store header", "wrapped master key has the wrong length"))?;
    Ok(MasterKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::derive(&MasterKey::generate())
    }

    #[test]
    fn seal_open_round_trip_and_fresh_nonces() {
        let k = keys();
        let id = [7u8; 32];
        let a = k.seal(ObjectKind::Data, &id, b"hello").expect("seal");
        let b = k.seal(ObjectKind::Data, &id, b"hello").expect("seal");
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN], "nonces must differ");
        assert_eq!(
            k.open(ObjectKind::Data, &id, &a, "x").expect("open"),
            b"hello"
        );
    }

    #[test]
    fn associated_data_binds_kind_and_id() {
        let k = keys();
        let sealed = k
            .seal(ObjectKind::Data, &[1; 32], b"payload")
            .expect("seal");
        assert!(k.open(ObjectKind::Tree, &[1; 32], &sealed, "x").is_err());
        assert!(k.open(ObjectKind::Data, &[2; 32], &sealed, "x").is_err());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let k = keys();
        let sealed = k
            .seal(ObjectKind::Index, &[3; 32], b"some index bytes")
            .expect("seal");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                k.open(ObjectKind::Index, &[3; 32], &bad, "x").is_err(),
                "byte {i}"
            );
        }
        assert!(
            k.open(ObjectKind::Index, &[3; 32], &sealed[..10], "x")
                .is_err()
        );
    }

    #[test]
    fn subkeys_are_distinct_and_keyed() {
        let k1 = keys();
        let k2 = keys();
        let d = BlobKind::Data;
        assert_ne!(
            k1.blob_id(d, b"x"),
            k2.blob_id(d, b"x"),
            "ids depend on the key"
        );
        assert_eq!(k1.blob_id(d, b"x"), k1.blob_id(d, b"x"));
        assert_ne!(
            k1.blob_id(d, b"x").as_bytes(),
            blake3::hash(b"x").as_bytes()
        );
        assert_ne!(
            k1.blob_id(d, b"x"),
            k1.blob_id(BlobKind::Tree, b"x"),
            "kind is part of the id"
        );
    }

    #[test]
    fn passphrase_wrap_and_wrong_passphrase() {
        let master = MasterKey::generate();
        let kdf = KdfParams::with_cost(64, 1, 1);
        let sid = [9u8; 32];
        let wrapped = wrap_master_key(&master, &kdf, b"right", &sid).expect("wrap");
        let back = unwrap_master_key(&wrapped, &kdf, b"right", &sid, "loc").expect("unwrap");
        assert_eq!(back.0, master.0);
        let err = unwrap_master_key(&wrapped, &kdf, b"wrong", &sid, "loc").expect_err("must fail");
        assert_eq!(err.kind(), crate::error::ErrorKind::WrongPassphrase);
        let err = unwrap_master_key(&wrapped, &kdf, b"right", &[8; 32], "loc")
            .expect_err("bound to store id");
        assert_eq!(err.kind(), crate::error::ErrorKind::WrongPassphrase);
    }

    /// KEKs from the reference implementation (`argon2` of Debian's
    /// argon2 package: `echo -n pw | argon2 klosetd-kdf-salt -id -k M -t T
    /// -p P -l 32 -r`) and the vector of FORMAT.md. A store whose lanes are
    /// filled in parallel must derive the same key as one filled in turn,
    /// or its passphrase stops opening it.
    #[test]
    fn kek_matches_the_reference_implementation() {
        let salt = hex::encode(b"klosetd-kdf-salt");
        let cases = [
            (
                64,
                1,
                1,
                "a2b80540ae87c71af8333d4e5c3caf430afded95580e07e62924b74db19d7f40",
            ),
            (
                256,
                3,
                1,
                "a9e078e7c11e72e36bb94f096d0065b33bbaa88493630406051f13b2e685d85c",
            ),
            (
                64,
                1,
                4,
                "a6dd50f2fc4283c7526718a1d22bad31f2025fd070a7cebcc0d2fe92c7261648",
            ),
            (
                256,
                3,
                4,
                "0744e3bc3a5f3f2665c574399ad8214dbb72897edfc696a7127e8af4af99aa1d",
            ),
        ];
        for (memory_kib, iterations, lanes, want) in cases {
            let mut kdf = KdfParams::with_cost(memory_kib, iterations, lanes);
            kdf.salt = salt.clone();
            let kek = kdf.derive(b"pw").expect("derive");
            assert_eq!(
                hex::encode(*kek),
                want,
                "m={memory_kib} t={iterations} p={lanes}"
            );
        }
        let mut kdf = KdfParams::with_cost(64, 1, 1);
        kdf.salt = hex::encode((0u8..16).collect::<Vec<u8>>());
        assert_eq!(
            hex::encode(*kdf.derive(b"pw").expect("derive")),
            "1c41dc39c4d6a9771b869ab34fa88bcf2df7d2778e85c1cd207ad29704bf88a2",
            "the vector of FORMAT.md"
        );
        assert_eq!(KdfParams::generate().parallelism, DEFAULT_LANES);
    }

    #[test]
    fn hostile_kdf_params_are_rejected() {
        let mut kdf = KdfParams::with_cost(64, 1, 1);
        kdf.memory_kib = u32::MAX;
        assert!(kdf.derive(b"p").is_err());
    }
}
