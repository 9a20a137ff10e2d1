//! The JSON bodies and query parameters of the browsing endpoints
//! (`…/snapshots`, `…/{id}`, `…/{id}/tree/{path}`), as types: what
//! [`super::browse`] serializes. The OpenAPI document describes them in
//! [`super::browse_schema`] (with the patterns and nested schemas the
//! derive cannot infer from these types); `openapi_drift` serializes each
//! of them and checks it against the generated document.

use kloset::Snapshot;
use kloset::snapshot::{FileError, SnapshotStats};
use kloset::tree::NodeKind;
use serde::Serialize;
use utoipa::IntoParams;

/// The paging parameters of a directory listing (parsed by
/// [`super::listing::Paging`]; this type documents them).
#[derive(Clone, Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "documents the query string, which `Paging` parses"
)]
pub struct TreePageQuery {
    /// Items per page, 1 to 10000 (default 1000); anything else is a 400.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page, as given (the last name on
    /// it, percent-encoded); left out for the first page; empty is a 400.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

/// The paging parameters of a snapshot list.
#[derive(Clone, Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "documents the query string, which `Paging` parses"
)]
pub struct SnapshotPageQuery {
    /// Items per page, 1 to 10000 (default 1000); anything else is a 400.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (80 lower-case hex digits);
    /// left out for the first page.
    #[param(pattern = "^[0-9a-f]{80}$")]
    pub cursor: Option<String>,
}

/// One snapshot, as listed.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotSummary {
    /// The full id (64 hex characters).
    pub id: String,
    /// Its first 8 hex characters.
    pub short_id: String,
    /// When it was taken (RFC 3339, UTC).
    pub time: String,
    /// The host that took it.
    pub host: String,
    /// What was backed up.
    pub source: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// The snapshot it was compared with, if any.
    pub parent: Option<String>,
    /// Its counters.
    pub stats: SnapshotStats,
    /// Files that could not be read.
    pub errors: usize,
}

impl From<&Snapshot> for SnapshotSummary {
    fn from(s: &Snapshot) -> Self {
        SnapshotSummary {
            id: s.id.to_string(),
            short_id: s.id.short(),
            time: kloset::snapshot::format_time(s.time_ns),
            host: s.host.clone(),
            source: s.source.clone(),
            tags: s.tags.clone(),
            parent: s.parent.map(|p| p.to_string()),
            stats: s.stats.clone(),
            errors: s.errors.len(),
        }
    }
}

/// One snapshot with the files that could not be read.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotDetail {
    /// The snapshot.
    #[serde(flatten)]
    pub summary: SnapshotSummary,
    /// `{path, error}` of each file left out.
    pub unreadable_files: Vec<FileError>,
}

/// A page of a store's snapshots, newest first.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotList {
    /// The page size asked for (or the default).
    pub limit: usize,
    /// The `cursor` of the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// The URL of the next page; `null` on the last page.
    pub next: Option<String>,
    /// At most `limit` snapshots.
    pub snapshots: Vec<SnapshotSummary>,
}

/// One directory entry.
#[derive(Clone, Debug, Serialize)]
pub struct TreeEntry {
    /// The name for display (lossy for bytes that are not UTF-8).
    pub name: String,
    /// The exact name, percent-encoded.
    pub name_encoded: String,
    /// The URL that lists this directory or downloads this file; `null`
    /// for symlinks and special files.
    pub href: Option<String>,
    /// `file`, `dir`, `symlink`, `fifo`, `chardevice`, `blockdevice`,
    /// `socket`.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits in octal.
    pub mode: String,
    /// Modification time (RFC 3339, UTC).
    pub mtime: String,
    /// A symlink's target.
    pub target: Option<String>,
}

/// A page of a directory, by name bytes.
#[derive(Clone, Debug, Serialize)]
pub struct TreeListing {
    /// The directory's path, for display.
    pub path: String,
    /// This directory's URL (first page).
    pub href: String,
    /// The page size asked for (or the default).
    pub limit: usize,
    /// The `cursor` of the next page (the last name of this one,
    /// percent-encoded); `null` on the last page.
    pub next_cursor: Option<String>,
    /// The URL of the next page; `null` on the last page.
    pub next: Option<String>,
    /// At most `limit` entries.
    pub entries: Vec<TreeEntry>,
}
