//! What the live status is made of: the latest configuration attempt, an
//! apply that failed, running tasks, store counters and lock observations.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kloset::Progress;

use crate::config::ConfigError;
use crate::state::{ObjectKind, Origin, TaskId, TaskKind};

/// Key of an object's condition.
pub type ObjectKey = (ObjectKind, String);

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
    /// Reloads attempted.
    pub reloads: u64,
    /// Failed reloads (invalid configuration).
    pub reload_failures: u64,
    /// The valid revision whose apply failed and is being retried.
    pub apply_failure: Option<ApplyFailure>,
}

/// A valid configuration that could not be applied (yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyFailure {
    /// The revision that failed to apply.
    pub revision: String,
    /// Why, with the step that failed.
    pub message: String,
    /// Failed attempts in a row.
    pub failures: u32,
    /// When the next attempt is due.
    pub retry_at: DateTime<Utc>,
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

/// Maintenance counters of one store, since the daemon started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounters {
    /// Bytes of packs deleted by prunes.
    pub prune_freed_bytes: u64,
    /// Packs rewritten by prunes.
    pub prune_repacked_packs: u64,
    /// Snapshots forgotten by retention after backups.
    pub retention_forgotten: u64,
}

/// What the latest lock poll saw on one store.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StoreLocks {
    /// Distinct lock holders.
    pub holders: usize,
    /// Age of the oldest holder's lock by its own clock (0 with none).
    pub oldest_age_s: f64,
}

/// Daemon bookkeeping that failed outside any object or task: shown as a
/// problem (and on `/readyz`) until the same step next succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Recording a configuration attempt in the state database.
    RecordAttempt,
    /// Recording object conditions in the state database.
    RecordConditions,
    /// Recording next run times in the state database.
    RecordNextRuns,
    /// Reading or claiming one-shot tasks.
    OneShots,
    /// Firing, skipping or recording a due scheduled run.
    Schedules,
    /// Bookkeeping of a task run (recording its start or outcome).
    TaskBookkeeping,
    /// Keeping the task history: a corrupt state database was moved aside
    /// (shown until the moved copy is removed).
    StateHistory,
    /// Reading or updating the notification queue.
    Notifications,
    /// Checking schedules for staleness (`alert_after`).
    Staleness,
}

impl Fault {
    /// What failed, in words.
    pub fn what(self) -> &'static str {
        match self {
            Fault::RecordAttempt => "recording the configuration attempt",
            Fault::RecordConditions => "recording object conditions",
            Fault::RecordNextRuns => "recording next run times",
            Fault::OneShots => "handling one-shot tasks",
            Fault::Schedules => "handling a due scheduled run",
            Fault::TaskBookkeeping => "recording a task run",
            Fault::StateHistory => "keeping the task history",
            Fault::Notifications => "keeping the notification queue",
            Fault::Staleness => "checking schedules for staleness",
        }
    }
}
