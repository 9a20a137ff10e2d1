//! Deterministic "tricky" file trees for backup/restore tests, and tree comparison.
//!
//! [`build_tricky_tree`] writes the same bytes, names, modes, mtimes and
//! symlink targets on every run (no randomness from the clock or the OS), so
//! two trees built in different places compare equal with
//! [`assert_trees_equal`] (which ignores the roots' own metadata).

mod compare;

pub use compare::{assert_trees_equal, tree_differences};

use super::rng::SplitMix64;
use filetime::FileTime;
use std::fs::{self, File, Permissions};
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

const MIB: usize = 1024 * 1024;

/// A file whose name has non-ASCII characters (relative to the tree root).
pub const UNICODE_FILE: &str = "unicode/Ünïcödé ✓ 日本語.txt";
/// A file whose name contains spaces.
pub const SPACES_FILE: &str = "names/with several spaces.txt";
/// A file whose name contains a newline.
pub const NEWLINE_FILE: &str = "names/line\nbreak.txt";
/// An empty file.
pub const EMPTY_FILE: &str = "empty/empty-file";
/// An empty directory.
pub const EMPTY_DIR: &str = "empty/empty-dir";
/// A 64 MiB sparse file with data only at 0, 10 MiB and the last bytes.
pub const SPARSE_FILE: &str = "sparse/sparse-64MiB.bin";
/// Logical size of [`SPARSE_FILE`].
pub const SPARSE_LEN: u64 = 64 * MIB as u64;
/// About 24 MiB of incompressible bytes.
pub const RANDOM_FILE: &str = "data/random-24MiB.bin";
/// 32 MiB of repeated text.
pub const COMPRESSIBLE_FILE: &str = "data/compressible-32MiB.txt";
/// Three files with the same 5 MiB of random content, in different directories.
pub const DUP_FILES: [&str; 3] = [
    "dup/a/copy.bin",
    "dup/b/c/copy.bin",
    "dup/other/same-content.bin",
];
/// The [`DUP_FILES`] content with 4 KiB inserted after its first 3 MiB.
pub const VARIANT_FILE: &str = "dup/variant/prefix-shared.bin";
/// A file with mode 0755.
pub const EXEC_FILE: &str = "modes/exec-0755.sh";
/// A relative symlink to [`UNICODE_FILE`].
pub const REL_LINK: &str = "links/relative-to-file";
/// An absolute symlink (to `/etc/passwd`).
pub const ABS_LINK: &str = "links/absolute";
/// A symlink whose target does not exist.
pub const DANGLING_LINK: &str = "links/dangling";
/// A symlink to a directory.
pub const DIR_LINK: &str = "links/to-dir";
/// The directory holding the many small files (in `d000`…`d099`).
pub const SMALL_FILES_DIR: &str = "many";
/// A file with an mtime before 1970.
pub const PRE_EPOCH_FILE: &str = "times/pre-epoch.txt";
/// A file with an mtime after 2038.
pub const POST_2038_FILE: &str = "times/after-2038.txt";

/// Directories the small files are spread over.
pub const SMALL_FILE_DIRS: usize = 100;

/// What a tree holds (the root itself excluded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Regular files.
    pub files: usize,
    /// Directories.
    pub dirs: usize,
    /// Symbolic links.
    pub symlinks: usize,
    /// Sum of the regular files' logical sizes.
    pub bytes: u64,
}

/// Builds the tricky tree inside `root` (created if missing, expected empty).
///
/// Contents: unicode names, names with spaces and a newline, empty files and
/// directories, deep nesting, relative/absolute/dangling/directory symlinks,
/// modes 0600/0755/0444 and a 0700 directory, explicit mtimes with
/// nanoseconds on every entry (including symlinks and directories, one before
/// 1970 and one after 2038), a 64 MiB sparse file, `small_files` files of
/// 0–2 KiB spread over [`SMALL_FILE_DIRS`] directories, ~24 MiB of random
/// bytes, 32 MiB of repeated text, and duplicated content. Every file gets an
/// explicit mode, so the umask does not matter.
pub fn build_tricky_tree(root: &Path, small_files: usize) -> TreeStats {
    fs::create_dir_all(root).expect("create tree root");
    let mut rng = SplitMix64::new(0x6B6C_6F73_6574);

    // Names.
    write(root, UNICODE_FILE, "unicode name\n".as_bytes());
    write(
        root,
        "unicode/日本語ディレクトリ/ファイル.txt",
        "日本語\n".as_bytes(),
    );
    write(root, "unicode/emoji 🦀 crab.txt", b"crab\n");
    write(root, "unicode/NFD cafe\u{301}.txt", b"decomposed e-acute\n");
    write(root, SPACES_FILE, b"spaces\n");
    write(root, NEWLINE_FILE, b"newline in name\n");
    write(
        root,
        "names/ leading and trailing space ",
        b"spaces around\n",
    );
    write(root, "names/-starts-with-dash", b"dash\n");
    write(root, "names/.hidden", b"hidden\n");
    write(
        root,
        "names/back\\slash \"quotes\" 'single' $dollar *star? [b]",
        b"x\n",
    );
    write(root, "names/tab\there", b"tab\n");
    write(
        root,
        &format!("names/{}", "long".repeat(60)),
        b"long name\n",
    );

    // Empty things and nesting.
    write(root, EMPTY_FILE, b"");
    fs::create_dir_all(root.join(EMPTY_DIR)).expect("create empty dir");
    fs::create_dir_all(root.join("empty/nested/empty/dirs")).expect("create empty dirs");
    write(root, "nested/a/b/c/d/e/f/g/h/i/j/deep.txt", b"deep\n");
    write(root, "nested/a/sibling.txt", b"sibling\n");

    // Symlinks.
    let links = root.join("links");
    fs::create_dir_all(&links).expect("create links dir");
    symlink("../unicode/Ünïcödé ✓ 日本語.txt", root.join(REL_LINK)).expect("relative symlink");
    symlink("/etc/passwd", root.join(ABS_LINK)).expect("absolute symlink");
    symlink("../does/not/exist", root.join(DANGLING_LINK)).expect("dangling symlink");
    symlink("../nested/a", root.join(DIR_LINK)).expect("directory symlink");
    symlink("to-dir/sibling.txt", links.join("chained")).expect("chained symlink");

    // Modes (applied in `finish`).
    write(root, "modes/private-0600.txt", b"private\n");
    write(root, EXEC_FILE, b"#!/bin/sh\necho hello\n");
    write(root, "modes/readonly-0444.txt", b"read only\n");
    write(root, "modes/private-dir-0700/inside.txt", b"inside\n");

    // Times (applied in `finish`).
    write(root, PRE_EPOCH_FILE, b"1969\n");
    write(root, POST_2038_FILE, b"2100\n");

    write_sparse(root);
    write_small_files(root, small_files, &mut rng);
    write_large_files(root, &mut rng);
    write_duplicates(root, &mut rng);

    finish(root);
    tree_stats(root)
}

/// Adds names that are not valid UTF-8 (Linux allows any bytes but `/` and
/// NUL) under `non-utf8/`. Opt-in: call after [`build_tricky_tree`].
pub fn add_non_utf8_names(root: &Path) {
    use std::ffi::OsStr;
    let dir = root.join("non-utf8");
    let sub = dir.join(OsStr::from_bytes(b"dir-\xff\xfe"));
    fs::create_dir_all(&sub).expect("create non-utf8 dir");
    fs::write(
        dir.join(OsStr::from_bytes(b"latin1-caf\xe9.txt")),
        b"latin1\n",
    )
    .expect("write non-utf8 file");
    fs::write(sub.join(OsStr::from_bytes(b"\x80\x81.bin")), b"bytes\n")
        .expect("write non-utf8 file");
    symlink(
        OsStr::from_bytes(b"latin1-caf\xe9.txt"),
        dir.join("link-to-latin1"),
    )
    .expect("non-utf8 symlink target");
    finish(root);
}

/// Bytes actually allocated on disk for `path` (to check that sparseness survived).
pub fn allocated_bytes(path: &Path) -> u64 {
    fs::symlink_metadata(path)
        .expect("lstat for allocated bytes")
        .blocks()
        * 512
}

/// Counts what `root` holds (without following symlinks; the root excluded).
pub fn tree_stats(root: &Path) -> TreeStats {
    let mut stats = TreeStats::default();
    for rel in walk(root) {
        let md = fs::symlink_metadata(root.join(&rel)).expect("lstat during stats");
        let ft = md.file_type();
        if ft.is_dir() {
            stats.dirs += 1;
        } else if ft.is_symlink() {
            stats.symlinks += 1;
        } else if ft.is_file() {
            stats.files += 1;
            stats.bytes += md.len();
        }
    }
    stats
}

/// Every entry below `root`, relative, sorted by bytes, without following symlinks.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in fs::read_dir(&dir).expect("read_dir during walk") {
            let entry = entry.expect("dir entry during walk");
            let child = rel.join(entry.file_name());
            if entry.file_type().expect("file type during walk").is_dir() {
                stack.push(child.clone());
            }
            out.push(child);
        }
    }
    out.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    out
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent dir");
    }
    fs::write(&path, content).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

fn create(root: &Path, rel: &str) -> File {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent dir");
    }
    File::create(&path).unwrap_or_else(|e| panic!("create {path:?}: {e}"))
}

fn write_sparse(root: &Path) {
    let f = create(root, SPARSE_FILE);
    f.set_len(SPARSE_LEN).expect("extend sparse file");
    f.write_all_at(b"BEGIN", 0).expect("write sparse start");
    f.write_all_at(b"MIDDLE", 10 * MIB as u64)
        .expect("write sparse middle");
    f.write_all_at(b"END", SPARSE_LEN - 3)
        .expect("write sparse end");
}

fn write_small_files(root: &Path, count: usize, rng: &mut SplitMix64) {
    let base = root.join(SMALL_FILES_DIR);
    for d in 0..SMALL_FILE_DIRS {
        fs::create_dir_all(base.join(format!("d{d:03}"))).expect("create small-file dir");
    }
    let mut buf = vec![0u8; 2048];
    for i in 0..count {
        let len = usize::try_from(rng.below_or_eq(2048)).expect("small length fits usize");
        rng.fill(&mut buf[..len]);
        let path = base.join(format!("d{:03}/f{i:06}.bin", i % SMALL_FILE_DIRS));
        fs::write(&path, &buf[..len]).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
    }
}

fn write_large_files(root: &Path, rng: &mut SplitMix64) {
    // Not a multiple of any chunk size: 24 MiB + 12,345 bytes.
    let mut w = BufWriter::new(create(root, RANDOM_FILE));
    let mut chunk = vec![0u8; MIB];
    for _ in 0..24 {
        rng.fill(&mut chunk);
        w.write_all(&chunk).expect("write random file");
    }
    rng.fill(&mut chunk[..12_345]);
    w.write_all(&chunk[..12_345])
        .expect("write random file tail");
    w.flush().expect("flush random file");

    let mut w = BufWriter::new(create(root, COMPRESSIBLE_FILE));
    let mut written = 0usize;
    let mut line_no = 0u64;
    while written < 32 * MIB {
        let line = format!(
            "kloset compressible line {:06}: the quick brown fox jumps over the lazy dog\n",
            line_no % 1000
        );
        let n = line.len().min(32 * MIB - written);
        w.write_all(&line.as_bytes()[..n])
            .expect("write compressible file");
        written += n;
        line_no += 1;
    }
    w.flush().expect("flush compressible file");
}

fn write_duplicates(root: &Path, rng: &mut SplitMix64) {
    let content = rng.bytes(5 * MIB);
    for rel in DUP_FILES {
        write(root, rel, &content);
    }
    let mut variant = Vec::with_capacity(content.len() + 4096);
    variant.extend_from_slice(&content[..3 * MIB]);
    variant.extend_from_slice(&rng.bytes(4096));
    variant.extend_from_slice(&content[3 * MIB..]);
    write(root, VARIANT_FILE, &variant);
}

/// Mode for a path relative to the root (directories and files alike).
fn mode_for(rel: &Path, is_dir: bool) -> u32 {
    let name = rel.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    match name {
        b"private-0600.txt" => 0o600,
        b"exec-0755.sh" => 0o755,
        b"readonly-0444.txt" => 0o444,
        b"private-dir-0700" => 0o700,
        _ if is_dir => 0o755,
        _ => 0o644,
    }
}

/// Deterministic mtime for the `index`-th entry in sorted order.
fn mtime_for(rel: &Path, index: usize) -> FileTime {
    if rel == Path::new(PRE_EPOCH_FILE) {
        return FileTime::from_unix_time(-86_400 * 365 + 17, 500);
    }
    if rel == Path::new(POST_2038_FILE) {
        return FileTime::from_unix_time(4_102_444_800 + 42, 999_999_999);
    }
    let i = u64::try_from(index).expect("index fits u64");
    let secs = 1_600_000_000 + i64::try_from(i * 86_413 % 100_000_000).expect("fits i64");
    let nanos = u32::try_from((i * 123_456_789 + 987_654_321) % 1_000_000_000).expect("fits u32");
    FileTime::from_unix_time(secs, nanos)
}

/// Applies modes and then mtimes to every entry below `root`. Setting them
/// last means no later creation touches a directory's mtime again.
fn finish(root: &Path) {
    let entries = walk(root);
    for rel in &entries {
        let path = root.join(rel);
        let md = fs::symlink_metadata(&path).expect("lstat in finish");
        if !md.file_type().is_symlink() {
            let mode = mode_for(rel, md.is_dir());
            fs::set_permissions(&path, Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {path:?}: {e}"));
        }
    }
    for (index, rel) in entries.iter().enumerate() {
        let path = root.join(rel);
        let t = mtime_for(rel, index);
        filetime::set_symlink_file_times(&path, t, t)
            .unwrap_or_else(|e| panic!("set times of {path:?}: {e}"));
    }
}

/// Writes `count` files of `size` random (incompressible) bytes into `dir`,
/// named `r<seed>-<i>.bin`: the same bytes for the same seed.
pub fn write_random_files(dir: &Path, seed: u64, count: usize, size: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut rng = super::rng::SplitMix64::new(seed);
    for i in 0..count {
        std::fs::write(dir.join(format!("r{seed}-{i}.bin")), rng.bytes(size)).expect("write");
    }
}
