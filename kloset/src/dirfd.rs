//! Directory-relative access to the local file system that never follows a
//! symbolic link: the only way backup and restore touch local files.
//!
//! Threat model: klosetd runs as root over directories that other users can
//! write. Such a user may rename, replace or swap any entry at any moment,
//! for example a file for a symlink to `/etc/shadow`, a directory for a
//! symlink to `/`, or a file for a FIFO. Every operation here therefore
//! names exactly one entry (a single safe name, never a path) relative to a
//! directory that is already open, and:
//! - opens with `O_NOFOLLOW` (and `openat2` with `RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` where the kernel has it),
//!   so a swapped-in symlink is an error, never followed;
//! - opens files for reading with `O_NONBLOCK`, so a swapped-in FIFO cannot
//!   block, and callers compare `fstat` of the open fd with what they listed;
//! - changes owner, mode and times through the open fd (`fchown`, `fchmod`,
//!   `futimens`), or with `AT_SYMLINK_NOFOLLOW` for links.
//!
//! Only [`DirFd::open_path`] resolves a whole path, following symlinks in it
//! as the kernel does: it opens the root of a backup or the target of a
//! restore as the administrator named it.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::fs::{
    self as rfs, AtFlags, Dev, FileType, Gid, Mode, OFlags, RenameFlags, ResolveFlags, Stat,
    Timespec, Timestamps, Uid,
};

/// Whether `openat2` works here: 0 unknown, 1 yes, 2 no (old kernel or a
/// seccomp filter that refuses it).
static OPENAT2: AtomicU8 = AtomicU8::new(0);

/// An open directory. Every method acts on one entry of it, by name.
#[derive(Debug)]
pub struct DirFd(OwnedFd);

/// How a file is opened for reading.
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY);

/// How a directory is opened.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl DirFd {
    /// Opens the directory at `path`, following symlinks on the way as the
    /// kernel does (the path comes from the administrator, not from a
    /// directory that users can write).
    pub fn open_path(path: &Path) -> io::Result<DirFd> {
        let fd = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(DirFd(fd))
    }

    /// Opens the directory entry `name`; a symlink (or anything else that is
    /// not a directory) is an error.
    pub fn open_dir(&self, name: &[u8]) -> io::Result<DirFd> {
        Ok(DirFd(self.open_at(name, DIR_FLAGS, Mode::empty())?))
    }

    /// Opens the entry `name` for reading without following a symlink,
    /// without blocking on a FIFO, and without updating its access time
    /// where the caller may (owner or `CAP_FOWNER`).
    pub fn open_read(&self, name: &[u8]) -> io::Result<File> {
        let fd = match self.open_at(name, READ_FLAGS | OFlags::NOATIME, Mode::empty()) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                self.open_at(name, READ_FLAGS, Mode::empty())?
            }
            other => other?,
        };
        Ok(File::from(fd))
    }

    /// Creates the regular file `name`, which must not exist, for writing.
    pub fn create_file(&self, name: &[u8], mode: u32) -> io::Result<File> {
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        Ok(File::from(self.open_at(
            name,
            flags,
            Mode::from_raw_mode(mode),
        )?))
    }

    /// Creates an unnamed regular file in this directory (`O_TMPFILE`), to
    /// be given its name by [`DirFd::link_unnamed`] once it is whole: until
    /// then no other process can open it, and if this one dies it is gone.
    /// `Ok(None)` where the file system has no unnamed files.
    pub fn create_unnamed(&self, mode: u32) -> io::Result<Option<File>> {
        let flags = OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC;
        match rfs::openat(&self.0, c".", flags, Mode::from_raw_mode(mode)) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(rustix::io::Errno::OPNOTSUPP)
            | Err(rustix::io::Errno::ISDIR)
            | Err(rustix::io::Errno::INVAL) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the unnamed `file` (from [`DirFd::create_unnamed`] on this
    /// directory) the name `name`, which must not exist: never replaces
    /// (`AlreadyExists`). `linkat` with `AT_EMPTY_PATH`; older kernels allow
    /// that only with `CAP_DAC_READ_SEARCH` (6.18 also to the credentials
    /// that opened the file), so there, through `/proc/self/fd`.
    pub fn link_unnamed(&self, file: &File, name: &[u8]) -> io::Result<()> {
        match rfs::linkat(file, c"", &self.0, name, AtFlags::EMPTY_PATH) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let by_proc = format!("/proc/self/fd/{}", file.as_raw_fd());
        rfs::linkat(
            rfs::CWD,
            by_proc.as_str(),
            &self.0,
            name,
            AtFlags::SYMLINK_FOLLOW,
        )?;
        Ok(())
    }

    /// Renames the entry `from` to `to`, both in this directory. With
    /// `replace`, whatever is at `to` (not a directory) is replaced in one
    /// step; without, `to` must not exist and is never replaced
    /// (`RENAME_NOREPLACE`, or a hard link then an unlink where the file
    /// system has no such rename, or a check then a rename where it has no
    /// hard links either).
    pub fn rename(&self, from: &[u8], to: &[u8], replace: bool) -> io::Result<()> {
        if replace {
            rfs::renameat(&self.0, from, &self.0, to)?;
            return Ok(());
        }
        match rfs::renameat_with(&self.0, from, &self.0, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {}
            Err(e) => return Err(e.into()),
        }
        // No such rename here: a hard link (which never replaces), then an
        // unlink of the old name.
        match rfs::linkat(&self.0, from, &self.0, to, AtFlags::empty()) {
            Ok(()) => Ok(rfs::unlinkat(&self.0, from, AtFlags::empty())?),
            // No hard links either (FAT, exFAT): look, then rename. Not
            // atomic: an entry that appears in between is replaced, on file
            // systems that cannot say otherwise.
            Err(rustix::io::Errno::PERM) | Err(rustix::io::Errno::OPNOTSUPP) => {
                match self.lstat(to) {
                    Ok(_) => Err(io::ErrorKind::AlreadyExists.into()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        Ok(rfs::renameat(&self.0, from, &self.0, to)?)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the directory `name` (error if anything exists there).
    pub fn mkdir(&self, name: &[u8], mode: u32) -> io::Result<()> {
        rfs::mkdirat(&self.0, name, Mode::from_raw_mode(mode))?;
        Ok(())
    }

    /// Creates the symlink `name` pointing at `target`.
    pub fn symlink(&self, target: &[u8], name: &[u8]) -> io::Result<()> {
        rfs::symlinkat(target, &self.0, name)?;
        Ok(())
    }

    /// Creates the FIFO or device node `name`.
    pub fn mknod(&self, name: &[u8], kind: FileType, mode: u32, dev: u64) -> io::Result<()> {
        rfs::mknodat(&self.0, name, kind, Mode::from_raw_mode(mode), dev as Dev)?;
        Ok(())
    }

    /// Opens the entry `name` as an `O_PATH` handle without following it:
    /// enough to `fstat` it and to change its owner, mode and times through
    /// [`set_owner_path`], [`set_mode_path`] and [`set_times_path`].
    pub fn open_handle(&self, name: &[u8]) -> io::Result<OwnedFd> {
        self.open_at(
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }

    /// The metadata of the entry `name` itself (`lstat`).
    pub fn lstat(&self, name: &[u8]) -> io::Result<Stat> {
        Ok(rfs::statat(&self.0, name, AtFlags::SYMLINK_NOFOLLOW)?)
    }

    /// The target of the symlink `name`.
    pub fn read_link(&self, name: &[u8]) -> io::Result<Vec<u8>> {
        Ok(rfs::readlinkat(&self.0, name, Vec::new())?.into_bytes())
    }

    /// The metadata of this directory.
    pub fn stat(&self) -> io::Result<Stat> {
        Ok(rfs::fstat(&self.0)?)
    }

    /// The names in this directory (without `.` and `..`), in any order.
    pub fn names(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        for entry in rfs::Dir::read_from(&self.0)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        Ok(names)
    }

    /// Removes the entry `name`, whatever it is, without following a
    /// symlink: a directory is emptied through its own fd first.
    pub fn remove(&self, name: &[u8]) -> io::Result<()> {
        match rfs::unlinkat(&self.0, name, AtFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::ISDIR) | Err(rustix::io::Errno::PERM) => {}
            Err(e) => return Err(e.into()),
        }
        let dir = self.open_dir(name)?;
        for child in dir.names()? {
            dir.remove(&child)?;
        }
        rfs::unlinkat(&self.0, name, AtFlags::REMOVEDIR)?;
        Ok(())
    }

    /// Removes the entry `name` if it is not a directory (never recursive).
    pub fn unlink(&self, name: &[u8]) -> io::Result<()> {
        rfs::unlinkat(&self.0, name, AtFlags::empty())?;
        Ok(())
    }

    /// Sets the owner of the entry `name` itself (a link is not followed).
    pub fn set_link_owner(&self, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
        rfs::chownat(
            &self.0,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    /// Sets the access and modification times of the entry `name` itself.
    pub fn set_link_times(&self, name: &[u8], mtime_ns: i64) -> io::Result<()> {
        rfs::utimensat(&self.0, name, &times(mtime_ns), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    /// Writes every change on this directory's file system to stable
    /// storage (`syncfs`).
    pub fn sync_fs(&self) -> io::Result<()> {
        Ok(rfs::syncfs(&self.0)?)
    }

    fn open_at(&self, name: &[u8], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        check_name(name)?;
        if OPENAT2.load(Ordering::Relaxed) != 2 {
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rfs::openat2(&self.0, name, flags, mode, resolve) {
                Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM)
                    if OPENAT2.load(Ordering::Relaxed) == 0 =>
                {
                    // Not available here (old kernel, or refused by a
                    // seccomp filter): `openat` with `O_NOFOLLOW` on a
                    // single name gives the same guarantee.
                    OPENAT2.store(2, Ordering::Relaxed);
                }
                other => {
                    OPENAT2.store(1, Ordering::Relaxed);
                    return Ok(other?);
                }
            }
        }
        Ok(rfs::openat(&self.0, name, flags, mode)?)
    }
}

impl AsFd for DirFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Refuses anything but one plain name: empty, `.`, `..`, or holding `/`
/// or NUL.
fn check_name(name: &[u8]) -> io::Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{:?} is not a single file name",
                OsStr::from_bytes(name).to_string_lossy()
            ),
        ));
    }
    Ok(())
}

/// Access and modification time both `mtime_ns`.
fn times(mtime_ns: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Sets the owner of what `fd` refers to (any fd, `O_PATH` included).
pub fn set_owner_fd(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    rfs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    Ok(())
}

/// Sets the mode of what the open (not `O_PATH`) `fd` refers to.
pub fn set_mode_fd(fd: impl AsFd, mode: u32) -> io::Result<()> {
    rfs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777))?;
    Ok(())
}

/// Sets the times of what the open (not `O_PATH`) `fd` refers to.
pub fn set_times_fd(fd: impl AsFd, mtime_ns: i64) -> io::Result<()> {
    rfs::futimens(fd, &times(mtime_ns))?;
    Ok(())
}

/// Sets the owner of what the `O_PATH` handle refers to.
pub fn set_owner_path(handle: &OwnedFd, uid: u32, gid: u32) -> io::Result<()> {
    rfs::chownat(
        handle,
        "",
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Sets the mode of what the `O_PATH` handle refers to, through its
/// `/proc/self/fd` link (which names exactly that inode, whatever happens
/// to its name meanwhile).
pub fn set_mode_path(handle: &OwnedFd, mode: u32) -> io::Result<()> {
    let link = proc_fd(handle);
    rfs::chmod(link.as_str(), Mode::from_raw_mode(mode & 0o7777))?;
    Ok(())
}

/// Sets the times of what the `O_PATH` handle refers to (see
/// [`set_mode_path`]).
pub fn set_times_path(handle: &OwnedFd, mtime_ns: i64) -> io::Result<()> {
    let link = proc_fd(handle);
    rfs::utimensat(rfs::CWD, link.as_str(), &times(mtime_ns), AtFlags::empty())?;
    Ok(())
}

fn proc_fd(handle: &OwnedFd) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", handle.as_raw_fd())
}

/// Raises this process's soft limit on open files to its hard limit, as
/// a program that walks trees by directory fd should (the walk holds one
/// fd per directory it is in, on every worker thread). Returns the new
/// soft limit; failing to raise it is harmless.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if setrlimit(Resource::Nofile, limit).is_err() {
            return getrlimit(Resource::Nofile).current;
        }
    }
    limit.current
}

/// The metadata of an open file.
pub fn fstat(fd: impl AsFd) -> io::Result<Stat> {
    Ok(rfs::fstat(fd)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn names_with_slashes_or_dots_are_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = DirFd::open_path(d.path()).expect("open");
        for bad in [&b""[..], b".", b"..", b"a/b", b"/etc"] {
            let e = dir.open_read(bad).expect_err("refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn symlinks_are_never_followed() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(d.path().join("secret"), b"root only").expect("write");
        std::fs::create_dir(d.path().join("sub")).expect("mkdir");
        std::os::unix::fs::symlink(d.path().join("secret"), d.path().join("link")).expect("link");
        std::os::unix::fs::symlink(d.path().join("sub"), d.path().join("dirlink")).expect("link");
        let dir = DirFd::open_path(d.path()).expect("open");
        assert!(dir.open_read(b"link").is_err(), "a file link is refused");
        assert!(dir.open_dir(b"dirlink").is_err(), "a dir link is refused");
        assert!(dir.create_file(b"link", 0o600).is_err(), "no write through");
        assert_eq!(
            std::fs::read(d.path().join("secret")).expect("read"),
            b"root only"
        );
        let mut s = String::new();
        dir.open_dir(b"sub").expect("dir");
        std::fs::write(d.path().join("f"), b"abc").expect("write");
        dir.open_read(b"f")
            .expect("file")
            .read_to_string(&mut s)
            .expect("read");
        assert_eq!(s, "abc");
    }

    #[test]
    fn a_fifo_opens_without_blocking() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = DirFd::open_path(d.path()).expect("open");
        dir.mknod(b"fifo", FileType::Fifo, 0o644, 0)
            .expect("mkfifo");
        let f = dir.open_read(b"fifo").expect("opens at once");
        let st = fstat(&f).expect("fstat");
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Fifo);
    }

    #[test]
    fn remove_empties_directories_without_following_links() {
        let d = tempfile::tempdir().expect("tmp");
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("keep"), b"x").expect("write");
        let target = d.path().join("t");
        std::fs::create_dir_all(target.join("a/b")).expect("mkdir");
        std::fs::write(target.join("a/b/f"), b"x").expect("write");
        std::os::unix::fs::symlink(&outside, target.join("a/link")).expect("link");
        let dir = DirFd::open_path(&target).expect("open");
        dir.remove(b"a").expect("remove");
        assert!(!target.join("a").exists());
        assert!(outside.join("keep").exists(), "the link's target is kept");
    }

    #[test]
    fn rename_replaces_only_when_asked_and_never_through_a_link() {
        let d = tempfile::tempdir().expect("tmp");
        let outside = d.path().join("outside");
        std::fs::write(&outside, b"keep").expect("write");
        let target = d.path().join("t");
        std::fs::create_dir(&target).expect("mkdir");
        let dir = DirFd::open_path(&target).expect("open");
        for name in [&b"new"[..], b"old", b"link"] {
            dir.create_file(name, 0o600)
                .expect("create")
                .write_all(name)
                .expect("write");
        }
        let err = dir.rename(b"new", b"old", false).expect_err("old exists");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(target.join("old")).expect("read"), b"old");
        dir.rename(b"new", b"fresh", false).expect("rename");
        assert_eq!(std::fs::read(target.join("fresh")).expect("read"), b"new");
        assert!(!target.join("new").exists());
        std::fs::remove_file(target.join("link")).expect("rm");
        std::os::unix::fs::symlink(&outside, target.join("link")).expect("link");
        dir.rename(b"old", b"link", true).expect("replace");
        assert_eq!(std::fs::read(target.join("link")).expect("read"), b"old");
        assert!(
            !std::fs::symlink_metadata(target.join("link"))
                .expect("stat")
                .is_symlink()
        );
        assert_eq!(std::fs::read(&outside).expect("read"), b"keep");
    }

    #[test]
    fn an_unnamed_file_is_linked_whole_and_never_over_an_existing_name() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = DirFd::open_path(d.path()).expect("open");
        let Some(mut f) = dir.create_unnamed(0o600).expect("O_TMPFILE") else {
            return; // a file system without unnamed files: nothing to try
        };
        f.write_all(b"whole").expect("write");
        assert_eq!(dir.names().expect("names"), Vec::<Vec<u8>>::new());
        std::fs::write(d.path().join("taken"), b"keep").expect("write");
        let err = dir.link_unnamed(&f, b"taken").expect_err("taken");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(
            std::fs::read(d.path().join("taken")).expect("read"),
            b"keep"
        );
        dir.link_unnamed(&f, b"named").expect("link");
        assert_eq!(
            std::fs::read(d.path().join("named")).expect("read"),
            b"whole"
        );
    }

    #[test]
    fn create_and_set_metadata_through_fds() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = DirFd::open_path(d.path()).expect("open");
        let mut f = dir.create_file(b"new", 0o600).expect("create");
        f.write_all(b"hello").expect("write");
        set_mode_fd(&f, 0o640).expect("chmod");
        set_times_fd(&f, 1_500_000_000_123_456_789).expect("times");
        let st = dir.lstat(b"new").expect("stat");
        assert_eq!(st.st_mode & 0o7777, 0o640);
        assert_eq!(st.st_mtime, 1_500_000_000);
        assert!(dir.create_file(b"new", 0o600).is_err(), "exclusive");
        dir.mknod(b"p", FileType::Fifo, 0o600, 0).expect("fifo");
        let h = dir.open_handle(b"p").expect("handle");
        set_mode_path(&h, 0o604).expect("chmod");
        set_times_path(&h, 42_000_000_000).expect("times");
        let st = dir.lstat(b"p").expect("stat");
        assert_eq!((st.st_mode & 0o7777, st.st_mtime), (0o604, 42));
        dir.symlink(b"nowhere", b"l").expect("symlink");
        dir.set_link_times(b"l", 7_000_000_000).expect("times");
        assert_eq!(dir.read_link(b"l").expect("readlink"), b"nowhere");
        assert_eq!(dir.lstat(b"l").expect("stat").st_mtime, 7);
    }
}
