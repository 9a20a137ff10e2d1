//! Property tests of the forget planner: for random snapshots (times over
//! several years, UTC offsets from -12h to +14h, hosts, sources, tags) and
//! random policies, every rule keeps exactly what its definition says,
//! computed here independently of the planner.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{Datelike, NaiveDateTime, Timelike};
use proptest::prelude::*;

use super::tests::snap;
use super::*;
use crate::snapshot::Snapshot;

const SEC: i64 = 1_000_000_000;
/// 2020-01-01T00:00:00Z.
const BASE: i64 = 1_577_836_800 * SEC;
const TAGS: [&str; 3] = ["keep", "daily", "x"];

fn offset() -> impl Strategy<Value = Option<i32>> {
    prop_oneof![Just(None), (-12 * 3_600..=14 * 3_600).prop_map(Some)]
}

fn snapshot(span_s: i64, step_s: i64) -> impl Strategy<Value = Snapshot> {
    (
        0..2usize,
        0..2usize,
        proptest::sample::subsequence(TAGS.to_vec(), 0..=2),
        0..=span_s / step_s,
        offset(),
    )
        .prop_map(move |(h, s, tags, t, off)| {
            snap(
                ["a", "b"][h],
                ["/x", "/y"][s],
                &tags,
                BASE + t * step_s * SEC,
                off,
            )
        })
}

/// Snapshots dense enough (a few days) or sparse enough (four years) for
/// every calendar rule to meet shared and distinct buckets; some steps
/// make equal times likely.
fn snapshots() -> impl Strategy<Value = Vec<Snapshot>> {
    (
        prop_oneof![
            Just(3 * 86_400i64),
            Just(120 * 86_400),
            Just(4 * 365 * 86_400)
        ],
        prop_oneof![Just(1i64), Just(1_800), Just(86_400)],
    )
        .prop_flat_map(|(span, step)| prop::collection::vec(snapshot(span, step), 0..60))
}

fn count() -> impl Strategy<Value = Option<u32>> {
    prop::option::of(0u32..6)
}

fn policy() -> impl Strategy<Value = RetentionPolicy> {
    (
        (count(), count(), count(), count(), count(), count()),
        // Multiples of half an hour, like the snapshot times, so that
        // snapshots exactly D older than the newest are common.
        prop::option::of((0u64..200 * 48).prop_map(|k| Duration::from_secs(k * 1_800))),
        prop::collection::vec(prop::sample::select(vec!["keep", "x", "nope"]), 0..3),
    )
        .prop_map(
            |((last, hourly, daily, weekly, monthly, yearly), within, tags)| RetentionPolicy {
                last,
                hourly,
                daily,
                weekly,
                monthly,
                yearly,
                within,
                tags: tags.into_iter().map(String::from).collect(),
            },
        )
}

fn group_by() -> impl Strategy<Value = GroupBy> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(host, source, tags)| GroupBy {
        host,
        source,
        tags,
    })
}

/// The local wall-clock time, computed by shifting the Unix time (not by
/// a time zone conversion as the planner does).
fn shifted(s: &Snapshot) -> NaiveDateTime {
    let off = i64::from(s.utc_offset_s.unwrap_or(0));
    let secs = s.time_ns.div_euclid(SEC) + off;
    chrono::DateTime::from_timestamp(secs, 0)
        .expect("in range")
        .naive_utc()
}

/// The bucket label as the documentation defines it.
fn expected_bucket(unit: CalendarUnit, s: &Snapshot) -> String {
    let t = shifted(s);
    match unit {
        CalendarUnit::Hourly => format!(
            "{:04}-{:02}-{:02}T{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        ),
        CalendarUnit::Daily => format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()),
        CalendarUnit::Weekly => {
            let w = t.date().iso_week();
            format!("{:04}-W{:02}", w.year(), w.week())
        }
        CalendarUnit::Monthly => format!("{:04}-{:02}", t.year(), t.month()),
        CalendarUnit::Yearly => format!("{:04}", t.year()),
    }
}

fn newest_first(mut v: Vec<&Snapshot>) -> Vec<&Snapshot> {
    v.sort_by_key(|s| std::cmp::Reverse((s.time_ns, s.id)));
    v
}

fn ids<'a>(v: impl IntoIterator<Item = &'a Snapshot>) -> BTreeSet<SnapshotId> {
    v.into_iter().map(|s| s.id).collect()
}

/// Checks one group against the policy; returns the ids some rule keeps.
fn check_group(
    members: &[&Snapshot],
    policy: &RetentionPolicy,
    reasons: &HashMap<SnapshotId, Vec<Reason>>,
) -> Result<BTreeSet<SnapshotId>, TestCaseError> {
    let sorted = newest_first(members.to_vec());
    let kept_by = |pred: &dyn Fn(&Reason) -> bool| -> BTreeSet<SnapshotId> {
        sorted
            .iter()
            .filter(|s| reasons.get(&s.id).is_some_and(|r| r.iter().any(pred)))
            .map(|s| s.id)
            .collect()
    };
    let mut expected_kept = BTreeSet::new();

    // last N: exactly the min(N, size) newest.
    let n = policy.last.unwrap_or(0) as usize;
    let want = ids(sorted.iter().take(n).copied());
    prop_assert_eq!(&kept_by(&|r| *r == Reason::Last), &want, "last {}", n);
    prop_assert_eq!(want.len(), n.min(sorted.len()));
    expected_kept.extend(want);

    for unit in CalendarUnit::ALL {
        let n = policy.count(unit) as usize;
        // bucket -> its newest snapshot
        let mut newest: BTreeMap<String, &Snapshot> = BTreeMap::new();
        for s in &sorted {
            newest.entry(expected_bucket(unit, s)).or_insert(s);
        }
        let mut buckets: Vec<(&String, &&Snapshot)> = newest.iter().collect();
        buckets.sort_by_key(|(_, s)| std::cmp::Reverse((s.time_ns, s.id)));
        let want: BTreeSet<SnapshotId> = buckets.iter().take(n).map(|(_, s)| s.id).collect();
        let got = kept_by(&|r| matches!(r, Reason::Calendar { unit: u, .. } if *u == unit));
        prop_assert_eq!(&got, &want, "{} {}", unit.name(), n);
        prop_assert_eq!(got.len(), n.min(newest.len()));
        // One per bucket, each labelled with its own bucket.
        let mut labels = BTreeSet::new();
        for s in sorted.iter().filter(|s| got.contains(&s.id)) {
            let label = reasons[&s.id]
                .iter()
                .find_map(|r| match r {
                    Reason::Calendar { unit: u, bucket } if *u == unit => Some(bucket.clone()),
                    _ => None,
                })
                .expect("calendar reason");
            prop_assert_eq!(&label, &expected_bucket(unit, s));
            prop_assert!(
                labels.insert(label),
                "two kept in one {} bucket",
                unit.name()
            );
        }
        expected_kept.extend(want);
    }

    // within D: exactly those within D of the group's newest.
    let got = kept_by(&|r| matches!(r, Reason::Within(_)));
    let want = match (policy.within, sorted.first()) {
        (Some(d), Some(top)) if !d.is_zero() => ids(sorted
            .iter()
            .filter(|s| ((top.time_ns - s.time_ns) as u128) <= d.as_nanos())
            .copied()),
        _ => BTreeSet::new(),
    };
    prop_assert_eq!(&got, &want, "within {:?}", policy.within);
    expected_kept.extend(want);

    // tag T: exactly the snapshots carrying one of the tags, one reason
    // per tag carried.
    for s in &sorted {
        let mut want: Vec<&String> = policy.tags.iter().filter(|t| s.has_tag(t)).collect();
        want.sort();
        want.dedup();
        let mut got: Vec<&String> = reasons
            .get(&s.id)
            .into_iter()
            .flatten()
            .filter_map(|r| match r {
                Reason::Tag(t) => Some(t),
                _ => None,
            })
            .collect();
        got.sort();
        prop_assert_eq!(got, want);
        if policy.tags.iter().any(|t| s.has_tag(t)) {
            expected_kept.insert(s.id);
        }
    }
    Ok(expected_kept)
}

proptest! {
    #[test]
    fn every_rule_keeps_what_it_says(
        snaps in snapshots(),
        policy in policy(),
        by in group_by(),
    ) {
        let plan = plan_forget(&snaps, &policy, by);
        if policy.is_empty() {
            prop_assert!(plan.is_err());
            return Ok(());
        }
        let plan = plan.expect("a non-empty policy plans");

        // Kept and removed partition the input.
        let kept: Vec<SnapshotId> =
            plan.groups.iter().flat_map(|g| g.keep.iter().map(|s| s.id)).collect();
        let removed = plan.removed_ids();
        let kept_set: BTreeSet<SnapshotId> = kept.iter().copied().collect();
        let removed_set: BTreeSet<SnapshotId> = removed.iter().copied().collect();
        prop_assert_eq!(kept.len() + removed.len(), snaps.len());
        prop_assert!(kept_set.is_disjoint(&removed_set));
        let all: BTreeSet<SnapshotId> = kept_set.union(&removed_set).copied().collect();
        prop_assert_eq!(&all, &ids(&snaps));

        // Groups: unique keys, members that match them, newest first.
        let input: HashMap<SnapshotId, &Snapshot> = snaps.iter().map(|s| (s.id, s)).collect();
        let mut reasons = HashMap::new();
        let mut keys = BTreeSet::new();
        for g in &plan.groups {
            prop_assert!(keys.insert(g.key.clone()));
            for list in [&g.keep, &g.remove] {
                for pair in list.windows(2) {
                    prop_assert!((pair[0].time_ns, pair[0].id) > (pair[1].time_ns, pair[1].id));
                }
                for p in list {
                    prop_assert_eq!(&GroupKey::of(input[&p.id], by), &g.key);
                }
            }
            for p in &g.keep {
                prop_assert!(!p.reasons.is_empty());
                reasons.insert(p.id, p.reasons.clone());
            }
            prop_assert!(g.remove.iter().all(|p| p.reasons.is_empty()));
        }

        // Every rule, group by group; a snapshot is kept iff a rule keeps it.
        let mut groups: BTreeMap<GroupKey, Vec<&Snapshot>> = BTreeMap::new();
        for s in &snaps {
            groups.entry(GroupKey::of(s, by)).or_default().push(s);
        }
        prop_assert_eq!(groups.len(), plan.groups.len());
        let mut expected_kept = BTreeSet::new();
        for members in groups.values() {
            expected_kept.extend(check_group(members, &policy, &reasons)?);
        }
        prop_assert_eq!(&expected_kept, &kept_set);

        // The order of the input does not matter.
        let mut reversed = snaps.clone();
        reversed.reverse();
        prop_assert_eq!(plan_forget(&reversed, &policy, by).expect("plan"), plan);
    }

    #[test]
    fn within_includes_a_snapshot_exactly_that_old(
        snaps in snapshots(),
        pick in any::<prop::sample::Index>(),
    ) {
        let Some(newest) = snaps.iter().map(|s| s.time_ns).max() else {
            return Ok(());
        };
        let edge = &snaps[pick.index(snaps.len())];
        let age = u64::try_from(newest - edge.time_ns).expect("not negative");
        if age == 0 {
            return Ok(());
        }
        let policy = RetentionPolicy {
            within: Some(Duration::from_nanos(age)),
            ..Default::default()
        };
        let one_group = GroupBy { host: false, source: false, tags: false };
        let plan = plan_forget(&snaps, &policy, one_group).expect("plan");
        let kept: BTreeSet<SnapshotId> = plan.groups[0].keep.iter().map(|s| s.id).collect();
        prop_assert!(kept.contains(&edge.id));
        let want = ids(snaps.iter().filter(|s| newest - s.time_ns <= newest - edge.time_ns));
        prop_assert_eq!(kept, want);
    }

    #[test]
    fn an_empty_policy_is_an_error(
        snaps in snapshots(),
        zeros in prop::collection::vec(prop::option::of(Just(0u32)), 6),
        within in prop::option::of(Just(Duration::ZERO)),
        by in group_by(),
    ) {
        let policy = RetentionPolicy {
            last: zeros[0],
            hourly: zeros[1],
            daily: zeros[2],
            weekly: zeros[3],
            monthly: zeros[4],
            yearly: zeros[5],
            within,
            tags: Vec::new(),
        };
        let err = plan_forget(&snaps, &policy, by).expect_err("empty policy");
        prop_assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    }
}
