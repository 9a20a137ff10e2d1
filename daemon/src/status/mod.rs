//! The daemon's live status, below both the daemon loop (`app`, which
//! writes it) and the HTTP endpoint (`http`, which reads it): the applied
//! configuration, the latest attempt and its errors, an apply being
//! retried, object conditions, next run times, running tasks with their
//! progress, store counters, lock observations and bookkeeping faults.
//!
//! Writers change it only through methods named after the transition
//! (`attempt_recorded`, `revision_applied`, `task_queued`, …); readers take short
//! locks and copy what they need. Nothing here waits on a task. A poisoned
//! lock reads as empty (a writer panicked mid-update; the next transition
//! overwrites it).

mod alerts;
mod types;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};

use crate::config::desired::{Action, DaemonSettings};
use crate::config::{ConfigError, DesiredState};
use crate::state::{ConditionRecord, Origin, TaskId};
pub use alerts::{Attempt, DeliveryCounts, StaleInfo};
pub use types::{
    ApplyFailure, ConfigStatus, Fault, ObjectKey, RunningTask, StoreCounters, StoreLocks,
};

/// Everything the endpoint shows that is not in the state database.
#[derive(Debug)]
pub struct Live {
    /// The config directory.
    pub config_dir: PathBuf,
    /// When this process started.
    pub started_at: DateTime<Utc>,
    daemon: RwLock<DaemonSettings>,
    applied: RwLock<Option<Arc<DesiredState>>>,
    config: RwLock<ConfigStatus>,
    conditions: RwLock<BTreeMap<ObjectKey, ConditionRecord>>,
    next_runs: RwLock<BTreeMap<String, Option<DateTime<Utc>>>>,
    running: Mutex<HashMap<Origin, RunningTask>>,
    counters: Mutex<BTreeMap<String, StoreCounters>>,
    locks: RwLock<BTreeMap<String, StoreLocks>>,
    faults: RwLock<BTreeMap<Fault, String>>,
    stale: RwLock<BTreeMap<String, StaleInfo>>,
    notifications: RwLock<Vec<crate::state::ChannelHealth>>,
    deliveries: Mutex<BTreeMap<String, DeliveryCounts>>,
}

impl Live {
    /// Live status of a daemon started at `started_at` on `config_dir`.
    pub fn new(config_dir: PathBuf, daemon: DaemonSettings, started_at: DateTime<Utc>) -> Self {
        Live {
            config_dir,
            started_at,
            daemon: RwLock::new(daemon),
            applied: RwLock::new(None),
            config: RwLock::new(ConfigStatus::default()),
            conditions: RwLock::new(BTreeMap::new()),
            next_runs: RwLock::new(BTreeMap::new()),
            running: Mutex::new(HashMap::new()),
            counters: Mutex::new(BTreeMap::new()),
            locks: RwLock::new(BTreeMap::new()),
            faults: RwLock::new(BTreeMap::new()),
            stale: RwLock::new(BTreeMap::new()),
            notifications: RwLock::new(Vec::new()),
            deliveries: Mutex::new(BTreeMap::new()),
        }
    }

    // ---- transitions -------------------------------------------------

    /// A configuration attempt was read (and recorded).
    pub fn attempt_recorded(
        &self,
        revision: Option<String>,
        errors: Vec<ConfigError>,
        at: DateTime<Utc>,
    ) {
        if let Ok(mut c) = self.config.write() {
            c.attempted_revision = revision;
            c.attempted_at = Some(at);
            c.valid = errors.is_empty();
            c.reloads += 1;
            if !errors.is_empty() {
                c.reload_failures += 1;
            }
            c.errors = errors;
        }
    }

    /// `desired` is applied, whole, at `at`, with `restart_required` notes.
    pub fn revision_applied(
        &self,
        desired: Arc<DesiredState>,
        at: DateTime<Utc>,
        restart: Vec<String>,
    ) {
        if let Ok(mut d) = self.daemon.write() {
            *d = desired.daemon.clone();
        }
        if let Ok(mut c) = self.config.write() {
            c.applied_revision = Some(desired.revision.clone());
            c.applied_at = Some(at);
            c.restart_required = restart;
            c.apply_failure = None;
        }
        if let Ok(mut a) = self.applied.write() {
            *a = Some(desired);
        }
    }

    /// Applying a valid revision failed; it is retried at `failure.retry_at`.
    pub fn apply_failed(&self, failure: ApplyFailure) {
        if let Ok(mut c) = self.config.write() {
            c.apply_failure = Some(failure);
        }
    }

    /// The revision whose apply failed is no longer wanted (the directory
    /// is back to the running one).
    pub fn apply_superseded(&self) {
        if let Ok(mut c) = self.config.write() {
            c.apply_failure = None;
        }
    }

    /// Conditions were written to the database as `records`.
    pub fn conditions_written(&self, records: Vec<ConditionRecord>) {
        if let Ok(mut live) = self.conditions.write() {
            for r in records {
                live.insert((r.kind, r.name.clone()), r);
            }
        }
    }

    /// An object's condition was removed (the object is gone).
    pub fn condition_removed(&self, key: &ObjectKey) {
        if let Ok(mut live) = self.conditions.write() {
            live.remove(key);
        }
    }

    /// Next run times changed (`None`: no further run).
    pub fn next_runs_changed(&self, changed: &[(String, Option<DateTime<Utc>>)]) {
        if let Ok(mut shown) = self.next_runs.write() {
            for (name, at) in changed {
                shown.insert(name.clone(), *at);
            }
        }
    }

    /// Schedules are no longer applied: their next runs are gone.
    pub fn schedules_removed(&self, names: &[String]) {
        if let Ok(mut shown) = self.next_runs.write() {
            for name in names {
                shown.remove(name);
            }
        }
    }

    /// A run is registered as running (waiting for its slot). Fails only
    /// when the table is poisoned.
    pub fn task_queued(&self, task: RunningTask) -> Result<(), String> {
        let mut running = self
            .running
            .lock()
            .map_err(|_| "the running-task table is poisoned".to_string())?;
        running.insert(task.origin.clone(), task);
        Ok(())
    }

    /// A queued run was recorded in the database as `id`.
    pub fn task_recorded(&self, origin: &Origin, id: TaskId) {
        if let Ok(mut r) = self.running.lock()
            && let Some(entry) = r.get_mut(origin)
        {
            entry.id = Some(id);
        }
    }

    /// A run got its task slot at `at`.
    pub fn task_got_slot(&self, origin: &Origin, at: DateTime<Utc>) {
        if let Ok(mut r) = self.running.lock()
            && let Some(entry) = r.get_mut(origin)
        {
            entry.started_at = at;
            entry.has_slot = true;
        }
    }

    /// A run ended (whatever its outcome).
    pub fn task_ended(&self, origin: &Origin) {
        if let Ok(mut r) = self.running.lock() {
            r.remove(origin);
        }
    }

    /// A task finished: add what it did to its store's counters.
    pub fn maintenance_recorded(&self, action: &Action, stats: &serde_json::Value) {
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

    /// The lock poller saw `seen` (every store it could open).
    pub fn locks_observed(&self, seen: BTreeMap<String, StoreLocks>) {
        if let Ok(mut l) = self.locks.write() {
            *l = seen;
        }
    }

    /// A bookkeeping step failed: a problem until it next succeeds.
    /// Logged once per distinct message, not at every retry.
    pub fn fault(&self, fault: Fault, message: String) {
        if let Ok(mut f) = self.faults.write()
            && f.get(&fault) != Some(&message)
        {
            tracing::error!("{} failed: {message}", fault.what());
            f.insert(fault, message);
        }
    }

    /// A bookkeeping step succeeded: its fault, if any, is over.
    pub fn fault_cleared(&self, fault: Fault) {
        if let Ok(mut f) = self.faults.write()
            && f.remove(&fault).is_some()
        {
            tracing::info!("{} works again", fault.what());
        }
    }

    // ---- readers -----------------------------------------------------

    /// The daemon settings in force (from the applied config, or the
    /// fallback when no config was ever valid).
    pub fn daemon_settings(&self) -> Option<DaemonSettings> {
        self.daemon.read().ok().map(|d| d.clone())
    }

    /// The applied configuration.
    pub fn applied(&self) -> Option<Arc<DesiredState>> {
        self.applied.read().ok().and_then(|a| a.clone())
    }

    /// A copy of the latest attempt.
    pub fn config_status(&self) -> ConfigStatus {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// A copy of every condition.
    pub fn conditions(&self) -> BTreeMap<ObjectKey, ConditionRecord> {
        self.conditions
            .read()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// A copy of every running task, oldest first.
    pub fn running_tasks(&self) -> Vec<RunningTask> {
        let mut list: Vec<RunningTask> = self
            .running
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        list.sort_by_key(|t| (t.started_at, t.id));
        list
    }

    /// Whether `origin` has a run going (or waiting for a permit). A
    /// poisoned lock answers "running", which only delays a run.
    pub fn is_running(&self, origin: &Origin) -> bool {
        self.running
            .lock()
            .map(|r| r.contains_key(origin))
            .unwrap_or(true)
    }

    /// The next run of `schedule`.
    pub fn next_run(&self, schedule: &str) -> Option<DateTime<Utc>> {
        self.next_runs
            .read()
            .ok()
            .and_then(|n| n.get(schedule).copied().flatten())
    }

    /// The next run of every schedule, as shown.
    pub fn next_runs(&self) -> BTreeMap<String, Option<DateTime<Utc>>> {
        self.next_runs.read().map(|n| n.clone()).unwrap_or_default()
    }

    /// Every store's maintenance counters.
    pub fn store_counters(&self) -> BTreeMap<String, StoreCounters> {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// What the latest lock poll saw, by store.
    pub fn locks(&self) -> BTreeMap<String, StoreLocks> {
        self.locks.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// Bookkeeping faults going on now.
    pub fn faults(&self) -> BTreeMap<Fault, String> {
        self.faults.read().map(|f| f.clone()).unwrap_or_default()
    }

    /// Problems that make the daemon not ready, most important first: a
    /// daemon still reading its first config (status is served from the
    /// start), an invalid latest config, a config not applied (with why),
    /// settings waiting for a restart, bookkeeping faults, then objects
    /// that are not ready.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let config = self.config_status();
        if config.attempted_at.is_none() {
            out.push("starting: the configuration has not been read yet".to_string());
        } else if !config.valid {
            let revision = config
                .attempted_revision
                .as_deref()
                .map(|r| format!(" (revision {})", short(r)))
                .unwrap_or_default();
            out.push(format!(
                "the latest configuration{revision} is invalid: {} error(s); {}",
                config.errors.len(),
                match &config.applied_revision {
                    Some(r) => format!("revision {} keeps running", short(r)),
                    None => "no configuration is running".to_string(),
                }
            ));
            for e in &config.errors {
                out.push(format!("  {e}"));
            }
        } else if let Some(f) = &config.apply_failure {
            out.push(format!(
                "revision {} could not be applied ({} attempt(s); retrying at {}): {}",
                short(&f.revision),
                f.failures,
                f.retry_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                f.message
            ));
        } else if config.applied_revision != config.attempted_revision {
            out.push("the latest configuration is not applied yet".to_string());
        }
        for r in &config.restart_required {
            out.push(format!("restart required: {r}"));
        }
        for (fault, message) in self.faults() {
            out.push(format!("{} failed: {message}", fault.what()));
        }
        for ((kind, name), c) in self.conditions() {
            if !c.ready {
                out.push(format!(
                    "{kind}.{name} not ready ({}): {}",
                    c.reason, c.message
                ));
            }
        }
        out
    }
}

/// The first 12 characters of a revision hash.
pub fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live() -> Live {
        let settings = DaemonSettings {
            listen: crate::config::desired::Listen::Unix("/s".into()),
            state_dir: "/state".into(),
            max_concurrent_tasks: 1,
            token_file: None,
        };
        Live::new(PathBuf::from("/c"), settings, Utc::now())
    }

    #[test]
    fn store_counters_add_up_by_store() {
        let live = live();
        let prune = Action::Prune {
            store: "a".into(),
            max_unused: 0.2,
            max_repack: 0,
            grace_ms: 0,
            allow_cold_read: false,
        };
        live.maintenance_recorded(&prune, &json!({ "bytes_freed": 10, "packs_repacked": 2 }));
        live.maintenance_recorded(&prune, &json!({ "bytes_freed": 5 }));
        let backup = Action::Backup {
            source: "s".into(),
            store: "b".into(),
            tags: Vec::new(),
            retention: None,
        };
        live.maintenance_recorded(&backup, &json!({ "retention": { "forgotten": 3 } }));
        live.maintenance_recorded(&backup, &json!({}));
        let c = live.store_counters();
        assert_eq!(c["a"].prune_freed_bytes, 15);
        assert_eq!(c["a"].prune_repacked_packs, 2);
        assert_eq!(c["b"].retention_forgotten, 3);
    }

    /// Status is served before the first configuration is read: until
    /// then the daemon says it is starting, not that its configuration is
    /// invalid with no error.
    #[test]
    fn before_the_first_attempt_the_daemon_is_starting_not_invalid() {
        let live = live();
        assert_eq!(
            live.problems(),
            ["starting: the configuration has not been read yet"]
        );
        live.attempt_recorded(Some("0123456789abcdef".into()), Vec::new(), Utc::now());
        assert_eq!(
            live.problems(),
            ["the latest configuration is not applied yet"]
        );
    }
}
