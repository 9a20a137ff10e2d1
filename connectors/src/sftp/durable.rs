//! Making writes durable on the server: file contents with
//! `fsync@openssh.com`, and directory entries (a rename into place, a new
//! directory) by opening the directory as a file and fsyncing that handle.
//!
//! OpenSSH's `sftp-server` opens a directory read-only with `open(2)` and
//! fsyncs whatever descriptor a handle holds, so on a Linux server both
//! work, and the order the engine relies on (packs and indexes durable
//! before the snapshot that names them) survives a server crash. A server
//! without the extension, or one that refuses to open a directory as a
//! file, cannot do this: each capability is probed once per store and
//! remembered; without it, a crash of the server's machine (power loss,
//! kernel panic) can lose writes the server acknowledged, in any order (see
//! docs/reliability.md).

use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU8, Ordering};

use ssh2::{OpenFlags, OpenType};

use super::SftpError;
use super::conn::Conn;

const UNKNOWN: u8 = 0;
const WORKS: u8 = 1;
const UNAVAILABLE: u8 = 2;

/// What a server can make durable, learnt from the first attempts.
#[derive(Debug, Default)]
pub(crate) struct Durability {
    files: AtomicU8,
    dirs: AtomicU8,
}

impl Durability {
    /// Whether file contents are fsynced (`None`: not tried yet).
    pub(crate) fn files(&self) -> Option<bool> {
        known(&self.files)
    }

    /// Whether directory entries are fsynced (`None`: not tried yet).
    pub(crate) fn dirs(&self) -> Option<bool> {
        known(&self.dirs)
    }

    /// Flushes a written file to the server's disk when the server can.
    pub(crate) fn fsync_file(
        &self,
        conn: &Conn,
        file: &mut ssh2::File,
        path: &str,
    ) -> Result<(), SftpError> {
        if self.files.load(Ordering::Relaxed) == UNAVAILABLE {
            return Ok(());
        }
        let synced = super::store::fsync(conn, file, path)?;
        self.files
            .store(if synced { WORKS } else { UNAVAILABLE }, Ordering::Relaxed);
        Ok(())
    }

    /// Flushes the entries of directory `dir` (a rename or a mkdir in it)
    /// when the server can; a server that cannot is remembered and not
    /// asked again. Fails only when a server that could fsync it fails to.
    pub(crate) fn fsync_dir(&self, conn: &Conn, dir: &str) -> Result<(), SftpError> {
        if self.dirs.load(Ordering::Relaxed) == UNAVAILABLE
            || self.files.load(Ordering::Relaxed) == UNAVAILABLE
        {
            return Ok(());
        }
        let mut handle =
            match conn
                .sftp
                .open_mode(FsPath::new(dir), OpenFlags::READ, 0, OpenType::File)
            {
                Ok(h) => h,
                Err(e) => {
                    if self.dirs.load(Ordering::Relaxed) == WORKS {
                        return Err(conn.err("open directory", dir, e));
                    }
                    self.dirs.store(UNAVAILABLE, Ordering::Relaxed);
                    return Ok(());
                }
            };
        match handle.fsync() {
            Ok(()) => {
                self.dirs.store(WORKS, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if self.dirs.load(Ordering::Relaxed) == WORKS => {
                Err(conn.err("fsync directory", dir, e))
            }
            Err(_) => {
                self.dirs.store(UNAVAILABLE, Ordering::Relaxed);
                Ok(())
            }
        }
    }
}

fn known(cell: &AtomicU8) -> Option<bool> {
    match cell.load(Ordering::Relaxed) {
        UNKNOWN => None,
        v => Some(v == WORKS),
    }
}
