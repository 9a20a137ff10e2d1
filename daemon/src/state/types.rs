//! Shared vocabulary of the state module (ids, kinds, statuses, origins) and its SQL/serde codecs.
//!
//! All enums are stored and serialized as their lowercase names
//! (`as_str`/`FromStr`), so the database and the HTTP JSON read the same.
//! Times are stored and serialized by one function, [`format_time`].

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

/// Generates `as_str`, `Display`, `FromStr`, serde and SQL conversions for a
/// fieldless enum stored as lowercase text.
macro_rules! text_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident ($what:literal) {
        $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The lowercase name stored in the database and shown in JSON.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::state::types::ParseEnumError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::state::types::ParseEnumError {
                        what: $what,
                        value: s.to_owned(),
                        expected: &[$($text,)+],
                    }),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                v: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                v.as_str()?.parse().map_err(rusqlite::types::FromSqlError::other)
            }
        }
    };
}

/// A stored text value that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {})", expected.join(", "))]
pub struct ParseEnumError {
    what: &'static str,
    value: String,
    expected: &'static [&'static str],
}

/// A time as stored: RFC 3339, UTC, milliseconds, `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DbTime(pub(super) DateTime<Utc>);

pub(super) fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl ToSql for DbTime {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(format_time(&self.0)))
    }
}

impl FromSql for DbTime {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        let t = DateTime::parse_from_rfc3339(v.as_str()?).map_err(FromSqlError::other)?;
        Ok(DbTime(t.with_timezone(&Utc)))
    }
}

/// A count or size: SQLite integers are i64, so values above `i64::MAX`
/// are refused on write and negative ones on read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DbU64(pub(super) u64);

impl ToSql for DbU64 {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        i64::try_from(self.0)
            .map(ToSqlOutput::from)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    }
}

impl FromSql for DbU64 {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        let n = v.as_i64()?;
        u64::try_from(n)
            .map(DbU64)
            .map_err(|_| FromSqlError::OutOfRange(n))
    }
}

/// Opaque JSON stored as text.
#[derive(Debug)]
pub(super) struct DbJson(pub(super) serde_json::Value);

impl ToSql for DbJson {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.to_string()))
    }
}

impl FromSql for DbJson {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        serde_json::from_str(v.as_str()?)
            .map(DbJson)
            .map_err(FromSqlError::other)
    }
}

/// Serde helpers writing times in the stored format.
pub(super) mod time_serde {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    pub fn time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(t))
    }

    pub fn opt_time<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => time(t, s),
            None => s.serialize_none(),
        }
    }
}

/// A task run's id. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub i64);

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for TaskId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(TaskId)
    }
}

impl ToSql for TaskId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0))
    }
}

impl FromSql for TaskId {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(v).map(TaskId)
    }
}

text_enum! {
    /// What a task does.
    pub enum TaskKind ("task kind") {
        Backup => "backup",
        Check => "check",
        Sync => "sync",
        Restore => "restore",
        Prune => "prune",
    }
}

text_enum! {
    /// Where a run is in its life.
    pub enum TaskStatus ("task status") {
        Running => "running",
        Succeeded => "succeeded",
        Partial => "partial",
        Failed => "failed",
        Skipped => "skipped",
        Cancelled => "cancelled",
    }
}

text_enum! {
    /// What a notification reports (`on = [...]` of a `[notify.NAME]`).
    pub enum NotifyEvent ("notification event") {
        /// A run got its task slot and starts.
        Start => "start",
        /// A run succeeded.
        Success => "success",
        /// A run failed.
        Failure => "failure",
        /// A backup wrote a snapshot but missed files.
        Partial => "partial",
        /// A schedule succeeded after a failed or partial run, or after it
        /// was stale.
        Recovery => "recovery",
        /// A schedule has had no success for longer than its `alert_after`.
        Stale => "stale",
    }
}

text_enum! {
    /// Whether a run comes from a `[schedule.NAME]` or a one-shot `[task.NAME]`.
    pub enum OriginKind ("task origin") {
        Schedule => "schedule",
        Task => "task",
    }
}

/// The configuration object a run comes from. Serialized as
/// `"schedule": "NAME"` or `"task": "NAME"` inside a task record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Schedule(String),
    Task(String),
}

impl Origin {
    pub fn kind(&self) -> OriginKind {
        match self {
            Origin::Schedule(_) => OriginKind::Schedule,
            Origin::Task(_) => OriginKind::Task,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Origin::Schedule(n) | Origin::Task(n) => n,
        }
    }

    pub(super) fn from_parts(kind: OriginKind, name: String) -> Origin {
        match kind {
            OriginKind::Schedule => Origin::Schedule(name),
            OriginKind::Task => Origin::Task(name),
        }
    }
}

text_enum! {
    /// The kind of a configuration object: what diffs, conditions and the
    /// applied-objects table are keyed by.
    pub enum ObjectKind ("object kind") {
        /// The `[daemon]` table (one, named `daemon`).
        Daemon => "daemon",
        Resource => "resource",
        Store => "store",
        Source => "source",
        Destination => "destination",
        Schedule => "schedule",
        Task => "task",
        /// A `[notify.NAME]` channel.
        Notify => "notify",
    }
}

text_enum! {
    /// Where a one-shot claim is: `started` (its run is going), `done` (the
    /// run finished; `status` says how), `interrupted` (the daemon died while
    /// it ran; never re-run).
    pub enum OneshotState ("one-shot state") {
        Started => "started",
        Done => "done",
        Interrupted => "interrupted",
    }
}
