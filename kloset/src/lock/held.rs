//! A lock this process holds: written at once, refreshed in the background
//! under new object ids, released on drop.
//!
//! A refresh writes the new object first, then reads the previous one
//! back: if it is gone, a prune took this holder over, and the lock is
//! lost. The prune deletes first and lists after, so one of the two always
//! sees the other (FORMAT.md §16). A previous object that no longer opens
//! (damaged in storage) is replaced all the same, with a warning naming
//! it: a prune cannot read it and waits until it goes. The holder also keeps the boot-time
//! clock reading from the start of its last successful refresh; past the
//! fence it no longer trusts the lock, even if no prune was seen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{
    LOCK_VERSION, LockInfo, LockKind, LockTiming, ReadBack, boot_clock, lock_exists, read_back,
    write_lock,
};
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::fsmeta::hostname;
use crate::id::{HolderId, LockId};
use crate::repository::now_ns;
use crate::storage::{Key, Storage};

struct State {
    /// The current lock object.
    id: LockId,
    info: LockInfo,
    /// Boot-clock reading at the start of the last successful write.
    last_ok: Duration,
    /// Why the lock was lost, once it is.
    lost: Option<String>,
    /// How many times a refresh found the previous object damaged.
    damaged: u32,
}

/// A held lock; refreshed in the background, released on drop.
pub struct HeldLock {
    storage: Storage,
    timing: LockTiming,
    holder: HolderId,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLock")
            .field("holder", &self.holder.short())
            .finish_non_exhaustive()
    }
}

fn guard(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HeldLock {
    /// Writes the first lock object and starts refreshing it.
    pub fn acquire(
        storage: &Storage,
        keys: &Arc<Keys>,
        kind: LockKind,
        operation: &str,
        timing: LockTiming,
    ) -> Result<HeldLock> {
        let now = now_ns();
        let holder = HolderId::random();
        let info = LockInfo {
            v: LOCK_VERSION,
            kind,
            host: hostname(),
            pid: std::process::id(),
            created_ns: now,
            refreshed_ns: now,
            holder: Some(holder),
            seq: 0,
            operation: operation.to_string(),
        };
        let id = LockId::random();
        let started = boot_clock();
        write_lock(storage, keys, id, &info)?;
        let state = Arc::new(Mutex::new(State {
            id,
            info,
            last_ok: started,
            lost: None,
            damaged: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let refresher = {
            let (storage, keys, state, stop) =
                (storage.clone(), keys.clone(), state.clone(), stop.clone());
            std::thread::Builder::new()
                .name("kloset-lock".into())
                .spawn(move || refresh_loop(&storage, &keys, holder, &state, &stop, timing))
        };
        let refresher = match refresher {
            Ok(h) => h,
            Err(e) => {
                let _ = storage.delete(&Key::Lock(id).path());
                return Err(Error::io("start lock refresher for", storage.location(), e));
            }
        };
        Ok(HeldLock {
            storage: storage.clone(),
            timing,
            holder,
            state,
            stop,
            refresher: Some(refresher),
        })
    }

    /// This holder's id.
    pub fn holder(&self) -> HolderId {
        self.holder
    }

    /// The current lock object.
    pub fn current(&self) -> LockId {
        guard(&self.state).id
    }

    /// How many times a refresh found this holder's previous lock object
    /// damaged in storage (and replaced it, with a warning).
    pub fn damaged_found(&self) -> u32 {
        guard(&self.state).damaged
    }

    /// Fails unless the lock is still ours by time alone: see
    /// [`LockFence::within_fence`].
    pub fn within_fence(&self) -> Result<()> {
        self.fence().within_fence()
    }

    /// See [`LockFence::ensure_alive`].
    pub fn ensure_alive(&self) -> Result<()> {
        self.fence().ensure_alive()
    }

    /// A handle other threads can ask whether the lock is still ours.
    pub fn fence(&self) -> LockFence {
        LockFence {
            storage: self.storage.clone(),
            timing: self.timing,
            state: self.state.clone(),
        }
    }
}

/// Asks whether a [`HeldLock`] is still its holder's, from any thread (a
/// writer's uploaders ask before every index object they write).
#[derive(Clone)]
pub struct LockFence {
    storage: Storage,
    timing: LockTiming,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for LockFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockFence").finish_non_exhaustive()
    }
}

impl LockFence {
    /// Fails unless the lock is still ours by time alone: not marked lost,
    /// and the last successful refresh started less than the fence ago.
    /// Does no I/O, so it can be asked right after a commit.
    pub fn within_fence(&self) -> Result<()> {
        let state = guard(&self.state);
        if let Some(reason) = &state.lost {
            return Err(self.lost(reason.clone()));
        }
        let since = boot_clock().saturating_sub(state.last_ok);
        if since >= self.timing.fence {
            return Err(self.lost(format!(
                "it was last refreshed {}s ago, past the {}s this holder may trust it",
                since.as_secs(),
                self.timing.fence.as_secs()
            )));
        }
        Ok(())
    }

    /// [`LockFence::within_fence`], and the current lock object still
    /// exists (it was not taken over).
    pub fn ensure_alive(&self) -> Result<()> {
        self.within_fence()?;
        let mut id = guard(&self.state).id;
        // A refresh may replace the object between reading its id and
        // looking for it (the old one is deleted once the new one is
        // current): a missing object counts only if it is still current.
        while !lock_exists(&self.storage, id)? {
            let current = guard(&self.state).id;
            if current != id {
                id = current;
                continue;
            }
            let reason = format!("its object locks/{} was removed by a prune", id.short());
            guard(&self.state).lost = Some(reason.clone());
            return Err(self.lost(reason));
        }
        self.within_fence()
    }

    fn lost(&self, reason: String) -> Error {
        Error::LockLost {
            location: self.storage.location().to_string(),
            reason,
        }
    }
}

fn refresh_loop(
    storage: &Storage,
    keys: &Keys,
    holder: HolderId,
    state: &Mutex<State>,
    stop: &AtomicBool,
    timing: LockTiming,
) {
    let tick = Duration::from_millis(50).min(timing.refresh_every);
    let mut last_try = boot_clock();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(tick);
        if boot_clock().saturating_sub(last_try) < timing.refresh_every {
            continue;
        }
        if guard(state).lost.is_some() {
            return;
        }
        last_try = boot_clock();
        refresh_once(storage, keys, holder, state, last_try);
    }
}

/// One refresh: the new object, then the old one read back, then the old
/// one deleted. A failed write is retried at the next period. An old
/// object damaged in storage is replaced like an intact one, and said:
/// until it goes, a prune cannot read it and waits for it (FORMAT.md §16).
fn refresh_once(
    storage: &Storage,
    keys: &Keys,
    holder: HolderId,
    state: &Mutex<State>,
    started: Duration,
) {
    let (old, mut info) = {
        let s = guard(state);
        (s.id, s.info.clone())
    };
    info.seq += 1;
    info.refreshed_ns = now_ns();
    let new = LockId::random();
    if write_lock(storage, keys, new, &info).is_err() {
        return;
    }
    match read_back(storage, keys, old, holder) {
        Ok(found @ (ReadBack::Intact | ReadBack::Damaged(_))) => {
            if let ReadBack::Damaged(reason) = found {
                tracing::warn!(
                    object = %Key::Lock(old).path(),
                    "this process's own lock object is damaged in storage ({reason}); replacing it"
                );
                guard(state).damaged += 1;
            }
            // The new object becomes current before the old one goes, so
            // whoever reads the current id finds its object.
            {
                let mut s = guard(state);
                s.id = new;
                s.info = info;
                s.last_ok = started;
            }
            let _ = storage.delete(&Key::Lock(old).path());
        }
        Ok(ReadBack::Gone) => {
            let _ = storage.delete(&Key::Lock(new).path());
            guard(state).lost = Some(format!(
                "its object locks/{} was removed by a prune that took it over as stale",
                old.short()
            ));
        }
        Err(_) => {
            // Cannot tell: keep the old object as current, try again later.
            let _ = storage.delete(&Key::Lock(new).path());
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let id = guard(&self.state).id;
        let _ = self.storage.delete(&Key::Lock(id).path());
    }
}
