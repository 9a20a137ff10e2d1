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
//!   the directory unreadable (recorded too). The walk lists a directory
//!   only after listing its parent, and calls [`Importer::leave`] once it
//!   will neither list nor open anything more in it.
//! - The importer fills `mtime_ns`, `ctime_ns`, `inode` and `device` with
//!   whatever tells a changed file from an unchanged one (for S3: the
//!   object's time and a hash of its ETag). A file whose size and these
//!   fields match the parent snapshot is not read again; an importer that
//!   cannot tell (a command's output) puts the current time in `ctime_ns`.
//! - [`Importer::open`] streams one file. A reader that fails part-way
//!   (including a command that exits non-zero after its output) returns an
//!   error from `read`, and the file is recorded as unreadable. An importer
//!   that can tell what it opened returns its metadata with the reader, and
//!   refuses to open anything but the file it listed (see [`local`]: a
//!   local file system that other users can change while root reads it).
//!   Importers that read through a service (S3, SFTP) or a command's output
//!   open by name; the service or command decides what that name is, and no
//!   local symlink or FIFO is involved.
//! - Importers are called from several worker threads at once.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::tree::Node;

pub mod local;

pub use local::FsImporter;

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

    /// The directory holding this path (`None` for the root).
    pub fn parent(&self) -> Option<SourcePath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => SourcePath(self.0[..i].to_vec()),
            None => SourcePath::root(),
        })
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

/// A file opened for reading.
pub struct Opened<'a> {
    /// Its content.
    pub reader: FileReader<'a>,
    /// The metadata of what was opened, when the importer can tell (the
    /// local importer's `fstat`); it replaces the listed metadata in the
    /// snapshot.
    pub node: Option<Node>,
}

impl<'a> Opened<'a> {
    /// A reader whose metadata is the listed one.
    pub fn reader(reader: FileReader<'a>) -> Opened<'a> {
        Opened { reader, node: None }
    }
}

impl std::fmt::Debug for Opened<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("node", &self.node).finish()
    }
}

/// Where a backup reads from. See the module docs for the contract.
pub trait Importer: Send + Sync {
    /// What is backed up, as shown to users (a path or URL; never a secret).
    fn origin(&self) -> String;

    /// The root's metadata; it must be a directory.
    fn root(&self) -> std::io::Result<Node>;

    /// The entries of the directory at `dir`, which its parent's listing
    /// (or [`Importer::root`]) gave as `listed`, in any order.
    fn list(&self, dir: &SourcePath, listed: &Node) -> std::io::Result<Vec<Listed>>;

    /// Opens the file at `path`, listed as `listed`, for reading.
    fn open(&self, path: &SourcePath, listed: &Node) -> std::io::Result<Opened<'_>>;

    /// The walk is done with the directory `dir` (default: nothing).
    fn leave(&self, dir: &SourcePath) {
        let _ = dir;
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
        assert_eq!(p.parent(), Some(SourcePath::root().join(b"a")));
        assert_eq!(
            SourcePath::root().join(b"a").parent(),
            Some(SourcePath::root())
        );
        assert_eq!(SourcePath::root().parent(), None);
        assert_eq!(SourcePath::root().display(), "/");
        assert_eq!(
            p.under(Path::new("/r")),
            PathBuf::from("/r/a/b c"),
            "joined under a directory"
        );
    }
}
