//! The gate that lets at most one prune per store run at a time in this
//! daemon; other hosts are kept apart by the engine's prune lock. A prune
//! waits for its gate without holding a task slot, so backups and other
//! tasks are never held back by it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One gate per store name.
#[derive(Debug, Default)]
pub struct PruneGates {
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl PruneGates {
    /// The gate a prune of `store` holds while it runs.
    pub fn gate(&self, store: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.gates.lock() {
            Ok(mut g) => g.entry(store.to_string()).or_default().clone(),
            // A poisoned map still gives a gate; only the sharing is lost,
            // and the engine's prune lock still keeps two prunes apart.
            Err(_) => Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_are_shared_per_store() {
        let g = PruneGates::default();
        assert!(Arc::ptr_eq(&g.gate("a"), &g.gate("a")));
        assert!(!Arc::ptr_eq(&g.gate("a"), &g.gate("b")));
    }
}
