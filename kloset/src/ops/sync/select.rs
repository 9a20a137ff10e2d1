//! Which source snapshots a sync copies: the filters, and the identity
//! check that skips snapshots the target already holds a copy of.

use std::collections::HashSet;

use crate::error::Result;
use crate::repository::SnapshotProblem;
use crate::snapshot::{Origin, Snapshot, resolve_minding};

/// Which snapshots to copy. Every filter given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncFilter {
    /// Snapshot specs (`latest` or hex id prefixes); empty = all.
    pub snapshots: Vec<String>,
    /// Source names; empty = any.
    pub sources: Vec<String>,
    /// Tags; a snapshot must carry at least one of them. Empty = any.
    pub tags: Vec<String>,
    /// Only the newest N snapshots (after the other filters) of each
    /// source name.
    pub latest: Option<usize>,
    /// Resolve `snapshots` specs among the readable snapshots even when an
    /// unreadable snapshot object may be the one named (it is then passed
    /// over and reported); by default such a spec fails.
    pub skip_unreadable: bool,
}

/// The snapshots of `all` (sorted by time) that `filter` selects, oldest
/// first, and the unreadable snapshot objects passed over: those a spec of
/// `filter.snapshots` passed over (see [`resolve_minding`]), or, without
/// specs, every one (never copied). With `filter.latest` and no
/// `skip_unreadable`, an unreadable object fails the selection instead.
pub fn select(
    all: &[Snapshot],
    unreadable: Vec<SnapshotProblem>,
    filter: &SyncFilter,
) -> Result<(Vec<Snapshot>, Vec<String>)> {
    let mut passed_over = Vec::new();
    let named: Option<HashSet<_>> = if filter.snapshots.is_empty() {
        // An unreadable object cannot be told apart by source or tag: it
        // is not copied, and it is always reported. Under `latest`, it may
        // be the newest of a source, so the newest N would silently shift
        // to older ones: refused unless asked for.
        let mut names: Vec<String> = unreadable.iter().map(|(o, _)| o.clone()).collect();
        names.sort();
        if let (Some(n), Some((_, first))) = (filter.latest, unreadable.first())
            && !filter.skip_unreadable
        {
            return Err(crate::Error::corrupt(
                names.join(", "),
                format!(
                    "{} snapshot object(s) cannot be read ({first}), and one of them may be \
                     among the newest {n} of a source; nothing was synced",
                    names.len()
                ),
            ));
        }
        passed_over = names;
        None
    } else {
        let mut ids = HashSet::new();
        for spec in &filter.snapshots {
            let (snap, passed) = resolve_minding(
                all,
                unreadable_copy(&unreadable),
                spec,
                filter.skip_unreadable,
            )?;
            passed_over.extend(passed.into_iter().map(|(object, _)| object));
            ids.insert(snap.id);
        }
        Some(ids)
    };
    passed_over.sort();
    passed_over.dedup();
    let mut picked: Vec<Snapshot> = all
        .iter()
        .filter(|s| named.as_ref().is_none_or(|n| n.contains(&s.id)))
        .filter(|s| filter.sources.is_empty() || filter.sources.contains(&s.source))
        .filter(|s| filter.tags.is_empty() || filter.tags.iter().any(|t| s.has_tag(t)))
        .cloned()
        .collect();
    if let Some(n) = filter.latest {
        let mut kept = Vec::new();
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        for s in picked.into_iter().rev() {
            let c = seen.entry(s.source.clone()).or_default();
            if *c < n {
                *c += 1;
                kept.push(s);
            }
        }
        kept.reverse();
        picked = kept;
    }
    Ok((picked, passed_over))
}

/// The problems again, for another spec (errors are not `Clone`).
fn unreadable_copy(unreadable: &[SnapshotProblem]) -> Vec<SnapshotProblem> {
    unreadable
        .iter()
        .map(|(object, e)| (object.clone(), crate::Error::corrupt(object, e.to_string())))
        .collect()
}

/// The identities of the snapshots a store holds: each snapshot's origin,
/// or the snapshot itself when it was not made by sync.
pub fn identities(store: crate::StoreId, snapshots: &[Snapshot]) -> HashSet<Origin> {
    snapshots.iter().map(|s| s.original(store)).collect()
}
