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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_of_files_dirs_and_links() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("f");
        std::fs::write(&f, b"abc").expect("write");
        std::os::unix::fs::symlink("f", d.path().join("l")).expect("link");
        let file = node_from(b"f", &std::fs::symlink_metadata(&f).expect("meta"));
        assert_eq!((file.kind, file.size), (NodeKind::File, 3));
        let dir = node_from(b"d", &std::fs::symlink_metadata(d.path()).expect("meta"));
        assert_eq!((dir.kind, dir.size), (NodeKind::Dir, 0));
        let link = node_from(
            b"l",
            &std::fs::symlink_metadata(d.path().join("l")).expect("meta"),
        );
        assert_eq!(link.kind, NodeKind::Symlink);
    }

    #[test]
    fn change_detection() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("f");
        std::fs::write(&f, b"abc").expect("write");
        let a = node_from(b"f", &std::fs::symlink_metadata(&f).expect("meta"));
        assert!(unchanged(&a, &a.clone()));
        let mut b = a.clone();
        b.mtime_ns += 1;
        assert!(!unchanged(&a, &b));
        let mut c = a.clone();
        c.inode += 1;
        assert!(!unchanged(&a, &c));
        let mut dir = a.clone();
        dir.kind = NodeKind::Dir;
        assert!(!unchanged(&dir, &dir.clone()), "only files reuse content");
    }

    #[test]
    fn file_times_before_the_epoch() {
        let t = file_time(-1_500_000_000);
        assert_eq!((t.unix_seconds(), t.nanoseconds()), (-2, 500_000_000));
        assert_eq!(file_time(1_000_000_001).nanoseconds(), 1);
    }
}
