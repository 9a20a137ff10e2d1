//! Read-only views of snapshots: directory listings, file content, diffs and
//! store statistics.

use std::io::Write;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::{BlobId, BlobKind};
use crate::ops::restore::find_node;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind};
use crate::tree_walk::{Listed, Step};

/// A directory entry as shown by `ls`.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    /// Name (lossy UTF-8).
    pub name: String,
    /// `file`, `dir`, `symlink`, ...
    pub kind: NodeKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, Unix nanoseconds.
    pub mtime_ns: i64,
    /// Symlink target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl From<&Node> for Entry {
    fn from(n: &Node) -> Self {
        Entry {
            name: n.name_lossy(),
            kind: n.kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            size: n.size,
            mtime_ns: n.mtime_ns,
            target: n
                .target
                .as_ref()
                .map(|t| String::from_utf8_lossy(t).into_owned()),
        }
    }
}

impl From<&Listed> for Entry {
    fn from(n: &Listed) -> Self {
        Entry {
            name: String::from_utf8_lossy(&n.name).into_owned(),
            ..Entry::from(&Node {
                name: Default::default(),
                kind: n.kind,
                mode: n.mode,
                uid: n.uid,
                gid: n.gid,
                mtime_ns: n.mtime_ns,
                ctime_ns: 0,
                inode: 0,
                device: 0,
                size: n.size,
                target: n.target.clone(),
                rdev: None,
                content: Vec::new(),
                subtree: None,
            })
        }
    }
}

/// One page of a directory: at most `limit` entries after a name.
#[derive(Clone, Debug)]
pub struct DirPage {
    /// The entries, by name bytes.
    pub entries: Vec<Listed>,
    /// Whether entries follow the last one.
    pub more: bool,
}

/// The entries of tree `tree` whose names sort after `after` (all of them
/// when `None`), at most `limit`, walked without decoding the whole tree
/// (see [`Repository::walk_tree`]): memory is bounded by the page.
pub fn list_page(
    repo: &Repository,
    tree: &BlobId,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<DirPage> {
    let mut page = DirPage {
        entries: Vec::with_capacity(limit.min(1024)),
        more: false,
    };
    repo.walk_tree(
        tree,
        |name| after.is_some_and(|a| name <= a),
        |e: Listed| {
            if page.entries.len() < limit {
                page.entries.push(e);
                return Ok(Step::Next);
            }
            page.more = true;
            Ok(Step::Stop)
        },
    )?;
    Ok(page)
}

/// Lists the directory at `path`, or the single entry if it is a file.
pub fn list_dir(repo: &Repository, snapshot: &Snapshot, path: &str) -> Result<Vec<Entry>> {
    let node = find_node(repo, snapshot, path)?;
    match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(sub)) => Ok(repo
            .load_tree(&sub)?
            .entries
            .iter()
            .map(Entry::from)
            .collect()),
        _ => Ok(vec![Entry::from(&node)]),
    }
}

/// Writes the content of the file at `path` to `out`, chunk by chunk.
pub fn cat(repo: &Repository, snapshot: &Snapshot, path: &str, out: &mut dyn Write) -> Result<u64> {
    let node = find_node(repo, snapshot, path)?;
    if node.kind != NodeKind::File {
        return Err(Error::InvalidArgument(
            format!("{path} is a {:?}, not a file", node.kind).to_lowercase(),
        ));
    }
    let mut written = 0u64;
    for id in &node.content {
        let data = repo.load_blob(BlobKind::Data, id)?;
        out.write_all(&data)
            .map_err(|e| Error::io("write", "standard output", e))?;
        written += data.len() as u64;
    }
    Ok(written)
}

/// One difference between two snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `+` added, `-` removed, `M` content changed, `T` type changed, `m` metadata only.
    pub change: char,
    /// Path relative to the root.
    pub path: String,
}

/// Compares two snapshots; unchanged subtrees are skipped by id.
pub fn diff(repo: &Repository, a: &Snapshot, b: &Snapshot) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    diff_trees(repo, Some(a.tree), Some(b.tree), "", &mut out)?;
    Ok(out)
}

fn diff_trees(
    repo: &Repository,
    a: Option<crate::id::BlobId>,
    b: Option<crate::id::BlobId>,
    path: &str,
    out: &mut Vec<Change>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let ta = match a {
        Some(id) => repo.load_tree(&id)?.entries,
        None => Vec::new(),
    };
    let tb = match b {
        Some(id) => repo.load_tree(&id)?.entries,
        None => Vec::new(),
    };
    let (mut i, mut j) = (0, 0);
    while i < ta.len() || j < tb.len() {
        let order = match (ta.get(i), tb.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                walk_all(repo, &ta[i], path, '-', out)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                walk_all(repo, &tb[j], path, '+', out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&ta[i], &tb[j]);
                let p = format!("{path}/{}", y.name_lossy());
                if x.kind != y.kind {
                    out.push(Change {
                        change: 'T',
                        path: p.clone(),
                    });
                    if y.kind == NodeKind::Dir || x.kind == NodeKind::Dir {
                        diff_trees(repo, x.subtree, y.subtree, &p, out)?;
                    }
                } else if x.kind == NodeKind::Dir {
                    if (x.mode, x.uid, x.gid) != (y.mode, y.uid, y.gid) {
                        out.push(Change {
                            change: 'm',
                            path: p.clone(),
                        });
                    }
                    diff_trees(repo, x.subtree, y.subtree, &p, out)?;
                } else if x.content != y.content || x.target != y.target || x.size != y.size {
                    out.push(Change {
                        change: 'M',
                        path: p,
                    });
                } else if (x.mode, x.uid, x.gid, x.mtime_ns) != (y.mode, y.uid, y.gid, y.mtime_ns) {
                    out.push(Change {
                        change: 'm',
                        path: p,
                    });
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn walk_all(
    repo: &Repository,
    node: &Node,
    path: &str,
    change: char,
    out: &mut Vec<Change>,
) -> Result<()> {
    let p = format!("{path}/{}", node.name_lossy());
    out.push(Change {
        change,
        path: p.clone(),
    });
    if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
        for child in repo.load_tree(&sub)?.entries {
            walk_all(repo, &child, &p, change, out)?;
        }
    }
    Ok(())
}

/// Store-wide figures for `info`.
#[derive(Clone, Debug, Serialize)]
pub struct StoreInfo {
    /// Where the store is.
    pub location: String,
    /// Store id.
    pub store_id: String,
    /// Format version.
    pub version: u32,
    /// Creation time (RFC 3339).
    pub created: String,
    /// Chunker parameters.
    pub chunker: crate::chunker::ChunkerParams,
    /// Target pack size.
    pub pack_size: u32,
    /// zstd level.
    pub compression_level: i32,
    /// Snapshot count.
    pub snapshots: usize,
    /// Packs listed in the index.
    pub packs: usize,
    /// Index objects.
    pub index_objects: usize,
    /// Distinct blobs.
    pub blobs: usize,
    /// Plaintext bytes of all distinct blobs.
    pub raw_bytes: u64,
    /// Bytes stored for them.
    pub stored_bytes: u64,
    /// Sum of the logical size of every snapshot.
    pub logical_bytes: u64,
}

/// Computes [`StoreInfo`].
pub fn info(repo: &Repository) -> Result<StoreInfo> {
    let snapshots = repo.snapshots()?;
    let index = repo.index();
    let (mut raw, mut stored) = (0u64, 0u64);
    for blob in index.iter() {
        let (_, loc) = blob?;
        raw += loc.raw_length as u64;
        stored += loc.length as u64;
    }
    Ok(StoreInfo {
        location: repo.storage().location().to_string(),
        store_id: repo.store_id().to_hex(),
        version: repo.format_version(),
        created: crate::snapshot::format_time(repo.config().created_ns),
        chunker: repo.config().chunker,
        pack_size: repo.config().pack_size,
        compression_level: repo.config().compression_level,
        snapshots: snapshots.len(),
        packs: index.packs().len(),
        index_objects: index.files().len(),
        blobs: index.blob_count(),
        raw_bytes: raw,
        stored_bytes: stored,
        logical_bytes: snapshots.iter().map(|s| s.stats.bytes).sum(),
    })
}
