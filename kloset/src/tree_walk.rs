//! Walking a tree blob's entries one at a time, from its plaintext as it is
//! decrypted and decompressed, instead of decoding a whole [`Tree`]: a
//! directory of any size is listed a page at a time, or searched for one
//! name, in memory bounded by the sealed blob and one entry. Every entry
//! walked gets the validation of [`Tree::decode`] (names strictly increasing,
//! no unsafe name; a corrupt tree is an error, never a silent skip), and
//! [`Repository::walk_tree`] checks the blob's length and id over all of its
//! bytes, even when the walk stops early.
//!
//! [`Tree`]: crate::tree::Tree
//! [`Tree::decode`]: crate::tree::Tree::decode

use std::io::{self, BufReader, Read};

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_bytes::ByteBuf;

use crate::codec;
use crate::crypto::ObjectKind;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, BlobKind};
use crate::repository::Repository;
use crate::storage::Key;
use crate::tree::{Node, NodeKind, TREE_VERSION, is_safe_name};

/// Longest key of a tree map we read (`entries` is 7 bytes).
const MAX_KEY: u32 = 64;
/// Read buffer between the decompressor and the parser.
const READ_BUFFER: usize = 64 * 1024;

/// What a walk can decode each entry into: a [`Node`], or a lighter view.
pub trait TreeEntry: DeserializeOwned {
    /// The entry's raw name.
    fn entry_name(&self) -> &[u8];
}

impl TreeEntry for Node {
    fn entry_name(&self) -> &[u8] {
        &self.name
    }
}

/// An entry as a listing shows it: a [`Node`] without its content ids,
/// subtree or change-detection fields (skipped while decoding, so a page of
/// large files costs no more than a page of empty ones).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Listed {
    /// File name (raw bytes).
    pub name: ByteBuf,
    /// Entry type.
    pub kind: NodeKind,
    /// Permission and special bits.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, Unix nanoseconds.
    pub mtime_ns: i64,
    /// Size in bytes.
    pub size: u64,
    /// Symlink target (raw bytes).
    #[serde(default)]
    pub target: Option<ByteBuf>,
}

impl TreeEntry for Listed {
    fn entry_name(&self) -> &[u8] {
        &self.name
    }
}

/// What a visitor wants after an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The next entry, please.
    Next,
    /// Enough: stop walking.
    Stop,
}

fn corrupt(name: &str, why: impl std::fmt::Display) -> Error {
    Error::corrupt(name, format!("cannot decode: {why}"))
}

/// Reads one map key (a short string).
fn read_key(reader: &mut impl Read, name: &str) -> Result<String> {
    let len = rmp::decode::read_str_len(reader).map_err(|e| corrupt(name, e))?;
    if len > MAX_KEY {
        return Err(corrupt(name, format!("a key of {len} bytes")));
    }
    let mut key = vec![0u8; len as usize];
    reader.read_exact(&mut key).map_err(|e| corrupt(name, e))?;
    String::from_utf8(key).map_err(|e| corrupt(name, e))
}

/// Walks the entries of a tree blob's plaintext, read from `reader`, in
/// their stored order (by name bytes), handing each to `visit` until it
/// says [`Step::Stop`]; entries whose name `skip` accepts are checked but
/// not decoded nor visited (the entries before a page, cheaply: writers put
/// `name` first). `name` names the tree in errors. Returns whether the walk
/// reached the end of the entries.
///
/// Checks what [`crate::tree::Tree::decode`] checks, on every entry
/// walked: the version (which must precede the entries, as writers put
/// it), names strictly increasing and safe, and no missing or repeated
/// key; unknown keys are skipped.
pub fn walk<T: TreeEntry>(
    mut reader: impl Read,
    name: &str,
    mut skip: impl FnMut(&[u8]) -> bool,
    mut visit: impl FnMut(T) -> Result<Step>,
) -> Result<bool> {
    let keys = rmp::decode::read_map_len(&mut reader)
        .map_err(|e| corrupt(name, format!("a tree is a map ({e})")))?;
    let (mut version, mut walked) = (false, false);
    for _ in 0..keys {
        match read_key(&mut reader, name)?.as_str() {
            "v" if !version => {
                let v: u32 = rmp::decode::read_int(&mut reader)
                    .map_err(|e| corrupt(name, format!("version: {e}")))?;
                codec::check_version(v, TREE_VERSION, name)?;
                version = true;
            }
            "entries" if !walked => {
                if !version {
                    return Err(Error::corrupt(name, "entries come before the version"));
                }
                walked = true;
                if !walk_entries(&mut reader, name, &mut skip, &mut visit)? {
                    return Ok(false);
                }
            }
            "v" | "entries" => return Err(Error::corrupt(name, "a key is repeated")),
            _ => {
                IgnoredAny::deserialize(&mut rmp_serde::Deserializer::new(&mut reader))
                    .map_err(|e| corrupt(name, e))?;
            }
        }
    }
    if !version || !walked {
        return Err(Error::corrupt(
            name,
            "cannot decode: missing field `v` or `entries`",
        ));
    }
    Ok(true)
}

/// The entries array; `false` when the visitor stopped.
fn walk_entries<T: TreeEntry>(
    reader: &mut impl Read,
    name: &str,
    skip: &mut impl FnMut(&[u8]) -> bool,
    visit: &mut impl FnMut(T) -> Result<Step>,
) -> Result<bool> {
    let count = rmp::decode::read_array_len(&mut *reader)
        .map_err(|e| corrupt(name, format!("entries: {e}")))?;
    let mut previous: Option<Vec<u8>> = None;
    let mut skipped = Vec::new();
    for _ in 0..count {
        let entry: Option<T> = read_entry(reader, name, &mut skipped, skip)?;
        let this = entry.as_ref().map_or(skipped.as_slice(), T::entry_name);
        if !is_safe_name(this) {
            return Err(Error::corrupt(
                name,
                format!("unsafe entry name {:?}", String::from_utf8_lossy(this)),
            ));
        }
        match &mut previous {
            Some(p) if p.as_slice() >= this => {
                return Err(Error::corrupt(name, "entries are not sorted and unique"));
            }
            Some(p) => {
                p.clear();
                p.extend_from_slice(this);
            }
            None => previous = Some(this.to_vec()),
        }
        if let Some(entry) = entry
            && visit(entry)? == Step::Stop
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Reads one entry. When it is a map whose first key is `name` with a bin
/// value (as writers put it) and `skip` accepts that name, the name is left
/// in `skipped`, the other values are skipped undecoded, and `None` comes
/// back; otherwise the entry is decoded whole (what was read ahead is
/// replayed to the decoder).
fn read_entry<T: TreeEntry>(
    reader: &mut impl Read,
    tree: &str,
    skipped: &mut Vec<u8>,
    skip: &mut impl FnMut(&[u8]) -> bool,
) -> Result<Option<T>> {
    use rmp::Marker;
    let cut = |e: io::Error| corrupt(tree, e);
    let mut ahead = Vec::with_capacity(32);
    let marker = rmp::decode::read_marker(&mut *reader).map_err(|e| cut(e.0))?;
    ahead.push(marker.to_u8());
    let keys = match marker {
        Marker::FixMap(n) => u32::from(n),
        Marker::Map16 | Marker::Map32 => {
            let mut len = [0u8; 4];
            let width = if marker == Marker::Map16 { 2 } else { 4 };
            reader.read_exact(&mut len[4 - width..]).map_err(cut)?;
            ahead.extend_from_slice(&len[4 - width..]);
            u32::from_be_bytes(len)
        }
        _ => 0,
    };
    if keys > 0 {
        let key = read_key(reader, tree)?;
        rmp::encode::write_str(&mut ahead, &key).map_err(|e| corrupt(tree, e))?;
        if key == "name" {
            let value = rmp::decode::read_marker(&mut *reader).map_err(|e| cut(e.0))?;
            let width = match value {
                Marker::Bin8 => 1,
                Marker::Bin16 => 2,
                Marker::Bin32 => 4,
                _ => 0,
            };
            if width == 0 {
                ahead.push(value.to_u8());
            } else {
                let mut len = [0u8; 4];
                reader.read_exact(&mut len[4 - width..]).map_err(cut)?;
                let len = u64::from(u32::from_be_bytes(len));
                skipped.clear();
                reader.take(len).read_to_end(skipped).map_err(cut)?;
                if skipped.len() as u64 != len {
                    return Err(corrupt(tree, "an entry's name is cut short"));
                }
                if skip(skipped) {
                    for _ in 1..keys {
                        skip_value(reader, 0).map_err(cut)?;
                        skip_value(reader, 0).map_err(cut)?;
                    }
                    return Ok(None);
                }
                rmp::encode::write_bin(&mut ahead, skipped).map_err(|e| corrupt(tree, e))?;
            }
        }
    }
    T::deserialize(&mut rmp_serde::Deserializer::new(
        ahead.as_slice().chain(&mut *reader),
    ))
    .map(Some)
    .map_err(|e| corrupt(tree, e))
}

/// Deepest nesting [`skip_value`] follows (a node's values nest once).
const MAX_SKIP_DEPTH: u32 = 16;

/// Reads past one MessagePack value without decoding it.
fn skip_value(reader: &mut impl Read, depth: u32) -> io::Result<()> {
    use rmp::Marker as M;
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    if depth > MAX_SKIP_DEPTH {
        return Err(invalid("values nest too deep"));
    }
    let marker = rmp::decode::read_marker(&mut *reader).map_err(|e| e.0)?;
    let mut len = |width: usize| -> io::Result<u64> {
        let mut b = [0u8; 4];
        reader.read_exact(&mut b[4 - width..])?;
        Ok(u64::from(u32::from_be_bytes(b)))
    };
    let (bytes, values) = match marker {
        M::FixPos(_) | M::FixNeg(_) | M::Null | M::True | M::False => (0, 0),
        M::U8 | M::I8 => (1, 0),
        M::U16 | M::I16 => (2, 0),
        M::U32 | M::I32 | M::F32 => (4, 0),
        M::U64 | M::I64 | M::F64 => (8, 0),
        M::FixStr(n) => (u64::from(n), 0),
        M::Str8 | M::Bin8 => (len(1)?, 0),
        M::Str16 | M::Bin16 => (len(2)?, 0),
        M::Str32 | M::Bin32 => (len(4)?, 0),
        M::FixArray(n) => (0, u64::from(n)),
        M::Array16 => (0, len(2)?),
        M::Array32 => (0, len(4)?),
        M::FixMap(n) => (0, 2 * u64::from(n)),
        M::Map16 => (0, 2 * len(2)?),
        M::Map32 => (0, 2 * len(4)?),
        M::FixExt1 => (2, 0),
        M::FixExt2 => (3, 0),
        M::FixExt4 => (5, 0),
        M::FixExt8 => (9, 0),
        M::FixExt16 => (17, 0),
        M::Ext8 => (len(1)? + 1, 0),
        M::Ext16 => (len(2)? + 1, 0),
        M::Ext32 => (len(4)? + 1, 0),
        M::Reserved => return Err(invalid("a reserved MessagePack marker")),
    };
    let mut buf = [0u8; 64];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        reader.read_exact(&mut buf[..n])?;
        left -= n as u64;
    }
    for _ in 0..values {
        skip_value(reader, depth + 1)?;
    }
    Ok(())
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
    len: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

impl Repository {
    /// Walks the entries of tree `id` (see [`walk`]) as its plaintext is
    /// decompressed: the sealed blob is in memory, the plaintext never is
    /// as a whole. After `visit` stops, the rest of the plaintext is still
    /// read, to check its length and id like [`Repository::load_tree`]; so
    /// act on the entries seen only once this returns `Ok`.
    pub fn walk_tree<T: TreeEntry>(
        &self,
        id: &BlobId,
        mut skip: impl FnMut(&[u8]) -> bool,
        mut visit: impl FnMut(T) -> Result<Step>,
    ) -> Result<()> {
        match self.walk_tree_once(id, &mut skip, &mut visit) {
            // The index may be older than a repack: look again once.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.refresh_index()?;
                self.walk_tree_once(id, &mut skip, &mut visit)
            }
            done => done,
        }
    }

    fn walk_tree_once<T: TreeEntry>(
        &self,
        id: &BlobId,
        skip: &mut impl FnMut(&[u8]) -> bool,
        visit: &mut impl FnMut(T) -> Result<Step>,
    ) -> Result<()> {
        let loc = self
            .index()
            .get(id)?
            .ok_or_else(|| self.missing_blob(BlobKind::Tree, id))?;
        let pack = Key::Pack(loc.pack);
        let name = format!("tree blob {} in {}", id.short(), pack.path());
        let start = u64::from(loc.offset);
        let sealed = self
            .storage()
            .get_range(pack, start..start + u64::from(loc.length))?;
        let plain = self.keys().open(
            ObjectKind::from(BlobKind::Tree),
            id.as_bytes(),
            &sealed,
            &name,
        )?;
        drop(sealed);
        let expected = u64::from(loc.raw_length);
        let mut hashing = Hashing {
            inner: codec::decoder(&plain, &name)?.take(expected + 1),
            hasher: self.keys().blob_hasher(BlobKind::Tree),
            len: 0,
        };
        let mut reader = BufReader::with_capacity(READ_BUFFER, &mut hashing);
        walk(&mut reader, &format!("tree {}", id.short()), skip, visit)?;
        io::copy(&mut reader, &mut io::sink()).map_err(|e| corrupt(&name, e))?;
        drop(reader);
        if hashing.len != expected
            || BlobId::from_bytes(*hashing.hasher.finalize().as_bytes()) != *id
        {
            return Err(Error::corrupt(name, "content does not match its id"));
        }
        Ok(())
    }

    /// The entry `name` of tree `id`: the entries before it are only
    /// checked, the walk stops there.
    pub fn find_in_tree(&self, id: &BlobId, name: &[u8]) -> Result<Option<Node>> {
        let mut found = None;
        self.walk_tree(
            id,
            |n| n < name,
            |node: Node| {
                if node.name.as_slice() == name {
                    found = Some(node);
                }
                Ok(Step::Stop)
            },
        )?;
        Ok(found)
    }
}

#[cfg(test)]
#[path = "tree_walk_tests.rs"]
mod tests;
