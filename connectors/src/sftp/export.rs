//! The SFTP exporter: restores into a directory on an SFTP server.
//!
//! Follows the exporter contract (`kloset::export`): directories are made
//! with `mkdir -p` and get their mode and mtime when finished; a file is
//! written to a temporary name in its directory, fsynced where the server
//! can, given its mode and mtime, then renamed over the final name, so a
//! failed stream never leaves a partial file under that name. Symlinks are
//! made (an existing entry is replaced); their own times cannot be set
//! over SFTP. Owners are not changed (the login user owns what it writes).
//! Times have whole-second precision.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path as FsPath;

use ssh2::FileStat;

use super::conn::{Conn, Pool};
use super::store::{create_temp, exists, fsync, join, mkdir_p, rename_into_place};
use super::{SftpConfig, SftpError};
use kloset::export::Exporter;
use kloset::import::SourcePath;
use kloset::tree::Node;

/// Write buffer per file (libssh2 pipelines writes up to its size).
const WRITE_BUFFER: usize = 1 << 20;

/// Restores into a remote directory over SFTP.
#[derive(Debug)]
pub struct SftpExporter {
    pool: Pool,
    target: String,
}

impl SftpExporter {
    /// Connects (verifying host key and credentials); `config.path` is the
    /// directory restored into (made when missing).
    pub fn connect(config: SftpConfig) -> Result<SftpExporter, SftpError> {
        let target = config.url();
        Ok(SftpExporter {
            pool: Pool::connect(config)?,
            target,
        })
    }

    fn abs(&self, path: &SourcePath) -> String {
        join(&self.pool.config().path, &path.to_string_lossy())
    }

    fn conn(&self) -> std::io::Result<std::sync::Arc<Conn>> {
        self.pool.get().map_err(SftpError::into_io)
    }
}

/// The attributes that set `node`'s mode and times.
fn attrs(node: &Node) -> FileStat {
    let secs = u64::try_from(node.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0);
    FileStat {
        size: None,
        uid: None,
        gid: None,
        perm: Some(node.mode & 0o7777),
        atime: Some(secs),
        mtime: Some(secs),
    }
}

impl Exporter for SftpExporter {
    fn target(&self) -> String {
        self.target.clone()
    }

    fn exists(&self, path: &SourcePath) -> std::io::Result<bool> {
        let conn = self.conn()?;
        exists(&conn, &self.abs(path)).map_err(SftpError::into_io)
    }

    fn create_dir(&self, path: &SourcePath, _node: &Node) -> std::io::Result<()> {
        let conn = self.conn()?;
        mkdir_p(&conn, &self.abs(path)).map_err(SftpError::into_io)
    }

    fn write_file(
        &self,
        path: &SourcePath,
        node: &Node,
        content: &mut dyn Read,
    ) -> std::io::Result<()> {
        let full = self.abs(path);
        let conn = self.conn()?;
        let (mut file, tmp, _) = create_temp(&conn, &full, 0o600).map_err(SftpError::into_io)?;
        let mut buf = vec![0u8; WRITE_BUFFER];
        let written = (|| -> std::io::Result<()> {
            loop {
                // Errors of `content` (the engine's) pass through unchanged.
                let n = content.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                file.write_all(&buf[..n])
                    .map_err(|e| conn.io_err("write", &tmp, e).into_io())?;
            }
            fsync(&conn, &mut file, &tmp)
                .map(|_| ())
                .map_err(SftpError::into_io)
        })();
        drop(file);
        let finished = written.and_then(|()| {
            conn.sftp
                .setstat(FsPath::new(&tmp), attrs(node))
                .map_err(|e| conn.err("setstat", &tmp, e).into_io())
        });
        if let Err(e) = finished {
            let _ = conn.sftp.unlink(FsPath::new(&tmp));
            return Err(e);
        }
        rename_into_place(&conn, &tmp, &full, true).map_err(SftpError::into_io)
    }

    fn symlink(&self, path: &SourcePath, node: &Node) -> std::io::Result<()> {
        let full = self.abs(path);
        let target = node
            .target
            .as_deref()
            .map(|t| t.as_slice())
            .unwrap_or_default();
        let conn = self.conn()?;
        if exists(&conn, &full).map_err(SftpError::into_io)? {
            conn.sftp
                .unlink(FsPath::new(&full))
                .map_err(|e| conn.err("unlink", &full, e).into_io())?;
        }
        // ssh2's `symlink(a, b)` makes `b` pointing at `a`.
        conn.sftp
            .symlink(
                FsPath::new(std::ffi::OsStr::from_bytes(target)),
                FsPath::new(&full),
            )
            .map_err(|e| conn.err("symlink", &full, e).into_io())
    }

    fn finish_dir(&self, path: &SourcePath, node: &Node) -> std::io::Result<()> {
        let full = self.abs(path);
        let conn = self.conn()?;
        conn.sftp
            .setstat(FsPath::new(&full), attrs(node))
            .map_err(|e| conn.err("setstat", &full, e).into_io())
    }
}
