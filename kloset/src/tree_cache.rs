//! A local cache of whole tree packs, for stores that are not on local disk.
//!
//! Writers put tree blobs and data blobs in separate packs, so every tree
//! of a snapshot lives in a few small packs. Walking a snapshot on S3 (an
//! unchanged re-backup reads the parent's tree of every directory, a
//! restore or `ls` reads them too) would otherwise cost one ranged request
//! per directory; with this cache it costs one request per tree pack, once
//! per host, and nothing when this host wrote the pack (the writer puts what
//! it uploads here).
//!
//! The cache is disposable and untrusted: every blob read from it is opened
//! and verified like a blob read from the store (AEAD bound to its kind and
//! id, then its keyed hash), and one that fails is dropped and fetched
//! again. So a damaged, truncated or planted file costs a request, never a
//! wrong tree. Where it lives ([`cache_root`]): `KLOSET_CACHE_DIR`, else
//! `/var/cache/kloset` for root (the CLI and the daemon share it), else
//! `$XDG_CACHE_HOME/kloset` or `~/.cache/kloset`; `KLOSET_CACHE_DIR=off`
//! turns it off. It is made 0700 and used only when it is a real directory
//! owned by this user. Each store has its own subdirectory, bounded by
//! `KLOSET_CACHE_MAX` (bytes, default 1 GiB): the oldest packs go first.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::id::{PackId, StoreId};
use crate::index::BlobLocation;

/// Never follow a link or block on a FIFO when opening a cached pack.
fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}

/// Default bound of one store's cache.
const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// The cache of one store's tree packs.
#[derive(Debug)]
pub struct TreeCache {
    root: PathBuf,
    dir: PathBuf,
    /// Whether the directory was made (or found) private to this user:
    /// checked once, at first use, so an unused cache makes no directory.
    usable: OnceLock<bool>,
    max_bytes: u64,
    /// Bytes in the directory, once counted (lazily, at the first insert).
    used: Mutex<Option<u64>>,
}

/// The directory that holds every store's cache, from the environment.
/// `None` when caching is off or no directory can be named.
pub fn cache_root() -> Option<PathBuf> {
    match std::env::var_os("KLOSET_CACHE_DIR") {
        Some(v) if v.is_empty() || v == "off" => None,
        Some(v) => Some(PathBuf::from(v)),
        None if rustix::process::geteuid().is_root() => Some(PathBuf::from("/var/cache/kloset")),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache"))
            })
            .map(|d| d.join("kloset")),
    }
}

/// Makes `dir` (0700, with its parents) under `root` and checks that
/// it, its parent and `root` are real directories owned by this user and
/// closed to others. If not, the `what` cache stays off (logged once).
pub(crate) fn private_dir(root: &Path, dir: &Path, what: &str) -> bool {
    let made = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    if let Err(e) = made {
        tracing::debug!(dir = %dir.display(), error = %e, "{what} off: cannot create its directory");
        return false;
    }
    let me = rustix::process::geteuid().as_raw();
    let store_dir = dir.parent().unwrap_or(root);
    [root, store_dir, dir].into_iter().all(|d| {
        let private = fs::symlink_metadata(d)
            .is_ok_and(|m| m.is_dir() && m.uid() == me && m.mode() & 0o022 == 0);
        if !private {
            tracing::warn!(dir = %d.display(), "{what} off: not a directory owned by this user and closed to others");
        }
        private
    })
}

impl TreeCache {
    /// The cache of `store` under `root`. Nothing is made on disk until
    /// the first read or write.
    pub fn open(root: &Path, store: StoreId) -> TreeCache {
        let max_bytes = std::env::var("KLOSET_CACHE_MAX")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_BYTES);
        TreeCache {
            root: root.to_path_buf(),
            dir: root.join(store.to_hex()).join("trees"),
            usable: OnceLock::new(),
            max_bytes,
            used: Mutex::new(None),
        }
    }

    /// The directory that holds every store's cache.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes the directory (0700) and checks that it, its parent and the
    /// root are real directories owned by this user and closed to others;
    /// if not, the cache stays off and every tree read goes to the store.
    fn usable(&self) -> bool {
        *self
            .usable
            .get_or_init(|| private_dir(&self.root, &self.dir, "tree cache"))
    }

    /// Where this store's packs are cached.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, pack: &PackId) -> PathBuf {
        self.dir.join(pack.to_hex())
    }

    /// The sealed bytes of a blob, if its pack is cached (unverified: the
    /// caller opens them, and calls [`TreeCache::forget`] if that fails).
    pub fn get(&self, loc: &BlobLocation) -> Option<Vec<u8>> {
        if !self.usable() {
            return None;
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags())
            .open(self.path(&loc.pack))
            .ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        let mut buf = vec![0; loc.length as usize];
        file.read_exact_at(&mut buf, u64::from(loc.offset)).ok()?;
        Some(buf)
    }

    /// Drops a cached pack (damaged, or no longer in the store).
    pub fn forget(&self, pack: &PackId) {
        if let Ok(m) = fs::metadata(self.path(pack)) {
            self.account(-(m.len() as i64), None);
        }
        let _ = fs::remove_file(self.path(pack));
    }

    /// Keeps a whole pack (best effort: a cache that cannot be written
    /// only costs requests). Written to a temporary name of its own (two
    /// threads, or the CLI and the daemon, may cache the same pack at once)
    /// and renamed, so a reader never sees a partial file under the pack's
    /// name.
    pub fn put(&self, pack: &PackId, bytes: &[u8]) {
        if !self.usable() {
            return;
        }
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", pack.to_hex(), rand::random::<u64>()));
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(bytes))
            .and_then(|()| fs::rename(&tmp, self.path(pack)));
        match written {
            Ok(()) => self.account(bytes.len() as i64, Some(&self.path(pack))),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                tracing::debug!(pack = %pack.short(), error = %e, "could not cache a tree pack");
            }
        }
    }

    /// Adds `delta` bytes to the running total, evicting the oldest packs
    /// (never `keep`, the one just added: file times are coarse) when it
    /// passes the bound.
    fn account(&self, delta: i64, keep: Option<&Path>) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let total = used.get_or_insert_with(|| self.entries().iter().map(|e| e.1).sum());
        *total = total.saturating_add_signed(delta);
        if *total > self.max_bytes {
            let mut entries = self.entries();
            entries.sort_by_key(|e| e.2);
            let target = self.max_bytes / 4 * 3;
            for (path, len, _) in entries {
                if *total <= target {
                    break;
                }
                if Some(path.as_path()) == keep {
                    continue;
                }
                if fs::remove_file(&path).is_ok() {
                    *total = total.saturating_sub(len);
                }
            }
        }
    }

    /// Every cached pack: path, size and modification time.
    fn entries(&self) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
        let Ok(read) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        read.filter_map(|e| {
            let e = e.ok()?;
            let m = e.metadata().ok()?;
            let modified = m.modified().ok()?;
            m.is_file().then(|| (e.path(), m.len(), modified))
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobKind;

    fn loc(pack: PackId, offset: u32, length: u32) -> BlobLocation {
        BlobLocation {
            pack,
            kind: BlobKind::Tree,
            offset,
            length,
            raw_length: 0,
            tree_pack: true,
        }
    }

    #[test]
    fn keeps_packs_and_stays_within_its_bound() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = StoreId::random();
        let mut cache = TreeCache::open(root.path(), store);
        assert!(!cache.dir().exists(), "made at first use");
        cache.put(&PackId::random(), b"x");
        let mode = fs::metadata(cache.dir()).expect("dir").mode();
        assert_eq!(mode & 0o777, 0o700);
        cache.max_bytes = 1000;
        let first = PackId::random();
        cache.put(&first, &[7; 400]);
        assert_eq!(cache.get(&loc(first, 10, 5)), Some(vec![7; 5]));
        assert_eq!(cache.get(&loc(first, 398, 5)), None, "past the end");
        assert_eq!(cache.get(&loc(PackId::random(), 0, 1)), None);
        let second = PackId::random();
        cache.put(&second, &[8; 400]);
        let third = PackId::random();
        cache.put(&third, &[9; 400]);
        let total: u64 = cache.entries().iter().map(|e| e.1).sum();
        assert!(total <= 1000, "evicted down to the bound, {total} left");
        assert!(cache.get(&loc(third, 0, 1)).is_some(), "the newest stays");
        cache.forget(&third);
        assert_eq!(cache.get(&loc(third, 0, 1)), None);
    }

    #[test]
    fn refuses_a_directory_others_can_write() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(
            root.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        let cache = TreeCache::open(root.path(), StoreId::random());
        let pack = PackId::random();
        cache.put(&pack, b"x");
        assert_eq!(cache.get(&loc(pack, 0, 1)), None, "off");
    }
}
