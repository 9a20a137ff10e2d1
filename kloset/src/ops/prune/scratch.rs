//! A prune's scratch directory, for the sorted tables that keep its
//! memory independent of the store's size: private (0700, owned by this
//! user), under the store's cache directory, or under the system's
//! temporary directory when there is no usable cache. The directory itself
//! is locked with `flock` while in use and removed when the prune ends;
//! one left by a prune that died (even part-way through removing it) is
//! removed by the next prune of the same store.

use std::fs::{self, File, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::id::StoreId;
use crate::tree_cache::{cache_root, private_dir};

/// A scratch directory, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    // Dropped in this order: the directory is removed while still locked.
    dir: TempDir,
    /// The directory, open and locked.
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
        // A random name that did not exist, made 0700.
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .map_err(|source| Error::Io {
                op: "creating a scratch directory in",
                path: parent.to_path_buf(),
                source,
            })?;
        let lock = open_dir(dir.path())?;
        lock.lock().map_err(|source| Error::Io {
            op: "locking",
            path: dir.path().to_path_buf(),
            source,
        })?;
        Ok(Scratch { dir, _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Opens a directory, never through a symlink.
fn open_dir(path: &Path) -> Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(path)
        .map_err(|source| Error::Io {
            op: "opening",
            path: path.to_path_buf(),
            source,
        })
}

/// Removes the scratch directories under `parent` that no process holds
/// (a prune that died). A prune that has made its directory and not yet
/// locked it (a few system calls) could lose it here: it then fails with
/// an error before it deletes anything.
fn remove_left_overs(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(lock) = open_dir(&dir) else {
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
        // One that died while its directory was being removed.
        let half = parent.path().join("run-half");
        fs::create_dir(&half).expect("mkdir");
        fs::write(half.join("run-1"), b"left").expect("write");
        remove_left_overs(parent.path());
        assert!(live.path().is_dir(), "a prune holding its lock keeps it");
        assert!(!dead_path.exists(), "a dead prune's directory is removed");
        assert!(!half.exists(), "so is one half removed");
        let mode = fs::metadata(live.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "private: {mode:o}");
        let live_path = live.path().to_path_buf();
        drop(live);
        assert!(!live_path.exists(), "removed when the prune ends");
    }
}
