//! One large file on every core: its chunk boundaries are found on a thread
//! of its own while the backup's workers hash, compress and seal the chunks
//! already cut, in parallel.
//!
//! Cutting is sequential by nature (each boundary depends on the previous
//! one) but cheap; hashing, zstd and sealing are most of the cost and are
//! independent per chunk, so every worker of the pool takes the next cut
//! chunk as soon as it is free, and the ids are put back in file order.
//! The cutting thread is a plain thread that only reads and sends, never
//! waits on the worker pool, so the workers blocking on its channel can
//! never deadlock the pool. At most [`DEPTH`] cut chunks wait in the
//! channel, plus one being stored per worker.

use rayon::prelude::*;

use super::backup::FileFailure;
use crate::chunker::Chunker;
use crate::error::Error;
use crate::id::{BlobId, BlobKind};
use crate::import::FileReader;
use crate::progress::Progress;
use crate::writer::Writer;

/// Files at least this large are cut on their own thread.
pub(super) const MIN_SIZE: u64 = 16 << 20;
/// Cut chunks waiting to be stored, at most.
const DEPTH: usize = 4;

/// Cuts `reader` into chunks on a thread of its own and stores them with
/// `writer` on the current worker pool. Returns the chunk ids in file
/// order and the number of bytes read.
pub(super) fn store(
    chunker: &mut Chunker,
    reader: FileReader<'_>,
    writer: &Writer<'_>,
    progress: &Progress,
) -> Result<(Vec<BlobId>, u64), FileFailure> {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(DEPTH);
    std::thread::scope(|s| {
        let cutter = std::thread::Builder::new()
            .name("kloset-cut".into())
            .spawn_scoped(s, move || {
                // A send fails only when the storing side stopped (it
                // failed or was cancelled): stop reading then.
                chunker.chunk(reader, |chunk| {
                    tx.send(chunk.to_vec())
                        .map_err(|_| std::io::Error::other("the backup stopped storing"))
                })
            })
            .map_err(|e| {
                FileFailure::Fatal(Error::io(
                    "start the chunking thread for",
                    "a large file",
                    e,
                ))
            })?;
        // Each worker takes the next cut chunk as soon as it is free (no
        // batch barrier); the chunk's place in the file travels with it.
        let stored: Result<Vec<(usize, BlobId)>, Error> = rx
            .iter()
            .enumerate()
            .par_bridge()
            .map(|(place, chunk)| {
                progress.check_cancelled()?;
                let (id, _) = writer.save_blob(BlobKind::Data, &chunk)?;
                progress.add_bytes(chunk.len() as u64);
                Ok((place, id))
            })
            .collect();
        drop(rx); // unblocks the cutter if storing stopped early
        let cut = cutter.join().map_err(|_| {
            FileFailure::Fatal(Error::InvalidArgument(
                "the chunking thread panicked".into(),
            ))
        })?;
        let mut stored = stored.map_err(FileFailure::Fatal)?;
        let size = cut.map_err(FileFailure::Io)?;
        stored.sort_unstable_by_key(|(place, _)| *place);
        Ok((stored.into_iter().map(|(_, id)| id).collect(), size))
    })
}
