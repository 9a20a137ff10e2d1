//! The applied schedules and their cursors: applying a new configuration
//! (added, changed, removed schedules) and polling them for due runs.
//!
//! At daemon start a schedule's cursor resumes from its persisted last run,
//! so `catch_up` can run a missed run once. A schedule added by a reload
//! waits for its first cron time; a changed one keeps its last run and
//! re-plans without catching up; a removed one never fires again (a run
//! already going finishes; it is never cut into a partial snapshot).

use anyhow::{Result, anyhow};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use crate::config::DesiredState;
use crate::config::desired::{Action, ScheduleDef};
use crate::scheduler::cursor::{Action as Due, ScheduleCursor};
use crate::scheduler::{CronSpec, ScheduleSpec};
use crate::state::StateHandle;

struct Entry {
    spec: ScheduleSpec,
    def: ScheduleDef,
    cursor: ScheduleCursor,
}

/// What a poll asks the daemon to do for one schedule.
#[derive(Debug)]
pub struct DueRun {
    /// The schedule.
    pub name: String,
    /// What it runs.
    pub action: Action,
    /// Fire, skip or missed.
    pub due: Due,
}

/// Every applied schedule.
#[derive(Default)]
pub struct ScheduleTable {
    entries: BTreeMap<String, Entry>,
    started: bool,
}

fn spec_of(def: &ScheduleDef) -> Result<ScheduleSpec> {
    Ok(ScheduleSpec {
        name: def.name.clone(),
        cron: CronSpec::parse(&def.cron).map_err(|e| anyhow!("schedule.{}: {e}", def.name))?,
        timezone: def
            .timezone
            .parse()
            .map_err(|e| anyhow!("schedule.{}: {e}", def.name))?,
        jitter: def.jitter,
        catch_up: def.catch_up,
    })
}

fn same_timing(a: &ScheduleDef, b: &ScheduleDef) -> bool {
    a.cron == b.cron && a.timezone == b.timezone && a.jitter == b.jitter
}

impl ScheduleTable {
    /// Makes the table match `desired`. Reads the persisted last runs of new
    /// schedules; returns the names removed.
    pub async fn apply(
        &mut self,
        db: &StateHandle,
        desired: &DesiredState,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let removed: Vec<String> = self
            .entries
            .keys()
            .filter(|n| !desired.schedules.contains_key(*n))
            .cloned()
            .collect();
        for name in &removed {
            self.entries.remove(name);
        }
        let last_runs: BTreeMap<String, Option<DateTime<Utc>>> = db
            .call(|db| db.all_schedule_states())
            .await?
            .into_iter()
            .map(|s| (s.name, s.last_run_at))
            .collect();
        for (name, def) in &desired.schedules {
            let spec = spec_of(def)?;
            let last = last_runs.get(name).copied().flatten();
            let cursor = match self.entries.get(name) {
                Some(old) if same_timing(&old.def, def) => old.cursor.clone(),
                Some(old) => ScheduleCursor::resume(&spec, old.cursor.last_run().or(last), now),
                None if !self.started => ScheduleCursor::start(&spec, last, now),
                None => ScheduleCursor::resume(&spec, last, now),
            };
            self.entries.insert(
                name.clone(),
                Entry {
                    spec,
                    def: def.clone(),
                    cursor,
                },
            );
        }
        self.started = true;
        Ok(removed)
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
                    action: entry.def.action.clone(),
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
}
