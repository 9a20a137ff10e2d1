//! Deterministic tests of forget: local-time buckets, each rule on a small
//! table, grouping, the JSON plan, and execution on an in-memory store.

use std::time::Duration;

use super::*;
use crate::id::BlobId;
use crate::snapshot::Snapshot;
use crate::tree::{Node, NodeKind};

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;
/// 2026-12-03T23:30:00Z.
const T0: i64 = 1_796_340_600_000_000_000;

/// A snapshot header with the fields forget looks at.
pub(super) fn snap(
    host: &str,
    source: &str,
    tags: &[&str],
    time_ns: i64,
    utc_offset_s: Option<i32>,
) -> Snapshot {
    Snapshot {
        v: 1,
        id: SnapshotId::random(),
        time_ns,
        host: host.into(),
        source: source.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
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
        utc_offset_s,
        origin: None,
    }
}

fn reasons_of(plan: &ForgetPlan, id: SnapshotId) -> Option<Vec<String>> {
    plan.groups
        .iter()
        .flat_map(|g| g.keep.iter())
        .find(|s| s.id == id)
        .map(|s| s.reasons.iter().map(ToString::to_string).collect())
}

fn daily(n: u32) -> RetentionPolicy {
    RetentionPolicy {
        daily: Some(n),
        ..Default::default()
    }
}

#[test]
fn late_evening_utc_is_the_next_local_day_east_of_utc() {
    // 23:30 UTC at +02:00 is 01:30 on the next local day, so it shares
    // that day with a later snapshot and only the later one is kept.
    let late = snap("h", "/s", &[], T0, Some(7_200));
    let next_noon = snap("h", "/s", &[], T0 + 12 * HOUR, Some(7_200));
    let day_before = snap("h", "/s", &[], T0 - 12 * HOUR, Some(7_200));
    let all = [late.clone(), next_noon.clone(), day_before.clone()];
    let plan = plan_forget(&all, &daily(2), GroupBy::default()).expect("plan");
    assert_eq!(
        reasons_of(&plan, next_noon.id),
        Some(vec!["daily 2026-12-04".to_string()])
    );
    assert_eq!(
        reasons_of(&plan, day_before.id),
        Some(vec!["daily 2026-12-03".to_string()])
    );
    assert_eq!(plan.removed_ids(), vec![late.id]);
    let removed = &plan.groups[0].remove[0];
    assert_eq!(removed.local_time, "2026-12-04T01:30:00+02:00");

    // The same instants read as UTC put `late` on the 3rd, as its newest.
    let utc: Vec<Snapshot> = all
        .iter()
        .cloned()
        .map(|mut s| {
            s.utc_offset_s = None;
            s
        })
        .collect();
    let plan = plan_forget(&utc, &daily(2), GroupBy::default()).expect("plan");
    assert_eq!(
        reasons_of(&plan, late.id),
        Some(vec!["daily 2026-12-03".to_string()])
    );
    assert_eq!(plan.removed_ids(), vec![day_before.id]);
}

#[test]
fn last_keeps_the_newest_of_each_group() {
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(snap("a", "/x", &[], T0 + i * HOUR, None));
        all.push(snap("a", "/y", &[], T0 + i * HOUR, None));
        all.push(snap("b", "/x", &[], T0 + i * HOUR, None));
    }
    let policy = RetentionPolicy {
        last: Some(2),
        ..Default::default()
    };
    let plan = plan_forget(&all, &policy, GroupBy::default()).expect("plan");
    assert_eq!(plan.groups.len(), 3);
    for g in &plan.groups {
        assert_eq!(g.keep.len(), 2, "{}", g.key);
        assert_eq!(g.remove.len(), 3, "{}", g.key);
        assert!(g.keep[0].time_ns > g.keep[1].time_ns, "newest first");
        assert!(g.keep[1].time_ns > g.remove[0].time_ns);
        assert!(g.keep.iter().all(|s| s.reasons == [Reason::Last]));
    }
    assert_eq!(plan.groups[0].key.to_string(), "host a, source /x");

    // By host only, a's two sources form one group.
    let by_host: GroupBy = "host".parse().expect("group by");
    let plan = plan_forget(&all, &policy, by_host).expect("plan");
    assert_eq!(plan.groups.len(), 2);
    assert_eq!(plan.groups[0].key.to_string(), "host a");
    assert_eq!(plan.groups[0].keep.len(), 2);
    assert_eq!(plan.groups[0].remove.len(), 8);
    assert_eq!(plan.kept_count(), 4);
    assert_eq!(plan.removed_count(), 11);
}

#[test]
fn within_counts_from_the_newest_of_the_group_not_the_clock() {
    // Taken in the year 2000: a wall-clock `within` would forget them all.
    let base = 946_684_800_000_000_000;
    let all: Vec<Snapshot> = (0..10)
        .map(|i| snap("h", "/s", &[], base + i * DAY, None))
        .collect();
    let policy = RetentionPolicy {
        within: Some(Duration::from_secs(3 * 86_400)),
        ..Default::default()
    };
    let plan = plan_forget(&all, &policy, GroupBy::default()).expect("plan");
    let kept: Vec<i64> = plan.groups[0].keep.iter().map(|s| s.time_ns).collect();
    // Days 9, 8, 7 and 6 (exactly three days older: inclusive).
    assert_eq!(
        kept,
        (6..10).rev().map(|i| base + i * DAY).collect::<Vec<_>>()
    );
    assert_eq!(
        plan.groups[0].keep[0].reasons,
        [Reason::Within(Duration::from_secs(3 * 86_400))]
    );
    assert_eq!(plan.groups[0].keep[0].reasons[0].to_string(), "within 3d");
}

#[test]
fn every_rule_that_keeps_a_snapshot_is_recorded() {
    let old = snap("h", "/s", &["keep", "x"], T0 - 400 * DAY, None);
    let a = snap("h", "/s", &[], T0 - DAY, None);
    let b = snap("h", "/s", &["keep"], T0, None);
    let policy = RetentionPolicy {
        last: Some(1),
        daily: Some(1),
        weekly: Some(1),
        monthly: Some(1),
        yearly: Some(2),
        within: Some(Duration::from_secs(3_600)),
        tags: vec!["keep".into(), "keep".into()],
        ..Default::default()
    };
    let plan = plan_forget(
        &[old.clone(), a.clone(), b.clone()],
        &policy,
        GroupBy::default(),
    )
    .expect("plan");
    assert_eq!(
        reasons_of(&plan, b.id).expect("b kept"),
        [
            "last",
            "daily 2026-12-03",
            "weekly 2026-W49",
            "monthly 2026-12",
            "yearly 2026",
            "within 1h",
            "tag keep"
        ]
    );
    assert_eq!(
        reasons_of(&plan, old.id).expect("old kept"),
        ["yearly 2025", "tag keep"]
    );
    assert_eq!(plan.removed_ids(), vec![a.id]);
}

#[test]
fn tags_group_by_their_sorted_list() {
    let all = [
        snap("h", "/s", &["b", "a"], T0, None),
        snap("h", "/s", &["a", "b", "a"], T0 - HOUR, None),
        snap("h", "/s", &[], T0 - 2 * HOUR, None),
    ];
    let by: GroupBy = "tags".parse().expect("group by");
    let plan = plan_forget(
        &all,
        &RetentionPolicy {
            last: Some(1),
            ..Default::default()
        },
        by,
    )
    .expect("plan");
    let keys: Vec<String> = plan.groups.iter().map(|g| g.key.to_string()).collect();
    assert_eq!(keys, ["no tags", "tags a,b"]);
    assert_eq!(plan.removed_ids(), vec![all[1].id]);
}

#[test]
fn empty_policies_are_refused_before_planning() {
    let all = [snap("h", "/s", &[], T0, None)];
    for policy in [
        RetentionPolicy::default(),
        RetentionPolicy {
            last: Some(0),
            hourly: Some(0),
            yearly: Some(0),
            ..Default::default()
        },
    ] {
        let err = plan_forget(&all, &policy, GroupBy::default()).expect_err("refused");
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("empty retention policy"), "{err}");
    }
}

#[test]
fn the_plan_serializes_with_hex_ids_and_rfc3339_times() {
    let keep = snap("h", "/s", &["t"], T0, Some(7_200));
    let drop = snap("h", "/s", &[], T0 - DAY, Some(7_200));
    let policy = RetentionPolicy {
        last: Some(1),
        within: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let plan =
        plan_forget(&[keep.clone(), drop.clone()], &policy, GroupBy::default()).expect("plan");
    let v = serde_json::to_value(&plan).expect("json");
    assert_eq!(v["group_by"], "host,source");
    assert_eq!(v["policy"]["last"], 1);
    assert_eq!(v["policy"]["within"], "1m");
    assert!(v["policy"].get("daily").is_none(), "{v}");
    let g = &v["groups"][0];
    assert_eq!(g["key"], serde_json::json!({"host": "h", "source": "/s"}));
    assert_eq!(g["keep"][0]["id"], keep.id.to_hex());
    assert_eq!(g["keep"][0]["time"], "2026-12-03T23:30:00Z");
    assert_eq!(g["keep"][0]["local_time"], "2026-12-04T01:30:00+02:00");
    assert_eq!(
        g["keep"][0]["reasons"],
        serde_json::json!(["last", "within 1m"])
    );
    assert_eq!(g["remove"][0]["id"], drop.id.to_hex());
    assert!(g["remove"][0].get("reasons").is_none(), "{g}");
}

#[test]
fn forget_deletes_only_removed_snapshot_objects() {
    use crate::repository::CreateOptions;
    use crate::storage::{Key, Location, SNAPSHOTS_DIR, Storage};

    let storage = Storage::open(&Location::Memory, false).expect("storage");
    let opts = CreateOptions {
        kdf: crate::crypto::KdfParams::with_cost(64, 1, 1),
        ..Default::default()
    };
    let repo = Repository::create(storage, b"pass", opts).expect("create");
    let all: Vec<Snapshot> = (0..6)
        .map(|i| snap("h", "/s", &[], T0 + i * HOUR, None))
        .collect();
    for s in &all {
        repo.save_snapshot(s).expect("save");
    }
    // A garbled snapshot object: unreadable, so never planned nor deleted.
    let garbled = Key::Snapshot(SnapshotId::random());
    repo.storage()
        .put(garbled, bytes::Bytes::from_static(b"not a snapshot"))
        .expect("put");

    let (good, bad) = repo.snapshots_with_problems().expect("list");
    assert_eq!((good.len(), bad.len()), (6, 1));
    let policy = RetentionPolicy {
        last: Some(2),
        ..Default::default()
    };
    let plan = plan_forget(&good, &policy, GroupBy::default()).expect("plan");

    let dry = forget(&repo, &plan, true).expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(dry.removed.len(), 4);
    assert_eq!(
        repo.storage()
            .list(Some(SNAPSHOTS_DIR))
            .expect("list")
            .len(),
        7
    );

    let report = forget(&repo, &plan, false).expect("forget");
    assert!(report.failed.is_empty(), "{report:?}");
    let mut removed = report.removed.clone();
    removed.sort();
    let mut expected: Vec<SnapshotId> = all[..4].iter().map(|s| s.id).collect();
    expected.sort();
    assert_eq!(removed, expected);
    let (good, bad) = repo.snapshots_with_problems().expect("list");
    let left: Vec<SnapshotId> = good.iter().map(|s| s.id).collect();
    assert_eq!(left, vec![all[4].id, all[5].id]);
    assert_eq!(bad.len(), 1, "the garbled object is still there");
    assert_eq!(bad[0].0, garbled.path());

    // Running the same plan again finds them gone and is not an error.
    let again = forget(&repo, &plan, false).expect("again");
    assert_eq!(again.removed.len(), 4);
}
