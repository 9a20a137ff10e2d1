//! Wall-clock time behind a trait, so the scheduler can be driven by a manual clock in tests.
//!
//! Contract for the scheduler loop: it never sleeps until a far deadline.
//! It sleeps in steps of at most [`MAX_SLEEP_STEP`] ([`sleep_until_hint`])
//! and asks [`Clock::now`] again after each step. Monotonic timers stop
//! while the machine is suspended and ignore clock changes; re-reading the
//! wall clock every second is what notices a resume, a clock jump or an NTP
//! step within a second. The decisions themselves (`timing`, `tick`) are pure
//! functions of the time they are given.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The longest single sleep of the scheduler loop.
pub const MAX_SLEEP_STEP: Duration = Duration::from_secs(1);

/// A source of wall-clock time (UTC).
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time. It may jump in either direction (suspend,
    /// NTP, the operator); callers must not assume it is monotonic.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to: for tests and simulations.
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Sets the time, forwards or backwards (a clock jump).
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }

    /// Moves the time forwards by `by` (saturating at the end of time).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        let by = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        *now = now
            .checked_add_signed(by)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

/// How long the loop may sleep before looking at the clock again: the time
/// left until `next`, capped at [`MAX_SLEEP_STEP`]; zero when `next` is due;
/// the cap when there is no next run.
pub fn sleep_until_hint(now: DateTime<Utc>, next: Option<DateTime<Utc>>) -> Duration {
    let Some(next) = next else {
        return MAX_SLEEP_STEP;
    };
    (next - now)
        .to_std()
        .map_or(Duration::ZERO, |left| left.min(MAX_SLEEP_STEP))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(utc("2026-01-01T00:00:00Z"));
        assert_eq!(clock.now(), utc("2026-01-01T00:00:00Z"));
        clock.advance(Duration::from_secs(7200));
        assert_eq!(clock.now(), utc("2026-01-01T02:00:00Z"));
        clock.set(utc("2025-12-31T23:00:00Z"));
        assert_eq!(clock.now(), utc("2025-12-31T23:00:00Z"));
        let shared: &dyn Clock = &clock;
        assert_eq!(shared.now(), utc("2025-12-31T23:00:00Z"));
        assert!(SystemClock.now() > utc("2020-01-01T00:00:00Z"));
    }

    #[test]
    fn sleep_hint_is_capped_and_never_negative() {
        let now = utc("2026-01-01T00:00:00Z");
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            sleep_until_hint(now, Some(now + TimeDelta::hours(5))),
            MAX_SLEEP_STEP
        );
        assert_eq!(
            sleep_until_hint(now, Some(now + TimeDelta::milliseconds(250))),
            ms(250)
        );
        assert_eq!(sleep_until_hint(now, Some(now)), Duration::ZERO);
        assert_eq!(
            sleep_until_hint(now, Some(now - TimeDelta::hours(1))),
            Duration::ZERO
        );
        assert_eq!(sleep_until_hint(now, None), MAX_SLEEP_STEP);
    }
}
