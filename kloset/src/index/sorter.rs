//! An external sort of index records: sorted in memory in batches,
//! spilled as runs, and merged into one run at the end.

use std::fs;
use std::path::Path;

use super::record::Record;
use super::run::{Merge, Run, RunMeta, RunWriter};
use crate::error::Result;

/// Records sorted in memory before they go to disk (48 MiB).
const SORT_RECORDS: usize = 1 << 20;

/// Merges `inputs` into a new run in `dir`.
pub(crate) fn merge_into<I: Iterator<Item = Result<Record>>>(
    dir: &Path,
    key: &[u8; 32],
    inputs: Vec<I>,
) -> Result<RunMeta> {
    let mut out = RunWriter::create(dir, key)?;
    for r in Merge::new(inputs)? {
        out.push(&r?)?;
    }
    out.finish()
}

/// An external sort: records are sorted in memory in batches of
/// [`SORT_RECORDS`], spilled as runs, and merged at the end.
pub(crate) struct Sorter<'a> {
    dir: &'a Path,
    key: &'a [u8; 32],
    buf: Vec<Record>,
    spills: Vec<RunMeta>,
    cap: usize,
}

impl<'a> Sorter<'a> {
    pub(crate) fn new(dir: &'a Path, key: &'a [u8; 32]) -> Self {
        Sorter {
            dir,
            key,
            buf: Vec::new(),
            spills: Vec::new(),
            cap: SORT_RECORDS,
        }
    }

    pub(crate) fn push(&mut self, r: Record) -> Result<()> {
        self.buf.push(r);
        if self.buf.len() >= self.cap {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        self.buf.sort_unstable();
        let mut w = RunWriter::create(self.dir, self.key)?;
        for r in &self.buf {
            w.push(r)?;
        }
        self.spills.push(w.finish()?);
        self.buf.clear();
        Ok(())
    }

    /// The sorted run of everything pushed (`None` if nothing was).
    pub(crate) fn finish(mut self) -> Result<Option<RunMeta>> {
        if !self.buf.is_empty() {
            self.spill()?;
        }
        self.buf = Vec::new();
        match self.spills.len() {
            0 => Ok(None),
            1 => Ok(self.spills.pop()),
            _ => {
                let opened = self
                    .spills
                    .iter()
                    .map(|meta| Run::open(self.dir, meta, self.key, 0))
                    .collect::<Result<Vec<_>>>()?;
                let merged =
                    merge_into(self.dir, self.key, opened.iter().map(Run::scan).collect())?;
                Ok(Some(merged))
            }
        }
    }
}

impl Drop for Sorter<'_> {
    fn drop(&mut self) {
        for s in &self.spills {
            let _ = fs::remove_file(self.dir.join(s.file_name()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{BlobId, BlobKind};
    use crate::index::record::{self, Slot};

    #[test]
    fn the_external_sort_spills_merges_and_cleans_up() {
        let dir = tempfile::tempdir().expect("dir");
        let key = [3u8; 32];
        let mut sorter = Sorter::new(dir.path(), &key);
        sorter.cap = 1_000;
        let ids: Vec<BlobId> = (0..4_500).map(|_| BlobId::random()).collect();
        for (i, id) in ids.iter().enumerate() {
            let slot = Slot {
                pack: i as u32,
                kind: BlobKind::Tree,
                offset: 1,
                length: 2,
                raw_length: 3,
            };
            sorter
                .push(record::encode(id, &slot).expect("fits"))
                .expect("push");
        }
        assert_eq!(sorter.spills.len(), 4);
        let meta = sorter.finish().expect("finish").expect("a run");
        let files: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            files,
            [std::ffi::OsString::from(meta.file_name())],
            "spills removed"
        );
        let run = Run::open(dir.path(), &meta, &key, 16).expect("open");
        assert_eq!(run.meta().records, 4_500);
        for (i, id) in ids.iter().enumerate() {
            let mut out = Vec::new();
            run.lookup(id, &mut out).expect("lookup");
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].pack, i as u32);
        }
    }
}
