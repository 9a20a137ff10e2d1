//! The JSON bodies and query parameters of the browsing endpoints
//! (`…/snapshots`, `…/{id}`, `…/{id}/tree/{path}`), as types: what
//! [`super::browse`] serializes and what the OpenAPI document describes
//! (the handlers carry `utoipa::path` attributes over these).

use kloset::Snapshot;
use kloset::snapshot::{FileError, SnapshotStats};
use kloset::tree::NodeKind;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

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
#[derive(Clone, Debug, Serialize, ToSchema)]
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
    #[schema(value_type = Object)]
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
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SnapshotDetail {
    /// The snapshot.
    #[serde(flatten)]
    pub summary: SnapshotSummary,
    /// `{path, error}` of each file left out.
    #[schema(value_type = Vec<Object>)]
    pub unreadable_files: Vec<FileError>,
}

/// A page of a store's snapshots, newest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
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
#[derive(Clone, Debug, Serialize, ToSchema)]
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
    #[schema(value_type = String)]
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
#[derive(Clone, Debug, Serialize, ToSchema)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use utoipa::PartialSchema;

    /// The property names of a schema, sorted.
    fn names(schema: &Value) -> Vec<String> {
        let mut keys: Vec<String> = schema["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// The handlers' `utoipa::path` attributes, as a document.
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(
        crate::http::browse::snapshots,
        crate::http::browse::snapshot_detail,
        crate::http::browse::tree
    ))]
    struct Browse;

    /// The generated operations take what the hand-written ones take.
    #[test]
    fn paths_match_the_openapi_document() {
        use utoipa::OpenApi;
        let doc: Value =
            serde_json::from_str(include_str!("openapi.json")).expect("the document parses");
        let ours = serde_json::to_value(Browse::openapi()).expect("generated document");
        for (path, id) in [
            ("/api/v1/stores/{store}/snapshots", "listSnapshots"),
            ("/api/v1/stores/{store}/snapshots/{id}", "getSnapshot"),
            (
                "/api/v1/stores/{store}/snapshots/{id}/tree/{path}",
                "listSnapshotDir",
            ),
        ] {
            let op = &ours["paths"][path]["get"];
            assert_eq!(op["operationId"], id, "{path}: {ours}");
            let mut query: Vec<&str> = op["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str())
                .collect();
            query.sort_unstable();
            let theirs = &doc["paths"][path]["get"];
            assert_eq!(theirs["operationId"], id);
            let expected: Vec<&str> = if id == "getSnapshot" {
                vec![]
            } else {
                vec!["cursor", "limit"]
            };
            assert_eq!(query, expected, "{path}");
            let theirs_refs = theirs["parameters"].as_array().map_or(0, Vec::len);
            assert_eq!(theirs_refs, expected.len(), "{path}");
        }
    }

    /// The types say what the hand-written document says, field for field.
    #[test]
    fn types_match_the_openapi_document() {
        let doc: Value =
            serde_json::from_str(include_str!("openapi.json")).expect("the document parses");
        let schemas = &doc["components"]["schemas"];
        let list = &doc["paths"]["/api/v1/stores/{store}/snapshots"]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"];
        for (ours, theirs) in [
            (TreeListing::schema(), &schemas["Tree"]),
            (TreeEntry::schema(), &schemas["TreeEntry"]),
            (SnapshotList::schema(), list),
            (SnapshotSummary::schema(), &schemas["SnapshotFields"]),
        ] {
            let ours = serde_json::to_value(ours).expect("schema as JSON");
            assert_eq!(names(&ours), names(theirs), "{ours}");
            assert!(!names(&ours).is_empty());
        }
    }
}
