//! The serde model of one config file: every table and key, nothing else.
//!
//! No I/O and no cross-file knowledge here. Unknown keys are errors
//! (`deny_unknown_fields`), so a typo fails validation instead of being
//! ignored; the keys of resources, stores, sources and destinations that
//! belong to an integration are collected (`connection`, `placement`) and
//! checked by that integration. Spans point back into the file for error messages.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// One TOML file of the config directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModel {
    /// `[daemon]`, at most once across all files.
    pub daemon: Option<Spanned<DaemonTable>>,
    /// `[resource.NAME]`
    #[serde(default)]
    pub resource: BTreeMap<String, Spanned<ResourceTable>>,
    /// `[store.NAME]`
    #[serde(default)]
    pub store: BTreeMap<String, Spanned<StoreTable>>,
    /// `[source.NAME]`
    #[serde(default)]
    pub source: BTreeMap<String, Spanned<SourceTable>>,
    /// `[destination.NAME]`
    #[serde(default)]
    pub destination: BTreeMap<String, Spanned<DestinationTable>>,
    /// `[schedule.NAME]`
    #[serde(default)]
    pub schedule: BTreeMap<String, Spanned<TaskTable>>,
    /// `[task.NAME]`
    #[serde(default)]
    pub task: BTreeMap<String, Spanned<TaskTable>>,
    /// `[notify.NAME]`
    #[serde(default)]
    pub notify: BTreeMap<String, Spanned<NotifyTable>>,
}

/// `[daemon]`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonTable {
    /// `127.0.0.1:9180` (default) or `unix:/path`.
    pub listen: Option<String>,
    /// Where SQLite state lives (default `/var/lib/klosetd`, or `$STATE_DIRECTORY`).
    pub state_dir: Option<String>,
    /// Upper bound on tasks running at once (default 2).
    pub max_concurrent_tasks: Option<u32>,
    /// Bearer token for the data-reading HTTP endpoints.
    pub token_file: Option<String>,
    /// The `[notify.NAME]` channels of schedules and tasks that name none.
    pub notify: Option<Vec<String>>,
}

/// `[notify.NAME]`: where outcomes are reported.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTable {
    /// `webhook`, `healthchecks`, `ntfy` or `exec`.
    pub kind: String,
    /// The target URL, when it holds no secret …
    pub url: Option<String>,
    /// … or read from a file …
    pub url_file: Option<String>,
    /// … or from an environment variable.
    pub url_env: Option<String>,
    /// A bearer token (webhook, ntfy) from a file …
    pub token_file: Option<String>,
    /// … or from an environment variable.
    pub token_env: Option<String>,
    /// The command (exec), as argv.
    pub command: Option<Vec<String>>,
    /// Which events are sent (default depends on the kind).
    pub on: Option<Vec<String>>,
    /// How long one delivery may take (default 30s).
    pub timeout: Option<String>,
}

/// `[resource.NAME]`: something in the inventory. The keys besides
/// `class` and `subclass` are the connection, read by the integration that
/// serves the class (see `docs/integrations/`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ResourceTable {
    /// e.g. `filesystem`, `object-storage`, `database`.
    pub class: String,
    /// e.g. `local`, `s3`, `postgresql`.
    pub subclass: String,
    /// The connection: `path`, `endpoint`, `host`, credentials, ...
    #[serde(flatten)]
    pub connection: toml::Table,
}

/// `standard` or `cold` (policy only; never changes the storage).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// Available at all times.
    #[default]
    Standard,
    /// Archival storage: no read-back by default.
    Cold,
}

impl StorageType {
    /// `"standard"` or `"cold"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageType::Standard => "standard",
            StorageType::Cold => "cold",
        }
    }
}

/// Whether an empty store location is initialised automatically.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitPolicy {
    /// Initialise an empty location.
    #[default]
    Auto,
    /// Never initialise; an empty location is not ready.
    Never,
}

/// `[store.NAME]`: where backups are kept.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct StoreTable {
    /// A resource by name, or …
    pub resource: Option<String>,
    /// … a direct location (path, `fs://`, `s3://bucket/prefix`).
    pub location: Option<String>,
    /// Integration, when several fit.
    pub integration: Option<String>,
    /// Protocol, when the integration has several.
    pub protocol: Option<String>,
    /// `standard` (default) or `cold`.
    pub storage_type: Option<StorageType>,
    /// Passphrase from a file.
    pub passphrase_file: Option<String>,
    /// Passphrase from an environment variable.
    pub passphrase_env: Option<String>,
    /// `auto` (default) or `never`.
    pub init: Option<InitPolicy>,
    /// Where inside the resource (`path`, `bucket`, `prefix`), read by the
    /// integration.
    #[serde(flatten)]
    pub placement: toml::Table,
}

/// `[source.NAME]`: what is backed up.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct SourceTable {
    /// A resource by name, or …
    pub resource: Option<String>,
    /// … a direct location.
    pub location: Option<String>,
    /// Integration, when several fit.
    pub integration: Option<String>,
    /// Protocol, when the integration has several.
    pub protocol: Option<String>,
    /// Glob patterns to skip.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// A command run before the backup (argv); if it fails, nothing is backed up.
    pub pre: Option<Vec<String>>,
    /// A command run after the backup, whatever its outcome (argv); not run
    /// when `pre` failed (no backup started).
    pub post: Option<Vec<String>>,
    /// Where inside the resource and the integration's own keys (`path`,
    /// `bucket`, `prefix`, `database`, `command`, `file`, ...).
    #[serde(flatten)]
    pub placement: toml::Table,
}

/// `[destination.NAME]`: where restores go.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct DestinationTable {
    /// A resource by name, or …
    pub resource: Option<String>,
    /// … a direct location.
    pub location: Option<String>,
    /// Integration, when several fit.
    pub integration: Option<String>,
    /// Protocol, when the integration has several.
    pub protocol: Option<String>,
    /// Where inside the resource and the integration's own keys (`path`,
    /// `bucket`, `prefix`, `database`, `command`, `options`, ...).
    #[serde(flatten)]
    pub placement: toml::Table,
}

/// What a schedule or one-shot task does (one vocabulary with the state
/// database's task runs).
pub use crate::state::TaskKind;

/// `read_data = false | true | PERCENT | "PERCENT%"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ReadData {
    /// All or nothing.
    Flag(bool),
    /// A percentage as a number.
    Percent(f64),
    /// A percentage as text, e.g. `"10%"`.
    Text(String),
}

/// A number or a text: `max_unused = 0.2` or `"20%"`, `max_repack = 1024`
/// or `"4GiB"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ShareOrSize {
    /// Written as a number.
    Number(f64),
    /// Written as a text.
    Text(String),
}

/// `retention = { keep_last = 7, … }`
#[derive(Clone, Debug, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionTable {
    /// Keep the N latest snapshots.
    pub keep_last: Option<u32>,
    /// Keep one per hour for N hours.
    pub keep_hourly: Option<u32>,
    /// Keep one per day for N days.
    pub keep_daily: Option<u32>,
    /// Keep one per week for N weeks.
    pub keep_weekly: Option<u32>,
    /// Keep one per month for N months.
    pub keep_monthly: Option<u32>,
    /// Keep one per year for N years.
    pub keep_yearly: Option<u32>,
    /// Keep everything newer than this duration (e.g. `"14d"`).
    pub keep_within: Option<String>,
    /// Keep snapshots with any of these tags.
    #[serde(default)]
    pub keep_tags: Vec<String>,
}

/// `[schedule.NAME]` and `[task.NAME]`: the same keys; only schedules take
/// `cron`, `timezone`, `jitter`, `catch_up` and `alert_after`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTable {
    /// What to do.
    pub task: TaskKind,
    /// Source (backup).
    pub source: Option<String>,
    /// Store (every kind).
    pub store: Option<String>,
    /// Target store (sync).
    pub to: Option<String>,
    /// Destination (restore).
    pub destination: Option<String>,
    /// Cron expression (schedules only).
    pub cron: Option<String>,
    /// IANA time zone for `cron` (default UTC).
    pub timezone: Option<String>,
    /// Random delay up to this duration, e.g. `"5m"`.
    pub jitter: Option<String>,
    /// Run once at start if a run was missed while the daemon was down.
    pub catch_up: Option<bool>,
    /// Tags for the snapshot (backup).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Retention applied after a backup.
    pub retention: Option<RetentionTable>,
    /// Check data reading (check).
    pub read_data: Option<ReadData>,
    /// Snapshot to restore (default `latest`).
    pub snapshot: Option<String>,
    /// Path inside the snapshot to restore (default the whole snapshot).
    pub path: Option<String>,
    /// Snapshots to copy (sync): only these tags.
    #[serde(default)]
    pub tags_filter: Vec<String>,
    /// Prune: repack packs with more than this share unused (`"20%"` or `0.2`).
    pub max_unused: Option<ShareOrSize>,
    /// Prune: repack at most this many bytes per run (`"4GiB"`, or bytes).
    pub max_repack: Option<ShareOrSize>,
    /// Prune: the least time between marking packs and deleting them.
    pub grace: Option<String>,
    /// Snapshots to copy (sync): only these source names.
    #[serde(default)]
    pub sources_filter: Vec<String>,
    /// Snapshots to copy (sync): only the newest N of each source.
    pub latest: Option<u32>,
    /// Allow reading data from a cold store (restore, check with read_data).
    pub allow_cold_read: Option<bool>,
    /// Let a one-shot restore replace files that exist in the destination.
    pub overwrite: Option<bool>,
    /// The `[notify.NAME]` channels its outcomes go to (default `[daemon]
    /// notify`; `[]` for none).
    pub notify: Option<Vec<String>>,
    /// Schedules: stale when the last success is older than this.
    pub alert_after: Option<String>,
}
