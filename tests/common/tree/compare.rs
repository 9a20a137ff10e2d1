//! Exhaustive comparison of two file trees (names, types, contents, modes, mtimes, symlink targets).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How many differences the panic message of [`assert_trees_equal`] lists.
const MAX_LISTED: usize = 50;
/// Chunk size for streaming content comparison.
const CHUNK: usize = 1024 * 1024;

/// Panics, listing every difference (up to 50, then a count), unless the trees
/// below `expected` and `actual` are identical.
///
/// Compared for every entry, without following symlinks (lstat): the exact
/// name bytes, the type, the permission bits (`mode & 0o7777`), the mtime
/// (seconds and nanoseconds, directories and symlinks included), file
/// contents byte for byte (streamed) and symlink targets. The two roots' own
/// metadata is not compared (a restore target directory may pre-exist);
/// ownership, atime, ctime, hard links and sparseness are not compared.
pub fn assert_trees_equal(expected: &Path, actual: &Path) {
    let diffs = tree_differences(expected, actual);
    if diffs.is_empty() {
        return;
    }
    let mut msg = format!(
        "trees differ: {} difference(s) between expected {expected:?} and actual {actual:?}:\n",
        diffs.len()
    );
    for d in diffs.iter().take(MAX_LISTED) {
        msg.push_str("  - ");
        msg.push_str(d);
        msg.push('\n');
    }
    if diffs.len() > MAX_LISTED {
        msg.push_str(&format!("  … and {} more\n", diffs.len() - MAX_LISTED));
    }
    panic!("{msg}");
}

/// Every difference between the trees below `expected` and `actual`, one
/// human-readable line each (paths relative to the roots, `Debug`-quoted so
/// that newlines and odd bytes are visible). Empty when they are equal.
pub fn tree_differences(expected: &Path, actual: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (label, root) in [("expected", expected), ("actual", actual)] {
        match fs::metadata(root) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => out.push(format!("{label} root {root:?} is not a directory")),
            Err(e) => out.push(format!("{label} root {root:?}: {e}")),
        }
    }
    if out.is_empty() {
        compare_dir(expected, actual, Path::new(""), &mut out);
    }
    out
}

fn names(dir: &Path, rel: &Path, side: &str, out: &mut Vec<String>) -> Option<BTreeSet<OsString>> {
    let iter = match fs::read_dir(dir) {
        Ok(iter) => iter,
        Err(e) => {
            out.push(format!("{}: cannot list {side} directory: {e}", show(rel)));
            return None;
        }
    };
    let mut set = BTreeSet::new();
    for entry in iter {
        match entry {
            Ok(entry) => {
                set.insert(entry.file_name());
            }
            Err(e) => out.push(format!(
                "{}: error listing {side} directory: {e}",
                show(rel)
            )),
        }
    }
    Some(set)
}

fn compare_dir(expected: &Path, actual: &Path, rel: &Path, out: &mut Vec<String>) {
    let (Some(e), Some(a)) = (
        names(expected, rel, "expected", out),
        names(actual, rel, "actual", out),
    ) else {
        return;
    };
    let mut all: Vec<&OsString> = e.union(&a).collect();
    all.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    for name in all {
        let child = rel.join(name);
        match (e.contains(name), a.contains(name)) {
            (true, false) => out.push(format!("{}: missing in actual", show(&child))),
            (false, true) => out.push(format!("{}: unexpected in actual", show(&child))),
            _ => compare_entry(&expected.join(name), &actual.join(name), &child, out),
        }
    }
}

fn kind(md: &Metadata) -> &'static str {
    let ft = md.file_type();
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "file"
    } else {
        "special file"
    }
}

fn compare_entry(expected: &Path, actual: &Path, rel: &Path, out: &mut Vec<String>) {
    let (em, am) = match (fs::symlink_metadata(expected), fs::symlink_metadata(actual)) {
        (Ok(em), Ok(am)) => (em, am),
        (e, a) => {
            for (side, r) in [("expected", e), ("actual", a)] {
                if let Err(err) = r {
                    out.push(format!("{}: cannot lstat {side}: {err}", show(rel)));
                }
            }
            return;
        }
    };
    let (ek, ak) = (kind(&em), kind(&am));
    if ek != ak {
        out.push(format!("{}: type {ek} expected, {ak} found", show(rel)));
        return;
    }
    let (emode, amode) = (em.mode() & 0o7777, am.mode() & 0o7777);
    if emode != amode {
        out.push(format!(
            "{}: mode {emode:04o} expected, {amode:04o} found",
            show(rel)
        ));
    }
    let (et, at) = ((em.mtime(), em.mtime_nsec()), (am.mtime(), am.mtime_nsec()));
    if et != at {
        out.push(format!(
            "{}: {ek} mtime {}.{:09} expected, {}.{:09} found",
            show(rel),
            et.0,
            et.1,
            at.0,
            at.1
        ));
    }
    match ek {
        "symlink" => compare_link(expected, actual, rel, out),
        "directory" => compare_dir(expected, actual, rel, out),
        "file" if em.len() != am.len() => out.push(format!(
            "{}: size {} expected, {} found",
            show(rel),
            em.len(),
            am.len()
        )),
        "file" => compare_content(expected, actual, rel, out),
        _ => {}
    }
}

fn compare_link(expected: &Path, actual: &Path, rel: &Path, out: &mut Vec<String>) {
    match (fs::read_link(expected), fs::read_link(actual)) {
        (Ok(e), Ok(a)) if e.as_os_str().as_bytes() == a.as_os_str().as_bytes() => {}
        (Ok(e), Ok(a)) => out.push(format!(
            "{}: symlink target {e:?} expected, {a:?} found",
            show(rel)
        )),
        (e, a) => out.push(format!(
            "{}: cannot read symlink: expected {e:?}, actual {a:?}",
            show(rel)
        )),
    }
}

/// Reads until `buf` is full or EOF; returns how many bytes were read.
fn fill(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn compare_content(expected: &Path, actual: &Path, rel: &Path, out: &mut Vec<String>) {
    let (mut ef, mut af) = match (File::open(expected), File::open(actual)) {
        (Ok(e), Ok(a)) => (e, a),
        (e, a) => {
            out.push(format!(
                "{}: cannot open: expected {:?}, actual {:?}",
                show(rel),
                e.err(),
                a.err()
            ));
            return;
        }
    };
    let mut eb = vec![0u8; CHUNK];
    let mut ab = vec![0u8; CHUNK];
    let mut offset = 0u64;
    loop {
        let (en, an) = match (fill(&mut ef, &mut eb), fill(&mut af, &mut ab)) {
            (Ok(en), Ok(an)) => (en, an),
            (e, a) => {
                out.push(format!(
                    "{}: read error at {offset}: expected {e:?}, actual {a:?}",
                    show(rel)
                ));
                return;
            }
        };
        let common = en.min(an);
        let first_diff = if eb[..common] == ab[..common] {
            None
        } else {
            (0..common).find(|&i| eb[i] != ab[i])
        };
        if let Some(i) = first_diff {
            out.push(format!(
                "{}: content differs from byte {} (0x{:02x} expected, 0x{:02x} found)",
                show(rel),
                offset + i as u64,
                eb[i],
                ab[i]
            ));
            return;
        }
        if en != an {
            out.push(format!(
                "{}: content length differs after byte {}",
                show(rel),
                offset + common as u64
            ));
            return;
        }
        if en == 0 {
            return;
        }
        offset += en as u64;
    }
}

fn show(rel: &Path) -> String {
    format!("{:?}", PathBuf::from("/").join(rel))
}
