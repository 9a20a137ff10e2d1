//! Firing scheduled runs: poll the schedule table at the clock's time,
//! start what is due, record what is skipped or was missed, persist each
//! cursor's last run, and publish next run times.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Daemon;
use super::runner::Job;
use crate::config::DesiredState;
use crate::scheduler::{Due, DueRun};
use crate::state::Origin;
use crate::status::Fault;

impl Daemon {
    /// Fires, skips or records the runs that are due at `now`; returns when
    /// something is due next.
    pub(super) async fn poll_schedules(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let live = self.live.clone();
        let (due, next) = self.schedules.poll(now, |name| {
            live.is_running(&Origin::Schedule(name.to_string()))
        });
        let Some(desired) = self.applied.as_ref().map(|a| a.desired.clone()) else {
            return next;
        };
        let mut failed = None;
        for run in due {
            let name = run.name.clone();
            if let Err(e) = self.handle_due(&desired, run).await {
                failed = Some(format!("schedule.{name}: {e:#}"));
            }
        }
        match failed {
            Some(e) => self.live.fault(Fault::Schedules, e),
            None => self.live.fault_cleared(Fault::Schedules),
        }
        self.publish_next_runs().await;
        next
    }

    async fn handle_due(&mut self, desired: &Arc<DesiredState>, run: DueRun) -> anyhow::Result<()> {
        let Some(def) = desired.schedules.get(&run.name) else {
            // The table and the applied configuration are swapped together.
            anyhow::bail!("not in the applied configuration");
        };
        let origin = Origin::Schedule(run.name.clone());
        let last = self.schedules.last_run(&run.name);
        let name = run.name.clone();
        match run.due {
            Due::Fire { nominal, catch_up } => {
                tracing::info!(schedule = %run.name, %nominal, catch_up, "run due");
                let job = Job {
                    origin,
                    action: def.action.clone(),
                    desired: desired.clone(),
                    claimed: None,
                    nominal: Some(nominal),
                };
                // Registered as running before anything awaits, so the next
                // poll never fires it twice.
                let task = self.runner.start(job)?;
                let recorded = self
                    .db
                    .call(move |db| db.record_schedule_started(&name, nominal))
                    .await;
                // Spawned even when the database failed: the run is
                // registered as running, and only its end unregisters it
                // (dropping it here left the schedule "still running"
                // forever). The run records itself, or fails saying why.
                self.tasks.spawn(task);
                recorded?;
                return Ok(());
            }
            Due::Skip { nominal, reason } => {
                self.runner
                    .record_skip(
                        origin,
                        &def.action,
                        &desired.revision,
                        nominal,
                        reason.to_string(),
                    )
                    .await?;
            }
            Due::Missed { first, count } => {
                let reason = format!(
                    "{count} run(s) missed while the daemon was not running (catch_up = false)"
                );
                self.runner
                    .record_skip(origin, &def.action, &desired.revision, first, reason)
                    .await?;
            }
            Due::Wait { .. } => return Ok(()),
        }
        if let Some(at) = last {
            self.db
                .call(move |db| db.record_schedule_started(&name, at))
                .await?;
        }
        Ok(())
    }

    /// Writes next run times that changed to the database and the live
    /// status.
    async fn publish_next_runs(&self) {
        let shown = self.live.next_runs();
        let changed: Vec<(String, Option<DateTime<Utc>>)> = self
            .schedules
            .next_runs()
            .into_iter()
            .filter(|(n, at)| shown.get(n) != Some(at))
            .collect();
        if changed.is_empty() {
            return;
        }
        let shown = changed.clone();
        // The database first: after a failure the next tick tries again.
        match self.db.call(move |db| db.set_next_runs(&changed)).await {
            Ok(()) => {
                self.live.next_runs_changed(&shown);
                self.live.fault_cleared(Fault::RecordNextRuns);
            }
            Err(e) => self.live.fault(Fault::RecordNextRuns, e.to_string()),
        }
    }
}
