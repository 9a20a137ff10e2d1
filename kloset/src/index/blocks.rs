//! Verified blocks of the on-disk index kept in memory: bounded, shared by
//! threads, evicting at random (lookups land on random blocks anyway), so a
//! store whose table fits the bound is searched at memory speed after one
//! read of each block, and a larger one costs one `pread` per miss.
//! A lookup searches a kept block under its shard's lock, so a hit costs
//! a lock and a multiply, never a shared reference count.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

const SHARDS: usize = 16;

/// Default bound: `KLOSET_INDEX_CACHE_MEM` bytes (64 MiB: every block of a
/// store of 1.4 million blobs).
pub fn budget_bytes() -> usize {
    std::env::var("KLOSET_INDEX_CACHE_MEM")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(64 << 20)
}

/// Hashes a block number by one multiplication (Fibonacci hashing), which
/// spreads sequential numbers over the high bits the table uses. Block
/// numbers come from the index's own fence, not from an adversary.
#[derive(Default)]
struct BlockHasher(u64);

impl Hasher for BlockHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Shard = HashMap<u64, Box<[u8]>, BuildHasherDefault<BlockHasher>>;

/// Blocks of one run, by number.
#[derive(Debug)]
pub struct BlockCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

impl BlockCache {
    /// A cache of at most about `blocks` blocks (0: none kept).
    pub fn new(blocks: usize) -> BlockCache {
        BlockCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: blocks.div_ceil(SHARDS),
        }
    }

    fn shard(&self, block: u64) -> std::sync::MutexGuard<'_, Shard> {
        let shard = &self.shards[(block % SHARDS as u64) as usize];
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `search` over a kept block, under its shard's lock (keep it short),
    /// or `None` when the block is not kept.
    pub fn with<R>(&self, block: u64, search: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if self.per_shard == 0 {
            return None;
        }
        self.shard(block).get(&block).map(|b| search(b))
    }

    /// Keeps a verified block, evicting another when full.
    pub fn insert(&self, block: u64, bytes: Box<[u8]>) {
        if self.per_shard == 0 {
            return;
        }
        let mut shard = self.shard(block);
        if shard.len() >= self.per_shard
            && let Some(victim) = shard.keys().next().copied()
        {
            shard.remove(&victim);
        }
        shard.insert(block, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_its_bound() {
        let cache = BlockCache::new(32);
        for b in 0..1000u64 {
            cache.insert(b, vec![b as u8; 4].into());
            assert_eq!(cache.with(b, |k| k[0]), Some(b as u8), "just kept");
        }
        let kept = (0..1000u64)
            .filter(|b| cache.with(*b, |_| ()).is_some())
            .count();
        assert!(kept <= 32, "{kept}");
        let none = BlockCache::new(0);
        none.insert(1, vec![1u8].into());
        assert!(none.with(1, |_| ()).is_none());
    }
}
