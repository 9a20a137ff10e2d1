//! Pure run-time decisions for one schedule: next run (time zone, DST, jitter), first run, catch-up.
//!
//! Every function here is a pure function of its arguments, so a restart
//! computes the same times as the process that was stopped.
//!
//! - **Time zone and DST** (Vixie cron / cronie rules, `zone.rs`): cron
//!   fields are matched on the schedule's local wall clock. A fixed-time
//!   schedule (minute and hour fields not starting with `*`, e.g. `30 2 * *
//!   *`) whose local time does not exist on spring-forward day runs at the
//!   first instant after the gap (02:30 → 03:00 new time); a local time that
//!   repeats on fall-back day runs once, at its first occurrence. Wildcard
//!   schedules (`*/15 * * * *`, `30 * * * *`) follow real time: times in the
//!   gap are skipped, repeated times run at both occurrences.
//! - **Jitter**: each nominal cron time `t` fires at `t + jitter_offset(name,
//!   t, jitter)`, a whole number of seconds in `[0, jitter)` taken from BLAKE3
//!   of the schedule name and `t`. Deterministic across restarts; schedules
//!   with the same cron line spread out. Jitter should stay below the cron
//!   interval (the config validator's job); larger values still work but runs
//!   may then fire out of nominal order.
//! - **New schedules** wait for their first cron time strictly after creation
//!   ([`first_run`]); nothing runs at creation.
//! - **Catch-up** ([`on_start`]) only concerns runs missed while the daemon was
//!   down (or asleep): with `catch_up`, one run now however many were missed;
//!   without, they are skipped. A schedule that never ran gets no catch-up.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::spec::CronSpec;
use super::zone;

/// Jitter beyond this is clamped; a year is already meaningless for a schedule.
const MAX_JITTER: Duration = Duration::from_secs(366 * 24 * 3600);

/// Bound on nominal times examined for one answer (only reached when jitter
/// spans tens of thousands of cron intervals).
const RUN_SCAN_LIMIT: usize = 100_000;

/// [`on_start`] counts missed runs up to this number, then stops counting.
pub const MISSED_COUNT_CAP: u32 = 1000;

const JITTER_KEY_CONTEXT: &str = "klosetd scheduler jitter v1";

/// What the scheduler needs to know about one declared schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// The schedule's name (`[schedule.NAME]`); it seeds the jitter.
    pub name: String,
    /// When it runs, in `timezone`'s wall clock.
    pub cron: CronSpec,
    /// The time zone the cron fields are read in.
    pub timezone: Tz,
    /// Upper bound (exclusive) of the deterministic delay added to each run.
    pub jitter: Duration,
    /// Whether a run missed while the daemon was down runs once at start.
    pub catch_up: bool,
}

/// One scheduled run: the cron time it stands for and when it actually fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Run {
    /// The cron time (time zone and DST applied, no jitter).
    pub nominal: DateTime<Utc>,
    /// `nominal` plus this schedule's jitter for it: when the run starts.
    pub at: DateTime<Utc>,
}

/// The deterministic jitter for the run of schedule `name` at `nominal`: whole
/// seconds in `[0, jitter)` (zero when `jitter` is under two seconds). Whole
/// seconds keep fire times exact when stored at second precision.
pub fn jitter_offset(name: &str, nominal: DateTime<Utc>, jitter: Duration) -> Duration {
    let jitter = jitter.min(MAX_JITTER);
    let choices = jitter.as_secs() + u64::from(jitter.subsec_nanos() > 0);
    if choices <= 1 {
        return Duration::ZERO;
    }
    let mut hasher = blake3::Hasher::new_derive_key(JITTER_KEY_CONTEXT);
    hasher.update(&u64::try_from(name.len()).unwrap_or(u64::MAX).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update(&nominal.timestamp().to_le_bytes());
    let mut word = [0u8; 8];
    for (dst, src) in word.iter_mut().zip(hasher.finalize().as_bytes()) {
        *dst = *src;
    }
    Duration::from_secs(u64::from_le_bytes(word) % choices)
}

/// The next run firing strictly after `after`, jitter included, or `None`
/// if the schedule has no more times (the `cron` crate stops at 2100).
///
/// A nominal time at or before `after` still counts while its jittered fire
/// time is after `after`, so a restart inside a jitter window keeps the run.
/// In a loop, pass the previous run's [`Run::at`] to get the following one.
pub fn next_run(spec: &ScheduleSpec, after: DateTime<Utc>) -> Option<Run> {
    let window = TimeDelta::from_std(spec.jitter.min(MAX_JITTER)).unwrap_or(TimeDelta::zero());
    let floor = after.checked_sub_signed(window).unwrap_or(after);
    scan(spec, floor, after)
}

/// [`next_run`]'s fire time.
pub fn next_after(spec: &ScheduleSpec, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    next_run(spec, after).map(|r| r.at)
}

/// The first run of a schedule created (or first seen) at `created_at`: the
/// first cron time strictly after creation, plus its jitter. Never
/// `created_at` itself, even on a cron boundary.
pub fn initial_run(spec: &ScheduleSpec, created_at: DateTime<Utc>) -> Option<Run> {
    scan(spec, created_at, created_at)
}

/// [`initial_run`]'s fire time.
pub fn first_run(spec: &ScheduleSpec, created_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    initial_run(spec, created_at).map(|r| r.at)
}

/// The earliest run with a nominal time after `floor` that fires after `after`.
fn scan(spec: &ScheduleSpec, floor: DateTime<Utc>, after: DateTime<Utc>) -> Option<Run> {
    let mut best: Option<Run> = None;
    let mut cursor = floor;
    for _ in 0..RUN_SCAN_LIMIT {
        let Some(nominal) = zone::next_nominal(&spec.cron, spec.timezone, cursor) else {
            break;
        };
        // Later nominal times fire no earlier than themselves.
        if best.is_some_and(|b| nominal >= b.at) {
            break;
        }
        let offset = TimeDelta::from_std(jitter_offset(&spec.name, nominal, spec.jitter)).ok();
        let Some(at) = offset.and_then(|o| nominal.checked_add_signed(o)) else {
            break;
        };
        if at > after && best.is_none_or(|b| at < b.at) {
            best = Some(Run { nominal, at });
        }
        cursor = nominal;
    }
    best
}

/// What to do with a schedule when the daemon starts or wakes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartDecision {
    /// Run once now: the nominal time of the earliest missed run. Only with
    /// `catch_up`, and only when at least one run was missed.
    pub catch_up_run: Option<DateTime<Utc>>,
    /// The earliest missed nominal time, whether or not it is caught up.
    pub first_missed: Option<DateTime<Utc>>,
    /// How many runs fired in `(last_run, now]`, counted up to
    /// [`MISSED_COUNT_CAP`]; without `catch_up` record them as skipped.
    pub missed: u32,
    /// The next regular run after `now` (after `last_run` if the clock went
    /// back), or `None` if the schedule has no more times.
    pub next: Option<Run>,
}

/// Decides catch-up and the next run when the daemon starts, or re-plans
/// after a suspend or clock jump.
///
/// `last_run` is the fire time ([`Run::at`]) of the latest run this schedule
/// handled (ran, or skipped because the previous run was still running), or
/// when it started; `None` if it never ran. A run is missed if it was due to
/// fire in `(last_run, now]`. With `catch_up` one run happens now, however
/// many were missed; without, none. With `last_run` `None` the schedule is
/// treated as new: no catch-up, the next run is [`initial_run`] after `now`.
pub fn on_start(
    spec: &ScheduleSpec,
    last_run: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> StartDecision {
    let Some(last) = last_run else {
        return StartDecision {
            catch_up_run: None,
            first_missed: None,
            missed: 0,
            next: initial_run(spec, now),
        };
    };
    let mut first_missed = None;
    let mut missed = 0;
    let mut cursor = last;
    while missed < MISSED_COUNT_CAP {
        match next_run(spec, cursor) {
            Some(run) if run.at <= now => {
                first_missed.get_or_insert(run.nominal);
                missed += 1;
                cursor = run.at;
            }
            _ => break,
        }
    }
    StartDecision {
        catch_up_run: if spec.catch_up { first_missed } else { None },
        first_missed,
        missed,
        next: next_run(spec, last.max(now)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(name: &str, cron: &str, jitter_secs: u64, catch_up: bool) -> ScheduleSpec {
        ScheduleSpec {
            name: name.to_owned(),
            cron: CronSpec::parse(cron).unwrap(),
            timezone: Tz::UTC,
            jitter: Duration::from_secs(jitter_secs),
            catch_up,
        }
    }

    #[test]
    fn jitter_is_deterministic_bounded_and_per_name() {
        let t = utc("2026-01-01T03:00:00Z");
        let jitter = Duration::from_secs(600);
        assert_eq!(
            jitter_offset("home", t, jitter),
            jitter_offset("home", t, jitter)
        );
        let names = ["home", "photos", "db", "mail", "etc", "srv", "var", "opt"];
        let offsets: Vec<Duration> = names.iter().map(|n| jitter_offset(n, t, jitter)).collect();
        assert!(offsets.iter().all(|o| *o < jitter));
        let mut distinct = offsets.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() >= 6, "{offsets:?}");
        // Bound holds over many nominal times, and zero jitter means none.
        for h in 0..500 {
            let t = t + TimeDelta::hours(h);
            assert!(jitter_offset("home", t, Duration::from_secs(7)) < Duration::from_secs(7));
            assert_eq!(jitter_offset("home", t, Duration::ZERO), Duration::ZERO);
        }
    }

    #[test]
    fn next_run_adds_jitter_and_survives_restart_inside_the_window() {
        let s = spec("home", "0 3 * * *", 1800, false);
        let run = next_run(&s, utc("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(run.nominal, utc("2026-01-01T03:00:00Z"));
        assert!(run.at >= run.nominal && run.at < run.nominal + TimeDelta::minutes(30));
        assert_eq!(next_after(&s, utc("2026-01-01T00:00:00Z")), Some(run.at));
        // A restart between the nominal time and the fire time finds the same run.
        if run.at > run.nominal {
            assert_eq!(next_run(&s, run.nominal), Some(run));
        }
        // After it fired, the next day's.
        let next = next_run(&s, run.at).unwrap();
        assert_eq!(next.nominal, utc("2026-01-02T03:00:00Z"));
    }

    #[test]
    fn first_run_never_at_creation() {
        let s = spec("home", "*/15 * * * *", 0, true);
        let on_boundary = utc("2026-01-01T10:15:00Z");
        assert_eq!(
            first_run(&s, on_boundary),
            Some(utc("2026-01-01T10:30:00Z"))
        );
        assert_eq!(
            first_run(&s, utc("2026-01-01T10:14:59Z")),
            Some(on_boundary)
        );
        // With jitter too, the first nominal time is after creation.
        let j = spec("home", "*/15 * * * *", 600, true);
        let run = initial_run(&j, on_boundary).unwrap();
        assert_eq!(run.nominal, utc("2026-01-01T10:30:00Z"));
        assert!(run.at > on_boundary);
    }

    #[test]
    fn catch_up_runs_once_after_three_missed_runs() {
        let s = spec("home", "0 * * * *", 0, true);
        let d = on_start(
            &s,
            Some(utc("2026-01-01T01:00:00Z")),
            utc("2026-01-01T04:30:00Z"),
        );
        assert_eq!(d.catch_up_run, Some(utc("2026-01-01T02:00:00Z")));
        assert_eq!(d.missed, 3);
        assert_eq!(d.next.map(|r| r.at), Some(utc("2026-01-01T05:00:00Z")));
    }

    #[test]
    fn no_catch_up_when_disabled_never_ran_or_nothing_missed() {
        let last = Some(utc("2026-01-01T01:00:00Z"));
        let now = utc("2026-01-01T04:30:00Z");
        let off = on_start(&spec("home", "0 * * * *", 0, false), last, now);
        assert_eq!(
            (off.catch_up_run, off.first_missed, off.missed),
            (None, Some(utc("2026-01-01T02:00:00Z")), 3)
        );
        assert_eq!(off.next.map(|r| r.at), Some(utc("2026-01-01T05:00:00Z")));

        let s = spec("home", "0 * * * *", 0, true);
        let new = on_start(&s, None, now);
        assert_eq!((new.catch_up_run, new.missed), (None, 0));
        assert_eq!(new.next.map(|r| r.at), Some(utc("2026-01-01T05:00:00Z")));

        let fresh = on_start(&s, Some(utc("2026-01-01T04:00:00Z")), now);
        assert_eq!((fresh.catch_up_run, fresh.missed), (None, 0));
    }

    #[test]
    fn clock_behind_last_run_waits_for_it() {
        let s = spec("home", "0 * * * *", 0, true);
        let d = on_start(
            &s,
            Some(utc("2026-01-01T05:00:00Z")),
            utc("2026-01-01T03:30:00Z"),
        );
        assert_eq!((d.catch_up_run, d.missed), (None, 0));
        assert_eq!(d.next.map(|r| r.at), Some(utc("2026-01-01T06:00:00Z")));
    }

    #[test]
    fn missed_count_is_capped() {
        let s = spec("fast", "*/2 * * * * *", 0, true);
        let d = on_start(
            &s,
            Some(utc("2026-01-01T00:00:00Z")),
            utc("2026-01-02T00:00:00Z"),
        );
        assert_eq!(d.missed, MISSED_COUNT_CAP);
        assert_eq!(d.catch_up_run, Some(utc("2026-01-01T00:00:02Z")));
        assert_eq!(d.next.map(|r| r.at), Some(utc("2026-01-02T00:00:02Z")));
    }

    #[test]
    fn time_zone_is_applied() {
        let mut s = spec("home", "30 2 * * *", 0, false);
        s.timezone = Tz::Europe__Paris;
        assert_eq!(
            next_after(&s, utc("2026-03-28T12:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            next_after(&s, utc("2026-10-24T12:00:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            next_after(&s, utc("2026-10-25T00:30:00Z")),
            Some(utc("2026-10-26T01:30:00Z"))
        );
    }
}
