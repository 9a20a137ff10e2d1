//! A size-limited tmpfs that a test mounts (as root) to fill a disk: a
//! store's, a restore target's or the state directory's. Unmounted on drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A size-limited tmpfs, unmounted on drop.
pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    pub fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).expect("mountpoint");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes `filler` until the disk is full.
    pub fn fill(&self, filler: &Path) {
        let mut f = std::fs::File::create(filler).expect("filler");
        let block = vec![0x5Au8; 64 * 1024];
        loop {
            if let Err(e) = f.write_all(&block) {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                break;
            }
        }
        // Whatever the last partial write left: fill to the last byte.
        let one = [0u8; 1];
        while f.write_all(&one).is_ok() {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

impl SmallDisk {
    /// Gives the filesystem `size` (`"200m"`): space freed.
    pub fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()
            .expect("remount");
        assert!(
            out.status.success(),
            "remount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Whether the tests run as root; a test that needs root panics without it
/// unless `KLOSET_SKIP_ROOT_TESTS` is set (then it returns `false` and the
/// test skips).
pub fn root_or_skip(what: &str) -> bool {
    let root =
        std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if !root {
        if std::env::var_os("KLOSET_SKIP_ROOT_TESTS").is_some() {
            eprintln!("skipped: {what} needs root");
            return false;
        }
        panic!("{what} needs root (or KLOSET_SKIP_ROOT_TESTS=1 to skip it)");
    }
    true
}
