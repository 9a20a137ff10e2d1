//! A sorted run of index records on local disk, authenticated block by
//! block, searched with one `pread` per lookup.
//!
//! File layout (all numbers big-endian):
//! - blocks of 4096 bytes: up to [`PER_BLOCK`] records, zero padding, and a
//!   16-byte keyed BLAKE3 MAC of the rest, bound to the run's name and the
//!   block's number (a block moved within or between runs fails);
//! - the fence: the first 8 bytes of each block's first id (`u64`), which
//!   readers hold in memory (8 bytes per 86 records) to find a block;
//! - the footer: record count, distinct id count, magic, and a 32-byte MAC
//!   of the fence and footer.
//!
//! Records are sorted by id; copies of one blob in two packs sit side by
//! side. Reading with `pread` (not `mmap`) keeps the table out of the
//! process's resident memory: the page cache holds the hot blocks.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::blocks::BlockCache;
use super::record::{self, RECORD_LEN, Record, Slot};
use crate::error::{Error, Result};
use crate::id::{BlobId, ID_LEN};

/// Bytes per block.
pub const BLOCK_LEN: usize = 4096;
const MAC_LEN: usize = 16;
/// Records per block.
pub const PER_BLOCK: usize = (BLOCK_LEN - MAC_LEN) / RECORD_LEN;
const MAGIC: &[u8; 8] = b"KLIDXR02";
/// Where a block's body holds its number.
const NUMBER_AT: usize = BLOCK_LEN - MAC_LEN - 8;
const FOOTER_LEN: usize = 8 + 8 + 8 + 32;
/// Blocks read at once when a run is read from start to end.
const SCAN_BLOCKS: usize = 64;

/// What a manifest says about one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMeta {
    /// 16 random bytes, hex: the file is `run-<name>`.
    pub name: String,
    /// Records in the run.
    pub records: u64,
    /// Distinct blob ids in the run.
    pub distinct: u64,
}

impl RunMeta {
    /// The run's file name.
    pub fn file_name(&self) -> String {
        format!("run-{}", self.name)
    }

    /// Blocks in the run.
    pub fn blocks(&self) -> u64 {
        self.records.div_ceil(PER_BLOCK as u64)
    }
}

/// The key of one run's block MACs: bound to the run's name, so a block
/// from another run fails.
fn block_key(key: &[u8; 32], name: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(b"kloset index run\0");
    h.update(name.as_bytes());
    *h.finalize().as_bytes()
}

/// The MAC of a block's body (which ends with the block's number, so a
/// block moved within its run fails too). The body starts the hash
/// aligned, so BLAKE3 hashes its whole chunks in parallel.
fn block_mac(block_key: &[u8; 32], body: &[u8]) -> [u8; MAC_LEN] {
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(&blake3::keyed_hash(block_key, body).as_bytes()[..MAC_LEN]);
    mac
}

fn footer_hasher(key: &[u8; 32], name: &str) -> blake3::Hasher {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(b"kloset index footer\0");
    h.update(name.as_bytes());
    h
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes one run; records must come sorted by id.
pub struct RunWriter {
    out: BufWriter<File>,
    path: PathBuf,
    key: [u8; 32],
    block_key: [u8; 32],
    meta: RunMeta,
    block: Vec<u8>,
    in_block: usize,
    blocks: u64,
    fence: Vec<u64>,
    last: Option<[u8; ID_LEN]>,
}

impl RunWriter {
    /// A new run file in `dir` (0600, never an existing file).
    pub fn create(dir: &Path, key: &[u8; 32]) -> Result<RunWriter> {
        let name = hex::encode(rand::random::<[u8; 16]>());
        let meta = RunMeta {
            name,
            records: 0,
            distinct: 0,
        };
        let path = dir.join(meta.file_name());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("creating index run", &path))?;
        Ok(RunWriter {
            out: BufWriter::with_capacity(256 << 10, file),
            path,
            key: *key,
            block_key: block_key(key, &meta.name),
            meta,
            block: vec![0u8; BLOCK_LEN],
            in_block: 0,
            blocks: 0,
            fence: Vec::new(),
            last: None,
        })
    }

    /// Appends one record.
    pub fn push(&mut self, r: &Record) -> Result<()> {
        let id = &r[..ID_LEN];
        match &self.last {
            Some(last) if id < &last[..] => {
                return Err(Error::corrupt(
                    self.path.display().to_string(),
                    "index records out of order (a bug)",
                ));
            }
            Some(last) if id == &last[..] => {}
            _ => {
                self.meta.distinct += 1;
                let mut last = [0u8; ID_LEN];
                last.copy_from_slice(id);
                self.last = Some(last);
            }
        }
        if self.in_block == 0 {
            self.fence.push(record::prefix(id));
        }
        let at = self.in_block * RECORD_LEN;
        self.block[at..at + RECORD_LEN].copy_from_slice(r);
        self.in_block += 1;
        self.meta.records += 1;
        if self.in_block == PER_BLOCK {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<()> {
        let body_len = BLOCK_LEN - MAC_LEN;
        self.block[self.in_block * RECORD_LEN..NUMBER_AT].fill(0);
        self.block[NUMBER_AT..body_len].copy_from_slice(&self.blocks.to_be_bytes());
        let mac = block_mac(&self.block_key, &self.block[..body_len]);
        self.block[body_len..].copy_from_slice(&mac);
        self.out
            .write_all(&self.block)
            .map_err(io("writing index run", &self.path))?;
        self.blocks += 1;
        self.in_block = 0;
        Ok(())
    }

    /// Writes the last block, the fence and the footer, and syncs the
    /// file.
    pub fn finish(mut self) -> Result<RunMeta> {
        if self.in_block > 0 {
            self.flush_block()?;
        }
        let mut mac = footer_hasher(&self.key, &self.meta.name);
        for f in &self.fence {
            let b = f.to_be_bytes();
            mac.update(&b);
            self.out
                .write_all(&b)
                .map_err(io("writing index run", &self.path))?;
        }
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        footer.extend_from_slice(&self.meta.records.to_be_bytes());
        footer.extend_from_slice(&self.meta.distinct.to_be_bytes());
        footer.extend_from_slice(MAGIC);
        mac.update(&footer);
        footer.extend_from_slice(mac.finalize().as_bytes());
        self.out
            .write_all(&footer)
            .map_err(io("writing index run", &self.path))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| io("writing index run", &self.path)(e.into_error()))?;
        file.sync_all()
            .map_err(io("syncing index run", &self.path))?;
        Ok(self.meta)
    }
}

/// An open run.
#[derive(Debug)]
pub struct Run {
    file: File,
    path: PathBuf,
    block_key: [u8; 32],
    meta: RunMeta,
    fence: Vec<u64>,
    cache: BlockCache,
}

impl Run {
    /// Opens the run `meta` names in `dir` and checks its footer; up to
    /// `cached` verified blocks are kept in memory.
    pub fn open(dir: &Path, meta: &RunMeta, key: &[u8; 32], cached: usize) -> Result<Run> {
        let path = dir.join(meta.file_name());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io("opening index run", &path))?;
        let blocks = meta.blocks();
        let fence_len = blocks as usize * 8;
        let expected = blocks * BLOCK_LEN as u64 + (fence_len + FOOTER_LEN) as u64;
        let size = file
            .metadata()
            .map_err(io("reading index run", &path))?
            .len();
        let bad = |why: &str| Error::corrupt(path.display().to_string(), why.to_string());
        if size != expected {
            return Err(bad("index run has the wrong size"));
        }
        let mut tail = vec![0u8; fence_len + FOOTER_LEN];
        file.read_exact_at(&mut tail, blocks * BLOCK_LEN as u64)
            .map_err(io("reading index run", &path))?;
        let (body, mac) = tail.split_at(tail.len() - 32);
        let mut h = footer_hasher(key, &meta.name);
        h.update(body);
        if h.finalize().as_bytes() != mac {
            return Err(bad("index run footer fails its MAC"));
        }
        let footer = &body[fence_len..];
        let number = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&footer[at..at + 8]);
            u64::from_be_bytes(b)
        };
        if number(0) != meta.records || number(8) != meta.distinct || &footer[16..24] != MAGIC {
            return Err(bad("index run does not match its manifest"));
        }
        let fence = body[..fence_len]
            .chunks_exact(8)
            .map(record::prefix)
            .collect();
        Ok(Run {
            file,
            path,
            block_key: block_key(key, &meta.name),
            meta: meta.clone(),
            fence,
            cache: BlockCache::new(cached),
        })
    }

    /// What the manifest says about this run.
    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    /// Records in block `b`.
    fn records_in(&self, b: u64) -> usize {
        let before = b * PER_BLOCK as u64;
        (self.meta.records - before).min(PER_BLOCK as u64) as usize
    }

    fn check_block(&self, b: u64, block: &[u8]) -> Result<()> {
        let body = &block[..BLOCK_LEN - MAC_LEN];
        if block_mac(&self.block_key, body)[..] != block[BLOCK_LEN - MAC_LEN..]
            || body[NUMBER_AT..] != b.to_be_bytes()
        {
            // The next open rebuilds the cache from the store.
            let _ = std::fs::remove_file(self.path.with_file_name("manifest"));
            return Err(Error::corrupt(
                self.path.display().to_string(),
                format!(
                    "index cache block {b} fails its MAC; the cache is rebuilt at the next open"
                ),
            ));
        }
        Ok(())
    }

    /// Appends the slots of every copy of `id` in this run to `out`.
    pub fn lookup(&self, id: &BlobId, out: &mut Vec<Slot>) -> Result<()> {
        let key = id.as_bytes();
        let k = record::prefix(key);
        let blocks = self.fence.len() as u64;
        let mut b = first_not_below(&self.fence, k).saturating_sub(1) as u64;
        while b < blocks {
            let records = self.records_in(b) * RECORD_LEN;
            let search = |block: &[u8]| search_block(&block[..records], key, out);
            let found = match self.cache.with(b, search) {
                Some(found) => found,
                None => {
                    let block = self.read_block(b)?;
                    let found = search_block(&block[..records], key, out);
                    self.cache.insert(b, block);
                    found
                }
            };
            if found == Search::Done {
                return Ok(());
            }
            b += 1;
            if self.fence.get(b as usize).is_none_or(|f| *f > k) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Block `b`, read from the file and verified.
    fn read_block(&self, b: u64) -> Result<Box<[u8]>> {
        let mut block = vec![0u8; BLOCK_LEN];
        self.file
            .read_exact_at(&mut block, b * BLOCK_LEN as u64)
            .map_err(io("reading index run", &self.path))?;
        self.check_block(b, &block)?;
        Ok(block.into())
    }

    /// Every record, in order, each block checked.
    pub fn scan(&self) -> RunScan<'_> {
        RunScan {
            run: self,
            next_block: 0,
            buf: Vec::new(),
            buf_first: 0,
            at: 0,
        }
    }
}

/// Whether a block's search settled the lookup, or copies of the id may
/// go on in the next block.
#[derive(Debug, PartialEq, Eq)]
enum Search {
    Done,
    MayContinue,
}

/// Appends the records of `key` in one block's `records` to `out`.
fn search_block(records: &[u8], key: &[u8; ID_LEN], out: &mut Vec<Slot>) -> Search {
    let id_at = |i: usize| &records[i * RECORD_LEN..i * RECORD_LEN + ID_LEN];
    // Binary search for the first record not below the id.
    let (mut lo, mut hi) = (0, records.len() / RECORD_LEN);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if id_at(mid) < &key[..] {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for r in records[lo * RECORD_LEN..].chunks_exact(RECORD_LEN) {
        if r[..ID_LEN] != key[..] {
            return Search::Done;
        }
        out.push(record::decode(r));
    }
    Search::MayContinue
}

/// The first position in `fence` (sorted) whose value is not below `k`:
/// `fence.partition_point(|f| *f < k)`, found from where a uniform key
/// should be (ids are keyed hashes) by galloping, so a search of a
/// hundred-million-blob fence touches a few cache lines, not twenty.
fn first_not_below(fence: &[u64], k: u64) -> usize {
    let len = fence.len();
    if len == 0 {
        return 0;
    }
    let guess = ((u128::from(k) * len as u128) >> 64) as usize;
    let (mut lo, mut hi);
    if fence[guess] < k {
        // The answer is above guess: gallop up.
        let mut step = 1;
        lo = guess + 1;
        loop {
            hi = guess.saturating_add(step).min(len);
            if hi == len || fence[hi] >= k {
                break;
            }
            lo = hi + 1;
            step *= 2;
        }
    } else {
        // The answer is guess or below: gallop down.
        let mut step = 1;
        hi = guess;
        loop {
            lo = guess.saturating_sub(step);
            if lo == 0 || fence[lo] < k {
                break;
            }
            hi = lo;
            step *= 2;
        }
    }
    lo + fence[lo..hi].partition_point(|f| *f < k)
}

/// A sequential read of a run.
#[derive(Debug)]
pub struct RunScan<'a> {
    run: &'a Run,
    next_block: u64,
    buf: Vec<u8>,
    buf_first: u64,
    /// Next record in `buf`, counted from `buf_first`'s first record.
    at: usize,
}

impl RunScan<'_> {
    fn fill(&mut self) -> Result<bool> {
        let blocks = self.run.fence.len() as u64;
        if self.next_block >= blocks {
            return Ok(false);
        }
        let n = (blocks - self.next_block).min(SCAN_BLOCKS as u64) as usize;
        self.buf.resize(n * BLOCK_LEN, 0);
        self.run
            .file
            .read_exact_at(&mut self.buf, self.next_block * BLOCK_LEN as u64)
            .map_err(io("reading index run", &self.run.path))?;
        for (i, block) in self.buf.chunks_exact(BLOCK_LEN).enumerate() {
            self.run.check_block(self.next_block + i as u64, block)?;
        }
        self.buf_first = self.next_block;
        self.next_block += n as u64;
        self.at = 0;
        Ok(true)
    }
}

impl Iterator for RunScan<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            let block = self.at / PER_BLOCK;
            let in_block = self.at % PER_BLOCK;
            let loaded = self.buf.len() / BLOCK_LEN;
            if block < loaded && in_block < self.run.records_in(self.buf_first + block as u64) {
                let start = block * BLOCK_LEN + in_block * RECORD_LEN;
                let mut r = [0u8; RECORD_LEN];
                r.copy_from_slice(&self.buf[start..start + RECORD_LEN]);
                self.at += 1;
                return Some(Ok(r));
            }
            if block < loaded {
                return None; // the short last block is done
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.next_block = u64::MAX; // no more after an error
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Merges sorted record streams into one sorted stream (copies of a blob
/// stay side by side).
#[derive(Debug)]
pub struct Merge<I> {
    inputs: Vec<I>,
    heap: BinaryHeap<Reverse<(Record, usize)>>,
}

impl<I: Iterator<Item = Result<Record>>> Merge<I> {
    /// A merge of `inputs` (their first records are read now).
    pub fn new(inputs: Vec<I>) -> Result<Merge<I>> {
        let mut merge = Merge {
            heap: BinaryHeap::with_capacity(inputs.len()),
            inputs,
        };
        for i in 0..merge.inputs.len() {
            merge.refill(i)?;
        }
        Ok(merge)
    }

    fn refill(&mut self, i: usize) -> Result<()> {
        if let Some(r) = self.inputs[i].next() {
            self.heap.push(Reverse((r?, i)));
        }
        Ok(())
    }
}

impl<I: Iterator<Item = Result<Record>>> Iterator for Merge<I> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        let Reverse((r, i)) = self.heap.pop()?;
        if let Err(e) = self.refill(i) {
            self.heap.clear(); // nothing after an error
            return Some(Err(e));
        }
        Some(Ok(r))
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
