//! Restore-test verification: re-reads every restored regular file from
//! disk and compares it, chunk by chunk, with the snapshot: each chunk's
//! length comes from the index and its keyed BLAKE3 id must equal the id the
//! snapshot lists. Nothing is downloaded from the store again.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use kloset::ops::restore::find_node;
use kloset::tree::{Node, NodeKind};
use kloset::{BlobKind, Progress, Repository, Result, Snapshot};

/// What a verification saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Regular files compared.
    pub files: u64,
    /// Bytes compared.
    pub bytes: u64,
    /// Files that differ from the snapshot, with why.
    pub mismatches: Vec<String>,
}

/// Compares what a restore of `path` of `snapshot` wrote into `target`
/// with the snapshot. Engine errors (a tree that cannot be read,
/// cancellation) are returned; differences are listed in `mismatches`.
pub fn verify_restore(
    repo: &Repository,
    snapshot: &Snapshot,
    path: &str,
    target: &Path,
    progress: &Progress,
) -> Result<Verified> {
    let node = find_node(repo, snapshot, path)?;
    let mut out = Verified::default();
    if node.kind == NodeKind::Dir {
        verify_dir(repo, &node, target, "", progress, &mut out)?;
    } else {
        let name = node.name_lossy();
        verify_entry(
            repo,
            &node,
            &target.join(OsStr::from_bytes(&node.name)),
            &name,
            progress,
            &mut out,
        )?;
    }
    Ok(out)
}

fn verify_dir(
    repo: &Repository,
    node: &Node,
    dir: &Path,
    rel: &str,
    progress: &Progress,
    out: &mut Verified,
) -> Result<()> {
    let Some(sub) = node.subtree else {
        return Ok(());
    };
    for child in repo.load_tree(&sub)?.entries {
        let child_rel = if rel.is_empty() {
            child.name_lossy()
        } else {
            format!("{rel}/{}", child.name_lossy())
        };
        let on_disk = dir.join(OsStr::from_bytes(&child.name));
        verify_entry(repo, &child, &on_disk, &child_rel, progress, out)?;
    }
    Ok(())
}

fn verify_entry(
    repo: &Repository,
    node: &Node,
    on_disk: &Path,
    rel: &str,
    progress: &Progress,
    out: &mut Verified,
) -> Result<()> {
    progress.check_cancelled()?;
    match node.kind {
        NodeKind::Dir => verify_dir(repo, node, on_disk, rel, progress, out),
        NodeKind::File => {
            out.files += 1;
            match compare_file(repo, node, on_disk) {
                Ok(n) => out.bytes += n,
                Err(why) => out.mismatches.push(format!("{rel}: {why}")),
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Bytes compared, or why the file differs.
fn compare_file(repo: &Repository, node: &Node, on_disk: &Path) -> Result<u64, String> {
    let file = File::open(on_disk).map_err(|e| format!("cannot open the restored file: {e}"))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut total = 0u64;
    for (i, id) in node.content.iter().enumerate() {
        let loc = repo
            .index()
            .get(id)
            .map_err(|e| format!("reading the index: {e}"))?
            .ok_or_else(|| format!("chunk {} is not in the index", id.short()))?;
        buf.resize(loc.raw_length as usize, 0);
        reader
            .read_exact(&mut buf)
            .map_err(|e| format!("shorter than the snapshot (chunk {i}: {e})"))?;
        if repo.keys().blob_id(BlobKind::Data, &buf) != *id {
            return Err(format!(
                "content differs from the snapshot at byte {total} (chunk {})",
                id.short()
            ));
        }
        total += buf.len() as u64;
    }
    let mut extra = [0u8; 1];
    match reader.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => return Err(format!("longer than the snapshot ({total} bytes)")),
        Err(e) => return Err(format!("cannot read the restored file: {e}")),
    }
    if total != node.size {
        return Err(format!(
            "snapshot records {} bytes but its chunks hold {total}",
            node.size
        ));
    }
    Ok(total)
}
