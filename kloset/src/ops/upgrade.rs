//! Upgrading a store to format version 2: the lock protocol that prune
//! needs (FORMAT.md §16). Only the header changes; store id, keys,
//! configuration and every other object stay as they are.
//!
//! Version 1 writers release their lock before they write their snapshot,
//! so a prune beside one could delete what it is about to reference. So
//! the upgrade waits until no version 1 lock holder is left (taking stale
//! ones over as a prune does), rewrites the header, which makes version 1
//! tools refuse the store from then on, and waits again for version 1
//! holders that had opened the store before the header changed.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use crate::error::Result;
use crate::lock::HolderKey;
use crate::lock::watch::LockWatch;
use crate::progress::Progress;
use crate::repository::Repository;

/// What an upgrade did.
#[derive(Clone, Debug, Serialize)]
pub struct UpgradeReport {
    /// The version before.
    pub from: u32,
    /// The version after.
    pub to: u32,
    /// Version 1 lock holders waited for (described).
    pub waited_for: Vec<String>,
}

/// Upgrades the store's header to version 2; a store already there is
/// left alone.
pub fn upgrade(
    repo: &Repository,
    max_wait: Duration,
    progress: &Progress,
) -> Result<UpgradeReport> {
    let from = repo.format_version();
    if repo.header().has_locks_v2() {
        return Ok(UpgradeReport {
            from,
            to: from,
            waited_for: Vec::new(),
        });
    }
    let mut watch = LockWatch::new(repo.storage(), repo.keys(), repo.lock_timing(), None);
    let mut waited_for = Vec::new();
    wait_for_v1(&mut watch, max_wait, progress, &mut waited_for)?;
    let header = repo.write_upgraded_header()?;
    wait_for_v1(&mut watch, max_wait, progress, &mut waited_for)?;
    Ok(UpgradeReport {
        from,
        to: header.version,
        waited_for,
    })
}

fn wait_for_v1(
    watch: &mut LockWatch,
    max_wait: Duration,
    progress: &Progress,
    seen: &mut Vec<String>,
) -> Result<()> {
    watch.poll()?;
    let legacy: BTreeSet<HolderKey> = watch
        .holders()
        // An unreadable object may be a version 1 lock damaged in storage.
        .filter(|(_, s)| s.info.as_ref().is_none_or(|i| i.v < 2))
        .map(|(k, s)| {
            seen.push(s.describe());
            k.clone()
        })
        .collect();
    watch.wait_gone(&legacy, max_wait, |who| {
        progress.check_cancelled()?;
        progress.set_phase(format!(
            "waiting for older kloset writers to finish: {}",
            who.join("; ")
        ));
        Ok(())
    })
}
