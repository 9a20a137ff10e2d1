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

/// The kind of a `[notify.NAME]` channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// A JSON POST (the documented, versioned body).
    Webhook,
    /// The healthchecks.io ping protocol (`/start`, success, `/fail`).
    Healthchecks,
    /// A message to an ntfy topic.
    Ntfy,
    /// A command, with the outcome in its environment and the body on stdin.
    Exec,
}

impl NotifyKind {
    /// Its name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Webhook => "webhook",
            NotifyKind::Healthchecks => "healthchecks",
            NotifyKind::Ntfy => "ntfy",
            NotifyKind::Exec => "exec",
        }
    }
}

/// A channel's URL: written in the file, or read from a secret when sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UrlRef {
    /// `url = "…"`: shown only as scheme and host.
    Plain(#[serde(serialize_with = "redacted_url")] String),
    /// `url_file` or `url_env`.
    Secret(SecretRef),
}

impl UrlRef {
    /// The URL, read now.
    pub fn read(&self) -> Result<zeroize::Zeroizing<String>, String> {
        match self {
            UrlRef::Plain(u) => Ok(zeroize::Zeroizing::new(u.clone())),
            UrlRef::Secret(s) => s
                .read_text()
                .map(|t| zeroize::Zeroizing::new(t.trim().to_string())),
        }
    }
}

/// `https://host/…`: what status and plans show of a URL.
fn redacted_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    let shown = match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("")),
        Err(_) => "…".to_string(),
    };
    s.serialize_str(&shown)
}

/// Where a channel delivers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyTarget {
    /// An HTTP(S) URL.
    Url(UrlRef),
    /// A command (argv).
    Command(Vec<String>),
}

/// A `[notify.NAME]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NotifyDef {
    /// Its name.
    pub name: String,
    /// What it speaks.
    pub kind: NotifyKind,
    /// Where it delivers.
    pub target: NotifyTarget,
    /// A bearer token (webhook, ntfy).
    pub token: Option<SecretRef>,
    /// The events it gets.
    pub on: std::collections::BTreeSet<crate::state::NotifyEvent>,
    /// How long one delivery may take.
    #[serde(with = "duration_secs")]
    pub timeout: Duration,
    /// Declaration.
    pub origin: Declaration,
}

/// `snapshot = "latest-readable"` of a restore: the newest snapshot that can
/// be read, passing over unreadable snapshot objects (the run is partial).
pub const LATEST_READABLE: &str = "latest-readable";

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
    /// The channels its outcomes go to.
    pub notify: Vec<String>,
    /// Stale when the last success is older than this.
    #[serde(with = "opt_duration_secs")]
    pub alert_after: Option<Duration>,
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
    /// The channels its outcomes go to.
    pub notify: Vec<String>,
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
    /// Notification channels by name.
    pub notify: BTreeMap<String, NotifyDef>,
    /// What is valid but probably not meant (e.g. a source inside a
    /// store), each at its `file:line`.
    #[serde(skip)]
    pub warnings: Vec<super::error::ConfigError>,
}

impl DesiredState {
    /// Every environment variable a secret is read from (`*_env` keys of
    /// stores, resources and notification channels): children must not
    /// inherit them. Found in the serialised definitions, where a
    /// [`SecretRef::Env`] is `{"env": NAME}` wherever it sits, so no secret
    /// of a new integration is missed.
    pub fn secret_env_names(&self) -> std::collections::BTreeSet<String> {
        self.secret_refs("env")
    }

    /// Every file a secret is read from (`*_file` keys), found the same
    /// way (`{"file": PATH}`): the panic hook redacts their contents.
    pub fn secret_files(&self) -> std::collections::BTreeSet<std::path::PathBuf> {
        self.secret_refs("file")
            .into_iter()
            .map(std::path::PathBuf::from)
            .collect()
    }

    /// The names in every `{KIND: NAME}` [`SecretRef`] of the definitions.
    fn secret_refs(&self, kind: &str) -> std::collections::BTreeSet<String> {
        fn walk(v: &serde_json::Value, kind: &str, out: &mut std::collections::BTreeSet<String>) {
            match v {
                serde_json::Value::Object(map) => {
                    if map.len() == 1
                        && let Some(serde_json::Value::String(name)) = map.get(kind)
                    {
                        out.insert(name.clone());
                    }
                    map.values().for_each(|v| walk(v, kind, out));
                }
                serde_json::Value::Array(list) => list.iter().for_each(|v| walk(v, kind, out)),
                _ => {}
            }
        }
        let mut out = std::collections::BTreeSet::new();
        if let Ok(v) = serde_json::to_value(self) {
            walk(&v, kind, &mut out);
        }
        out
    }

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

mod opt_duration_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
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
