//! Local file metadata to and from tree nodes (Unix).

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use serde_bytes::ByteBuf;

use crate::tree::{Node, NodeKind};

/// The node kind of a file type.
pub fn kind_of(meta: &Metadata) -> NodeKind {
    let ft = meta.file_type();
    if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else if ft.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// A node with the metadata of `meta` and no content yet.
pub fn node_from(name: &[u8], meta: &Metadata) -> Node {
    let kind = kind_of(meta);
    Node {
        name: ByteBuf::from(name.to_vec()),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        ctime_ns: meta
            .ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.ctime_nsec()),
        inode: meta.ino(),
        device: meta.dev(),
        size: if kind == NodeKind::Dir {
            0
        } else {
            meta.size()
        },
        target: None,
        rdev: matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice).then(|| meta.rdev()),
        content: Vec::new(),
        subtree: None,
    }
}

/// Whether a file is unchanged since `old` was recorded (same size, times,
/// inode), so its content list can be reused without reading it.
pub fn unchanged(old: &Node, new: &Node) -> bool {
    old.kind == NodeKind::File
        && new.kind == NodeKind::File
        && old.size == new.size
        && old.mtime_ns == new.mtime_ns
        && old.ctime_ns == new.ctime_ns
        && old.inode == new.inode
}

/// Splits Unix nanoseconds into a `FileTime`.
pub fn file_time(ns: i64) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}
