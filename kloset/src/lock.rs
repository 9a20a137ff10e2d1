//! Locks: who is writing to the store right now.
//!
//! Backups need no exclusive lock: every writer holds a *shared* lock object
//! (`locks/ID`), rewritten under a new id at every refresh and deleted when
//! it is done. Only prune will take an *exclusive* lock. A lock whose last
//! refresh is older than [`STALE_AFTER`] belongs to a crashed process and is
//! ignored (and may be deleted by anyone), so a crash never blocks later runs.
//!
//! A writer refuses to start while an unexpired exclusive lock exists, and
//! checks before its snapshot is written that its own lock still exists: if
//! a prune took it over as stale, the writer fails instead of writing a
//! snapshot that might refer to data the prune deleted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::{Keys, ObjectKind};
use crate::error::{Error, Result};
use crate::fsmeta::hostname;
use crate::id::LockId;
use crate::repository::now_ns;
use crate::storage::{Key, LOCKS_DIR, Storage};

/// How often a held lock is rewritten.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// A lock not refreshed for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// Shared (writers) or exclusive (prune).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// Held by every writer; many at once.
    Shared,
    /// Held by prune; excludes writers.
    Exclusive,
}

/// The content of a lock object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Structure version.
    pub v: u32,
    /// Shared or exclusive.
    pub kind: LockKind,
    /// Host of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When the lock was first taken, Unix nanoseconds.
    pub created_ns: i64,
    /// When this object was written, Unix nanoseconds.
    pub refreshed_ns: i64,
}

impl LockInfo {
    /// Whether the holder stopped refreshing it long enough ago.
    pub fn is_stale(&self, now_ns: i64) -> bool {
        now_ns.saturating_sub(self.refreshed_ns) > STALE_AFTER.as_nanos() as i64
    }
}

/// Reads every lock object; unreadable ones are skipped (they cannot be
/// trusted to describe a live holder, and a damaged object must not block
/// backups forever).
pub fn list_locks(storage: &Storage, keys: &Keys) -> Result<Vec<(LockId, LockInfo)>> {
    let mut out = Vec::new();
    for listed in storage.list(Some(LOCKS_DIR))? {
        let Some(id) = listed
            .path
            .rsplit('/')
            .next()
            .and_then(|n| LockId::from_hex(n).ok())
        else {
            continue;
        };
        let bytes = match storage.get(Key::Lock(id)) {
            Ok(b) => b,
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => continue, // released meanwhile
            Err(e) => return Err(e),
        };
        let name = Key::Lock(id).path();
        let Ok(plain) = keys.open(ObjectKind::Lock, id.as_bytes(), &bytes, &name) else {
            continue;
        };
        if let Ok(info) = codec::decode(&plain, 1 << 20, &name)
            .and_then(|raw| codec::from_msgpack::<LockInfo>(&raw, &name))
        {
            out.push((id, info));
        }
    }
    Ok(out)
}

fn write_lock(storage: &Storage, keys: &Keys, id: LockId, info: &LockInfo) -> Result<()> {
    let plain = codec::encode(&codec::to_msgpack(info), 3);
    let sealed = keys.seal(ObjectKind::Lock, id.as_bytes(), &plain);
    storage.put_new(Key::Lock(id), Bytes::from(sealed))
}

struct Held {
    id: LockId,
    info: LockInfo,
}

/// A held shared lock; refreshed in the background, released on drop.
pub struct SharedLock {
    storage: Storage,
    held: Arc<Mutex<Held>>,
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SharedLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLock").finish_non_exhaustive()
    }
}

fn lock_held<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SharedLock {
    /// Takes a shared lock, failing (retryably) while a live exclusive lock exists.
    pub fn acquire(
        storage: &Storage,
        keys: &Arc<Keys>,
        refresh_every: Duration,
    ) -> Result<SharedLock> {
        let now = now_ns();
        if let Some((_, ex)) = list_locks(storage, keys)?
            .into_iter()
            .find(|(_, l)| l.kind == LockKind::Exclusive && !l.is_stale(now))
        {
            return Err(Error::Locked {
                location: storage.location().to_string(),
                holder: format!(
                    "an exclusive lock (prune) held by {} pid {} since {}",
                    ex.host,
                    ex.pid,
                    crate::snapshot::format_time(ex.created_ns)
                ),
            });
        }
        let info = LockInfo {
            v: 1,
            kind: LockKind::Shared,
            host: hostname(),
            pid: std::process::id(),
            created_ns: now,
            refreshed_ns: now,
        };
        let id = LockId::random();
        write_lock(storage, keys, id, &info)?;
        let held = Arc::new(Mutex::new(Held { id, info }));
        let stop = Arc::new(AtomicBool::new(false));
        let refresher = {
            let (bg_storage, bg_keys, bg_held, bg_stop) =
                (storage.clone(), keys.clone(), held.clone(), stop.clone());
            std::thread::Builder::new()
                .name("kloset-lock".into())
                .spawn(move || {
                    refresh_loop(&bg_storage, &bg_keys, &bg_held, &bg_stop, refresh_every)
                })
                .map_err(|e| Error::io("start lock refresher for", storage.location(), e))?
        };
        Ok(SharedLock {
            storage: storage.clone(),
            held,
            stop,
            refresher: Some(refresher),
        })
    }

    /// Confirms the lock object still exists (it was not taken over).
    pub fn confirm(&self) -> Result<()> {
        let id = lock_held(&self.held).id;
        match self.storage.get(Key::Lock(id)) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => Err(Error::Locked {
                location: self.storage.location().to_string(),
                holder: "nobody: our shared lock was removed (taken over as stale by a prune?); not writing the snapshot".into(),
            }),
            Err(e) => Err(e),
        }
    }
}

fn refresh_loop(
    storage: &Storage,
    keys: &Keys,
    held: &Mutex<Held>,
    stop: &AtomicBool,
    every: Duration,
) {
    let tick = Duration::from_millis(200).min(every);
    let mut waited = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(tick);
        waited += tick;
        if waited < every {
            continue;
        }
        waited = Duration::ZERO;
        let (old, mut info) = {
            let h = lock_held(held);
            (h.id, h.info.clone())
        };
        info.refreshed_ns = now_ns();
        let new = LockId::random();
        // Write the new object before removing the old one, so the lock is
        // never absent. A failed refresh is retried at the next tick.
        if write_lock(storage, keys, new, &info).is_ok() {
            *lock_held(held) = Held { id: new, info };
            let _ = storage.delete(&Key::Lock(old).path());
        }
    }
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let id = lock_held(&self.held).id;
        let _ = self.storage.delete(&Key::Lock(id).path());
    }
}

/// Writes an exclusive lock (for prune and for tests); returns its id.
pub fn write_exclusive(storage: &Storage, keys: &Keys, created_ns: i64) -> Result<LockId> {
    let id = LockId::random();
    let info = LockInfo {
        v: 1,
        kind: LockKind::Exclusive,
        host: hostname(),
        pid: std::process::id(),
        created_ns,
        refreshed_ns: created_ns,
    };
    write_lock(storage, keys, id, &info)?;
    Ok(id)
}
