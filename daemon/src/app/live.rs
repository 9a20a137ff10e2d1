//! The daemon's live state, shared with the HTTP endpoint: the applied
//! configuration, the latest attempt and its errors, object conditions,
//! next run times and running tasks with their progress. Readers take short
//! locks and copy what they need; nothing here waits on a task.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use kloset::Progress;

use crate::config::desired::DaemonSettings;
use crate::config::{ConfigError, DesiredState};
use crate::state::{ConditionRecord, ObjectKind, Origin, TaskId, TaskKind};

/// The outcome of the latest configuration attempt.
#[derive(Clone, Debug, Default)]
pub struct ConfigStatus {
    /// Content hash of the files last read (`None`: directory unreadable).
    pub attempted_revision: Option<String>,
    /// When they were read.
    pub attempted_at: Option<DateTime<Utc>>,
    /// Whether that attempt was valid.
    pub valid: bool,
    /// Every error of that attempt, with file and line.
    pub errors: Vec<ConfigError>,
    /// The revision running now.
    pub applied_revision: Option<String>,
    /// When it was applied.
    pub applied_at: Option<DateTime<Utc>>,
    /// Settings changed in the applied config that take effect only after
    /// a restart (e.g. `state_dir`).
    pub restart_required: Vec<String>,
    /// Reloads attempted, and how many of them failed validation.
    pub reloads: u64,
    /// Failed reloads (invalid configuration).
    pub reload_failures: u64,
}

/// A task that is running (or waiting for a permit).
#[derive(Clone, Debug)]
pub struct RunningTask {
    /// Its id, once recorded.
    pub id: Option<TaskId>,
    /// What it is.
    pub kind: TaskKind,
    /// Its schedule or one-shot task.
    pub origin: Origin,
    /// Its store.
    pub store: String,
    /// When it was due or claimed.
    pub queued_at: DateTime<Utc>,
    /// When it got its task slot (`queued_at` until then).
    pub started_at: DateTime<Utc>,
    /// Whether it holds its task slot (`max_concurrent_tasks`) yet.
    pub has_slot: bool,
    /// Live counters; `cancel()` stops it.
    pub progress: Arc<Progress>,
}

/// Key of an object's condition.
pub type ObjectKey = (ObjectKind, String);

/// Everything the endpoint shows that is not in the state database.
#[derive(Debug)]
pub struct Live {
    /// The config directory.
    pub config_dir: PathBuf,
    /// When this process started.
    pub started_at: DateTime<Utc>,
    /// The daemon settings in force (from the applied config, or the
    /// fallback when no config was ever valid).
    pub daemon: RwLock<DaemonSettings>,
    /// The applied configuration, if any was ever valid.
    pub applied: RwLock<Option<Arc<DesiredState>>>,
    /// The latest attempt.
    pub config: RwLock<ConfigStatus>,
    /// Conditions of stores, sources, destinations and schedules.
    pub conditions: RwLock<BTreeMap<ObjectKey, ConditionRecord>>,
    /// Next run of every applied schedule.
    pub next_runs: RwLock<BTreeMap<String, Option<DateTime<Utc>>>>,
    /// Running tasks by origin.
    pub running: Mutex<HashMap<Origin, RunningTask>>,
    /// Prune gates and maintenance counters per store.
    pub maintenance: super::maintenance::Maintenance,
    /// Lock holders seen on each store by the lock poller.
    pub locks: RwLock<BTreeMap<String, super::locks::StoreLocks>>,
}

impl Live {
    /// Live state for a daemon starting on `config_dir`.
    pub fn new(config_dir: PathBuf, daemon: DaemonSettings) -> Self {
        Live {
            config_dir,
            started_at: Utc::now(),
            daemon: RwLock::new(daemon),
            applied: RwLock::new(None),
            config: RwLock::new(ConfigStatus::default()),
            conditions: RwLock::new(BTreeMap::new()),
            next_runs: RwLock::new(BTreeMap::new()),
            running: Mutex::new(HashMap::new()),
            maintenance: Default::default(),
            locks: RwLock::new(BTreeMap::new()),
        }
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

    /// Problems that make the daemon not ready, most important first: an
    /// invalid latest config, a config never applied, settings waiting for
    /// a restart, then objects that are not ready.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let config = self.config_status();
        if !config.valid {
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
        } else if config.applied_revision != config.attempted_revision {
            out.push("the latest configuration is not applied yet".to_string());
        }
        for r in &config.restart_required {
            out.push(format!("restart required: {r}"));
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
