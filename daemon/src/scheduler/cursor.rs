//! `ScheduleCursor`: one schedule's state machine (last run, next run, pending catch-up) for the runner.
//!
//! Built on [`super::tick::tick`] and [`super::timing`]; the async runner only
//! has to do this, with no scheduling logic of its own:
//!
//! ```text
//! let mut cursor = ScheduleCursor::start(&spec, state.last_run(name), clock.now());
//! loop {
//!     let now = clock.now();
//!     match cursor.poll(&spec, now, is_running(name)) {
//!         Due::Wait { until } => sleep(sleep_until_hint(now, until)).await,
//!         Due::Fire { .. } => spawn_task(..),          // bounded by max_concurrent_tasks
//!         Due::Skip { reason, .. } => record_skipped(reason),
//!         Due::Missed { count, .. } => record_missed(count),
//!     }
//!     state.set_last_run(name, cursor.last_run()); // persist after Fire/Skip/Missed
//! }
//! ```
//!
//! A due time noticed more than [`super::tick::MISSED_AFTER`] late means the loop was not
//! running (suspend, a stopped process, a forward clock jump): the cursor then
//! re-plans exactly like a daemon start, so `catch_up` decides between one
//! run now and none. A backward clock jump just makes the wait longer.

use chrono::{DateTime, Utc};

use super::tick::{SkipReason, Tick, TickState, tick};
use super::timing::{self, Run, ScheduleSpec};

/// What [`ScheduleCursor::poll`] asks the runner to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Sleep (see [`super::clock::sleep_until_hint`]) and poll again.
    Wait {
        /// The next fire time, `None` if the schedule has no more times.
        until: Option<DateTime<Utc>>,
    },
    /// Start a run now.
    Fire {
        /// The cron time it stands for (the earliest missed one for a catch-up).
        nominal: DateTime<Utc>,
        /// Whether this is the single catch-up run for missed runs.
        catch_up: bool,
    },
    /// Record a skipped run.
    Skip {
        /// The cron time that was skipped.
        nominal: DateTime<Utc>,
        /// Why.
        reason: SkipReason,
    },
    /// Runs were missed while the daemon was down or asleep and `catch_up`
    /// is off: record them as skipped.
    Missed {
        /// The earliest missed cron time.
        first: DateTime<Utc>,
        /// How many, up to [`timing::MISSED_COUNT_CAP`].
        count: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    CatchUp { nominal: DateTime<Utc> },
    Missed { first: DateTime<Utc>, count: u32 },
}

/// One schedule's position in time: what ran last, what runs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleCursor {
    /// Since when this cursor has been watching (runs missed after this while
    /// the loop slept are real misses, even if the schedule never ran).
    since: DateTime<Utc>,
    last_run: Option<DateTime<Utc>>,
    next: Option<Run>,
    pending: Option<Pending>,
}

impl ScheduleCursor {
    /// At daemon start, or for a schedule added while running (`last_run`
    /// `None`): applies [`timing::on_start`], so missed runs are caught up once
    /// (or reported) at the first [`poll`](Self::poll).
    pub fn start(spec: &ScheduleSpec, last_run: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        let decision = timing::on_start(spec, last_run, now);
        let pending = match (decision.catch_up_run, decision.first_missed) {
            (Some(nominal), _) => Some(Pending::CatchUp { nominal }),
            (None, Some(first)) => Some(Pending::Missed {
                first,
                count: decision.missed,
            }),
            (None, None) => None,
        };
        ScheduleCursor {
            since: now,
            last_run,
            next: decision.next,
            pending,
        }
    }

    /// After a reload changed the schedule: no catch-up, and the first run is
    /// the new cron's first time after `now` (and after `last_run`).
    pub fn resume(
        spec: &ScheduleSpec,
        last_run: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        let from = last_run.map_or(now, |last| last.max(now));
        ScheduleCursor {
            since: now,
            last_run,
            next: timing::initial_run(spec, from),
            pending: None,
        }
    }

    /// The fire time of the latest run handled (fired, skipped or missed):
    /// persist it after every action but `Wait`.
    pub fn last_run(&self) -> Option<DateTime<Utc>> {
        self.last_run
    }

    /// The next regular run's fire time, for status; a pending catch-up
    /// fires at the next poll.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.next.map(|r| r.at)
    }

    /// Looks at the clock once. `running`: whether this schedule's previous
    /// run is still going.
    pub fn poll(&mut self, spec: &ScheduleSpec, now: DateTime<Utc>, running: bool) -> Due {
        if let Some(pending) = self.pending.take() {
            self.last_run = Some(self.last_run.map_or(now, |last| last.max(now)));
            return match pending {
                Pending::CatchUp { nominal } if running => Due::Skip {
                    nominal,
                    reason: SkipReason::StillRunning,
                },
                Pending::CatchUp { nominal } => Due::Fire {
                    nominal,
                    catch_up: true,
                },
                Pending::Missed { first, count } => Due::Missed { first, count },
            };
        }
        let Some(run) = self.next else {
            return Due::Wait { until: None };
        };
        match tick(
            &TickState {
                next_due: Some(run.at),
                running,
            },
            now,
        ) {
            Tick::Wait { until } => Due::Wait { until },
            Tick::Fire { .. } => {
                self.advance(spec, run);
                Due::Fire {
                    nominal: run.nominal,
                    catch_up: false,
                }
            }
            Tick::Skip { reason, .. } => {
                self.advance(spec, run);
                Due::Skip {
                    nominal: run.nominal,
                    reason,
                }
            }
            Tick::Missed { .. } => {
                let since = self.since;
                *self = Self::start(spec, Some(self.last_run.unwrap_or(since)), now);
                self.since = since;
                // `start` leaves a pending action or a next run after `now`.
                self.poll(spec, now, running)
            }
        }
    }

    fn advance(&mut self, spec: &ScheduleSpec, run: Run) {
        self.last_run = Some(run.at);
        self.next = timing::next_run(spec, run.at);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::scheduler::clock::{Clock, ManualClock};
    use crate::scheduler::spec::CronSpec;
    use chrono_tz::Tz;
    use std::time::Duration;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(cron: &str, catch_up: bool) -> ScheduleSpec {
        ScheduleSpec {
            name: "home".to_owned(),
            cron: CronSpec::parse(cron).unwrap(),
            timezone: Tz::UTC,
            jitter: Duration::ZERO,
            catch_up,
        }
    }

    #[test]
    fn every_two_seconds_with_a_stepping_clock() {
        let s = spec("*/2 * * * * *", false);
        let clock = ManualClock::new(utc("2026-01-01T00:00:00Z"));
        let mut cursor = ScheduleCursor::start(&s, None, clock.now());
        let mut fired = Vec::new();
        for _ in 0..10 {
            clock.advance(Duration::from_secs(1));
            if let Due::Fire {
                nominal,
                catch_up: false,
            } = cursor.poll(&s, clock.now(), false)
            {
                fired.push(nominal.format("%S").to_string());
            }
        }
        // Created on a boundary: the first run is the next one, not 00:00:00.
        assert_eq!(fired, ["02", "04", "06", "08", "10"]);
        assert_eq!(cursor.last_run(), Some(utc("2026-01-01T00:00:10Z")));
    }

    #[test]
    fn overlapping_run_is_skipped_and_counted() {
        let s = spec("0 * * * *", true);
        let clock = ManualClock::new(utc("2026-01-01T00:30:00Z"));
        let mut cursor = ScheduleCursor::start(&s, None, clock.now());
        assert_eq!(
            cursor.poll(&s, clock.now(), false),
            Due::Wait {
                until: Some(utc("2026-01-01T01:00:00Z"))
            }
        );
        clock.set(utc("2026-01-01T01:00:00Z"));
        assert!(matches!(
            cursor.poll(&s, clock.now(), false),
            Due::Fire {
                catch_up: false,
                ..
            }
        ));
        clock.set(utc("2026-01-01T02:00:00Z"));
        let skipped = cursor.poll(&s, clock.now(), true);
        assert_eq!(
            skipped,
            Due::Skip {
                nominal: clock.now(),
                reason: SkipReason::StillRunning
            }
        );
        assert_eq!(cursor.last_run(), Some(clock.now()));
        assert_eq!(cursor.next_due(), Some(utc("2026-01-01T03:00:00Z")));
    }

    /// The machine sleeps through two runs: one catch-up, then back to normal.
    #[test]
    fn suspend_for_two_hours_gives_one_catch_up() {
        let s = spec("0 * * * *", true);
        let clock = ManualClock::new(utc("2026-01-01T09:59:59Z"));
        let mut cursor = ScheduleCursor::start(&s, Some(utc("2026-01-01T09:00:00Z")), clock.now());
        assert!(matches!(
            cursor.poll(&s, clock.now(), false),
            Due::Wait { .. }
        ));
        clock.advance(Duration::from_secs(1));
        assert!(matches!(
            cursor.poll(&s, clock.now(), false),
            Due::Fire {
                catch_up: false,
                ..
            }
        ));
        clock.advance(Duration::from_secs(2 * 3600)); // suspend: 10:00:00 → 12:00:00
        clock.advance(Duration::from_secs(5));
        let woke = cursor.poll(&s, clock.now(), false);
        assert_eq!(
            woke,
            Due::Fire {
                nominal: utc("2026-01-01T11:00:00Z"),
                catch_up: true
            }
        );
        assert_eq!(
            cursor.poll(&s, clock.now(), false),
            Due::Wait {
                until: Some(utc("2026-01-01T13:00:00Z"))
            }
        );
        assert_eq!(cursor.last_run(), Some(clock.now()));
    }

    #[test]
    fn suspend_without_catch_up_reports_missed_runs() {
        let s = spec("0 * * * *", false);
        let clock = ManualClock::new(utc("2026-01-01T10:30:00Z"));
        // A schedule that never ran, watched since 10:30: 11:00 and 12:00 are real misses.
        let mut cursor = ScheduleCursor::start(&s, None, clock.now());
        clock.advance(Duration::from_secs(2 * 3600));
        let woke = cursor.poll(&s, clock.now(), false);
        assert_eq!(
            woke,
            Due::Missed {
                first: utc("2026-01-01T11:00:00Z"),
                count: 2
            }
        );
        assert_eq!(
            cursor.poll(&s, clock.now(), false),
            Due::Wait {
                until: Some(utc("2026-01-01T13:00:00Z"))
            }
        );
    }

    #[test]
    fn daemon_start_catches_up_once_then_waits() {
        let s = spec("0 * * * *", true);
        let now = utc("2026-01-01T04:30:00Z");
        let mut cursor = ScheduleCursor::start(&s, Some(utc("2026-01-01T01:00:00Z")), now);
        assert_eq!(
            cursor.poll(&s, now, false),
            Due::Fire {
                nominal: utc("2026-01-01T02:00:00Z"),
                catch_up: true
            }
        );
        assert_eq!(
            cursor.poll(&s, now, false),
            Due::Wait {
                until: Some(utc("2026-01-01T05:00:00Z"))
            }
        );
        // Never ran: no catch-up.
        let mut new = ScheduleCursor::start(&s, None, now);
        assert_eq!(
            new.poll(&s, now, false),
            Due::Wait {
                until: Some(utc("2026-01-01T05:00:00Z"))
            }
        );
    }

    #[test]
    fn resume_after_a_change_does_not_catch_up() {
        let s = spec("*/15 * * * *", true);
        let now = utc("2026-01-01T04:30:00Z");
        let mut cursor = ScheduleCursor::resume(&s, Some(utc("2026-01-01T01:00:00Z")), now);
        assert_eq!(
            cursor.poll(&s, now, false),
            Due::Wait {
                until: Some(utc("2026-01-01T04:45:00Z"))
            }
        );
    }
}
