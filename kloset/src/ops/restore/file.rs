//! Writing one restored file: its chunks in windows, fetched within the
//! restore's byte budget, into a file that gets its name only once it is
//! whole and has its metadata (unnamed and then linked, or under a
//! temporary name and then renamed).

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use super::sparse::SparseWriter;
use super::{
    IN_FLIGHT_BYTES, REMOTE_WINDOW_CHUNKS, REMOTE_WINDOW_REQUEST, Restorer, WINDOW_CHUNKS,
    in_restore, shown,
};
use crate::dirfd::DirFd;
use crate::error::{Error, Result};
use crate::fetch::{MAX_REQUEST, load_blobs_spooled};
use crate::fsmeta::kind_of;
use crate::id::{BlobId, BlobKind};
use crate::tree::{Node, NodeKind};

impl Restorer<'_> {
    /// Writes the file `node` into `parent`, giving it its name only once
    /// it is whole and has its metadata, so a failed restore leaves no file
    /// cut short under a restored name, and `force` keeps the file it
    /// replaces until the new one is complete. Where it can, the file is
    /// unnamed until then (`O_TMPFILE`, then `linkat`, which never
    /// replaces); over an existing entry (`force`), or where unnamed files
    /// do not work, it is written under a temporary name and renamed.
    pub(super) fn write_file(
        &self,
        node: &Node,
        parent: &DirFd,
        at: &Path,
        cache: &HashMap<BlobId, Vec<u8>>,
    ) -> Result<()> {
        let name = &node.name[..];
        let path = shown(at, name);
        // What `force` replaces (without it, the plan found nothing there).
        let existing = self
            .options
            .force
            .then(|| parent.lstat(name).ok().map(|st| kind_of(st.st_mode)))
            .flatten();
        let unnamed = if self.unnamed_files && existing.is_none() {
            parent
                .create_unnamed(0o600)
                .map_err(|e| Error::io("create", &path, e))?
        } else {
            None
        };
        match unnamed {
            Some(file) => {
                let file = self.fill_file(node, file, cache, &path)?;
                parent
                    .link_unnamed(&file, name)
                    .map_err(|e| Error::io("create", &path, e))?;
            }
            None => {
                let dir_in_the_way = existing == Some(NodeKind::Dir);
                self.write_named(node, parent, name, &path, dir_in_the_way, cache)?
            }
        }
        self.options
            .progress
            .files
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// [`Restorer::write_file`] under a temporary name, renamed into place
    /// (after removing the directory in the way, if `force` found one).
    fn write_named(
        &self,
        node: &Node,
        parent: &DirFd,
        name: &[u8],
        path: &Path,
        dir_in_the_way: bool,
        cache: &HashMap<BlobId, Vec<u8>>,
    ) -> Result<()> {
        let temp = self.temp_name();
        let file: File = parent
            .create_file(&temp, 0o600)
            .map_err(|e| Error::io("create", path, e))?;
        let written = self
            .fill_file(node, file, cache, path)
            .and_then(|_| self.put_in_place(parent, &temp, name, path, dir_in_the_way));
        if written.is_err() {
            // Not recursive: whatever stands at the temporary name now,
            // a directory swapped in is not this restore's to empty.
            let _ = parent.unlink(&temp);
        }
        written
    }

    /// Whether unnamed files can be made and given a name in `dir`: tried
    /// once per restore on the target, with a file linked under a
    /// temporary name and removed again.
    pub(super) fn unnamed_files_work(&self, dir: &DirFd) -> bool {
        let Ok(Some(file)) = dir.create_unnamed(0o600) else {
            return false;
        };
        let probe = self.temp_name();
        match dir.link_unnamed(&file, &probe) {
            Ok(()) => {
                // Left behind, it is a temporary name the next restore removes.
                let _ = dir.unlink(&probe);
                true
            }
            Err(_) => false,
        }
    }

    /// A name no other file of this restore uses, hidden, and unlikely to
    /// be one that a restore killed before left behind.
    fn temp_name(&self) -> Vec<u8> {
        let n = self
            .temps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!(".kloset-restore-{:08x}-{n}", self.run).into_bytes()
    }

    /// Unlinks the temporary files that a restore killed outright left in
    /// `dir`, an existing directory this restore writes into: regular files
    /// named as [`Restorer::temp_name`] makes them, never recursively.
    pub(super) fn remove_temporaries(&self, dir: &DirFd, path: &Path) -> Result<()> {
        let names = dir.names().map_err(|e| Error::io("list", path, e))?;
        for name in names.iter().filter(|n| is_temporary(n)) {
            let is_file = dir
                .lstat(name)
                .is_ok_and(|st| kind_of(st.st_mode) == NodeKind::File);
            if is_file && let Err(e) = dir.unlink(name) {
                let at = shown(path, name);
                self.note(format!("{}: left by an earlier restore: {e}", at.display()));
            }
        }
        Ok(())
    }

    /// Renames the finished `temp` to `name`: over an existing entry only
    /// with `force`, which removes a directory in the way first.
    fn put_in_place(
        &self,
        parent: &DirFd,
        temp: &[u8],
        name: &[u8],
        path: &Path,
        dir_in_the_way: bool,
    ) -> Result<()> {
        if dir_in_the_way {
            parent
                .remove(name)
                .map_err(|e| Error::io("replace", path, e))?;
        }
        parent
            .rename(temp, name, self.options.force)
            .map_err(|e| Error::io("create", path, e))
    }

    /// Writes the content of `node` into `file`, then its metadata.
    fn fill_file(
        &self,
        node: &Node,
        file: File,
        cache: &HashMap<BlobId, Vec<u8>>,
        path: &Path,
    ) -> Result<File> {
        let mut out = SparseWriter::new(file, path);
        let (window_chunks, window_bytes, max_request) = if self.repo.storage().is_remote() {
            (REMOTE_WINDOW_CHUNKS, IN_FLIGHT_BYTES, REMOTE_WINDOW_REQUEST)
        } else {
            (WINDOW_CHUNKS, u64::MAX, MAX_REQUEST)
        };
        let mut at_chunk = 0;
        while at_chunk < node.content.len() {
            self.options.progress.check_cancelled()?;
            let (len, missing, bytes) = self.next_window(
                &node.content[at_chunk..],
                cache,
                window_chunks,
                window_bytes,
                path,
            )?;
            let window = &node.content[at_chunk..at_chunk + len];
            at_chunk += len;
            let (_share, fetched) = if missing.is_empty() {
                (None, HashMap::new())
            } else {
                let share = self.budget.take(bytes);
                let spool = self.spool.as_ref();
                let fetched =
                    load_blobs_spooled(self.repo, BlobKind::Data, &missing, max_request, spool)
                        .map_err(|e| in_restore(e, path))?;
                (Some(share), fetched)
            };
            for id in window {
                let data =
                    cache
                        .get(id)
                        .or_else(|| fetched.get(id))
                        .ok_or_else(|| Error::NotFound {
                            what: format!("chunk {} of {}", id.short(), path.display()),
                        })?;
                out.write(data)?;
                self.options.progress.add_bytes(data.len() as u64);
                self.writeback.wrote(data.len() as u64);
            }
        }
        let file = out.finish(node.size)?;
        self.set_fd_meta(node, &file, path)?;
        Ok(file)
    }

    /// The next window of a file's chunks: at most `chunks` of them, and no
    /// more than `max_bytes` of chunks to fetch (but at least one chunk).
    /// Returns its length, the chunks to fetch and their raw bytes.
    fn next_window(
        &self,
        content: &[BlobId],
        cache: &HashMap<BlobId, Vec<u8>>,
        chunks: usize,
        max_bytes: u64,
        path: &Path,
    ) -> Result<(usize, Vec<BlobId>, u64)> {
        let index = self.repo.index();
        let (mut len, mut missing, mut bytes) = (0, Vec::new(), 0u64);
        for id in content.iter().take(chunks) {
            if !cache.contains_key(id) {
                let loc = index.get(id).map_err(|e| in_restore(e, path))?;
                let raw = loc.map_or(0, |l| u64::from(l.raw_length));
                if len > 0 && bytes.saturating_add(raw) > max_bytes {
                    break;
                }
                bytes += raw;
                missing.push(*id);
            }
            len += 1;
        }
        Ok((len, missing, bytes))
    }
}

/// Whether `name` is one that [`Restorer::temp_name`] makes:
/// `.kloset-restore-`, 8 hex digits, `-`, a decimal number.
fn is_temporary(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b".kloset-restore-") else {
        return false;
    };
    match rest.split_at_checked(8) {
        Some((run, [b'-', n @ ..])) => {
            run.iter().all(u8::is_ascii_hexdigit)
                && !n.is_empty()
                && n.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_temporary;

    #[test]
    fn only_the_restores_own_temporary_names_are_recognised() {
        assert!(is_temporary(b".kloset-restore-0a1b2c3d-0"));
        assert!(is_temporary(b".kloset-restore-ffffffff-123456"));
        for other in [
            &b".kloset-restore-0a1b2c3d-"[..],
            b".kloset-restore-0a1b2c3-0",
            b".kloset-restore-0a1b2c3g-0",
            b".kloset-restore-0a1b2c3d-1x",
            b".kloset-restore-0a1b2c3d",
            b"kloset-restore-0a1b2c3d-0",
            b"notes.txt",
        ] {
            assert!(!is_temporary(other), "{}", String::from_utf8_lossy(other));
        }
    }
}
