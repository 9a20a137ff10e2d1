//! Root backs up and restores files that a hostile local user controls.
//!
//! The tests run as root; the attacker is a process of an unprivileged user
//! (uid 65534, started with `setpriv`) that swaps entries in a tight loop:
//! files for symlinks to a root-only file and for FIFOs, directories for
//! symlinks to `/` or to a root-only directory, and, during restores,
//! restored entries for symlinks pointing outside the target. Nothing
//! outside the source may be stored, nothing outside the target may be
//! created, chmodded or chowned, and no command may hang.
//!
//! They need root. Set `KLOSET_SKIP_ROOT_TESTS=1` to skip them elsewhere.

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::cli::{Kloset, Output};
use common::store::StoreFixture;

/// The unprivileged attacker.
const NOBODY: u32 = 65534;
/// No backup or restore may take longer than this (a FIFO would hang it).
const TIMEOUT: Duration = Duration::from_secs(180);

/// Swaps entries of the source while root backs it up.
const BACKUP_ATTACKER: &str = r#"
import os, sys, time
src, secret_file, secret_dir, stop = sys.argv[1:5]
deadline = time.time() + 900
names = ["f%d" % i for i in range(40)]
d, real = os.path.join(src, "dir"), os.path.join(src, "dir.real")
n = 0
while not os.path.exists(stop) and time.time() < deadline:
    for name in names:
        p = os.path.join(src, name)
        t = os.path.join(src, ".swap")
        try:
            kind = (n + len(name)) % 3
            if kind == 0:
                with open(t, "wb") as f:
                    f.write(b"user data " + name.encode())
            elif kind == 1:
                os.symlink(secret_file, t)
            else:
                os.mkfifo(t)
            os.replace(t, p)
        except OSError:
            try:
                os.unlink(t)
            except OSError:
                pass
    try:
        if n % 2 == 0:
            os.rename(d, real)
            os.symlink("/" if n % 4 == 0 else secret_dir, d)
        else:
            os.unlink(d)
            os.rename(real, d)
    except OSError:
        pass
    n += 1
"#;

/// Replaces restored entries with symlinks pointing outside the target.
const RESTORE_ATTACKER: &str = r#"
import os, sys, time
target, outside, stop = sys.argv[1:4]
deadline = time.time() + 900
n = 0
while not os.path.exists(stop) and time.time() < deadline:
    for k in range(6):
        d = os.path.join(target, "d%d" % k)
        for j in range(6):
            p = os.path.join(d, "f%d" % j)
            t = os.path.join(d, ".swap")
            aim = [os.path.join(outside, "sentinel"), outside,
                   os.path.join(outside, "created-by-restore")][(n + j) % 3]
            try:
                os.symlink(aim, t)
                os.replace(t, p)
            except OSError:
                try:
                    os.unlink(t)
                except OSError:
                    pass
        if (n + k) % 5 == 0:
            try:
                os.rename(d, d + ".moved%d" % n)
                os.symlink(outside, d)
            except OSError:
                pass
    n += 1
"#;

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether to run; panics when not root unless skipping was asked for.
fn runs_as_root() -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("KLOSET_SKIP_ROOT_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("KLOSET_SKIP_ROOT_TESTS=1: skipping a test that needs root");
        return false;
    }
    panic!("this test needs root (or KLOSET_SKIP_ROOT_TESTS=1 to skip it)");
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).expect("chown");
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A temporary directory that the unprivileged user can reach.
fn world_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("kloset-hostile-")
        .tempdir_in("/tmp")
        .expect("tmp");
    chmod(d.path(), 0o755);
    d
}

/// Runs a Python script as the unprivileged user until `stop` exists.
struct Attacker {
    child: Child,
    stop: PathBuf,
}

impl Attacker {
    fn start(dir: &Path, script: &str, args: &[&Path]) -> Attacker {
        let path = dir.join("attacker.py");
        std::fs::write(&path, script).expect("write script");
        chmod(&path, 0o644);
        let stop = dir.join("stop-attacker");
        let child = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
            ])
            .arg(&path)
            .args(args)
            .arg(&stop)
            .spawn()
            .expect("start the attacker with setpriv and /usr/bin/python3");
        Attacker { child, stop }
    }

    fn stop(mut self) {
        std::fs::write(&self.stop, b"").expect("stop file");
        let _ = self.child.wait();
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every regular file under `dir` (links not followed), with its content.
fn files_under(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("lstat");
        if meta.is_dir() {
            files_under(&path, out);
        } else if meta.is_file() {
            out.push((path.clone(), std::fs::read(&path).expect("read")));
        }
    }
}

fn backup_code(out: &Output) -> i32 {
    let code = out.code.unwrap_or(-1);
    assert!(
        code == 0 || code == 3,
        "a backup may succeed or report unreadable entries, nothing else: {}",
        out.describe()
    );
    code
}

#[test]
fn backups_never_store_what_a_swapped_symlink_points_to_and_never_hang() {
    if !runs_as_root() {
        return;
    }
    let tmp = world_dir();
    let marker = format!("TOP-SECRET-{:016x}", rand_u64());
    let root_only = tmp.path().join("root-only");
    std::fs::create_dir(&root_only).expect("mkdir");
    chmod(&root_only, 0o700);
    let secret = root_only.join("shadow");
    std::fs::write(&secret, &marker).expect("write secret");
    chmod(&secret, 0o600);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("dir")).expect("mkdir");
    for name in ["a", "b"] {
        std::fs::write(src.join("dir").join(name), b"user file").expect("write");
    }
    for i in 0..40 {
        std::fs::write(src.join(format!("f{i}")), b"user data").expect("write");
    }
    for path in [src.clone(), src.join("dir")] {
        chown(&path, NOBODY);
    }
    for entry in std::fs::read_dir(&src)
        .expect("ls")
        .chain(std::fs::read_dir(src.join("dir")).expect("ls"))
    {
        chown(&entry.expect("entry").path(), NOBODY);
    }
    let store = StoreFixture::local(&tmp.path().join("store"));
    let kloset = Kloset::new().timeout(TIMEOUT);
    store.must(&["create", "--kdf-memory-mib", "8"]);

    let attacker = Attacker::start(tmp.path(), BACKUP_ATTACKER, &[&src, &secret, &root_only]);
    let mut codes = Vec::new();
    let mut changed = 0;
    for _ in 0..12 {
        let out = kloset.run(["at", &store.location, "backup", src.to_str().expect("utf8")]);
        codes.push(backup_code(&out));
        changed += out.stderr_str().matches("changed during backup").count();
    }
    attacker.stop();
    assert!(
        codes.contains(&3) && changed > 0,
        "entries swapped during 12 backups are reported as changed, exit 3: codes {codes:?}"
    );

    // Every snapshot, restored: only the source's names, none holding the secret.
    let ls = store.must(&["ls"]);
    let ids: Vec<&str> = ls
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids.len(), 12, "one snapshot per backup: {ls}");
    for id in ids {
        let out = tmp.path().join(format!("restored-{id}"));
        store.must(&["restore", "-to", out.to_str().expect("utf8"), id]);
        let mut files = Vec::new();
        files_under(&out, &mut files);
        for (path, content) in &files {
            assert!(
                !content
                    .windows(marker.len())
                    .any(|w| w == marker.as_bytes()),
                "snapshot {id} holds the root-only file at {}",
                path.display()
            );
            let rel = path
                .strip_prefix(&out)
                .expect("under")
                .to_string_lossy()
                .into_owned();
            let top = rel.split('/').next().unwrap_or_default();
            assert!(
                top.starts_with('f') || top == "dir" || top == "dir.real" || top == ".swap",
                "snapshot {id} holds {rel}, which is not in the source"
            );
            assert!(
                rel.matches('/').count() <= 1,
                "snapshot {id} holds {rel}: a swapped directory was descended"
            );
        }
    }
}

#[test]
fn a_single_file_is_a_source_read_through_the_same_safe_open() {
    if !runs_as_root() {
        return;
    }
    let tmp = world_dir();
    let store = StoreFixture::local(&tmp.path().join("store"));
    store.must(&["create", "--kdf-memory-mib", "8"]);
    let dump = tmp.path().join("db.dump");
    std::fs::write(&dump, b"the dump").expect("write");
    store.must(&["backup", dump.to_str().expect("utf8")]);
    assert_eq!(store.must(&["cat", "latest:/db.dump"]), "the dump");
    let out = tmp.path().join("out");
    store.must(&["restore", "-to", out.to_str().expect("utf8"), "latest"]);
    let names: Vec<_> = std::fs::read_dir(&out)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["db.dump"], "only the one file is in the snapshot");
    assert_eq!(
        std::fs::read(out.join("db.dump")).expect("read"),
        b"the dump"
    );

    // `cat` reads the store, never the live file: swap it for a symlink to
    // a root-only file and for other content.
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, b"root only").expect("write");
    std::fs::remove_file(&dump).expect("rm");
    std::os::unix::fs::symlink(&secret, &dump).expect("link");
    assert_eq!(store.must(&["cat", "latest:/db.dump"]), "the dump");
    // A source named as a FIFO is refused at once, not read.
    let fifo = tmp.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let out = Kloset::new().timeout(TIMEOUT).run([
        "at",
        &store.location,
        "backup",
        fifo.to_str().expect("utf8"),
    ]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
}

/// Name, mode, owner, mtime and content of one entry.
type Entry = (String, u32, u32, i64, Vec<u8>);

/// The metadata that must not change outside the target.
fn state_of(dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let meta = std::fs::symlink_metadata(dir).expect("lstat");
    out.push((
        ".".into(),
        meta.mode(),
        meta.uid(),
        meta.mtime(),
        Vec::new(),
    ));
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let meta = std::fs::symlink_metadata(&path).expect("lstat");
        let content = if meta.is_file() {
            std::fs::read(&path).expect("read")
        } else {
            Vec::new()
        };
        out.push((
            path.file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
            meta.mode(),
            meta.uid(),
            meta.mtime(),
            content,
        ));
    }
    out
}

/// A snapshot of `d0..d5/f0..f5`, owned by the attacker, so that once
/// restored the attacker can change everything inside the target.
fn attacker_owned_snapshot(tmp: &Path, store: &StoreFixture) {
    let src = tmp.join("rsrc");
    for k in 0..6 {
        let d = src.join(format!("d{k}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        for j in 0..6 {
            let f = d.join(format!("f{j}"));
            std::fs::write(&f, format!("restored {k}/{j}")).expect("write");
            chmod(&f, 0o644);
            chown(&f, NOBODY);
        }
        chmod(&d, 0o755);
        chown(&d, NOBODY);
    }
    store.must(&["backup", src.to_str().expect("utf8")]);
}

/// `outside`: root's, with a 0600 sentinel that a followed chmod or chown
/// would change.
fn outside_dir(tmp: &Path) -> PathBuf {
    let outside = tmp.join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("sentinel"), b"sentinel").expect("write");
    chmod(&outside.join("sentinel"), 0o600);
    let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    filetime::set_file_mtime(outside.join("sentinel"), old).expect("mtime");
    filetime::set_file_mtime(&outside, old).expect("mtime");
    outside
}

/// A store with [`attacker_owned_snapshot`], `outside` and its state.
fn restore_fixture() -> (tempfile::TempDir, StoreFixture, PathBuf, Vec<Entry>) {
    let tmp = world_dir();
    let store = StoreFixture::local(&tmp.path().join("store"));
    store.must(&["create", "--kdf-memory-mib", "8"]);
    attacker_owned_snapshot(tmp.path(), &store);
    let outside = outside_dir(tmp.path());
    let before = state_of(&outside);
    (tmp, store, outside, before)
}

#[test]
fn restores_into_a_directory_the_user_writes_never_touch_anything_outside() {
    if !runs_as_root() {
        return;
    }
    let (tmp, store, outside, before) = restore_fixture();
    let user = tmp.path().join("user");
    std::fs::create_dir(&user).expect("mkdir");
    chown(&user, NOBODY);
    let target = user.join("t");
    let target_s = target.to_str().expect("utf8").to_owned();
    store.must(&["restore", "-to", &target_s, "latest"]);
    chown(&target, NOBODY);

    let attacker = Attacker::start(tmp.path(), RESTORE_ATTACKER, &[&target, &outside]);
    let kloset = Kloset::new().timeout(TIMEOUT);
    let mut outcomes = Vec::new();
    for _ in 0..12 {
        let out = kloset.run([
            "at",
            &store.location,
            "restore",
            "--force",
            "-to",
            &target_s,
            "latest",
        ]);
        assert!(
            matches!(out.code, Some(0 | 1 | 3)) && !out.stderr_str().contains("panicked"),
            "{}",
            out.describe()
        );
        outcomes.push(out.code);
    }
    attacker.stop();
    assert_eq!(
        state_of(&outside),
        before,
        "nothing outside the target was created, chmodded, chowned or written ({outcomes:?})"
    );

    // Once the attacker stops, a forced restore repairs the target.
    store.must(&["restore", "--force", "-to", &target_s, "latest"]);
    for k in 0..6 {
        for j in 0..6 {
            let f = target.join(format!("d{k}/f{j}"));
            let meta = std::fs::symlink_metadata(&f).expect("lstat");
            assert!(meta.is_file(), "{} is a file again", f.display());
            assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o644, NOBODY));
            assert_eq!(
                std::fs::read(&f).expect("read"),
                format!("restored {k}/{j}").as_bytes()
            );
        }
    }
    assert_eq!(state_of(&outside), before);
}

#[test]
fn symlinks_planted_in_the_target_are_refused_or_replaced_never_followed() {
    if !runs_as_root() {
        return;
    }
    let (tmp, store, outside, before) = restore_fixture();
    let target = tmp.path().join("planted");
    std::fs::create_dir_all(target.join("d1")).expect("mkdir");
    std::os::unix::fs::symlink(&outside, target.join("d0")).expect("link");
    std::os::unix::fs::symlink(outside.join("sentinel"), target.join("d1/f0")).expect("link");
    std::os::unix::fs::symlink(outside.join("new"), target.join("d1/f1")).expect("link");
    let target_s = target.to_str().expect("utf8");

    let refused = store.run(&["restore", "-to", target_s, "latest"]);
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(
        refused.stderr_str().contains("--force"),
        "{}",
        refused.describe()
    );
    assert_eq!(
        state_of(&outside),
        before,
        "a refused restore touches nothing"
    );
    assert!(
        std::fs::symlink_metadata(target.join("d2")).is_err(),
        "and writes nothing"
    );

    store.must(&["restore", "--force", "-to", target_s, "latest"]);
    assert_eq!(
        state_of(&outside),
        before,
        "links were replaced, not followed"
    );
    assert!(
        std::fs::symlink_metadata(target.join("d0"))
            .expect("lstat")
            .is_dir()
    );
    assert!(
        std::fs::symlink_metadata(target.join("d1/f0"))
            .expect("lstat")
            .is_file()
    );
    assert_eq!(
        std::fs::read(target.join("d1/f1")).expect("read"),
        b"restored 1/1"
    );
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("urandom");
    u64::from_le_bytes(b)
}
