//! The first pass of a restore: walk the snapshot's trees, count what will
//! be written, and find what already exists in the target, so that a
//! refused restore writes nothing. Existing directories are looked at
//! through their fds (never following a symlink); a directory that does
//! not exist yet holds nothing to conflict with and is not looked into.
//! When a restore can spool (a remote store with a usable cache) it also
//! counts what will be read of each pack, for the
//! [`PackSpool`](crate::pack_spool::PackSpool).

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::dirfd::DirFd;
use crate::error::Result;
use crate::fsmeta::kind_of;
use crate::id::PackId;
use crate::pack_spool::Wanted;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind};

/// What a restore will write, and what is in its way.
#[derive(Default)]
pub(super) struct Plan {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub bytes: u64,
    /// Existing entries the restore would replace (only without `force`).
    pub conflicts: Vec<PathBuf>,
    /// What file contents need of each pack (when counted).
    pub wanted: HashMap<PackId, Wanted>,
}

/// Builds a [`Plan`]; with `force`, nothing counts as a conflict.
pub(super) struct Planner<'a> {
    pub repo: &'a Repository,
    pub force: bool,
    /// Count what each pack is read for ([`Plan::wanted`]).
    pub count_packs: bool,
}

impl Planner<'_> {
    /// The contents of the directory `node`, restored into `dir` (shown as
    /// `at`), which exists when `dir` is `Some`.
    pub fn dir(&self, node: &Node, dir: Option<&DirFd>, at: &Path, plan: &mut Plan) -> Result<()> {
        plan.dirs += 1;
        let Some(sub) = node.subtree else {
            return Ok(());
        };
        let tree = self.repo.load_tree(&sub)?;
        for child in &tree.entries {
            self.entry(child, dir, at, plan)?;
        }
        Ok(())
    }

    /// The entry `node`, restored into `parent` (shown as `at`).
    pub fn entry(
        &self,
        node: &Node,
        parent: Option<&DirFd>,
        at: &Path,
        plan: &mut Plan,
    ) -> Result<()> {
        let name = &node.name[..];
        let existing = parent.and_then(|p| p.lstat(name).ok().map(|st| kind_of(st.st_mode)));
        let path = || at.join(std::ffi::OsStr::from_bytes(name));
        if node.kind == NodeKind::Dir {
            if existing.is_some_and(|k| k != NodeKind::Dir) && !self.force {
                plan.dirs += 1;
                plan.conflicts.push(path());
                return Ok(());
            }
            let sub = match (parent, existing) {
                (Some(p), Some(NodeKind::Dir)) => p.open_dir(name).ok(),
                _ => None,
            };
            return self.dir(node, sub.as_ref(), &path(), plan);
        }
        match node.kind {
            NodeKind::File => {
                plan.files += 1;
                plan.bytes += node.size;
                if self.count_packs {
                    Wanted::count_chunks(&mut plan.wanted, &self.repo.index(), &node.content)?;
                }
            }
            _ => plan.others += 1,
        }
        if existing.is_some() && !self.force {
            plan.conflicts.push(path());
        }
        Ok(())
    }
}
