//! Exporters: where a restore writes to when it is not a local directory
//! (an S3 prefix, an SFTP server, a command's standard input). The local
//! file system keeps its own tuned path in `ops::restore`.
//!
//! Contract:
//! - Paths are relative to the exporter's root ([`SourcePath`]); a
//!   directory's contents land under the root, a single file at `NAME`.
//! - Before anything is written, [`Exporter::exists`] is asked for every
//!   entry unless the restore may overwrite, so a refused restore writes
//!   nothing.
//! - Directories are created ([`Exporter::create_dir`]) before their
//!   entries and finished ([`Exporter::finish_dir`], e.g. to set times)
//!   after them. Files arrive as one stream each, already authenticated
//!   chunk by chunk; an exporter must not make a file visible under its
//!   final name before the stream ended without error where it can avoid
//!   it (S3 and SFTP write a temporary name or a multipart upload).
//! - Entry kinds an exporter cannot hold return `ErrorKind::Unsupported`;
//!   the restore records them and goes on.
//! - [`Exporter::finish`] runs once after the last entry; its error fails
//!   the restore.
//! - Exporters are called from several worker threads at once.

use std::io::Read;

use crate::import::SourcePath;
use crate::tree::Node;

/// Where a restore writes. See the module docs for the contract.
pub trait Exporter: Send + Sync {
    /// Where data goes, as shown to users (a path or URL; never a secret).
    fn target(&self) -> String;

    /// Whether something already exists at `path`.
    fn exists(&self, path: &SourcePath) -> std::io::Result<bool>;

    /// Makes the directory at `path` (it may exist already).
    fn create_dir(&self, path: &SourcePath, node: &Node) -> std::io::Result<()>;

    /// Writes the file at `path` from `content`, replacing what is there.
    fn write_file(
        &self,
        path: &SourcePath,
        node: &Node,
        content: &mut dyn Read,
    ) -> std::io::Result<()>;

    /// Makes a symbolic link (default: unsupported).
    fn symlink(&self, path: &SourcePath, node: &Node) -> std::io::Result<()> {
        let _ = (path, node);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("{} cannot hold symbolic links", self.target()),
        ))
    }

    /// Called after every entry of a directory was written (default: nothing).
    fn finish_dir(&self, path: &SourcePath, node: &Node) -> std::io::Result<()> {
        let _ = (path, node);
        Ok(())
    }

    /// Called once after everything was written (default: nothing).
    fn finish(&self) -> std::io::Result<()> {
        Ok(())
    }
}
