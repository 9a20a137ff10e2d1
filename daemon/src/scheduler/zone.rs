//! Local cron times to instants in a time zone, with Vixie cron's daylight-saving rules.
//!
//! Cron fields are matched against the schedule's local wall clock. Twice a
//! year that wall clock skips or repeats an hour; the rules are those of Vixie
//! cron and cronie (`man 8 cron`, "Daylight Saving Time and other time
//! changes"), which treat two kinds of schedule differently:
//!
//! - A *fixed-time* schedule (minute and hour fields do not start with `*`,
//!   e.g. `30 2 * * *`): a local time that does not exist (spring forward) runs
//!   at the first instant after the gap (02:30 → 03:00 new time), so a daily
//!   backup is never lost; a local time that occurs twice (fall back) runs
//!   once, at its first occurrence.
//! - A *wildcard* schedule (minute or hour starts with `*`, e.g. `*/15 * * * *`
//!   or `30 * * * *`): runs on real time. Local times in the gap do not exist
//!   and are skipped; repeated local times run at both occurrences, so an
//!   hourly job stays hourly.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::spec::CronSpec;

/// Bound on the local candidates examined for one answer. A scan covers at
/// most a DST shift plus one repeated hour (under 11,000 candidates for a
/// once-a-second schedule); the bound only stops a runaway loop.
const LOCAL_SCAN_LIMIT: usize = 200_000;

/// The longest gap searched for its end (the largest in tzdata is one day).
const GAP_PROBE_MINUTES: i64 = 48 * 60;

/// The next nominal run instant strictly after `after` for `cron` in `tz`,
/// or `None` when the schedule has no more times (the crate stops at 2100).
pub(crate) fn next_nominal(cron: &CronSpec, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let offset = |t: DateTime<Utc>| {
        i64::from(
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    };
    // A local time n can only map to an instant after `after` if n is later
    // than `after` shifted by the smallest offset in effect soon after it (a
    // fall back ahead makes some earlier-looking local times still to come).
    let soon = after
        .checked_add_signed(TimeDelta::hours(26))
        .unwrap_or(after);
    let min_offset = offset(after).min(offset(soon));
    let mut local = after
        .naive_utc()
        .checked_add_signed(TimeDelta::seconds(min_offset - 1))?;
    let wildcard = cron.is_wildcard();
    let mut best: Option<DateTime<Utc>> = None;
    for _ in 0..LOCAL_SCAN_LIMIT {
        let Some(n) = cron.next_local_after(local) else {
            break;
        };
        local = n;
        let (earliest, later) = match tz.from_local_datetime(&n) {
            LocalResult::Single(t) => (Some(t.with_timezone(&Utc)), None),
            LocalResult::Ambiguous(e, l) => (
                Some(e.with_timezone(&Utc)),
                wildcard.then(|| l.with_timezone(&Utc)),
            ),
            LocalResult::None if wildcard => (None, None),
            LocalResult::None => (gap_end(tz, n), None),
        };
        for t in [earliest, later].into_iter().flatten() {
            if t > after && best.is_none_or(|b| t < b) {
                best = Some(t);
            }
        }
        // Later local times have later earliest instants: nothing can beat this.
        if earliest.is_some_and(|e| e > after) {
            break;
        }
    }
    best
}

/// The first instant after the gap that contains the non-existent local time
/// `local`, to the second.
fn gap_end(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let exists = |t: NaiveDateTime| !matches!(tz.from_local_datetime(&t), LocalResult::None);
    let minute = local.with_second(0)?.with_nanosecond(0)?;
    for k in 1..=GAP_PROBE_MINUTES {
        let probe = minute.checked_add_signed(TimeDelta::minutes(k))?;
        if !exists(probe) {
            continue;
        }
        // Gaps end on whole minutes in practice; find the exact second anyway.
        let first = (1..60)
            .rev()
            .filter_map(|s| probe.checked_sub_signed(TimeDelta::seconds(s)))
            .find(|t| *t > local && exists(*t))
            .unwrap_or(probe);
        return tz
            .from_local_datetime(&first)
            .earliest()
            .map(|t| t.with_timezone(&Utc));
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn runs(expr: &str, tz: Tz, from: &str, n: usize) -> Vec<String> {
        let cron = CronSpec::parse(expr).unwrap();
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = next_nominal(&cron, tz, t).unwrap();
            out.push(t.format("%m-%dT%H:%M:%SZ").to_string());
        }
        out
    }

    #[test]
    fn paris_daily_0230_across_spring_forward_runs_at_0300() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00Z). 02:30 does not exist.
        let got = runs("30 2 * * *", Tz::Europe__Paris, "2026-03-27T12:00:00Z", 3);
        assert_eq!(
            got,
            ["03-28T01:30:00Z", "03-29T01:00:00Z", "03-30T00:30:00Z"]
        );
    }

    #[test]
    fn paris_daily_0230_across_fall_back_runs_once() {
        // 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00Z); 02:30 happens twice.
        let got = runs("30 2 * * *", Tz::Europe__Paris, "2026-10-24T12:00:00Z", 3);
        assert_eq!(
            got,
            ["10-25T00:30:00Z", "10-26T01:30:00Z", "10-27T01:30:00Z"]
        );
        // Also when asked from between the two occurrences.
        assert_eq!(
            runs("30 2 * * *", Tz::Europe__Paris, "2026-10-25T00:45:00Z", 1),
            ["10-26T01:30:00Z"]
        );
    }

    #[test]
    fn paris_wildcard_schedules_follow_real_time() {
        // Hourly at :30 — the repeated 02:30 runs twice, an hour apart.
        let got = runs("30 * * * *", Tz::Europe__Paris, "2026-10-24T23:00:00Z", 4);
        assert_eq!(
            got,
            [
                "10-24T23:30:00Z",
                "10-25T00:30:00Z",
                "10-25T01:30:00Z",
                "10-25T02:30:00Z"
            ]
        );
        // Spring forward: 02:30 is skipped, not shifted.
        let got = runs("30 * * * *", Tz::Europe__Paris, "2026-03-28T23:45:00Z", 2);
        assert_eq!(got, ["03-29T00:30:00Z", "03-29T01:30:00Z"]);
        let got = runs("*/15 * * * *", Tz::Europe__Paris, "2026-03-29T00:40:00Z", 2);
        assert_eq!(got, ["03-29T00:45:00Z", "03-29T01:00:00Z"]);
        // Every 15 minutes through the repeated hour: 8 runs between 00:00Z and 02:00Z.
        let got = runs("*/15 * * * *", Tz::Europe__Paris, "2026-10-24T23:59:00Z", 9);
        assert_eq!(got.first().map(String::as_str), Some("10-25T00:00:00Z"));
        assert_eq!(got.last().map(String::as_str), Some("10-25T02:00:00Z"));
    }

    #[test]
    fn new_york() {
        // Winter 09:00 EST = 14:00Z, summer 09:00 EDT = 13:00Z.
        assert_eq!(
            runs(
                "0 9 * * *",
                Tz::America__New_York,
                "2026-01-10T00:00:00Z",
                1
            ),
            ["01-10T14:00:00Z"]
        );
        assert_eq!(
            runs(
                "0 9 * * *",
                Tz::America__New_York,
                "2026-07-10T00:00:00Z",
                1
            ),
            ["07-10T13:00:00Z"]
        );
        // 2026-03-08 02:00 EST jumps to 03:00 EDT (07:00Z).
        let got = runs(
            "30 2 * * *",
            Tz::America__New_York,
            "2026-03-07T12:00:00Z",
            2,
        );
        assert_eq!(got, ["03-08T07:00:00Z", "03-09T06:30:00Z"]);
        // 2026-11-01 02:00 EDT goes back to 01:00 EST; 01:30 runs once (EDT).
        let got = runs(
            "30 1 * * *",
            Tz::America__New_York,
            "2026-10-31T12:00:00Z",
            2,
        );
        assert_eq!(got, ["11-01T05:30:00Z", "11-02T06:30:00Z"]);
    }

    #[test]
    fn utc_has_no_surprises() {
        let got = runs("30 2 * * *", Tz::UTC, "2026-03-28T12:00:00Z", 2);
        assert_eq!(got, ["03-29T02:30:00Z", "03-30T02:30:00Z"]);
        let got = runs("*/2 * * * * *", Tz::UTC, "2026-03-28T12:00:00.500Z", 2);
        assert_eq!(got, ["03-28T12:00:02Z", "03-28T12:00:04Z"]);
    }

    #[test]
    fn gap_end_is_exact() {
        let local =
            NaiveDateTime::parse_from_str("2026-03-29 02:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            gap_end(Tz::Europe__Paris, local),
            Some(utc("2026-03-29T01:00:00Z"))
        );
    }
}
