//! Every applied schedule with its cursor: the scheduler's side of applying
//! a configuration, and polling for due runs. Pure: the daemon passes the
//! changes of its diff, the persisted last runs and the time.
//!
//! At daemon start a schedule's cursor resumes from its persisted last run,
//! so `catch_up` can run a missed run once. A schedule added by a reload
//! waits for its first cron time; a changed one keeps its last run and
//! re-plans without catching up (its cursor is kept when only what it runs
//! changed); a removed one never fires again (a run already going
//! finishes; it is never cut into a partial snapshot).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::cursor::{Due, ScheduleCursor};
use super::timing::ScheduleSpec;

/// What a reload does to one schedule.
#[derive(Clone, Copy, Debug)]
pub enum Update<'a> {
    /// Added or changed, now defined as this.
    Upsert(&'a ScheduleSpec),
    /// No longer declared.
    Remove,
}

#[derive(Clone, Debug)]
struct Entry {
    spec: ScheduleSpec,
    cursor: ScheduleCursor,
}

/// One due run of a schedule.
#[derive(Debug)]
pub struct DueRun {
    /// The schedule.
    pub name: String,
    /// Fire, skip or missed.
    pub due: Due,
}

/// Every applied schedule.
#[derive(Clone, Debug, Default)]
pub struct ScheduleTable {
    entries: BTreeMap<String, Entry>,
    started: bool,
}

fn same_timing(a: &ScheduleSpec, b: &ScheduleSpec) -> bool {
    a.cron == b.cron && a.timezone == b.timezone && a.jitter == b.jitter
}

impl ScheduleTable {
    /// Applies a reload's schedule changes; `last_runs` are the persisted
    /// last runs by schedule. The first call is the daemon's start.
    pub fn apply<'a>(
        &mut self,
        updates: impl IntoIterator<Item = (&'a str, Update<'a>)>,
        last_runs: &BTreeMap<String, Option<DateTime<Utc>>>,
        now: DateTime<Utc>,
    ) {
        for (name, update) in updates {
            let spec = match update {
                Update::Remove => {
                    self.entries.remove(name);
                    continue;
                }
                Update::Upsert(spec) => spec.clone(),
            };
            let last = last_runs.get(name).copied().flatten();
            let cursor = match self.entries.get(name) {
                Some(old) if same_timing(&old.spec, &spec) => old.cursor.clone(),
                Some(old) => ScheduleCursor::resume(&spec, old.cursor.last_run().or(last), now),
                None if !self.started => ScheduleCursor::start(&spec, last, now),
                None => ScheduleCursor::resume(&spec, last, now),
            };
            self.entries
                .insert(name.to_string(), Entry { spec, cursor });
        }
        self.started = true;
    }

    /// Polls every schedule once. `running` says whether a schedule's
    /// previous run is still going. Returns the runs due and the earliest
    /// time anything is due next.
    pub fn poll(
        &mut self,
        now: DateTime<Utc>,
        running: impl Fn(&str) -> bool,
    ) -> (Vec<DueRun>, Option<DateTime<Utc>>) {
        let mut due = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        for (name, entry) in self.entries.iter_mut() {
            match entry.cursor.poll(&entry.spec, now, running(name)) {
                Due::Wait { until } => {
                    next = match (next, until) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                other => due.push(DueRun {
                    name: name.clone(),
                    due: other,
                }),
            }
        }
        (due, next)
    }

    /// The last run handled by `name`'s cursor (persist after a due run).
    pub fn last_run(&self, name: &str) -> Option<DateTime<Utc>> {
        self.entries.get(name).and_then(|e| e.cursor.last_run())
    }

    /// The next run of every schedule, for status.
    pub fn next_runs(&self) -> BTreeMap<String, Option<DateTime<Utc>>> {
        self.entries
            .iter()
            .map(|(n, e)| (n.clone(), e.cursor.next_due()))
            .collect()
    }

    /// How many schedules are applied.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no schedule is applied.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
