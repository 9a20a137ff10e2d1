//! The validated desired state: what the daemon should run, with every
//! reference resolved. Built only by `validate`; holds no connections.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::model::{InitPolicy, RetentionTable, StorageType, TaskKind};

/// Where an object was declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Declaration {
    /// The file.
    #[serde(serialize_with = "lossy::path")]
    pub file: PathBuf,
    /// 1-based line of its table.
    pub line: usize,
    /// Content hash of its table.
    pub hash: String,
}

pub use crate::integrations::{Endpoint, SecretRef};

/// A `[resource.NAME]`: something in the inventory, as status shows it
/// (connection fields; credentials only by where they are read from).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourceDef {
    /// Its name.
    pub name: String,
    /// e.g. `filesystem`, `object-storage`.
    pub class: String,
    /// e.g. `local`, `s3`.
    pub subclass: String,
    /// Connection fields that were set (`path`, `bucket`, `endpoint`, …).
    pub fields: BTreeMap<String, String>,
    /// Credentials by name and where they are read from (never values).
    pub credentials: BTreeMap<String, SecretRef>,
    /// Declaration.
    pub origin: Declaration,
}

/// A `[store.NAME]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoreDef {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub endpoint: Endpoint,
    /// Standard or cold.
    pub storage_type: StorageType,
    /// Initialise when empty?
    pub init: InitPolicy,
    /// The passphrase.
    pub passphrase: SecretRef,
    /// Declaration.
    pub origin: Declaration,
}

/// A `[source.NAME]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceDef {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub endpoint: Endpoint,
    /// Glob patterns to skip.
    pub excludes: Vec<String>,
    /// Hook run before the backup (argv; empty for none).
    pub pre: Vec<String>,
    /// Hook run after the backup (argv; empty for none).
    pub post: Vec<String>,
    /// Declaration.
    pub origin: Declaration,
}

/// A `[destination.NAME]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DestinationDef {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub endpoint: Endpoint,
    /// Declaration.
    pub origin: Declaration,
}

/// What a task does, with resolved object names.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "task", rename_all = "lowercase")]
pub enum Action {
    /// Back up `source` into `store`, tag it, apply retention.
    Backup {
        /// Source name.
        source: String,
        /// Store name.
        store: String,
        /// Snapshot tags.
        tags: Vec<String>,
        /// Retention policy.
        retention: Option<RetentionTable>,
    },
    /// Check `store`.
    Check {
        /// Store name.
        store: String,
        /// Percentage of packs to read, if any.
        read_data: Option<f64>,
        /// Opt-in to read data from a cold store.
        allow_cold_read: bool,
    },
    /// Copy snapshots of `store` to `to`.
    Sync {
        /// Source store.
        store: String,
        /// Target store.
        to: String,
        /// Only snapshots with these tags (empty: all).
        tags: Vec<String>,
        /// Only snapshots of these source names (empty: all).
        sources: Vec<String>,
        /// Only the newest N snapshots of each source.
        latest: Option<u32>,
        /// Opt-in to read data from a cold source store.
        allow_cold_read: bool,
    },
    /// Restore from `store` into `destination`.
    Restore {
        /// Store name.
        store: String,
        /// Destination name.
        destination: String,
        /// `latest` or an id prefix.
        snapshot: String,
        /// Path inside the snapshot.
        path: String,
        /// Opt-in to read data from a cold store.
        allow_cold_read: bool,
        /// Restore test (schedules): into `DESTINATION/<snapshot short id>/`,
        /// replacing what an earlier test of the same snapshot wrote. A
        /// one-shot restore writes into the destination itself.
        into_snapshot_dir: bool,
        /// One-shot restores: replace existing files instead of refusing.
        overwrite: bool,
        /// Only snapshots of this source (`latest` is its latest).
        source: Option<String>,
    },
    /// Garbage-collect `store`.
    Prune {
        /// Store name.
        store: String,
        /// Repack packs with more than this share unused (0 to 1).
        max_unused: f64,
        /// Repack at most this many bytes per run.
        max_repack: u64,
        /// The least time between marking packs and deleting them, ms.
        grace_ms: u64,
        /// Opt-in to repack (read packs) on a cold store.
        allow_cold_read: bool,
    },
}

impl Action {
    /// The task kind.
    pub fn kind(&self) -> TaskKind {
        match self {
            Action::Backup { .. } => TaskKind::Backup,
            Action::Check { .. } => TaskKind::Check,
            Action::Sync { .. } => TaskKind::Sync,
            Action::Restore { .. } => TaskKind::Restore,
            Action::Prune { .. } => TaskKind::Prune,
        }
    }

    /// The store the task works on.
    pub fn store(&self) -> &str {
        match self {
            Action::Backup { store, .. }
            | Action::Check { store, .. }
            | Action::Sync { store, .. }
            | Action::Restore { store, .. }
            | Action::Prune { store, .. } => store,
        }
    }
}

/// A `[schedule.NAME]`.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduleDef {
    /// Its name.
    pub name: String,
    /// What it runs.
    pub action: Action,
    /// The cron text as written.
    pub cron: String,
    /// IANA time zone name.
    pub timezone: String,
    /// `cron`, `timezone`, `jitter` and `catch_up` as parsed by validation:
    /// the scheduler runs this, so nothing is parsed twice.
    #[serde(skip)]
    pub spec: crate::scheduler::ScheduleSpec,
    /// Jitter.
    #[serde(with = "duration_secs")]
    pub jitter: Duration,
    /// Catch up a run missed while the daemon was down.
    pub catch_up: bool,
    /// Declaration.
    pub origin: Declaration,
}

/// A `[task.NAME]` (one-shot).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OneShotDef {
    /// Its name.
    pub name: String,
    /// What it runs.
    pub action: Action,
    /// Declaration (its hash identifies the task's content).
    pub origin: Declaration,
}

/// Where the HTTP endpoint listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Listen {
    /// A TCP address.
    Tcp(std::net::SocketAddr),
    /// A Unix socket path.
    Unix(#[serde(serialize_with = "lossy::path")] PathBuf),
}

/// `[daemon]` with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DaemonSettings {
    /// HTTP listen address.
    pub listen: Listen,
    /// State directory.
    #[serde(serialize_with = "lossy::path")]
    pub state_dir: PathBuf,
    /// Tasks at once.
    pub max_concurrent_tasks: u32,
    /// Bearer token file for data-reading endpoints.
    #[serde(serialize_with = "lossy::opt_path")]
    pub token_file: Option<PathBuf>,
}

/// The whole validated configuration.
#[derive(Clone, Debug, Serialize)]
pub struct DesiredState {
    /// Content hash of the directory.
    pub revision: String,
    /// The config directory.
    #[serde(serialize_with = "lossy::path")]
    pub dir: PathBuf,
    /// Daemon settings.
    pub daemon: DaemonSettings,
    /// Resources by name.
    pub resources: BTreeMap<String, ResourceDef>,
    /// Stores by name.
    pub stores: BTreeMap<String, StoreDef>,
    /// Sources by name.
    pub sources: BTreeMap<String, SourceDef>,
    /// Destinations by name.
    pub destinations: BTreeMap<String, DestinationDef>,
    /// Schedules by name.
    pub schedules: BTreeMap<String, ScheduleDef>,
    /// One-shot tasks by name.
    pub tasks: BTreeMap<String, OneShotDef>,
    /// What is valid but probably not meant (e.g. a source inside a
    /// store), each at its `file:line`.
    #[serde(skip)]
    pub warnings: Vec<super::error::ConfigError>,
}

impl DesiredState {
    /// The one-shot tasks in the order they run per store: by file, then
    /// line (then name, for two tables on one line of generated files).
    pub fn oneshots_in_order(&self) -> Vec<&OneShotDef> {
        let mut list: Vec<&OneShotDef> = self.tasks.values().collect();
        list.sort_by(|a, b| {
            (&a.origin.file, a.origin.line, &a.name).cmp(&(&b.origin.file, b.origin.line, &b.name))
        });
        list
    }
}

/// Paths serialise as text, lossily for names that are not UTF-8, so a
/// definition (and its fingerprint) never fails to serialise.
mod lossy {
    pub fn path<S: serde::Serializer>(p: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.to_string_lossy())
    }

    pub fn opt_path<S: serde::Serializer>(
        p: &Option<std::path::PathBuf>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => path(p, s),
            None => s.serialize_none(),
        }
    }
}

mod duration_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}
