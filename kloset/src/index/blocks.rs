//! Verified blocks of the on-disk index kept in memory: bounded, shared by
//! threads, evicting at random (lookups land on random blocks anyway), so a
//! store whose table fits the bound is searched at memory speed after one
//! read of each block, and a larger one costs one `pread` per miss.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

/// Default bound: `KLOSET_INDEX_CACHE_MEM` bytes (64 MiB: every block of a
/// store of 1.4 million blobs).
pub fn budget_bytes() -> usize {
    std::env::var("KLOSET_INDEX_CACHE_MEM")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(64 << 20)
}

/// Blocks of one run, by number.
#[derive(Debug)]
pub struct BlockCache {
    shards: Vec<Mutex<HashMap<u64, Arc<[u8]>>>>,
    per_shard: usize,
}

impl BlockCache {
    /// A cache of at most about `blocks` blocks (0: none kept).
    pub fn new(blocks: usize) -> BlockCache {
        BlockCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: blocks.div_ceil(SHARDS),
        }
    }

    fn shard(&self, block: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<[u8]>>> {
        let shard = &self.shards[(block % SHARDS as u64) as usize];
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kept block.
    pub fn get(&self, block: u64) -> Option<Arc<[u8]>> {
        if self.per_shard == 0 {
            return None;
        }
        self.shard(block).get(&block).cloned()
    }

    /// Keeps a verified block, evicting another when full.
    pub fn insert(&self, block: u64, bytes: Arc<[u8]>) {
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
            cache.insert(b, Arc::from(vec![b as u8; 4]));
            assert_eq!(cache.get(b).expect("just kept")[0], b as u8);
        }
        let kept = (0..1000u64).filter(|b| cache.get(*b).is_some()).count();
        assert!(kept <= 32, "{kept}");
        let none = BlockCache::new(0);
        none.insert(1, Arc::from(vec![1u8]));
        assert!(none.get(1).is_none());
    }
}
