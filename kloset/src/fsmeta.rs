//! Local file metadata (`stat`) to tree nodes, and change detection (Unix).

use rustix::fs::{FileType, Stat};
use serde_bytes::ByteBuf;

use crate::tree::{Node, NodeKind};

/// The node kind of a file's `st_mode`.
pub fn kind_of(mode: u32) -> NodeKind {
    match FileType::from_raw_mode(mode) {
        FileType::Directory => NodeKind::Dir,
        FileType::Symlink => NodeKind::Symlink,
        FileType::Fifo => NodeKind::Fifo,
        FileType::CharacterDevice => NodeKind::CharDevice,
        FileType::BlockDevice => NodeKind::BlockDevice,
        FileType::Socket => NodeKind::Socket,
        _ => NodeKind::File,
    }
}

/// A node with the metadata of `st` (from `lstat` or `fstat`) and no
/// content yet.
// The integer types of `struct stat` differ between architectures.
#[allow(clippy::unnecessary_cast)]
pub fn node_from(name: &[u8], st: &Stat) -> Node {
    let kind = kind_of(st.st_mode);
    let ns = |s: i64, n: u64| s.saturating_mul(1_000_000_000).saturating_add(n as i64);
    Node {
        name: ByteBuf::from(name.to_vec()),
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime_ns: ns(st.st_mtime as i64, st.st_mtime_nsec as u64),
        ctime_ns: ns(st.st_ctime as i64, st.st_ctime_nsec as u64),
        inode: st.st_ino as u64,
        device: st.st_dev as u64,
        size: if kind == NodeKind::Dir {
            0
        } else {
            st.st_size as u64
        },
        target: None,
        rdev: matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice)
            .then_some(st.st_rdev as u64),
        content: Vec::new(),
        subtree: None,
    }
}

/// Whether `st` is the same file system object as `node` was listed as:
/// same kind, device and inode.
#[allow(clippy::unnecessary_cast)]
pub fn same_object(node: &Node, st: &Stat) -> bool {
    kind_of(st.st_mode) == node.kind
        && st.st_dev as u64 == node.device
        && st.st_ino as u64 == node.inode
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

/// This machine's host name: the kernel's (as `uname -n`), read without
/// `/proc`, which a service with `ProcSubset=pid` cannot see.
pub fn hostname() -> String {
    kernel_hostname()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The node name of `uname(2)` (what `gethostname(2)` returns), or `None`
/// when it is not UTF-8.
fn kernel_hostname() -> Option<String> {
    let uts = rustix::system::uname();
    uts.nodename().to_str().ok().map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_name_is_the_kernels() {
        let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("read");
        assert_eq!(super::hostname(), from_proc.trim());
    }

    use super::*;

    fn lstat(p: &std::path::Path) -> Stat {
        rustix::fs::lstat(p).expect("lstat")
    }

    #[test]
    fn metadata_of_files_dirs_and_links() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("f");
        std::fs::write(&f, b"abc").expect("write");
        std::os::unix::fs::symlink("f", d.path().join("l")).expect("link");
        let file = node_from(b"f", &lstat(&f));
        assert_eq!((file.kind, file.size), (NodeKind::File, 3));
        assert!(same_object(&file, &lstat(&f)));
        let dir = node_from(b"d", &lstat(d.path()));
        assert_eq!((dir.kind, dir.size), (NodeKind::Dir, 0));
        assert!(!same_object(&file, &lstat(d.path())));
        let link = node_from(b"l", &lstat(&d.path().join("l")));
        assert_eq!(link.kind, NodeKind::Symlink);
    }

    #[test]
    fn change_detection() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("f");
        std::fs::write(&f, b"abc").expect("write");
        let a = node_from(b"f", &lstat(&f));
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
}
