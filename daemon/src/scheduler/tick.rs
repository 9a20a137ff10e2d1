//! The scheduler loop's decisions: fire, skip (no overlap), wait, or re-plan after a missed wake-up.
//!
//! [`tick()`] is the single-step rule; [`super::cursor::ScheduleCursor`] is
//! the per-schedule state machine built on it, which the runner polls.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// How late a due time may be noticed and still count as on time.
pub const MISSED_AFTER: Duration = Duration::from_secs(60);

/// What [`tick`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickState {
    /// When the next run fires, `None` if never.
    pub next_due: Option<DateTime<Utc>>,
    /// Whether this schedule's previous run is still running.
    pub running: bool,
}

/// Why a due run was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// A schedule never overlaps itself.
    StillRunning,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::StillRunning => f.write_str("previous run still running"),
        }
    }
}

/// The decision for one look at the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Not due yet; look again at or before `until` (`None`: never due).
    Wait {
        /// The due time.
        until: Option<DateTime<Utc>>,
    },
    /// Due: start the run.
    Fire {
        /// The due time.
        due: DateTime<Utc>,
    },
    /// Due, but the previous run is still going: count it as skipped.
    Skip {
        /// The due time.
        due: DateTime<Utc>,
        /// Why.
        reason: SkipReason,
    },
    /// Due more than [`MISSED_AFTER`] ago: the loop was not running. Re-plan
    /// with [`super::timing::on_start`].
    Missed {
        /// The due time.
        due: DateTime<Utc>,
    },
}

/// One step of the loop: compares the due time with `now`.
pub fn tick(state: &TickState, now: DateTime<Utc>) -> Tick {
    let Some(due) = state.next_due else {
        return Tick::Wait { until: None };
    };
    if now < due {
        return Tick::Wait { until: Some(due) };
    }
    let late = TimeDelta::from_std(MISSED_AFTER).unwrap_or(TimeDelta::MAX);
    if now.signed_duration_since(due) > late {
        Tick::Missed { due }
    } else if state.running {
        Tick::Skip {
            due,
            reason: SkipReason::StillRunning,
        }
    } else {
        Tick::Fire { due }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn tick_table() {
        let due = utc("2026-01-01T03:00:00Z");
        let st = |running| TickState {
            next_due: Some(due),
            running,
        };
        let cases = [
            (
                st(false),
                "2026-01-01T02:59:59Z",
                Tick::Wait { until: Some(due) },
            ),
            (st(false), "2026-01-01T03:00:00Z", Tick::Fire { due }),
            (st(false), "2026-01-01T03:01:00Z", Tick::Fire { due }),
            (
                st(true),
                "2026-01-01T03:00:00Z",
                Tick::Skip {
                    due,
                    reason: SkipReason::StillRunning,
                },
            ),
            (st(false), "2026-01-01T03:01:01Z", Tick::Missed { due }),
            (st(true), "2026-01-01T05:00:00Z", Tick::Missed { due }),
            (
                TickState {
                    next_due: None,
                    running: false,
                },
                "2026-01-01T03:00:00Z",
                Tick::Wait { until: None },
            ),
        ];
        for (state, now, expected) in cases {
            assert_eq!(tick(&state, utc(now)), expected, "{state:?} at {now}");
        }
        assert_eq!(
            SkipReason::StillRunning.to_string(),
            "previous run still running"
        );
    }
}
