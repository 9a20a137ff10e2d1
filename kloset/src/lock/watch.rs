//! Watching other holders' locks from a prune: who is there, who is gone,
//! and who is stale.
//!
//! A holder is stale only when its newest lock object has stayed the same
//! for the whole stale period *as seen by this process*, on its own
//! boot-time clock. The time written inside lock objects comes from other
//! hosts' clocks and is never used for this. Taking a stale holder over
//! deletes its objects and then lists again: an object of that holder that
//! appears meanwhile means it refreshed in time and is alive after all (it
//! will not see its old object and will count itself lost, FORMAT.md §16).
//!
//! An object under a lock id's name that cannot be read is watched as a
//! holder of its own ([`HolderKey::Unreadable`]): it may be a live
//! holder's lock damaged in storage, whose holder the prune cannot name.
//! Its holder's next refresh writes a readable object and then deletes the
//! damaged one, so a wait that included it also waits for every holder that
//! appeared while it was there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::{HolderKey, LockInfo, LockKind, LockTiming, boot_clock, scan_locks};
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::id::{HolderId, LockId};
use crate::storage::{Key, Storage};

/// What is known about one holder.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Its newest lock object and what it says.
    pub newest: LockId,
    /// The newest object's content (`None`: unreadable).
    pub info: Option<LockInfo>,
    /// Every object of this holder in the last listing.
    pub objects: Vec<LockId>,
    /// Boot-clock reading when `newest` was first seen.
    pub since: Duration,
}

impl Seen {
    /// "backup on host pid N (since …)", or what is known of an unreadable
    /// object.
    pub fn describe(&self) -> String {
        match &self.info {
            Some(info) => info.describe(),
            None => format!(
                "an unreadable lock object locks/{} (a holder's lock damaged in storage, or an object that is no lock of this store; `kloset check` names it)",
                self.newest.short()
            ),
        }
    }
}

/// A prune's view of the other holders.
pub struct LockWatch {
    storage: Storage,
    keys: Arc<Keys>,
    timing: LockTiming,
    own: Option<HolderId>,
    seen: BTreeMap<HolderKey, Seen>,
    taken_over: Vec<String>,
}

impl std::fmt::Debug for LockWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockWatch")
            .field("holders", &self.seen.len())
            .finish_non_exhaustive()
    }
}

/// Whether `a` is a newer object of its holder than `b`.
fn newer(a: &LockInfo, b: &LockInfo) -> bool {
    (a.seq, a.refreshed_ns) > (b.seq, b.refreshed_ns)
}

impl LockWatch {
    /// Watches every holder but `own`.
    pub fn new(
        storage: &Storage,
        keys: &Arc<Keys>,
        timing: LockTiming,
        own: Option<HolderId>,
    ) -> LockWatch {
        LockWatch {
            storage: storage.clone(),
            keys: keys.clone(),
            timing,
            own,
            seen: BTreeMap::new(),
            taken_over: Vec::new(),
        }
    }

    /// Lists the locks and updates what is known; returns the holders
    /// present now.
    pub fn poll(&mut self) -> Result<BTreeSet<HolderKey>> {
        let now = boot_clock();
        let mut current: BTreeMap<HolderKey, (LockId, Option<LockInfo>, Vec<LockId>)> =
            BTreeMap::new();
        let scan = scan_locks(&self.storage, &self.keys)?;
        for (path, _) in &scan.foreign {
            let name = path.rsplit('/').next().unwrap_or_default();
            if let Ok(id) = LockId::from_hex(name) {
                current.insert(HolderKey::Unreadable(id), (id, None, vec![id]));
            }
        }
        for l in scan.locks {
            if self.own.is_some() && l.info.holder == self.own {
                continue;
            }
            let key = l.info.holder_key();
            match current.get_mut(&key) {
                None => {
                    current.insert(key, (l.id, Some(l.info), vec![l.id]));
                }
                Some(entry) => {
                    entry.2.push(l.id);
                    if entry.1.as_ref().is_none_or(|old| newer(&l.info, old)) {
                        entry.0 = l.id;
                        entry.1 = Some(l.info);
                    }
                }
            }
        }
        let mut next = BTreeMap::new();
        for (key, (newest, info, objects)) in current {
            let since = match self.seen.get(&key) {
                Some(old) if old.newest == newest => old.since,
                _ => now,
            };
            next.insert(
                key,
                Seen {
                    newest,
                    info,
                    objects,
                    since,
                },
            );
        }
        self.seen = next;
        Ok(self.seen.keys().cloned().collect())
    }

    /// What is known about a holder present at the last poll.
    pub fn get(&self, key: &HolderKey) -> Option<&Seen> {
        self.seen.get(key)
    }

    /// Holders present at the last poll, with what is known of them.
    pub fn holders(&self) -> impl Iterator<Item = (&HolderKey, &Seen)> {
        self.seen.iter()
    }

    /// Whether a holder's newest object stayed unchanged for the stale
    /// period since this watch first saw it.
    pub fn is_stale(&self, key: &HolderKey) -> bool {
        self.seen
            .get(key)
            .is_some_and(|s| boot_clock().saturating_sub(s.since) >= self.timing.stale_after)
    }

    /// How long a holder's newest object has been seen unchanged.
    pub fn unchanged_for(&self, key: &HolderKey) -> Duration {
        self.seen
            .get(key)
            .map(|s| boot_clock().saturating_sub(s.since))
            .unwrap_or_default()
    }

    /// Takes a stale holder over: deletes its objects, then lists again.
    /// Returns whether it is gone (`false`: it refreshed meanwhile).
    pub fn take_over(&mut self, key: &HolderKey) -> Result<bool> {
        let Some(seen) = self.seen.get(key).cloned() else {
            return Ok(true);
        };
        for id in &seen.objects {
            self.storage.delete(&Key::Lock(*id).path())?;
        }
        let present = self.poll()?;
        let gone = !present.contains(key);
        if gone {
            self.taken_over.push(format!(
                "{} (unchanged for {}s)",
                seen.describe(),
                self.timing.stale_after.as_secs()
            ));
        }
        Ok(gone)
    }

    /// Holders this watch took over, described.
    pub fn taken_over(&self) -> &[String] {
        &self.taken_over
    }

    /// How often to look again while waiting.
    pub fn poll_every(&self) -> Duration {
        (self.timing.refresh_every / 5).clamp(Duration::from_millis(20), Duration::from_secs(10))
    }

    /// Waits until none of `holders` is present: each is released by its
    /// holder or taken over once stale. While an unreadable object among
    /// them is there (and at the first poll after it went), every holder
    /// that appears is waited for too: it may be the damaged object's
    /// holder, refreshed. Gives up after `max_wait` with a `Locked` error
    /// naming who is still there. `tick` is called between polls
    /// (progress, cancellation); its error stops the wait.
    pub fn wait_gone(
        &mut self,
        holders: &BTreeSet<HolderKey>,
        max_wait: Duration,
        mut tick: impl FnMut(&[String]) -> Result<()>,
    ) -> Result<()> {
        let start = boot_clock();
        let mut holders = holders.clone();
        let known: BTreeSet<HolderKey> = self.seen.keys().cloned().collect();
        // The caller's last poll showed `holders`.
        let mut unreadable_before = holders
            .iter()
            .any(|k| matches!(k, HolderKey::Unreadable(_)));
        loop {
            let present = self.poll()?;
            if unreadable_before {
                holders.extend(present.difference(&known).cloned());
            }
            unreadable_before = holders
                .intersection(&present)
                .any(|k| matches!(k, HolderKey::Unreadable(_)));
            let mut waiting: Vec<HolderKey> = holders.intersection(&present).cloned().collect();
            let stale: Vec<HolderKey> = waiting
                .iter()
                .filter(|k| self.is_stale(k))
                .cloned()
                .collect();
            for key in stale {
                if self.take_over(&key)? {
                    waiting.retain(|k| *k != key);
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            let described: Vec<String> = waiting
                .iter()
                .filter_map(|k| self.seen.get(k))
                .map(Seen::describe)
                .collect();
            if boot_clock().saturating_sub(start) >= max_wait {
                return Err(Error::Locked {
                    location: self.storage.location().to_string(),
                    holder: format!(
                        "{} that did not finish within {}s: {}",
                        if described.len() == 1 {
                            "a holder"
                        } else {
                            "holders"
                        },
                        max_wait.as_secs(),
                        described.join("; ")
                    ),
                });
            }
            tick(&described)?;
            std::thread::sleep(self.poll_every());
        }
    }

    /// Other prune holders present at the last poll (version 1 exclusive
    /// locks count as prunes, and so do unreadable objects, which may be a
    /// prune's lock damaged in storage).
    pub fn prunes(&self) -> BTreeSet<HolderKey> {
        self.seen
            .iter()
            .filter(|(_, s)| {
                s.info
                    .as_ref()
                    .is_none_or(|i| matches!(i.kind, LockKind::Prune | LockKind::Exclusive))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }
}
