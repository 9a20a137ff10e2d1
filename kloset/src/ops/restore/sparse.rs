//! Writing restored file content so that all-zero blocks become holes and
//! sparse files stay sparse.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Granularity of hole detection when writing files.
const HOLE_BLOCK: usize = 64 * 1024;

/// Writes file content, turning all-zero blocks into holes.
pub(super) struct SparseWriter<'a> {
    file: File,
    at: &'a Path,
    pos: u64,
    pending_hole: bool,
}

impl<'a> SparseWriter<'a> {
    /// Writes into `file` (new and empty), shown as `at` in errors.
    pub(super) fn new(file: File, at: &'a Path) -> SparseWriter<'a> {
        SparseWriter {
            file,
            at,
            pos: 0,
            pending_hole: false,
        }
    }

    /// Appends `data`.
    pub(super) fn write(&mut self, data: &[u8]) -> Result<()> {
        for block in data.chunks(HOLE_BLOCK) {
            if block.iter().all(|&b| b == 0) {
                self.pending_hole = true;
            } else {
                if self.pending_hole {
                    self.file
                        .seek(SeekFrom::Start(self.pos))
                        .map_err(|e| Error::io("seek", self.at, e))?;
                    self.pending_hole = false;
                }
                self.file
                    .write_all(block)
                    .map_err(|e| Error::io("write", self.at, e))?;
            }
            self.pos += block.len() as u64;
        }
        Ok(())
    }

    /// Checks the length against the tree, extends a trailing hole, and
    /// gives the file back (for its metadata).
    pub(super) fn finish(self, expected: u64) -> Result<File> {
        if self.pos != expected {
            return Err(Error::corrupt(
                format!("content of {}", self.at.display()),
                format!(
                    "chunks add up to {} bytes, the tree says {expected}",
                    self.pos
                ),
            ));
        }
        self.file
            .set_len(self.pos)
            .map_err(|e| Error::io("resize", self.at, e))?;
        Ok(self.file)
    }
}
