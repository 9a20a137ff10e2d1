//! Importers: what a backup reads from. An importer presents its data as a
//! tree of directories, files and links; the backup walks it, chunks every
//! file it opens and writes the snapshot.
//!
//! Contract:
//! - Paths are relative to the importer's root, `/`-separated raw bytes
//!   ([`SourcePath`]); the root is the empty path.
//! - [`Importer::list`] returns every entry of a directory with its metadata
//!   (content and subtree empty; a symlink's `target` filled). An entry whose
//!   metadata cannot be read carries its error; it is recorded in the
//!   snapshot, never silently skipped. An error of the listing itself makes
//!   the directory unreadable (recorded too).
//! - The importer fills `mtime_ns`, `ctime_ns`, `inode` and `device` with
//!   whatever tells a changed file from an unchanged one (for S3: the
//!   object's time and a hash of its ETag). A file whose size and these
//!   fields match the parent snapshot is not read again; an importer that
//!   cannot tell (a command's output) puts the current time in `ctime_ns`.
//! - [`Importer::open`] streams one file. A reader that fails part-way
//!   (including a command that exits non-zero after its output) returns an
//!   error from `read`, and the file is recorded as unreadable.
//! - Importers are called from several worker threads at once.

use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::fsmeta::node_from;
use crate::tree::{Node, NodeKind};

/// A path inside an importer or exporter: `/`-separated raw name bytes,
/// relative to its root (empty for the root). Never starts with `/`, never
/// holds `.`, `..` or empty components.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourcePath(Vec<u8>);

impl SourcePath {
    /// The root.
    pub fn root() -> SourcePath {
        SourcePath(Vec::new())
    }

    /// This path with `name` appended (`name` is one safe component).
    pub fn join(&self, name: &[u8]) -> SourcePath {
        let mut v = self.0.clone();
        if !v.is_empty() {
            v.push(b'/');
        }
        v.extend_from_slice(name);
        SourcePath(v)
    }

    /// The raw bytes (`a/b`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path as text, lossy for non-UTF-8 names (`a/b`).
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// The path as shown in snapshots and errors: `/a/b`, `/` for the root.
    pub fn display(&self) -> String {
        format!("/{}", self.to_string_lossy())
    }

    /// The path under a local directory.
    pub fn under(&self, dir: &Path) -> PathBuf {
        if self.0.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(std::ffi::OsStr::from_bytes(&self.0))
        }
    }

    /// The last component (empty for the root).
    pub fn name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }
}

/// One entry of a listed directory.
#[derive(Debug)]
pub struct Listed {
    /// Its name (one component).
    pub name: Vec<u8>,
    /// Its metadata, or why it could not be read.
    pub node: std::io::Result<Node>,
}

/// A stream of one file's content.
pub type FileReader<'a> = Box<dyn Read + Send + 'a>;

/// Where a backup reads from. See the module docs for the contract.
pub trait Importer: Send + Sync {
    /// What is backed up, as shown to users (a path or URL; never a secret).
    fn origin(&self) -> String;

    /// The root's metadata; it must be a directory.
    fn root(&self) -> std::io::Result<Node>;

    /// The entries of the directory at `dir`, in any order.
    fn list(&self, dir: &SourcePath) -> std::io::Result<Vec<Listed>>;

    /// Opens the file at `path` (listed as `node`) for reading.
    fn open(&self, path: &SourcePath, node: &Node) -> std::io::Result<FileReader<'_>>;
}

/// The local file system under a root directory. Entries are stat'ed in
/// parallel on the caller's rayon pool; nothing follows symlinks.
#[derive(Clone, Debug)]
pub struct FsImporter {
    root: PathBuf,
}

impl FsImporter {
    /// Imports the directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> FsImporter {
        FsImporter { root: root.into() }
    }
}

impl Importer for FsImporter {
    fn origin(&self) -> String {
        self.root.display().to_string()
    }

    fn root(&self) -> std::io::Result<Node> {
        let meta = fs::metadata(&self.root)?;
        if !meta.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", self.root.display()),
            ));
        }
        Ok(node_from(b"", &meta))
    }

    fn list(&self, dir: &SourcePath) -> std::io::Result<Vec<Listed>> {
        let abs = dir.under(&self.root);
        let mut names = Vec::new();
        let mut failed = Vec::new();
        for entry in fs::read_dir(&abs)? {
            match entry {
                Ok(e) => names.push(e.file_name().as_bytes().to_vec()),
                Err(e) => failed.push(e),
            }
        }
        if let Some(e) = failed.into_iter().next() {
            return Err(std::io::Error::new(
                e.kind(),
                format!("listing directory: {e}"),
            ));
        }
        Ok(names
            .into_par_iter()
            .map(|name| {
                let path = abs.join(std::ffi::OsStr::from_bytes(&name));
                let node = fs::symlink_metadata(&path).and_then(|meta| {
                    let mut node = node_from(&name, &meta);
                    if node.kind == NodeKind::Symlink {
                        let target = fs::read_link(&path)?;
                        node.target = Some(serde_bytes::ByteBuf::from(
                            target.as_os_str().as_bytes().to_vec(),
                        ));
                    }
                    Ok(node)
                });
                Listed { name, node }
            })
            .collect())
    }

    fn open(&self, path: &SourcePath, _node: &Node) -> std::io::Result<FileReader<'_>> {
        Ok(Box::new(fs::File::open(path.under(&self.root))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_and_display() {
        let p = SourcePath::root().join(b"a").join(b"b c");
        assert_eq!(p.as_bytes(), b"a/b c");
        assert_eq!(p.display(), "/a/b c");
        assert_eq!(p.name(), b"b c");
        assert_eq!(SourcePath::root().display(), "/");
        assert_eq!(
            p.under(Path::new("/r")),
            PathBuf::from("/r/a/b c"),
            "joined under a directory"
        );
    }

    #[test]
    fn fs_lists_entries_with_link_targets_and_errors_for_the_listing() {
        let d = tempfile::tempdir().expect("tmp");
        fs::write(d.path().join("f"), b"abc").expect("write");
        std::os::unix::fs::symlink("f", d.path().join("l")).expect("link");
        let imp = FsImporter::new(d.path());
        assert_eq!(imp.root().expect("root").kind, NodeKind::Dir);
        let mut listed = imp.list(&SourcePath::root()).expect("list");
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        let link = listed[1].node.as_ref().expect("meta");
        assert_eq!(
            link.target.as_deref().map(|t| t.as_slice()),
            Some(&b"f"[..])
        );
        let mut content = String::new();
        let node = listed[0].node.as_ref().expect("meta");
        imp.open(&SourcePath::root().join(b"f"), node)
            .expect("open")
            .read_to_string(&mut content)
            .expect("read");
        assert_eq!(content, "abc");
        assert!(imp.list(&SourcePath::root().join(b"missing")).is_err());
        assert!(FsImporter::new(d.path().join("f")).root().is_err());
    }
}
