//! The lock poller: every minute (`KLOSETD_LOCK_POLL_INTERVAL`, a duration,
//! shortens it for tests) it lists the lock objects of every configured
//! store it can open and keeps, per store, how many holders there are and
//! how old the oldest is, for `/metrics`. It only reads: it never takes a
//! lock, and it costs one listing plus one small read per lock object per
//! store per poll. The storage handle and keys of each opened store are
//! kept between polls (no key derivation each minute; the index the open
//! read is dropped at once) and the store is reopened when its declaration
//! changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kloset::Storage;
use kloset::crypto::Keys;
use kloset::lock::list_locks;
use kloset::repository::now_ns;

use crate::config::desired::StoreDef;
use crate::status::{Live, StoreLocks};
use crate::tasks::open_store;

/// The variable that shortens the poll interval (tests).
pub const POLL_ENV: &str = "KLOSETD_LOCK_POLL_INTERVAL";

/// The default poll interval.
const DEFAULT_POLL: Duration = Duration::from_secs(60);

fn interval() -> Duration {
    std::env::var(POLL_ENV)
        .ok()
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .filter(|d| *d >= Duration::from_millis(100))
        .unwrap_or(DEFAULT_POLL)
}

/// Polls forever; spawned once at start.
pub async fn poll(live: Arc<Live>) {
    let mut opened: HashMap<String, (String, Handle)> = HashMap::new();
    let mut tick = tokio::time::interval(interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(desired) = live.applied() else {
            continue;
        };
        let stores: Vec<StoreDef> = desired.stores.values().cloned().collect();
        let known: HashSet<&str> = stores.iter().map(|s| s.name.as_str()).collect();
        opened.retain(|name, _| known.contains(name.as_str()));
        let mut seen = BTreeMap::new();
        for def in stores {
            let print = format!("{:?}", def.origin);
            let cached = opened
                .get(&def.name)
                .filter(|(p, _)| *p == print)
                .map(|(_, r)| r.clone());
            let name = def.name.clone();
            let polled = tokio::task::spawn_blocking(move || poll_store(&def, cached)).await;
            match polled {
                Ok(Ok((handle, locks))) => {
                    opened.insert(name.clone(), (print, handle));
                    seen.insert(name, locks);
                }
                // Harmless: the store's own readiness test reports why it
                // cannot be opened; only its lock metrics are left out.
                Ok(Err(e)) => {
                    opened.remove(&name);
                    tracing::debug!(store = %name, "lock poll: {e}");
                }
                Err(e) => tracing::debug!(store = %name, "lock poll thread: {e}"),
            }
        }
        live.locks_observed(seen);
    }
}

/// What listing a store's locks needs: its storage and its keys.
type Handle = (Storage, Arc<Keys>);

fn poll_store(def: &StoreDef, cached: Option<Handle>) -> Result<(Handle, StoreLocks), String> {
    let (storage, keys) = match cached {
        Some(h) => h,
        None => {
            let repo = open_store(def, false).map_err(|p| p.to_string())?;
            (repo.storage().clone(), repo.keys().clone())
        }
    };
    let listed = list_locks(&storage, &keys).map_err(|e| e.to_string())?;
    let now = now_ns();
    let mut oldest: HashMap<_, i64> = HashMap::new();
    for l in &listed {
        let created = oldest.entry(l.info.holder_key()).or_insert(i64::MAX);
        *created = (*created).min(l.info.created_ns);
    }
    let oldest_ns = oldest.values().copied().min();
    let locks = StoreLocks {
        holders: oldest.len(),
        oldest_age_s: oldest_ns
            .map(|c| now.saturating_sub(c).max(0) as f64 / 1e9)
            .unwrap_or(0.0),
    };
    Ok(((storage, keys), locks))
}
