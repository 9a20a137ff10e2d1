//! The local file system as an importer, walked by directory fd, so that a
//! user who changes their files while root backs them up cannot make the
//! backup read anything but what it listed.
//!
//! - The root is opened once by path, following symlinks on the way as the
//!   administrator named it. A root that is a regular file is a one-file
//!   source: the snapshot's root is the file's directory, listed with that
//!   one file only.
//! - Every directory below is opened relative to its parent's fd with
//!   `O_DIRECTORY | O_NOFOLLOW` and must be the directory the parent's
//!   listing showed (device and inode). A directory swapped for a symlink
//!   is never descended; one swapped for another directory is not read.
//! - Every file is opened relative to its directory's fd with `O_NOFOLLOW |
//!   O_NONBLOCK` (and `O_NOATIME` where permitted), then `fstat`ed: only a
//!   regular file with the listed device and inode is read, and its
//!   `fstat` metadata is what the snapshot records. A symlink, FIFO,
//!   socket, device or other file swapped in is reported as "changed during
//!   backup" and not read; it never blocks the backup.
//! - Directory fds are held from [`Importer::list`] to [`Importer::leave`]:
//!   one per directory the walk is in, at most a few hundred even for deep
//!   trees walked on many threads.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::{Importer, Listed, Opened, SourcePath};
use crate::dirfd::{DirFd, fstat};
use crate::fsmeta::{kind_of, node_from, same_object};
use crate::tree::{Node, NodeKind};

/// The local file system under a root directory, or one regular file.
#[derive(Debug)]
pub struct FsImporter {
    root: PathBuf,
    state: Mutex<Option<Walk>>,
}

/// What the walk has open.
#[derive(Debug)]
struct Walk {
    /// The root directory (for a one-file source: the file's directory).
    root: Arc<DirFd>,
    /// For a one-file source, the file's name in `root`.
    single: Option<Vec<u8>>,
    /// Directories below the root that the walk is in.
    dirs: HashMap<SourcePath, Arc<DirFd>>,
}

impl FsImporter {
    /// Imports the directory or regular file at `root`.
    pub fn new(root: impl Into<PathBuf>) -> FsImporter {
        FsImporter {
            root: root.into(),
            state: Mutex::new(None),
        }
    }

    /// The path this importer reads.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn walk(&self) -> std::sync::MutexGuard<'_, Option<Walk>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open directory at `dir`.
    fn dir(&self, dir: &SourcePath) -> io::Result<Arc<DirFd>> {
        let walk = self.walk();
        let walk = walk.as_ref().ok_or_else(not_started)?;
        if dir.is_root() {
            return Ok(walk.root.clone());
        }
        walk.dirs.get(dir).cloned().ok_or_else(|| {
            io::Error::other(format!(
                "{} is not open (listed out of order)",
                dir.display()
            ))
        })
    }

    /// Opens the root: a directory, or a regular file's directory.
    fn open_root(&self) -> io::Result<(Walk, Node)> {
        match DirFd::open_path(&self.root) {
            Ok(root) => {
                let node = node_from(b"", &root.stat()?);
                let walk = Walk {
                    root: Arc::new(root),
                    single: None,
                    dirs: HashMap::new(),
                };
                Ok((walk, node))
            }
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                let path = std::fs::canonicalize(&self.root)?;
                let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                    return Err(e);
                };
                let parent = DirFd::open_path(parent)?;
                let name = std::os::unix::ffi::OsStrExt::as_bytes(name).to_vec();
                let st = parent.lstat(&name)?;
                if kind_of(st.st_mode) != NodeKind::File {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{} is neither a directory nor a regular file",
                            self.root.display()
                        ),
                    ));
                }
                let node = node_from(b"", &parent.stat()?);
                let walk = Walk {
                    root: Arc::new(parent),
                    single: Some(name),
                    dirs: HashMap::new(),
                };
                Ok((walk, node))
            }
            Err(e) => Err(e),
        }
    }
}

impl Importer for FsImporter {
    fn origin(&self) -> String {
        self.root.display().to_string()
    }

    fn root(&self) -> io::Result<Node> {
        let (walk, node) = self.open_root()?;
        *self.walk() = Some(walk);
        Ok(node)
    }

    fn list(&self, dir: &SourcePath, listed: &Node) -> io::Result<Vec<Listed>> {
        let fd = if dir.is_root() {
            let walk = self.walk();
            let walk = walk.as_ref().ok_or_else(not_started)?;
            if let Some(name) = &walk.single {
                return Ok(vec![list_single(&walk.root, name)]);
            }
            walk.root.clone()
        } else {
            let parent = dir.parent().unwrap_or_default();
            let parent = self.dir(&parent)?;
            let opened = parent
                .open_dir(dir.name())
                .map_err(|e| changed_or(&parent, dir.name(), e, "a directory"))?;
            let st = opened.stat()?;
            if !same_object(listed, &st) {
                return Err(changed(&format!(
                    "listed as directory inode {}, now inode {}",
                    listed.inode, st.st_ino
                )));
            }
            let opened = Arc::new(opened);
            if let Some(walk) = self.walk().as_mut() {
                walk.dirs.insert(dir.clone(), opened.clone());
            }
            opened
        };
        let names = fd
            .names()
            .map_err(|e| io::Error::new(e.kind(), format!("listing directory: {e}")))?;
        Ok(names
            .into_par_iter()
            .map(|name| {
                let node = stat_entry(&fd, &name);
                Listed { name, node }
            })
            .collect())
    }

    fn open(&self, path: &SourcePath, listed: &Node) -> io::Result<Opened<'_>> {
        let dir = self.dir(&path.parent().unwrap_or_default())?;
        let file = dir
            .open_read(path.name())
            .map_err(|e| changed_or(&dir, path.name(), e, "a regular file"))?;
        let st = fstat(&file)?;
        if listed.kind != NodeKind::File || !same_object(listed, &st) {
            let now = kind_of(st.st_mode);
            let what = if now == NodeKind::File {
                format!(
                    "listed as regular file inode {}, now inode {}",
                    listed.inode, st.st_ino
                )
            } else {
                format!("listed as a regular file, now a {}", kind_name(now))
            };
            return Err(changed(&what));
        }
        Ok(Opened {
            reader: Box::new(file),
            node: Some(node_from(path.name(), &st)),
        })
    }

    fn leave(&self, dir: &SourcePath) {
        if let Some(walk) = self.walk().as_mut() {
            walk.dirs.remove(dir);
        }
    }
}

/// The one entry of a one-file source: it must still be a regular file.
fn list_single(root: &DirFd, name: &[u8]) -> Listed {
    let node = stat_entry(root, name).and_then(|node| {
        if node.kind == NodeKind::File {
            Ok(node)
        } else {
            Err(changed(&format!(
                "was a regular file when the backup started, now a {}",
                kind_name(node.kind)
            )))
        }
    });
    Listed {
        name: name.to_vec(),
        node,
    }
}

/// The `lstat` metadata of one entry, with a symlink's target.
fn stat_entry(dir: &DirFd, name: &[u8]) -> io::Result<Node> {
    let st = dir.lstat(name)?;
    let mut node = node_from(name, &st);
    if node.kind == NodeKind::Symlink {
        node.target = Some(serde_bytes::ByteBuf::from(dir.read_link(name)?));
    }
    Ok(node)
}

fn not_started() -> io::Error {
    io::Error::other("the walk has not opened its root")
}

/// The error for an entry that is no longer what the walk listed.
fn changed(what: &str) -> io::Error {
    io::Error::other(format!("changed during backup ({what}); not read"))
}

/// An `openat` failure of `name` in `dir`: a symlink or another kind
/// where `expected` was listed means the entry changed; anything else is
/// reported as it is.
fn changed_or(dir: &DirFd, name: &[u8], e: io::Error, expected: &str) -> io::Error {
    let codes = [
        rustix::io::Errno::LOOP.raw_os_error(),
        rustix::io::Errno::NOTDIR.raw_os_error(),
    ];
    if !e.raw_os_error().is_some_and(|c| codes.contains(&c)) {
        return e;
    }
    match dir.lstat(name) {
        Ok(st) => changed(&format!(
            "listed as {expected}, now a {}",
            kind_name(kind_of(st.st_mode))
        )),
        Err(_) => changed(&format!("listed as {expected}, now gone")),
    }
}

fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::File => "regular file",
        NodeKind::Dir => "directory",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "FIFO",
        NodeKind::CharDevice => "character device",
        NodeKind::BlockDevice => "block device",
        NodeKind::Socket => "socket",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Read;

    fn listed(imp: &FsImporter, dir: &SourcePath, node: &Node) -> Vec<Listed> {
        let mut l = imp.list(dir, node).expect("list");
        l.sort_by(|a, b| a.name.cmp(&b.name));
        l
    }

    fn read(imp: &FsImporter, path: &SourcePath, node: &Node) -> io::Result<String> {
        let mut s = String::new();
        imp.open(path, node)?.reader.read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn lists_entries_with_link_targets_and_reads_files() {
        let d = tempfile::tempdir().expect("tmp");
        fs::write(d.path().join("f"), b"abc").expect("write");
        std::os::unix::fs::symlink("f", d.path().join("l")).expect("link");
        let imp = FsImporter::new(d.path());
        let root = imp.root().expect("root");
        assert_eq!(root.kind, NodeKind::Dir);
        let l = listed(&imp, &SourcePath::root(), &root);
        let link = l[1].node.as_ref().expect("meta");
        assert_eq!(
            link.target.as_deref().map(|t| t.as_slice()),
            Some(&b"f"[..])
        );
        let file = l[0].node.as_ref().expect("meta");
        let path = SourcePath::root().join(b"f");
        assert_eq!(read(&imp, &path, file).expect("read"), "abc");
        assert!(
            imp.open(&SourcePath::root().join(b"l"), link).is_err(),
            "a symlink is never opened"
        );
    }

    #[test]
    fn a_file_swapped_after_listing_is_not_read() {
        let d = tempfile::tempdir().expect("tmp");
        let secret = d.path().join("secret");
        fs::write(&secret, b"root only").expect("write");
        let src = d.path().join("src");
        fs::create_dir(&src).expect("mkdir");
        for name in ["link", "fifo", "other"] {
            fs::write(src.join(name), b"mine").expect("write");
        }
        let imp = FsImporter::new(&src);
        let root = imp.root().expect("root");
        let l = listed(&imp, &SourcePath::root(), &root);
        fs::remove_file(src.join("link")).expect("rm");
        std::os::unix::fs::symlink(&secret, src.join("link")).expect("link");
        fs::remove_file(src.join("fifo")).expect("rm");
        DirFd::open_path(&src)
            .expect("dir")
            .mknod(b"fifo", rustix::fs::FileType::Fifo, 0o644, 0)
            .expect("fifo");
        fs::write(src.join("other.new"), b"new inode").expect("write");
        fs::rename(src.join("other.new"), src.join("other")).expect("rename");
        for entry in &l {
            let node = entry.node.as_ref().expect("meta");
            let e = read(&imp, &SourcePath::root().join(&entry.name), node).expect_err("refused");
            assert!(
                e.to_string().contains("changed during backup"),
                "{:?}: {e}",
                String::from_utf8_lossy(&entry.name)
            );
        }
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_is_not_descended() {
        let d = tempfile::tempdir().expect("tmp");
        let src = d.path().join("src");
        fs::create_dir_all(src.join("sub")).expect("mkdir");
        let imp = FsImporter::new(&src);
        let root = imp.root().expect("root");
        let l = listed(&imp, &SourcePath::root(), &root);
        fs::remove_dir(src.join("sub")).expect("rmdir");
        std::os::unix::fs::symlink("/", src.join("sub")).expect("link");
        let node = l[0].node.as_ref().expect("meta");
        let e = imp
            .list(&SourcePath::root().join(b"sub"), node)
            .expect_err("refused");
        assert!(e.to_string().contains("now a symlink"), "{e}");
    }

    #[test]
    fn a_regular_file_is_a_one_file_source() {
        let d = tempfile::tempdir().expect("tmp");
        fs::write(d.path().join("db.dump"), b"dump").expect("write");
        fs::write(d.path().join("other"), b"not listed").expect("write");
        let imp = FsImporter::new(d.path().join("db.dump"));
        let root = imp.root().expect("root");
        assert_eq!(root.kind, NodeKind::Dir);
        let l = listed(&imp, &SourcePath::root(), &root);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name, b"db.dump");
        let node = l[0].node.as_ref().expect("meta");
        let path = SourcePath::root().join(b"db.dump");
        assert_eq!(read(&imp, &path, node).expect("read"), "dump");
    }

    #[test]
    fn neither_a_directory_nor_a_file_is_refused() {
        let d = tempfile::tempdir().expect("tmp");
        DirFd::open_path(d.path())
            .expect("dir")
            .mknod(b"fifo", rustix::fs::FileType::Fifo, 0o644, 0)
            .expect("fifo");
        assert!(FsImporter::new(d.path().join("fifo")).root().is_err());
        assert!(FsImporter::new(d.path().join("missing")).root().is_err());
    }
}
