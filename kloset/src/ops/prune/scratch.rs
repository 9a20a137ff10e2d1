//! A prune's scratch directory, for the sorted tables that keep its
//! memory independent of the store's size: private (0700, owned by this
//! user), under the store's cache directory, or under the system's
//! temporary directory when there is no usable cache. It is locked with
//! `flock` while in use and removed when the prune ends; one left by a
//! prune that died is removed by the next prune of the same store.

use std::fs::{self, File};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::id::StoreId;
use crate::tree_cache::{cache_root, private_dir};

const LOCK: &str = "lock";

/// A scratch directory, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    // Dropped in this order: the lock goes with the directory.
    dir: TempDir,
    _lock: File,
}

impl Scratch {
    /// A new scratch directory for a prune of `store`.
    pub fn create(store: StoreId) -> Result<Scratch> {
        if let Some(root) = cache_root() {
            let parent = root.join(store.to_hex()).join("prune");
            if private_dir(&root, &parent, "prune scratch directory") {
                remove_left_overs(&parent);
                return Scratch::in_dir(&parent, "run-");
            }
        }
        Scratch::in_dir(&std::env::temp_dir(), "kloset-prune-")
    }

    fn in_dir(parent: &Path, prefix: &str) -> Result<Scratch> {
        // `tempfile` makes the directory 0700 under a random name, and
        // fails rather than reuse one that exists.
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(|source| Error::Io {
                op: "creating a scratch directory in",
                path: parent.to_path_buf(),
                source,
            })?;
        let lock = open_lock(&dir.path().join(LOCK), true)?;
        lock.lock().map_err(|source| Error::Io {
            op: "locking",
            path: dir.path().join(LOCK),
            source,
        })?;
        Ok(Scratch { dir, _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn open_lock(path: &Path, create: bool) -> Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| Error::Io {
            op: "opening",
            path: path.to_path_buf(),
            source,
        })
}

/// Removes the scratch directories under `parent` that no process holds
/// (a prune that died). One without a lock file yet is left alone: its
/// prune may be starting.
fn remove_left_overs(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let dir: PathBuf = entry.path();
        let Ok(lock) = open_lock(&dir.join(LOCK), false) else {
            continue;
        };
        if lock.try_lock().is_ok() {
            tracing::info!(dir = %dir.display(), "removing the scratch directory of a prune that ended early");
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_scratch_directory_stays_and_a_dead_ones_goes() {
        let parent = tempfile::tempdir().expect("dir");
        let live = Scratch::in_dir(parent.path(), "run-").expect("live");
        let dead = Scratch::in_dir(parent.path(), "run-").expect("dead");
        let dead_path = dead.path().to_path_buf();
        // A prune killed with SIGKILL leaves its directory but not its
        // lock: forget the handle without removing anything.
        let Scratch { dir, _lock } = dead;
        drop(_lock);
        let kept = dir.keep();
        assert_eq!(kept, dead_path);
        remove_left_overs(parent.path());
        assert!(live.path().is_dir(), "a prune holding its lock keeps it");
        assert!(!dead_path.exists(), "a dead prune's directory is removed");
        let live_path = live.path().to_path_buf();
        drop(live);
        assert!(!live_path.exists(), "removed when the prune ends");
    }
}
