//! Cron schedules with time zones, jitter and catch-up, computed against an injected clock.
//!
//! Everything here is pure and synchronous; the async runner (elsewhere)
//! sleeps, spawns tasks and persists `last_run`. The pieces:
//!
//! - [`spec`]: [`CronSpec`], crontab syntax as users write it (5 fields, 6
//!   with seconds, `@daily`…), checked with messages that echo the input.
//! - [`timing`]: [`ScheduleSpec`] and the pure decisions: [`next_after`] (time
//!   zone, DST, deterministic jitter), [`first_run`] (never at creation),
//!   [`on_start`] (catch up once, only for runs missed while down).
//! - [`tick`]: [`tick()`](tick::tick): fire / skip because still running /
//!   wait / missed (the loop was not running).
//! - [`cursor`]: [`ScheduleCursor`], the per-schedule state machine the
//!   runner polls, with the loop it expects.
//! - [`table`]: [`ScheduleTable`], every applied schedule's cursor, changed
//!   by the daemon's diff and polled for due runs.
//! - [`clock`]: [`Clock`], [`SystemClock`], [`ManualClock`]; the loop sleeps at
//!   most a second at a time and re-reads the wall clock, so suspend and clock
//!   jumps are noticed.
//!
//! `max_concurrent_tasks` is not handled here: the runner holds a semaphore
//! and acquires it after [`Due::Fire`]; a schedule waiting for a permit
//! counts as running for its next [`ScheduleCursor::poll`].

pub mod clock;
pub mod cursor;
mod fields;
pub mod spec;
pub mod table;
pub mod tick;
pub mod timing;
mod zone;

pub use clock::{Clock, MAX_SLEEP_STEP, ManualClock, SystemClock, sleep_until_hint};
pub use cursor::{Due, ScheduleCursor};
pub use spec::{CronError, CronSpec};
pub use table::{DueRun, ScheduleTable, Update};
pub use tick::{MISSED_AFTER, SkipReason, Tick, TickState};
pub use timing::{
    Run, ScheduleSpec, StartDecision, first_run, initial_run, jitter_offset, next_after, next_run,
    on_start,
};
