//! Open stores for the endpoint: a cache of read-only repository handles by
//! store name, keyed by the store's definition (a changed definition opens
//! it again). Opening derives the key from the passphrase once; afterwards a
//! handle older than [`REFRESH_AFTER`] is reloaded (fresh index, no key
//! derivation), so snapshots written by running backups are found. All
//! opening happens off the runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kloset::Repository;

use crate::config::desired::StoreDef;
use crate::tasks::{StoreProblem, open_store};

/// How long a handle's index is trusted before it is reloaded.
pub const REFRESH_AFTER: Duration = Duration::from_secs(10);

struct Cached {
    fingerprint: String,
    repo: Arc<Repository>,
    loaded: Instant,
}

/// Read-only handles on the applied stores.
#[derive(Default)]
pub struct StoreCache {
    open: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for StoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCache")
    }
}

/// Why a store could not be opened for reading.
#[derive(Debug)]
pub enum OpenError {
    /// The store is not ready (reason and message).
    Problem(StoreProblem),
    /// The opening thread failed.
    Internal(String),
}

impl StoreCache {
    /// A handle on `def`: cached, reloaded when older than
    /// [`REFRESH_AFTER`] or when `fresh`, opened when new or changed.
    pub async fn get(&self, def: &StoreDef, fresh: bool) -> Result<Arc<Repository>, OpenError> {
        // Debug, not JSON: a path that is not UTF-8 has no JSON form, and
        // every such definition would share one fingerprint.
        let print = blake3::hash(format!("{def:?}").as_bytes())
            .to_hex()
            .to_string();
        let cached = self.open.lock().ok().and_then(|open| {
            open.get(&def.name)
                .filter(|c| c.fingerprint == print)
                .map(|c| (c.repo.clone(), c.loaded.elapsed() < REFRESH_AFTER))
        });
        let repo = match cached {
            Some((repo, true)) if !fresh => return Ok(repo),
            Some((repo, _)) => tokio::task::spawn_blocking(move || repo.reloaded())
                .await
                .map_err(|e| OpenError::Internal(e.to_string()))?
                .map_err(|e| OpenError::Internal(format!("reloading the store index: {e}")))?,
            None => {
                let def = def.clone();
                tokio::task::spawn_blocking(move || open_store(&def, false))
                    .await
                    .map_err(|e| OpenError::Internal(e.to_string()))?
                    .map_err(OpenError::Problem)?
            }
        };
        let repo = Arc::new(repo);
        if let Ok(mut open) = self.open.lock() {
            open.insert(
                def.name.clone(),
                Cached {
                    fingerprint: print,
                    repo: repo.clone(),
                    loaded: Instant::now(),
                },
            );
        }
        Ok(repo)
    }
}
