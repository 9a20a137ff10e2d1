//! Locks: who is using the store right now, so that a prune never deletes
//! what a running backup, restore, check or sync needs.
//!
//! The protocol is written down in `FORMAT.md` §16; in short:
//! - Every writer and reader holds a *shared* lock object (`locks/ID`),
//!   rewritten under a new id every [`LockTiming::refresh_every`] with the
//!   same [`HolderId`], and deleted when it is done. A prune holds a *prune*
//!   lock, which does not block writers or readers; prunes exclude one
//!   another.
//! - Staleness is never judged from the wall clock of another host. A prune
//!   watches a holder's newest lock object; only if it stays unchanged for
//!   [`LockTiming::stale_after`] on the prune's own boot-time clock is the
//!   holder taken over ([`watch`]).
//! - A holder measures on its own boot-time clock how long ago its last
//!   refresh started. Past [`LockTiming::fence`] (well before the stale
//!   period) it counts its lock as lost, and a refresh that finds its
//!   previous object gone (taken over) marks it lost at once ([`held`]).
//!   A lost lock fails the commit.
//!
//! Lock objects that cannot be opened or decoded are ignored, so a damaged
//! lock never blocks anyone.

pub mod held;
pub mod watch;

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::{Keys, ObjectKind};
use crate::error::{ErrorKind, Result};
use crate::id::{HolderId, LockId};
use crate::storage::{Key, LOCKS_DIR, Storage};

pub use held::{HeldLock, LockFence};

/// Version of lock objects written by this library.
pub const LOCK_VERSION: u32 = 2;

/// The environment variable that shortens the stale period (tests).
pub const STALE_AFTER_ENV: &str = "KLOSET_LOCK_STALE_AFTER";

/// How long locks live, derived from one stale period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockTiming {
    /// A holder whose newest lock object stays unchanged this long, as seen
    /// by a prune on its own clock, is taken over.
    pub stale_after: Duration,
    /// How often a holder rewrites its lock (a sixth of the stale period).
    pub refresh_every: Duration,
    /// How long after its last refresh started a holder still trusts its
    /// lock (four fifths of the stale period; the rest absorbs clock-rate
    /// differences between hosts).
    pub fence: Duration,
}

impl LockTiming {
    /// The default: stale after 30 minutes, refreshed every 5.
    pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(30 * 60);

    /// Timing for a stale period.
    pub fn with_stale_after(stale_after: Duration) -> LockTiming {
        LockTiming {
            stale_after,
            refresh_every: stale_after / 6,
            fence: stale_after * 4 / 5,
        }
    }

    /// The default timing, or the stale period in
    /// `KLOSET_LOCK_STALE_AFTER` (a duration such as `3s`; for tests).
    pub fn from_env() -> LockTiming {
        let stale = std::env::var(STALE_AFTER_ENV)
            .ok()
            .and_then(|v| humantime::parse_duration(v.trim()).ok())
            .filter(|d| *d >= Duration::from_millis(100))
            .unwrap_or(Self::DEFAULT_STALE_AFTER);
        LockTiming::with_stale_after(stale)
    }
}

/// What a lock is held for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// A writer or reader; many at once, beside a prune.
    Shared,
    /// Written only by version 1 tools (never used by this version): it
    /// blocks writers while it is fresh.
    Exclusive,
    /// A prune; at most one at a time.
    Prune,
}

/// The content of a lock object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Structure version (1: no holder; 2: this).
    pub v: u32,
    /// Shared or prune.
    pub kind: LockKind,
    /// Host of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When the lock was first taken, Unix nanoseconds, by the holder's
    /// clock (shown to people; never compared with another host's clock).
    pub created_ns: i64,
    /// When this object was written, by the holder's clock (shown only).
    pub refreshed_ns: i64,
    /// The holder, the same in every object it writes (version 2).
    #[serde(default)]
    pub holder: Option<HolderId>,
    /// Incremented at every refresh (version 2).
    #[serde(default)]
    pub seq: u64,
    /// What the holder does: `backup`, `restore`, `check`, `sync`, `prune`, …
    #[serde(default)]
    pub operation: String,
}

/// Identifies one holder across its refreshes. Version 1 locks have no
/// holder id; their host, pid and creation time stay the same across their
/// refreshes, so those stand in for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HolderKey {
    /// A version 2 holder.
    Id(HolderId),
    /// A version 1 holder.
    Legacy(String, u32, i64),
    /// An object under a lock id's name that cannot be read: possibly a
    /// live holder's lock damaged in storage, so a prune waits for it as
    /// for a holder it cannot name, until it is gone (its holder's next
    /// refresh deletes it) or stale.
    Unreadable(LockId),
}

impl LockInfo {
    /// Who holds it.
    pub fn holder_key(&self) -> HolderKey {
        match self.holder {
            Some(h) => HolderKey::Id(h),
            None => HolderKey::Legacy(self.host.clone(), self.pid, self.created_ns),
        }
    }

    /// "backup on host pid N, since T" for messages.
    pub fn describe(&self) -> String {
        let op = if self.operation.is_empty() {
            format!("{:?}", self.kind).to_lowercase()
        } else {
            self.operation.clone()
        };
        format!(
            "{op} on {} pid {} (since {} by its clock)",
            self.host,
            self.pid,
            crate::snapshot::format_time(self.created_ns)
        )
    }
}

/// One lock object as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The object's id.
    pub id: LockId,
    /// Its content.
    pub info: LockInfo,
}

/// Every object under `locks/`, read once: the locks of this store, and
/// the objects that are no lock of it (a name that is not a lock id, or an
/// object that does not open under the store's key, which every writer
/// seals its locks with, or does not decode), each with its path and why.
#[derive(Debug)]
pub struct LockScan {
    /// Readable locks.
    pub locks: Vec<Listed>,
    /// Objects writers and prune pass over; `check` names them.
    pub foreign: Vec<(String, String)>,
}

/// Reads every object under `locks/` (see [`LockScan`]).
pub fn scan_locks(storage: &Storage, keys: &Keys) -> Result<LockScan> {
    let mut scan = LockScan {
        locks: Vec::new(),
        foreign: Vec::new(),
    };
    for listed in storage.list(Some(LOCKS_DIR))? {
        let name = listed.path.rsplit('/').next().unwrap_or_default();
        let Ok(id) = LockId::from_hex(name) else {
            scan.foreign
                .push((listed.path, "not a lock id".to_string()));
            continue;
        };
        let bytes = match storage.get(Key::Lock(id)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => continue, // released meanwhile
            Err(e) => return Err(e),
        };
        match decode_lock(keys, id, &bytes) {
            Ok(info) => scan.locks.push(Listed { id, info }),
            Err(e) => scan.foreign.push((listed.path, e.to_string())),
        }
    }
    Ok(scan)
}

/// Reads every lock object; unreadable ones are skipped (they cannot be
/// trusted to describe a live holder, and a damaged object must not block
/// anyone forever).
pub fn list_locks(storage: &Storage, keys: &Keys) -> Result<Vec<Listed>> {
    Ok(scan_locks(storage, keys)?.locks)
}

/// Opens and decodes a lock object's bytes.
pub(crate) fn decode_lock(keys: &Keys, id: LockId, bytes: &[u8]) -> Result<LockInfo> {
    let name = Key::Lock(id).path();
    let plain = keys.open(ObjectKind::Lock, id.as_bytes(), bytes, &name)?;
    codec::from_msgpack::<LockInfo>(&codec::decode(&plain, 1 << 20, &name)?, &name)
}

/// Writes a lock object that must not exist yet.
pub(crate) fn write_lock(
    storage: &Storage,
    keys: &Keys,
    id: LockId,
    info: &LockInfo,
) -> Result<()> {
    let plain = codec::encode(&codec::to_msgpack(info, "lock")?, 3);
    let sealed = keys.seal(ObjectKind::Lock, id.as_bytes(), &plain)?;
    storage.put_new(Key::Lock(id), Bytes::from(sealed))
}

/// What a holder finds when it reads its own lock object back.
pub(crate) enum ReadBack {
    /// There, and it opens and decodes as this holder's lock.
    Intact,
    /// There, but it does not open, does not decode, or names another
    /// holder: damaged in storage (or written over).
    Damaged(String),
    /// Gone: a prune took the holder over.
    Gone,
}

/// Reads the holder's lock object `id` back and checks it is `holder`'s.
pub(crate) fn read_back(
    storage: &Storage,
    keys: &Keys,
    id: LockId,
    holder: HolderId,
) -> Result<ReadBack> {
    let bytes = match storage.get(Key::Lock(id)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ReadBack::Gone),
        Err(e) => return Err(e),
    };
    Ok(match decode_lock(keys, id, &bytes) {
        Ok(info) if info.holder == Some(holder) => ReadBack::Intact,
        Ok(info) => ReadBack::Damaged(match info.holder {
            Some(other) => format!("it names another holder, {}", other.short()),
            None => "it names no holder".to_string(),
        }),
        Err(e) => ReadBack::Damaged(e.to_string()),
    })
}

/// Whether the lock object `id` still exists.
pub(crate) fn lock_exists(storage: &Storage, id: LockId) -> Result<bool> {
    match storage.get(Key::Lock(id)) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Seconds on this host's boot-time clock, which keeps counting while the
/// machine is suspended (unlike `Instant` on Linux), so a holder that slept
/// through its stale period knows it.
pub fn boot_clock() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_derives_refresh_and_fence_from_the_stale_period() {
        let t = LockTiming::with_stale_after(Duration::from_secs(60));
        assert_eq!(t.refresh_every, Duration::from_secs(10));
        assert_eq!(t.fence, Duration::from_secs(48));
        assert_eq!(
            LockTiming::with_stale_after(LockTiming::DEFAULT_STALE_AFTER).refresh_every,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn legacy_locks_are_told_apart_by_host_pid_and_creation() {
        let a = LockInfo {
            v: 1,
            kind: LockKind::Shared,
            host: "h".into(),
            pid: 7,
            created_ns: 1,
            refreshed_ns: 2,
            holder: None,
            seq: 0,
            operation: String::new(),
        };
        let mut refreshed = a.clone();
        refreshed.refreshed_ns = 99;
        assert_eq!(a.holder_key(), refreshed.holder_key());
        let mut other = a.clone();
        other.pid = 8;
        assert_ne!(a.holder_key(), other.holder_key());
        assert!(
            a.describe().starts_with("shared on h pid 7"),
            "{}",
            a.describe()
        );
    }

    #[test]
    fn the_boot_clock_moves_forward() {
        let a = boot_clock();
        std::thread::sleep(Duration::from_millis(5));
        assert!(boot_clock() > a);
    }
}
