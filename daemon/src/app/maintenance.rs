//! Per-store maintenance bookkeeping: the gate that lets at most one prune
//! per store run at a time in this daemon (other hosts are kept apart by
//! the engine's prune lock), and the counters behind the prune and
//! retention metrics (since the daemon started).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::config::desired::Action;

/// Counters of one store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounters {
    /// Bytes of packs deleted by prunes.
    pub prune_freed_bytes: u64,
    /// Packs rewritten by prunes.
    pub prune_repacked_packs: u64,
    /// Snapshots forgotten by retention after backups.
    pub retention_forgotten: u64,
}

/// Prune gates and counters, by store name.
#[derive(Debug, Default)]
pub struct Maintenance {
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    counters: Mutex<BTreeMap<String, StoreCounters>>,
}

impl Maintenance {
    /// The gate a prune of `store` holds while it runs.
    pub fn prune_gate(&self, store: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.gates.lock() {
            Ok(mut g) => g.entry(store.to_string()).or_default().clone(),
            // A poisoned map still gives a gate; only the sharing is lost.
            Err(_) => Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Adds what a finished task did to its store's counters.
    pub fn record(&self, action: &Action, stats: &serde_json::Value) {
        let number = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        let Ok(mut counters) = self.counters.lock() else {
            return;
        };
        let c = counters.entry(action.store().to_string()).or_default();
        match action {
            Action::Prune { .. } => {
                c.prune_freed_bytes += number(&stats["bytes_freed"]);
                c.prune_repacked_packs += number(&stats["packs_repacked"]);
            }
            Action::Backup { .. } => {
                c.retention_forgotten += number(&stats["retention"]["forgotten"]);
            }
            _ => {}
        }
    }

    /// Every store's counters (stores with no maintenance yet read 0).
    pub fn counters(&self) -> BTreeMap<String, StoreCounters> {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_add_up_by_store_and_gates_are_shared_per_store() {
        let m = Maintenance::default();
        let prune = Action::Prune {
            store: "a".into(),
            max_unused: 0.2,
            max_repack: 0,
            grace_ms: 0,
            allow_cold_read: false,
        };
        m.record(&prune, &json!({ "bytes_freed": 10, "packs_repacked": 2 }));
        m.record(&prune, &json!({ "bytes_freed": 5 }));
        let backup = Action::Backup {
            source: "s".into(),
            store: "b".into(),
            tags: Vec::new(),
            retention: None,
        };
        m.record(&backup, &json!({ "retention": { "forgotten": 3 } }));
        m.record(&backup, &json!({}));
        let c = m.counters();
        assert_eq!(c["a"].prune_freed_bytes, 15);
        assert_eq!(c["a"].prune_repacked_packs, 2);
        assert_eq!(c["b"].retention_forgotten, 3);
        assert!(Arc::ptr_eq(&m.prune_gate("a"), &m.prune_gate("a")));
        assert!(!Arc::ptr_eq(&m.prune_gate("a"), &m.prune_gate("b")));
    }
}
