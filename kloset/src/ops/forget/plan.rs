//! The pure part of forget: groups snapshots and decides, rule by rule,
//! which to keep and why. No I/O; the same input always gives the same plan.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::policy::{CalendarUnit, GroupBy, RetentionPolicy, compact_duration, local_rfc3339};
use crate::error::Result;
use crate::id::SnapshotId;
use crate::snapshot::{Snapshot, format_time};

/// Why a snapshot is kept: one rule of the policy. Printed (and written in
/// JSON) as `last`, `daily 2026-12-04`, `weekly 2026-W49`, `within 7d`,
/// `tag keep`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// One of the group's N newest.
    Last,
    /// The newest of its calendar bucket, one of the N newest buckets.
    Calendar {
        /// Which calendar rule.
        unit: CalendarUnit,
        /// The bucket, in the snapshot's local time.
        bucket: String,
    },
    /// Within this long of the group's newest snapshot.
    Within(Duration),
    /// It carries this tag.
    Tag(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Last => f.write_str("last"),
            Reason::Calendar { unit, bucket } => write!(f, "{} {bucket}", unit.name()),
            Reason::Within(d) => write!(f, "within {}", compact_duration(*d)),
            Reason::Tag(t) => write!(f, "tag {t}"),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a group of snapshots has in common: the fields named by
/// [`GroupBy`]; the others are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKey {
    /// The host, when grouping by host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The source, when grouping by source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The sorted, deduplicated tags, when grouping by tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    /// The group a snapshot belongs to.
    pub fn of(snapshot: &Snapshot, group_by: GroupBy) -> GroupKey {
        GroupKey {
            host: group_by.host.then(|| snapshot.host.clone()),
            source: group_by.source.then(|| snapshot.source.clone()),
            tags: group_by.tags.then(|| {
                let mut tags = snapshot.tags.clone();
                tags.sort();
                tags.dedup();
                tags
            }),
        }
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(s) = &self.source {
            parts.push(format!("source {s}"));
        }
        if let Some(t) = &self.tags {
            parts.push(if t.is_empty() {
                "no tags".to_string()
            } else {
                format!("tags {}", t.join(","))
            });
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// One snapshot in a plan, with the rules that keep it (none when it is
/// removed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedSnapshot {
    /// Its id (hex in JSON).
    pub id: SnapshotId,
    /// The first 8 hex characters.
    pub short_id: String,
    /// When it was taken, Unix nanoseconds (RFC 3339 UTC in JSON).
    #[serde(rename = "time", serialize_with = "serialize_time")]
    pub time_ns: i64,
    /// The same time in its writer's time zone, RFC 3339 with the offset:
    /// the clock its calendar buckets are counted in.
    pub local_time: String,
    /// Its writer's offset east of UTC in seconds (`None`: read as UTC).
    pub utc_offset_s: Option<i32>,
    /// Host that made it.
    pub host: String,
    /// Its source.
    pub source: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Every rule that keeps it; empty for a removed snapshot.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
}

fn serialize_time<S: Serializer>(ns: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*ns))
}

impl PlannedSnapshot {
    fn new(s: &Snapshot, reasons: Vec<Reason>) -> PlannedSnapshot {
        PlannedSnapshot {
            id: s.id,
            short_id: s.id.short(),
            time_ns: s.time_ns,
            local_time: local_rfc3339(s.time_ns, s.utc_offset_s),
            utc_offset_s: s.utc_offset_s,
            host: s.host.clone(),
            source: s.source.clone(),
            tags: s.tags.clone(),
            reasons,
        }
    }
}

/// One group and what happens to its snapshots, each list newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForgetGroup {
    /// What the group's snapshots have in common.
    pub key: GroupKey,
    /// Snapshots kept, with the rules that keep them.
    pub keep: Vec<PlannedSnapshot>,
    /// Snapshots no rule keeps.
    pub remove: Vec<PlannedSnapshot>,
}

/// What forget will do: groups sorted by key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForgetPlan {
    /// The policy applied to each group.
    pub policy: RetentionPolicy,
    /// How snapshots were grouped (`host,source`).
    pub group_by: GroupBy,
    /// Every group with at least one snapshot.
    pub groups: Vec<ForgetGroup>,
}

impl ForgetPlan {
    /// Ids of every snapshot to remove, group by group, newest first.
    pub fn removed_ids(&self) -> Vec<SnapshotId> {
        self.groups
            .iter()
            .flat_map(|g| g.remove.iter().map(|s| s.id))
            .collect()
    }

    /// How many snapshots are kept.
    pub fn kept_count(&self) -> usize {
        self.groups.iter().map(|g| g.keep.len()).sum()
    }

    /// How many snapshots are removed.
    pub fn removed_count(&self) -> usize {
        self.groups.iter().map(|g| g.remove.len()).sum()
    }
}

/// Plans forget: groups `snapshots` by `group_by`, applies `policy` to
/// each group, and records why each kept snapshot is kept. Refuses an
/// empty policy (see [`RetentionPolicy::validate`]). Pure: no I/O.
pub fn plan_forget(
    snapshots: &[Snapshot],
    policy: &RetentionPolicy,
    group_by: GroupBy,
) -> Result<ForgetPlan> {
    policy.validate()?;
    let mut grouped: BTreeMap<GroupKey, Vec<&Snapshot>> = BTreeMap::new();
    for s in snapshots {
        grouped
            .entry(GroupKey::of(s, group_by))
            .or_default()
            .push(s);
    }
    let groups = grouped
        .into_iter()
        .map(|(key, mut members)| {
            members.sort_by_key(|s| std::cmp::Reverse((s.time_ns, s.id)));
            let reasons = select(&members, policy);
            let mut group = ForgetGroup {
                key,
                keep: Vec::new(),
                remove: Vec::new(),
            };
            for (s, why) in members.into_iter().zip(reasons) {
                if why.is_empty() {
                    group.remove.push(PlannedSnapshot::new(s, why));
                } else {
                    group.keep.push(PlannedSnapshot::new(s, why));
                }
            }
            group
        })
        .collect();
    Ok(ForgetPlan {
        policy: policy.clone(),
        group_by,
        groups,
    })
}

/// The reasons each member of one group (sorted newest first) is kept.
fn select(members: &[&Snapshot], policy: &RetentionPolicy) -> Vec<Vec<Reason>> {
    let mut reasons = vec![Vec::new(); members.len()];
    let Some(newest) = members.first() else {
        return reasons;
    };
    let last = policy.last.unwrap_or(0) as usize;
    for why in reasons.iter_mut().take(last) {
        why.push(Reason::Last);
    }
    for unit in CalendarUnit::ALL {
        let wanted = policy.count(unit) as usize;
        // Walking newest first, the first member met in a bucket is that
        // bucket's newest; buckets are counted in the order they are met.
        let mut seen = HashSet::new();
        for (s, why) in members.iter().zip(reasons.iter_mut()) {
            if seen.len() >= wanted {
                break;
            }
            let bucket = unit.bucket(s.time_ns, s.utc_offset_s);
            if seen.insert(bucket.clone()) {
                why.push(Reason::Calendar { unit, bucket });
            }
        }
    }
    if let Some(within) = policy.within.filter(|d| !d.is_zero()) {
        let limit = within.as_nanos();
        for (s, why) in members.iter().zip(reasons.iter_mut()) {
            let age = i128::from(newest.time_ns) - i128::from(s.time_ns);
            if u128::try_from(age).is_ok_and(|age| age <= limit) {
                why.push(Reason::Within(within));
            }
        }
    }
    let mut tags: Vec<&String> = Vec::new();
    for t in &policy.tags {
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    for (s, why) in members.iter().zip(reasons.iter_mut()) {
        for t in &tags {
            if s.has_tag(t) {
                why.push(Reason::Tag((*t).clone()));
            }
        }
    }
    reasons
}
