//! Directory tree nodes: one tree blob per directory, entries sorted by name,
//! children referenced by id. Together they form a Merkle tree whose root id
//! is stored in the snapshot header.
//!
//! Names are raw bytes (Unix file names need not be UTF-8). Paths inside a
//! snapshot are relative to the backed-up root and use `/` as separator.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::codec;
use crate::error::{Error, Result};
use crate::id::BlobId;

/// Tree structure version.
pub const TREE_VERSION: u32 = 1;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// Regular file with content chunks.
    File,
    /// Directory with a subtree.
    Dir,
    /// Symbolic link with a target.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Unix socket (recorded, not restored).
    Socket,
}

/// One directory entry and its metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name (raw bytes).
    pub name: ByteBuf,
    /// Entry type.
    pub kind: NodeKind,
    /// Permission and special bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, Unix nanoseconds.
    pub mtime_ns: i64,
    /// Status change time, Unix nanoseconds (for change detection only).
    #[serde(default)]
    pub ctime_ns: i64,
    /// Inode number (for change detection only).
    #[serde(default)]
    pub inode: u64,
    /// Device number of the file system (for change detection only).
    #[serde(default)]
    pub device: u64,
    /// Size in bytes (files: content length; symlinks: target length).
    pub size: u64,
    /// Symlink target (raw bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ByteBuf>,
    /// Device number for character and block devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// Content chunk ids, in order (files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<BlobId>,
    /// Subtree id (directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<BlobId>,
}

impl Node {
    /// The name as text (lossy for non-UTF-8 names).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// A directory: its entries sorted by name bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Structure version.
    pub v: u32,
    /// Entries, sorted by name, names unique.
    pub entries: Vec<Node>,
}

impl Tree {
    /// A tree from entries; sorts them.
    pub fn new(mut entries: Vec<Node>) -> Self {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Tree {
            v: TREE_VERSION,
            entries,
        }
    }

    /// The serialized plaintext (what the tree id hashes).
    pub fn encode(&self) -> Result<Vec<u8>> {
        codec::to_msgpack(self, "tree")
    }

    /// Parses and validates a tree blob's plaintext: version, sorted unique
    /// names, and names that cannot escape a directory (`/`, `.`, `..`, NUL).
    pub fn decode(bytes: &[u8], name: &str) -> Result<Tree> {
        let tree: Tree = codec::from_msgpack(bytes, name)?;
        codec::check_version(tree.v, TREE_VERSION, name)?;
        for pair in tree.entries.windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(Error::corrupt(name, "entries are not sorted and unique"));
            }
        }
        for e in &tree.entries {
            if !is_safe_name(&e.name) {
                return Err(Error::corrupt(
                    name,
                    format!("unsafe entry name {:?}", e.name_lossy()),
                ));
            }
        }
        Ok(tree)
    }

    /// Finds an entry by name.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// Whether a name is a single, harmless path component.
pub fn is_safe_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// Splits a snapshot path (`/a/b`, `a/b`, `/`) into components, rejecting
/// `..` and empty or NUL components.
pub fn split_path(path: &str) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for part in path.split('/') {
        if part.is_empty() || part == "." {
            continue;
        }
        if !is_safe_name(part.as_bytes()) {
            return Err(Error::InvalidArgument(format!(
                "invalid path {path:?} inside a snapshot"
            )));
        }
        out.push(part.as_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        Node {
            name: ByteBuf::from(name.as_bytes().to_vec()),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 1,
            ctime_ns: 0,
            inode: 0,
            device: 0,
            size: 0,
            target: None,
            rdev: None,
            content: vec![],
            subtree: None,
        }
    }

    #[test]
    fn round_trip_sorted() {
        let t = Tree::new(vec![node("b"), node("a\nnew line"), node("Ü")]);
        let back = Tree::decode(&t.encode().expect("encode"), "t").expect("decode");
        assert_eq!(back, t);
        assert!(back.find(b"b").is_some());
        assert!(back.find(b"c").is_none());
    }

    #[test]
    fn hostile_trees_are_rejected() {
        let unsorted = Tree {
            v: 1,
            entries: vec![node("b"), node("a")],
        };
        assert!(Tree::decode(&unsorted.encode().expect("encode"), "t").is_err());
        for bad in ["..", ".", "a/b", ""] {
            let t = Tree {
                v: 1,
                entries: vec![node(bad)],
            };
            assert!(
                Tree::decode(&t.encode().expect("encode"), "t").is_err(),
                "{bad:?}"
            );
        }
        assert!(Tree::decode(b"\xc1garbage", "t").is_err());
    }

    #[test]
    fn split_paths() {
        assert!(split_path("/").expect("root").is_empty());
        assert_eq!(
            split_path("/a//b/").expect("p"),
            vec![b"a".as_slice(), b"b".as_slice()]
        );
        assert!(split_path("/a/../b").is_err());
    }
}
