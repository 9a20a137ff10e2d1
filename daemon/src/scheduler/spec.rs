//! `CronSpec`: a crontab expression as users write it, checked and turned into `cron` schedules.
//!
//! What the `cron` 0.17 crate does by itself, and what this module adds:
//!
//! | crontab feature | `cron` 0.17 | here |
//! | --- | --- | --- |
//! | 5 fields `min hour dom month dow` | no: 6 or 7 fields, seconds first, optional year | a `0` seconds field is prepended |
//! | 6 fields with leading seconds | yes | passed through |
//! | 7th (year) field | yes | rejected (not crontab) |
//! | `@yearly @monthly @weekly @daily @hourly` | yes | expanded here, like the rest |
//! | `@annually @midnight` | no | aliases of `@yearly`, `@daily` |
//! | `@reboot` | no | rejected with an explanation |
//! | day of week 0-7, 0 and 7 = Sunday | no: 1-7, 1 = Sunday; 0 rejected, 7 = Saturday | converted (`fields.rs`) |
//! | names `JAN`, `MON`, ranges, lists, steps | yes (full names too) | passed through |
//! | `N/step` | `N` to the field's maximum by `step` (cronie does the same) | passed through |
//! | `L`, `W`, `#` | no | rejected by name |
//! | day-of-month OR day-of-week when both restricted | no: always AND | two schedules, earliest wins |
//!
//! The day rule is Vixie cron's: when both day fields are restricted — neither
//! starts with `*` — a day matches if EITHER matches (`0 0 1 * MON` runs on the
//! 1st and on every Monday). When either starts with `*` both must match, so
//! `0 0 */2 * MON` runs on Mondays that fall on an odd day of the month, as in
//! Vixie cron and cronie.

use std::fmt;
use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime};
use cron::Schedule;

use super::fields::{
    self, DAY_OF_MONTH, HOUR, MINUTE, MONTH, SECOND, crate_message, expand_macro, probe_field,
};

/// A cron expression that failed to parse: the input and what is wrong with it.
///
/// Displayed as `invalid cron expression "61 * * * *": minute 61 is out of
/// range 0-59`; the config validator prefixes file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression {input:?}: {reason}")]
pub struct CronError {
    input: String,
    reason: String,
}

impl CronError {
    /// The expression as given (trimmed).
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it, as one sentence without the input.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A parsed cron expression: the original text for display, and the
/// schedule(s) it evaluates to in local wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSpec {
    text: String,
    /// The schedule, or with `alternate`, the day-of-month half of an OR.
    primary: Schedule,
    /// The day-of-week half when both day fields are restricted.
    alternate: Option<Schedule>,
    /// Vixie's "wildcard job": the minute or hour field starts with `*`.
    wildcard: bool,
}

impl CronSpec {
    /// Parses a crontab line's time part: 5 fields (`minute hour
    /// day-of-month month day-of-week`), 6 fields with a leading seconds
    /// field, or one of `@yearly @annually @monthly @weekly @daily @midnight
    /// @hourly`. See the module documentation for the exact dialect.
    pub fn parse(text: &str) -> Result<CronSpec, CronError> {
        let input = text.trim();
        let fail = |reason: String| CronError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(fail("the expression is empty".to_owned()));
        }
        let expanded = if input.starts_with('@') {
            expand_macro(input).map_err(fail)?
        } else {
            input
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, min, hour, dom, month, dow) = match fields.as_slice() {
            [min, hour, dom, month, dow] => ("0", *min, *hour, *dom, *month, *dow),
            [sec, min, hour, dom, month, dow] => (*sec, *min, *hour, *dom, *month, *dow),
            [_, _, _, _, _, _, _] => {
                return Err(fail(
                    "7 fields: a year field is not supported; use 5 fields (minute hour \
                     day-of-month month day-of-week) or 6 with a leading seconds field"
                        .to_owned(),
                ));
            }
            other => {
                return Err(fail(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 \
                     (second minute hour day-of-month month day-of-week), found {}",
                    other.len()
                )));
            }
        };
        for (kind, field) in [
            (SECOND, sec),
            (MINUTE, min),
            (HOUR, hour),
            (DAY_OF_MONTH, dom),
            (MONTH, month),
        ] {
            fields::check_field(kind, field).map_err(&fail)?;
            probe_field(kind, field).map_err(&fail)?;
        }
        let dow_crate = fields::convert_day_of_week(dow).map_err(&fail)?;
        let build = |dom: &str, dow: &str| {
            Schedule::from_str(&format!("{sec} {min} {hour} {dom} {month} {dow}"))
                .map_err(|e| fail(crate_message(&e.to_string())))
        };
        let (primary, alternate) = if fields::is_restricted(dom) && fields::is_restricted(dow) {
            (build(dom, "*")?, Some(build("*", &dow_crate)?))
        } else {
            (build(dom, &dow_crate)?, None)
        };
        let spec = CronSpec {
            text: input.to_owned(),
            primary,
            alternate,
            wildcard: min.starts_with('*') || hour.starts_with('*'),
        };
        let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0));
        if epoch.and_then(|e| spec.next_local_after(e)).is_none() {
            return Err(fail(
                "it never matches a date (e.g. day 31 in a month of 30 days)".to_owned(),
            ));
        }
        Ok(spec)
    }

    /// The expression as written (trimmed), for display and status.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Vixie cron's "wildcard job" (minute or hour starts with `*`): such
    /// schedules run on real time across DST changes; others are fixed-time
    /// jobs, see [`super::timing::next_after`].
    pub(crate) fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The next matching local wall-clock time strictly after `after`, whole
    /// seconds, or `None` past the crate's last year (2100).
    pub(crate) fn next_local_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let after = after.and_utc();
        let first = self.primary.after(&after).next();
        let second = self.alternate.as_ref().and_then(|s| s.after(&after).next());
        match (first, second) {
            (Some(a), Some(b)) => Some(a.min(b).naive_utc()),
            (a, b) => a.or(b).map(|t| t.naive_utc()),
        }
    }
}

impl fmt::Display for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for CronSpec {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronSpec::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike, Weekday};

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    /// The next `n` local times after `from`.
    fn upcoming(expr: &str, from: &str, n: usize) -> Vec<NaiveDateTime> {
        let spec = CronSpec::parse(expr).unwrap();
        let mut t = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = spec.next_local_after(t).unwrap();
            out.push(t);
        }
        out
    }

    fn err(expr: &str) -> String {
        CronSpec::parse(expr).unwrap_err().to_string()
    }

    #[test]
    fn every_fifteen_minutes() {
        let got = upcoming("*/15 * * * *", "2026-01-01 10:07:00", 3);
        assert_eq!(
            got,
            [
                at("2026-01-01 10:15:00"),
                at("2026-01-01 10:30:00"),
                at("2026-01-01 10:45:00")
            ]
        );
        // Strictly after: from a boundary, the next one.
        assert_eq!(
            upcoming("*/15 * * * *", "2026-01-01 10:15:00", 1),
            [at("2026-01-01 10:30:00")]
        );
    }

    #[test]
    fn sunday_is_zero_and_seven_and_sun() {
        for expr in ["0 3 * * 0", "0 3 * * 7", "0 3 * * SUN", "0 3 * * sunday"] {
            for t in upcoming(expr, "2026-01-01 00:00:00", 5) {
                assert_eq!(
                    (t.weekday(), t.hour(), t.minute()),
                    (Weekday::Sun, 3, 0),
                    "{expr}"
                );
            }
        }
        assert_eq!(
            upcoming("0 3 * * 0", "2026-01-01 00:00:00", 1),
            [at("2026-01-04 03:00:00")]
        );
        // 1 is Monday, 6 Saturday (the crate alone would read them as Sunday, Friday).
        assert_eq!(
            upcoming("0 3 * * 1", "2026-01-01 00:00:00", 1)[0].weekday(),
            Weekday::Mon
        );
        assert_eq!(
            upcoming("0 3 * * 6", "2026-01-01 00:00:00", 1)[0].weekday(),
            Weekday::Sat
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_restricted() {
        // 2026-01-01 is a Thursday: the 1st, then Mondays, then Feb 1st (a Sunday).
        let got = upcoming("0 0 1 * MON", "2025-12-31 12:00:00", 7);
        let days: Vec<String> = got.iter().map(|t| t.format("%m-%d").to_string()).collect();
        assert_eq!(
            days,
            [
                "01-01", "01-05", "01-12", "01-19", "01-26", "02-01", "02-02"
            ]
        );
    }

    #[test]
    fn star_prefixed_day_field_means_and_as_in_vixie() {
        // `*/2` counts as unrestricted: odd days that are Mondays.
        let got = upcoming("0 0 */2 * MON", "2026-01-01 00:00:00", 3);
        let days: Vec<String> = got.iter().map(|t| t.format("%m-%d").to_string()).collect();
        assert_eq!(days, ["01-05", "01-19", "02-09"]);
        // Day-of-week `*`: just the 13th.
        assert_eq!(
            upcoming("0 0 13 * *", "2026-01-01 00:00:00", 1),
            [at("2026-01-13 00:00:00")]
        );
    }

    #[test]
    fn names_ranges_lists_and_steps() {
        assert_eq!(
            upcoming("30 4 * JAN,jul MON-FRI", "2026-01-30 05:00:00", 2),
            [at("2026-07-01 04:30:00"), at("2026-07-02 04:30:00")]
        );
        assert_eq!(
            upcoming("0 9-17/4 * * 1-5", "2026-01-02 09:30:00", 3),
            [
                at("2026-01-02 13:00:00"),
                at("2026-01-02 17:00:00"),
                at("2026-01-05 09:00:00")
            ]
        );
        assert_eq!(
            upcoming("5,35 * * * *", "2026-01-01 00:10:00", 2),
            [at("2026-01-01 00:35:00"), at("2026-01-01 01:05:00")]
        );
        assert_eq!(
            upcoming("0 0 1 jan *", "2026-03-01 00:00:00", 1),
            [at("2027-01-01 00:00:00")]
        );
        // Weekend via a range ending on Sunday (7).
        let wd: Vec<Weekday> = upcoming("0 12 * * 5-7", "2026-01-05 00:00:00", 3)
            .iter()
            .map(|t| t.weekday())
            .collect();
        assert_eq!(wd, [Weekday::Fri, Weekday::Sat, Weekday::Sun]);
    }

    #[test]
    fn six_fields_with_seconds() {
        let got = upcoming("*/2 * * * * *", "2026-01-01 00:00:59", 3);
        assert_eq!(
            got,
            [
                at("2026-01-01 00:01:00"),
                at("2026-01-01 00:01:02"),
                at("2026-01-01 00:01:04")
            ]
        );
        assert_eq!(
            upcoming("30 0 3 * * *", "2026-01-01 00:00:00", 1),
            [at("2026-01-01 03:00:30")]
        );
    }

    #[test]
    fn macros() {
        let from = "2026-05-15 10:20:30";
        let cases = [
            ("@yearly", "2027-01-01 00:00:00"),
            ("@annually", "2027-01-01 00:00:00"),
            ("@monthly", "2026-06-01 00:00:00"),
            ("@weekly", "2026-05-17 00:00:00"), // Sunday
            ("@daily", "2026-05-16 00:00:00"),
            ("@midnight", "2026-05-16 00:00:00"),
            ("@hourly", "2026-05-15 11:00:00"),
            (" @Daily ", "2026-05-16 00:00:00"),
        ];
        for (expr, next) in cases {
            assert_eq!(upcoming(expr, from, 1), [at(next)], "{expr}");
        }
        assert_eq!(CronSpec::parse(" @daily ").unwrap().as_str(), "@daily");
    }

    #[test]
    fn rejects_with_useful_messages() {
        let cases = [
            ("@reboot", "@reboot is not supported"),
            ("@fortnightly", "unknown macro"),
            ("* * * *", "found 4"),
            ("every day at noon", "found 4"),
            ("0 0 1 1 * * 2027 x", "found 8"),
            ("0 0 1 1 * * 2027", "year field is not supported"),
            ("61 * * * *", "minute 61 is out of range 0-59"),
            ("0 24 * * *", "hour 24 is out of range 0-23"),
            ("0 0 32 * *", "day-of-month 32 is out of range 1-31"),
            ("0 0 * 13 *", "month 13 is out of range 1-12"),
            ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
            ("*/0 * * * *", "step must be at least 1"),
            ("a b c d e", "minute field \"a\""),
            ("0 0 * FOO *", "'FOO' is not a valid month name"),
            ("0 0 L * *", "'L' (last day of the month) is not supported"),
            (
                "0 0 * * 5#2",
                "'#' (n-th weekday of the month) is not supported",
            ),
            ("0 0 31 2 *", "never matches"),
            ("", "empty"),
        ];
        for (expr, needle) in cases {
            let msg = err(expr);
            assert!(msg.contains(needle), "{expr:?}: {msg}");
            assert!(
                msg.contains(&format!("{:?}", expr.trim())),
                "echoes input: {msg}"
            );
        }
        assert_eq!(
            err("61 * * * *"),
            "invalid cron expression \"61 * * * *\": minute 61 is out of range 0-59"
        );
    }

    #[test]
    fn keeps_text_and_compares() {
        let a: CronSpec = "0 3 * * 0".parse().unwrap();
        assert_eq!(a.to_string(), "0 3 * * 0");
        assert_eq!(a, CronSpec::parse("0 3 * * 0").unwrap());
        assert_ne!(a, CronSpec::parse("0 3 * * 7").unwrap());
        assert!(CronSpec::parse("*/15 * * * *").unwrap().is_wildcard());
        assert!(!CronSpec::parse("30 2 * * *").unwrap().is_wildcard());
    }
}
