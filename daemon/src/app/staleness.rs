//! Staleness: a schedule with `alert_after` whose last success (a partial
//! backup counts) is older than that is stale. It shows in status, in
//! `/readyz`'s body, in the viewer and in `/metrics`, and raises one `stale`
//! notification per episode; the success that ends the episode is a
//! `recovery` (the runner sends it, in the transaction that records the run).
//!
//! A schedule that never succeeded is measured from when the daemon began to
//! watch it. The episode is kept in the state database, so a restart neither
//! repeats the notification nor forgets the recovery. Schedule states are
//! re-read when a run ended, when a revision was applied, and every
//! [`REFRESH`], and opening an episode re-checks the last success in the
//! database, so a run that just succeeded never makes a false alarm.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::Daemon;
use crate::notify::{self, StaleFacts};
use crate::state::{NotifyEvent, ScheduleState};
use crate::status::{Fault, StaleInfo};

/// How often schedule states are re-read without a reason.
pub const REFRESH: TimeDelta = TimeDelta::seconds(60);

/// What the daemon remembers between checks.
#[derive(Debug, Default)]
pub(super) struct StaleWatch {
    states: BTreeMap<String, ScheduleState>,
    refreshed_at: Option<DateTime<Utc>>,
    /// A run ended or a revision was applied: re-read before judging.
    pub(super) dirty: bool,
}

impl StaleWatch {
    fn due(&self, now: DateTime<Utc>) -> bool {
        self.dirty
            || self
                .refreshed_at
                .is_none_or(|t| now - t >= REFRESH || now < t)
    }
}

impl Daemon {
    /// Marks stale schedules (queueing their `stale` notification once per
    /// episode) and publishes them; returns when the next one may become
    /// stale.
    pub(super) async fn check_staleness(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let desired = self.applied.as_ref().map(|a| a.desired.clone())?;
        let watched: Vec<(String, Duration)> = desired
            .schedules
            .values()
            .filter_map(|s| s.alert_after.map(|a| (s.name.clone(), a)))
            .collect();
        if watched.is_empty() {
            if !self.live.stale().is_empty() {
                self.live.stale_changed(BTreeMap::new());
            }
            return None;
        }
        if self.stale_watch.due(now) {
            let names: Vec<String> = watched.iter().map(|(n, _)| n.clone()).collect();
            let read = self
                .db
                .call(move |db| {
                    let states = db.all_schedule_states()?;
                    // Watching begins once; later refreshes only read.
                    let unwatched: Vec<&String> = names
                        .iter()
                        .filter(|n| {
                            !states
                                .iter()
                                .any(|s| &s.name == *n && s.watch_since.is_some())
                        })
                        .collect();
                    if unwatched.is_empty() {
                        return Ok(states);
                    }
                    for name in unwatched {
                        db.watch_schedule(name, now)?;
                    }
                    db.all_schedule_states()
                })
                .await;
            match read {
                Ok(list) => {
                    self.stale_watch.states =
                        list.into_iter().map(|s| (s.name.clone(), s)).collect();
                    self.stale_watch.refreshed_at = Some(now);
                    self.stale_watch.dirty = false;
                    self.live.fault_cleared(Fault::Staleness);
                }
                Err(e) => {
                    self.live.fault(Fault::Staleness, e.to_string());
                    return None;
                }
            }
        }
        let mut stale = BTreeMap::new();
        let mut next: Option<DateTime<Utc>> = None;
        for (name, after) in watched {
            let Some(state) = self.stale_watch.states.get(&name).cloned() else {
                continue;
            };
            let Some(base) = state.last_success_at.or(state.watch_since) else {
                continue;
            };
            let Some(deadline) = TimeDelta::from_std(after)
                .ok()
                .and_then(|a| base.checked_add_signed(a))
            else {
                continue; // so far off it never comes
            };
            if now < deadline {
                if state.stale_since.is_some() {
                    // alert_after grew past the last success: no recovery
                    // to report, the episode just ends.
                    self.end_episode_quietly(&name).await;
                }
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
                continue;
            }
            if state.stale_since.is_none() && !self.begin_episode(&name, after, &state, now).await {
                continue;
            }
            stale.insert(
                name,
                StaleInfo {
                    since: deadline,
                    last_success_at: state.last_success_at,
                    alert_after: after,
                },
            );
        }
        self.live.stale_changed(stale);
        next
    }

    /// Opens a stale episode of `name` and queues its notifications, in one
    /// transaction; `false` when the database says it is not stale (a run
    /// just succeeded) or the write failed.
    async fn begin_episode(
        &mut self,
        name: &str,
        after: Duration,
        state: &ScheduleState,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(desired) = self.applied.as_ref().map(|a| a.desired.clone()) else {
            return false;
        };
        let Some(def) = desired.schedules.get(name) else {
            return false;
        };
        let cutoff = TimeDelta::from_std(after)
            .ok()
            .and_then(|a| now.checked_sub_signed(a))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let body = notify::stale(&StaleFacts {
            schedule: name,
            action: &def.action,
            alert_after: after,
            last_success_at: state.last_success_at,
            stale_since: now,
            at: now,
            host: &self.runner.host,
        });
        let messages = notify::messages(&desired, &def.notify, NotifyEvent::Stale, &body);
        let queued = !messages.is_empty();
        let key = name.to_string();
        let began = self
            .db
            .call(move |db| {
                db.atomically(|db| {
                    let began = db.begin_stale(&key, now, cutoff)?;
                    if began {
                        db.queue_notifications(&messages, now)?;
                    }
                    Ok(began)
                })
            })
            .await;
        match began {
            Ok(true) => {
                tracing::warn!(schedule = %name, alert_after = %humantime::format_duration(after), "schedule is stale");
                if let Some(s) = self.stale_watch.states.get_mut(name) {
                    s.stale_since = Some(now);
                }
                if queued {
                    self.runner.wake.notify_one();
                }
                true
            }
            Ok(false) => {
                self.stale_watch.dirty = true;
                false
            }
            Err(e) => {
                self.live.fault(Fault::Staleness, e.to_string());
                false
            }
        }
    }

    async fn end_episode_quietly(&mut self, name: &str) {
        let key = name.to_string();
        match self.db.call(move |db| db.end_stale(&key)).await {
            Ok(_) => {
                if let Some(s) = self.stale_watch.states.get_mut(name) {
                    s.stale_since = None;
                }
            }
            Err(e) => self.live.fault(Fault::Staleness, e.to_string()),
        }
    }
}
