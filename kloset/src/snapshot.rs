//! Snapshot headers: the object that makes a backup visible.
//!
//! A snapshot header is written last, after every pack, index and tree it
//! references is durable, with a fresh random id that no other writer can
//! pick. A crash before that leaves unreferenced data, never a partial
//! snapshot.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId, StoreId};
use crate::repository::SnapshotProblem;
use crate::tree::Node;

/// Snapshot structure version.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Counters recorded with each snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// Regular files in the snapshot.
    pub files: u64,
    /// Directories, including the root.
    pub dirs: u64,
    /// Symlinks and special files.
    pub others: u64,
    /// Sum of file sizes.
    pub bytes: u64,
    /// Files whose content was taken from the parent without reading.
    pub files_unchanged: u64,
    /// Blobs this backup added to the store.
    pub blobs_added: u64,
    /// Plaintext bytes of the blobs it added.
    pub bytes_added: u64,
    /// Bytes it wrote to storage for those blobs (compressed and sealed).
    pub bytes_stored: u64,
    /// Wall time of the backup in milliseconds.
    pub duration_ms: u64,
}

/// A file or directory that could not be read; the backup goes on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileError {
    /// Path relative to the backed-up root.
    pub path: String,
    /// What went wrong.
    pub error: String,
}

/// A snapshot header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Structure version.
    pub v: u32,
    /// Its id (also its object name).
    pub id: SnapshotId,
    /// When the backup started, Unix nanoseconds.
    pub time_ns: i64,
    /// Host that made it.
    pub host: String,
    /// Source name (a path, or a configured source name).
    pub source: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Snapshot used for change detection.
    #[serde(default)]
    pub parent: Option<SnapshotId>,
    /// Root tree.
    pub tree: BlobId,
    /// Metadata of the backed-up root itself.
    pub root: Node,
    /// Counters.
    pub stats: SnapshotStats,
    /// Unreadable files.
    #[serde(default)]
    pub errors: Vec<FileError>,
    /// The writing host's offset from UTC at `time_ns`, in seconds east of
    /// UTC; retention's calendar buckets (days, weeks, …) are counted in
    /// this local time. Absent in snapshots written before it existed
    /// (read as UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset_s: Option<i32>,
    /// Where a snapshot written by sync was copied from (FORMAT.md §12,
    /// "Snapshots written by sync"). Absent in snapshots made by a backup
    /// and in snapshots written before sync existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// The snapshot a synced copy was made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// The store the original lives in.
    pub store: StoreId,
    /// The original snapshot's id in that store.
    pub snapshot: SnapshotId,
}

impl Snapshot {
    /// The snapshot this one is a copy of, or itself: the identity that
    /// sync keeps across stores.
    pub fn original(&self, store: StoreId) -> Origin {
        self.origin.unwrap_or(Origin {
            store,
            snapshot: self.id,
        })
    }
}

impl Snapshot {
    /// Time as RFC 3339 (UTC, seconds).
    pub fn time_rfc3339(&self) -> String {
        format_time(self.time_ns)
    }

    /// Whether the snapshot carries a tag.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// Formats Unix nanoseconds as RFC 3339 UTC with second precision.
pub fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian), valid
    // before 1970 too.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Picks one snapshot from `snapshots` (sorted by time) by `latest` or a
/// unique hex id prefix.
pub fn resolve<'a>(snapshots: &'a [Snapshot], spec: &str) -> Result<&'a Snapshot> {
    if spec == "latest" {
        return snapshots.last().ok_or_else(|| Error::NotFound {
            what: "latest snapshot (the store has none)".into(),
        });
    }
    if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidArgument(format!(
            "snapshot {spec:?} must be `latest` or a hex id prefix"
        )));
    }
    let spec_lower = spec.to_ascii_lowercase();
    let mut found = snapshots
        .iter()
        .filter(|s| s.id.to_hex().starts_with(&spec_lower));
    match (found.next(), found.next()) {
        (Some(s), None) => Ok(s),
        (None, _) => Err(Error::NotFound {
            what: format!("snapshot {spec}"),
        }),
        (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
            "snapshot prefix {spec} is ambiguous; give more characters"
        ))),
    }
}

/// The snapshot objects that cannot be read and may be the one `spec`
/// names: for `latest` every one (its time is unknown); for an id prefix
/// those whose object name (the id) starts with it, and any whose name is
/// not an id at all.
fn unreadable_candidates(unreadable: &[SnapshotProblem], spec: &str) -> Vec<usize> {
    let prefix = spec.to_ascii_lowercase();
    unreadable
        .iter()
        .enumerate()
        .filter(|(_, (object, _))| {
            let name = object
                .rsplit('/')
                .next()
                .unwrap_or(object)
                .to_ascii_lowercase();
            spec == "latest" || name.starts_with(&prefix) || SnapshotId::from_hex(&name).is_err()
        })
        .map(|(i, _)| i)
        .collect()
}

/// Resolves `spec` as [`resolve`] does among the readable snapshots `good`
/// (sorted by time), minding the snapshot objects that could not be read.
///
/// When one of `unreadable` may be the snapshot asked for (see
/// [`unreadable_candidates`]), it fails with [`Error::Corrupt`] naming every
/// such object, unless `skip_unreadable`: then it resolves among the
/// readable ones and returns the objects it passed over, for the caller to
/// warn about. Never silently picks an older snapshot than the one asked for.
pub fn resolve_minding(
    good: &[Snapshot],
    mut unreadable: Vec<SnapshotProblem>,
    spec: &str,
    skip_unreadable: bool,
) -> Result<(Snapshot, Vec<SnapshotProblem>)> {
    if spec != "latest" && (spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit())) {
        return resolve(good, spec).cloned().map(|s| (s, Vec::new()));
    }
    let candidates = unreadable_candidates(&unreadable, spec);
    let mut passed = Vec::new();
    for i in candidates.into_iter().rev() {
        passed.push(unreadable.swap_remove(i));
    }
    passed.sort_by(|a, b| a.0.cmp(&b.0));
    if !passed.is_empty() && !skip_unreadable {
        let names: Vec<&str> = passed.iter().map(|(o, _)| o.as_str()).collect();
        let what = if spec == "latest" {
            "the latest snapshot".to_string()
        } else {
            format!("snapshot {spec}")
        };
        return Err(Error::corrupt(
            names.join(", "),
            format!(
                "{} snapshot object(s) cannot be read ({}), and one of them may be {what}; \
                 none was chosen",
                passed.len(),
                passed[0].1
            ),
        ));
    }
    resolve(good, spec).cloned().map(|s| (s, passed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn damaged(id: u8) -> SnapshotProblem {
        (
            format!("snapshots/{}", format!("{id:02x}").repeat(32)),
            Error::corrupt("x", "authentication failed"),
        )
    }

    #[test]
    fn an_unreadable_snapshot_blocks_latest_unless_skipped() {
        let good = [snap([0xaa; 32], 1), snap([0xbb; 32], 2)];
        let err =
            resolve_minding(&good, vec![damaged(0xcc)], "latest", false).expect_err("must refuse");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("snapshots/{}", "cc".repeat(32))),
            "{msg}"
        );
        assert!(msg.contains("may be the latest snapshot"), "{msg}");
        let (s, passed) =
            resolve_minding(&good, vec![damaged(0xcc)], "latest", true).expect("skipped");
        assert_eq!(s.id, good[1].id);
        assert_eq!(passed.len(), 1);
        let (s, passed) = resolve_minding(&good, Vec::new(), "latest", false).expect("clean");
        assert_eq!((s.id, passed.len()), (good[1].id, 0));
    }

    #[test]
    fn a_prefix_is_blocked_only_by_unreadable_objects_it_matches() {
        let good = [snap([0xaa; 32], 1), snap([0xbb; 32], 2)];
        let (s, passed) = resolve_minding(&good, vec![damaged(0xcc)], "aa", false).expect("aa");
        assert_eq!((s.id, passed.len()), (good[0].id, 0));
        assert!(resolve_minding(&good, vec![damaged(0xcc)], "cc", false).is_err());
        let mut odd = damaged(0);
        odd.0 = "snapshots/not-an-id".into();
        assert!(resolve_minding(&good, vec![odd], "aa", false).is_err());
    }

    #[test]
    fn times_format_before_and_after_1970() {
        assert_eq!(super::format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            super::format_time(-31_535_983_000_000_000),
            "1969-01-01T00:00:17Z"
        );
        assert_eq!(
            super::format_time(1_750_000_000_123_000_000),
            "2025-06-15T15:06:40Z"
        );
        assert_eq!(
            super::format_time(4_102_444_800_000_000_000),
            "2100-01-01T00:00:00Z"
        );
        assert_eq!(super::format_time(-1), "1969-12-31T23:59:59Z");
    }

    use crate::tree::NodeKind;

    fn snap(id: [u8; 32], t: i64) -> Snapshot {
        Snapshot {
            v: 1,
            id: SnapshotId::from_bytes(id),
            time_ns: t,
            host: "h".into(),
            source: "/s".into(),
            tags: vec![],
            parent: None,
            tree: BlobId::random(),
            root: Node {
                name: Default::default(),
                kind: NodeKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                inode: 0,
                device: 0,
                size: 0,
                target: None,
                rdev: None,
                content: vec![],
                subtree: None,
            },
            stats: Default::default(),
            errors: vec![],
            utc_offset_s: None,
            origin: None,
        }
    }

    #[test]
    fn resolve_latest_and_prefixes() {
        let mut a = [0u8; 32];
        a[0] = 0xab;
        let mut b = [0u8; 32];
        b[0] = 0xac;
        let list = vec![snap(a, 1), snap(b, 2)];
        assert_eq!(resolve(&list, "latest").expect("latest").time_ns, 2);
        assert_eq!(resolve(&list, "ab").expect("ab").time_ns, 1);
        assert_eq!(resolve(&list, "AB").expect("case").time_ns, 1);
        assert!(resolve(&list, "a").is_err(), "ambiguous");
        assert!(resolve(&list, "ff").is_err(), "missing");
        assert!(resolve(&list, "../x").is_err(), "not hex");
        assert!(resolve(&[], "latest").is_err());
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
    }
}
