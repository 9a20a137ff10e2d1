//! The retention policy (which rules keep snapshots) and how snapshots are
//! grouped; validation refuses a policy that would keep nothing by rule.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::error::{Error, Result};

/// Which snapshots `forget` keeps. A snapshot is kept when any rule keeps
/// it; see the [module docs](super) for what each rule means.
///
/// Counts of zero are the same as absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionPolicy {
    /// Keep the N newest snapshots of each group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yearly: Option<u32>,
    /// Keep every snapshot taken within this long of its group's newest.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_within"
    )]
    pub within: Option<Duration>,
    /// Keep every snapshot that carries one of these tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl RetentionPolicy {
    /// Whether no rule would keep anything (every count absent or zero, no
    /// duration, no tag).
    pub fn is_empty(&self) -> bool {
        let counts = [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ];
        counts.iter().all(|c| c.unwrap_or(0) == 0)
            && self.within.is_none_or(|d| d.is_zero())
            && self.tags.is_empty()
    }

    /// Refuses a policy that keeps nothing by rule, which would otherwise
    /// read as "forget every snapshot", and empty tag names.
    pub fn validate(&self) -> Result<()> {
        if self.is_empty() {
            return Err(Error::InvalidArgument(
                "an empty retention policy would forget every snapshot; \
                 give at least one --keep-… option"
                    .into(),
            ));
        }
        if self.tags.iter().any(|t| t.is_empty()) {
            return Err(Error::InvalidArgument(
                "a tag to keep must not be empty".into(),
            ));
        }
        Ok(())
    }

    /// The count of a calendar rule, zero meaning absent.
    pub(super) fn count(&self, unit: CalendarUnit) -> u32 {
        match unit {
            CalendarUnit::Hourly => self.hourly,
            CalendarUnit::Daily => self.daily,
            CalendarUnit::Weekly => self.weekly,
            CalendarUnit::Monthly => self.monthly,
            CalendarUnit::Yearly => self.yearly,
        }
        .unwrap_or(0)
    }
}

fn serialize_within<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&compact_duration(*d)),
        None => s.serialize_none(),
    }
}

/// A duration as `7d`, `36h` → `1d12h`, `90m` → `1h30m`; whole seconds
/// (sub-second parts are dropped), `0s` for zero. `humantime` reads it back.
pub fn compact_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

/// A calendar rule: which bucket of local time a snapshot falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CalendarUnit {
    /// One bucket per local hour (`2026-12-04T13`).
    Hourly,
    /// One bucket per local day (`2026-12-04`).
    Daily,
    /// One bucket per ISO week (`2026-W49`: ISO year and week number).
    Weekly,
    /// One bucket per local month (`2026-12`).
    Monthly,
    /// One bucket per local year (`2026`).
    Yearly,
}

impl CalendarUnit {
    /// Every unit, shortest first.
    pub const ALL: [CalendarUnit; 5] = [
        CalendarUnit::Hourly,
        CalendarUnit::Daily,
        CalendarUnit::Weekly,
        CalendarUnit::Monthly,
        CalendarUnit::Yearly,
    ];

    /// The rule's name as printed (`daily`).
    pub fn name(self) -> &'static str {
        match self {
            CalendarUnit::Hourly => "hourly",
            CalendarUnit::Daily => "daily",
            CalendarUnit::Weekly => "weekly",
            CalendarUnit::Monthly => "monthly",
            CalendarUnit::Yearly => "yearly",
        }
    }

    /// The bucket of a snapshot taken at `time_ns` (Unix nanoseconds) by a
    /// host `utc_offset_s` seconds east of UTC (`None`: UTC). An offset of
    /// a day or more cannot be a real one and is read as UTC.
    pub fn bucket(self, time_ns: i64, utc_offset_s: Option<i32>) -> String {
        use chrono::Datelike;
        let local = local_time(time_ns, utc_offset_s);
        match self {
            CalendarUnit::Hourly => local.format("%Y-%m-%dT%H").to_string(),
            CalendarUnit::Daily => local.format("%Y-%m-%d").to_string(),
            CalendarUnit::Weekly => {
                let week = local.iso_week();
                format!("{:04}-W{:02}", week.year(), week.week())
            }
            CalendarUnit::Monthly => local.format("%Y-%m").to_string(),
            CalendarUnit::Yearly => format!("{:04}", local.year()),
        }
    }
}

/// A snapshot's time in its writer's time zone: `time_ns` (Unix
/// nanoseconds) shifted by `utc_offset_s` seconds east of UTC (`None`, or
/// an impossible offset of a day or more: UTC).
pub fn local_time(
    time_ns: i64,
    utc_offset_s: Option<i32>,
) -> chrono::DateTime<chrono::FixedOffset> {
    use chrono::{FixedOffset, Offset, TimeZone, Utc};
    let offset = utc_offset_s
        .and_then(FixedOffset::east_opt)
        .unwrap_or_else(|| Utc.fix());
    Utc.timestamp_nanos(time_ns).with_timezone(&offset)
}

/// [`local_time`] as RFC 3339 with its offset, to the second
/// (`2026-12-04T01:30:00+02:00`).
pub fn local_rfc3339(time_ns: i64, utc_offset_s: Option<i32>) -> String {
    local_time(time_ns, utc_offset_s).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// Which snapshot fields form a group; each group gets the policy applied
/// on its own. The default is host and source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    /// Snapshots of different hosts are in different groups.
    pub host: bool,
    /// Snapshots of different sources are in different groups.
    pub source: bool,
    /// Snapshots with different (sorted) tag lists are in different groups.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            source: true,
            tags: false,
        }
    }
}

impl FromStr for GroupBy {
    type Err = Error;

    /// Parses a comma-separated subset of `host`, `source`, `tags`; an
    /// empty string puts every snapshot in one group.
    fn from_str(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy {
            host: false,
            source: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "source" => g.source = true,
                "tags" | "tag" => g.tags = true,
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "cannot group snapshots by {other:?}; use a comma-separated \
                         list of host, source and tags"
                    )));
                }
            }
        }
        Ok(g)
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = [
            (self.host, "host"),
            (self.source, "source"),
            (self.tags, "tags"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        f.write_str(&parts.join(","))
    }
}

impl Serialize for GroupBy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_zero_policies_are_refused() {
        let empty = RetentionPolicy::default();
        let err = empty.validate().expect_err("empty");
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("--keep-"), "{err}");
        let zeros = RetentionPolicy {
            last: Some(0),
            daily: Some(0),
            within: Some(Duration::ZERO),
            ..Default::default()
        };
        assert!(zeros.is_empty());
        assert!(zeros.validate().is_err());
        let one = RetentionPolicy {
            yearly: Some(1),
            ..Default::default()
        };
        assert!(one.validate().is_ok());
        let tag = RetentionPolicy {
            tags: vec!["keep".into()],
            ..Default::default()
        };
        assert!(tag.validate().is_ok());
        let blank = RetentionPolicy {
            tags: vec![String::new()],
            ..Default::default()
        };
        assert!(blank.validate().is_err());
    }

    #[test]
    fn group_by_parses_and_prints() {
        assert_eq!(
            "host,source".parse::<GroupBy>().ok(),
            Some(GroupBy::default())
        );
        let all: GroupBy = "tags, host ,source".parse().expect("parse");
        assert!(all.host && all.source && all.tags);
        assert_eq!(all.to_string(), "host,source,tags");
        let none: GroupBy = "".parse().expect("parse");
        assert_eq!(none.to_string(), "");
        assert!("hostname".parse::<GroupBy>().is_err());
    }

    #[test]
    fn durations_print_compactly_and_read_back() {
        for (secs, text) in [
            (7 * 86_400, "7d"),
            (36 * 3_600, "1d12h"),
            (90 * 60, "1h30m"),
            (0, "0s"),
            (86_401, "1d1s"),
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(compact_duration(d), text);
            assert_eq!(humantime::parse_duration(text).ok(), Some(d), "{text}");
        }
    }

    #[test]
    fn buckets_are_local_time() {
        // 2026-12-03T23:30:00Z
        let t = 1_796_340_600_000_000_000;
        assert_eq!(crate::snapshot::format_time(t), "2026-12-03T23:30:00Z");
        assert_eq!(CalendarUnit::Daily.bucket(t, None), "2026-12-03");
        assert_eq!(CalendarUnit::Daily.bucket(t, Some(7_200)), "2026-12-04");
        assert_eq!(CalendarUnit::Hourly.bucket(t, Some(7_200)), "2026-12-04T01");
        assert_eq!(CalendarUnit::Weekly.bucket(t, Some(7_200)), "2026-W49");
        assert_eq!(CalendarUnit::Monthly.bucket(t, Some(-3_600)), "2026-12");
        assert_eq!(CalendarUnit::Yearly.bucket(t, Some(7_200)), "2026");
        // An impossible offset reads as UTC.
        assert_eq!(CalendarUnit::Daily.bucket(t, Some(90_000)), "2026-12-03");
        // ISO week-numbering year differs from the calendar year here:
        // 2027-01-01 is a Friday, in 2026-W53.
        let new_year = 1_798_761_600_000_000_000; // 2027-01-01T00:00:00Z
        assert_eq!(CalendarUnit::Weekly.bucket(new_year, None), "2026-W53");
        assert_eq!(CalendarUnit::Yearly.bucket(new_year, None), "2027");
        assert_eq!(CalendarUnit::Yearly.bucket(new_year, Some(-60)), "2026");
    }
}
