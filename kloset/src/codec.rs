//! Plaintext encoding inside sealed objects: one encoding byte, then either
//! the raw bytes or a zstd frame. Compression is skipped when it does not pay.
//!
//! Also the MessagePack helpers used for every structured object.

use std::cell::RefCell;
use std::io::Read;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

const ENCODING_RAW: u8 = 0;
const ENCODING_ZSTD: u8 = 1;

/// Upper bound on any decoded structured object (index, tree, snapshot): a
/// damaged or hostile object cannot make us allocate more than this.
pub const MAX_OBJECT_SIZE: usize = 1 << 30;

/// Outputs up to this size are decompressed in one call into a buffer of
/// exactly the bound (blobs: their recorded length); larger bounds stream.
const BULK_DECODE_MAX: usize = 64 << 20;

thread_local! {
    /// One zstd context per thread, reused: making one costs more than
    /// compressing or decompressing a small blob.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// zstd at `level` with this thread's reused context.
fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, c)) => c.compress(raw),
            None => zstd::bulk::compress(raw, level),
        }
    })
}

/// Decompresses a whole frame of at most `max_len` bytes with this
/// thread's reused context; more is an error.
fn decompress(body: &[u8], max_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => d.decompress(body, max_len),
            None => zstd::bulk::decompress(body, max_len),
        }
    })
}

/// Encodes `raw` with zstd at `level`, or stores it raw when compression
/// saves less than 1/32 of the size (already compressed or random data).
pub fn encode(raw: &[u8], level: i32) -> Vec<u8> {
    if raw.len() >= 64
        && let Ok(compressed) = compress(raw, level)
        && compressed.len() + raw.len() / 32 < raw.len()
    {
        let mut out = Vec::with_capacity(compressed.len() + 1);
        out.push(ENCODING_ZSTD);
        out.extend_from_slice(&compressed);
        return out;
    }
    let mut out = Vec::with_capacity(raw.len() + 1);
    out.push(ENCODING_RAW);
    out.extend_from_slice(raw);
    out
}

/// Decodes what [`encode`] produced. `max_len` bounds the output (the raw
/// length recorded in the index for blobs, [`MAX_OBJECT_SIZE`] otherwise).
pub fn decode(encoded: &[u8], max_len: usize, name: &str) -> Result<Vec<u8>> {
    let (&tag, body) = encoded
        .split_first()
        .ok_or_else(|| Error::corrupt(name, "empty plaintext"))?;
    match tag {
        ENCODING_RAW => {
            if body.len() > max_len {
                return Err(Error::corrupt(name, "longer than recorded"));
            }
            Ok(body.to_vec())
        }
        ENCODING_ZSTD if max_len <= BULK_DECODE_MAX => decompress(body, max_len).map_err(|e| {
            Error::corrupt(
                name,
                format!("zstd: {e} (or it decompresses to more than recorded)"),
            )
        }),
        ENCODING_ZSTD => {
            let mut decoder = zstd::stream::read::Decoder::new(body)
                .map_err(|e| Error::corrupt(name, format!("zstd: {e}")))?;
            let mut out = Vec::new();
            (&mut decoder)
                .take(max_len as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| Error::corrupt(name, format!("zstd: {e}")))?;
            if out.len() > max_len {
                return Err(Error::corrupt(name, "decompresses to more than recorded"));
            }
            Ok(out)
        }
        other => Err(Error::corrupt(name, format!("unknown encoding {other}"))),
    }
}

/// A reader of what [`encode`] produced, decompressing as it is read (a
/// caller that streams a large plaintext never holds all of it). The caller
/// bounds and checks the length, as [`decode`] does with `max_len`.
pub fn decoder<'a>(encoded: &'a [u8], name: &str) -> Result<Box<dyn Read + Send + 'a>> {
    let (&tag, body) = encoded
        .split_first()
        .ok_or_else(|| Error::corrupt(name, "empty plaintext"))?;
    match tag {
        ENCODING_RAW => Ok(Box::new(body)),
        ENCODING_ZSTD => Ok(Box::new(
            zstd::stream::read::Decoder::with_buffer(body)
                .map_err(|e| Error::corrupt(name, format!("zstd: {e}")))?,
        )),
        other => Err(Error::corrupt(name, format!("unknown encoding {other}"))),
    }
}

/// Serializes a structure as MessagePack with named fields, so that fields
/// can be added later without breaking readers. `name` (the object being
/// written) is used in the error; an error, never empty output.
pub fn to_msgpack<T: Serialize>(value: &T, name: &str) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(value).map_err(|e| Error::encode(name, e))
}

/// Deserializes MessagePack produced by [`to_msgpack`].
pub fn from_msgpack<T: DeserializeOwned>(bytes: &[u8], name: &str) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::corrupt(name, format!("cannot decode: {e}")))
}

/// Checks a structure's format version against the highest one we read.
pub fn check_version(version: u32, supported: u32, name: &str) -> Result<()> {
    if version == 0 || version > supported {
        return Err(Error::UnsupportedVersion {
            object: name.to_string(),
            version,
            supported,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value whose serialization fails, as a map with a key MessagePack
    /// or JSON cannot take would.
    struct Unserializable;

    impl Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("this value cannot be serialized"))
        }
    }

    #[test]
    fn a_value_that_cannot_be_serialized_is_an_error_not_empty_output() {
        let err = to_msgpack(&Unserializable, "snapshot 0123").expect_err("must fail");
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        let msg = err.to_string();
        assert!(msg.contains("cannot encode snapshot 0123"), "{msg}");
        assert!(msg.contains("this value cannot be serialized"), "{msg}");
    }

    #[test]
    fn compressible_data_is_compressed() {
        let raw = vec![b'a'; 100_000];
        let enc = encode(&raw, 3);
        assert_eq!(enc[0], ENCODING_ZSTD);
        assert!(enc.len() < 1000);
        assert_eq!(decode(&enc, raw.len(), "t").expect("decode"), raw);
    }

    #[test]
    fn random_data_is_stored_raw() {
        let raw: Vec<u8> = (0..100_000).map(|_| rand::random::<u8>()).collect();
        let enc = encode(&raw, 3);
        assert_eq!(enc[0], ENCODING_RAW);
        assert_eq!(decode(&enc, raw.len(), "t").expect("decode"), raw);
    }

    #[test]
    fn decode_bounds_and_garbage() {
        let enc = encode(&vec![0u8; 10_000], 3);
        assert!(decode(&enc, 9_999, "t").is_err(), "bomb bound");
        assert!(decode(&[], 10, "t").is_err());
        assert!(decode(&[9, 1, 2], 10, "t").is_err());
        assert!(decode(&[ENCODING_ZSTD, 1, 2, 3], 10, "t").is_err());
        assert_eq!(
            decode(&[ENCODING_RAW], 0, "t").expect("empty"),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn both_decode_paths_bound_the_output_and_reuse_no_state_across_calls() {
        // Bulk (bound ≤ 64 MiB) and streaming (larger bound), both levels
        // of a thread's reused contexts, a bomb refused by each.
        let a = vec![b'a'; 200_000];
        let b: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for level in [1, 3, 1] {
            for raw in [&a, &b] {
                let enc = encode(raw, level);
                assert_eq!(enc[0], ENCODING_ZSTD);
                assert_eq!(&decode(&enc, raw.len(), "t").expect("bulk"), raw);
                assert_eq!(&decode(&enc, MAX_OBJECT_SIZE, "t").expect("stream"), raw);
                assert!(decode(&enc, raw.len() - 1, "t").is_err(), "bulk bomb");
            }
        }
        let bomb = encode(&vec![0u8; BULK_DECODE_MAX + 2], 3);
        assert!(
            decode(&bomb, BULK_DECODE_MAX + 1, "t").is_err(),
            "stream bomb"
        );
    }
}
