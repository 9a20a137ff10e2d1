//! The SFTP importer: backs up a directory on an SFTP server.
//!
//! Follows the importer contract (`kloset::import`): entries come from one
//! `readdir` per directory with the server's `lstat` attributes, symlink
//! targets from `readlink`, files stream through a buffered SFTP handle.
//! SFTP (v3) gives whole-second mtimes and no ctime, inode or device, so
//! change detection uses size and mtime: `ctime_ns` is the mtime and
//! `inode`/`device` are 0.

use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path as FsPath;
use std::sync::Arc;

use serde_bytes::ByteBuf;
use ssh2::{FileStat, FileType};

use super::conn::{Conn, Pool};
use super::store::join;
use super::{SftpConfig, SftpError};
use kloset::import::{Importer, Listed, Opened, SourcePath};
use kloset::tree::{Node, NodeKind};

/// Read buffer per open file (libssh2 pipelines requests up to its size).
const READ_BUFFER: usize = 1 << 20;

/// Backs up a remote directory over SFTP.
#[derive(Debug)]
pub struct SftpImporter {
    pool: Pool,
    origin: String,
}

impl SftpImporter {
    /// Connects (verifying host key and credentials); `config.path` is the
    /// directory backed up.
    pub fn connect(config: SftpConfig) -> Result<SftpImporter, SftpError> {
        let origin = config.url();
        Ok(SftpImporter {
            pool: Pool::connect(config)?,
            origin,
        })
    }

    fn abs(&self, path: &SourcePath) -> String {
        join(&self.pool.config().path, &path.to_string_lossy())
    }
}

/// A tree node from SFTP attributes (`None` for an unknown file type).
pub(crate) fn node_from_stat(name: &[u8], st: &FileStat) -> Option<Node> {
    let kind = match st.file_type() {
        FileType::Directory => NodeKind::Dir,
        FileType::RegularFile => NodeKind::File,
        FileType::Symlink => NodeKind::Symlink,
        FileType::NamedPipe => NodeKind::Fifo,
        FileType::CharDevice => NodeKind::CharDevice,
        FileType::BlockDevice => NodeKind::BlockDevice,
        FileType::Socket => NodeKind::Socket,
        FileType::Other(_) => return None,
    };
    let mtime_ns = i64::try_from(st.mtime.unwrap_or(0))
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000_000);
    Some(Node {
        name: ByteBuf::from(name.to_vec()),
        kind,
        mode: st.perm.unwrap_or(0) & 0o7777,
        uid: st.uid.unwrap_or(0),
        gid: st.gid.unwrap_or(0),
        mtime_ns,
        ctime_ns: mtime_ns,
        inode: 0,
        device: 0,
        size: if kind == NodeKind::Dir {
            0
        } else {
            st.size.unwrap_or(0)
        },
        target: None,
        rdev: None,
        content: Vec::new(),
        subtree: None,
    })
}

impl Importer for SftpImporter {
    fn origin(&self) -> String {
        self.origin.clone()
    }

    fn root(&self) -> std::io::Result<Node> {
        let root = &self.pool.config().path;
        let conn = self.pool.get().map_err(SftpError::into_io)?;
        let st = conn
            .sftp
            .stat(FsPath::new(root))
            .map_err(|e| conn.err("stat", root, e).into_io())?;
        match node_from_stat(b"", &st) {
            Some(node) if node.kind == NodeKind::Dir => Ok(node),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", self.origin),
            )),
        }
    }

    fn list(&self, dir: &SourcePath, _listed: &Node) -> std::io::Result<Vec<Listed>> {
        let abs = self.abs(dir);
        let conn = self.pool.get().map_err(SftpError::into_io)?;
        let entries = conn
            .sftp
            .readdir(FsPath::new(&abs))
            .map_err(|e| conn.err("readdir", &abs, e).into_io())?;
        let mut out = Vec::with_capacity(entries.len());
        for (path, st) in entries {
            let Some(name) = path.file_name().map(|n| n.as_bytes().to_vec()) else {
                continue;
            };
            let node = match node_from_stat(&name, &st) {
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    format!("unknown file type {:o}", st.perm.unwrap_or(0)),
                )),
                Some(mut node) => {
                    if node.kind == NodeKind::Symlink {
                        read_link(&conn, &path, &mut node).map(|()| node)
                    } else {
                        Ok(node)
                    }
                }
            };
            out.push(Listed { name, node });
        }
        Ok(out)
    }

    fn open(&self, path: &SourcePath, _listed: &Node) -> std::io::Result<Opened<'_>> {
        let abs = self.abs(path);
        let conn = self.pool.get().map_err(SftpError::into_io)?;
        let file = conn
            .sftp
            .open(FsPath::new(&abs))
            .map_err(|e| conn.err("open", &abs, e).into_io())?;
        Ok(Opened::reader(Box::new(RemoteReader {
            file: BufReader::with_capacity(READ_BUFFER, file),
            path: abs,
            conn,
        })))
    }
}

fn read_link(conn: &Conn, path: &FsPath, node: &mut Node) -> std::io::Result<()> {
    let shown = path.to_string_lossy();
    let target = conn
        .sftp
        .readlink(path)
        .map_err(|e| conn.err("readlink", &shown, e).into_io())?;
    let bytes = target.as_os_str().as_bytes().to_vec();
    node.size = bytes.len() as u64;
    node.target = Some(ByteBuf::from(bytes));
    Ok(())
}

/// One remote file being read; holds its session.
struct RemoteReader {
    // Field order: the handle closes before the session reference drops.
    file: BufReader<ssh2::File>,
    path: String,
    conn: Arc<Conn>,
}

impl Read for RemoteReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file
            .read(buf)
            .map_err(|e| self.conn.io_err("read", &self.path, e).into_io())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sftp::SftpErrorKind;

    #[test]
    fn nodes_from_attributes() {
        let st = FileStat {
            size: Some(5),
            uid: Some(1),
            gid: Some(2),
            perm: Some(0o100_640),
            atime: Some(7),
            mtime: Some(1_700_000_000),
        };
        let n = node_from_stat(b"f", &st).expect("file");
        assert_eq!((n.kind, n.mode, n.size), (NodeKind::File, 0o640, 5));
        assert_eq!(n.mtime_ns, 1_700_000_000_000_000_000);
        assert_eq!((n.ctime_ns, n.inode, n.device), (n.mtime_ns, 0, 0));
        let d = node_from_stat(
            b"d",
            &FileStat {
                perm: Some(0o040_755),
                ..st.clone()
            },
        )
        .expect("dir");
        assert_eq!((d.kind, d.size), (NodeKind::Dir, 0));
        assert!(
            node_from_stat(
                b"x",
                &FileStat {
                    perm: Some(0o170_000),
                    ..st
                }
            )
            .is_none()
        );
    }

    #[test]
    fn errors_keep_their_kind() {
        let e = SftpError::new(SftpErrorKind::PermissionDenied, "SFTP open /x: denied").into_io();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    }
}
