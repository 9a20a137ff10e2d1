//! Running one task: record the run (`running`, `queued_at` = when it was
//! due or claimed), wait for a permit (`max_concurrent_tasks`), record
//! `started_at` = when the permit came, execute it off the async runtime
//! with live progress, record the outcome; its duration counts from the
//! permit, not the wait. Failures are recorded, never fatal to the daemon.
//! A run's notifications (`start`, then its outcome) are queued in the same
//! transaction as what they report, and sent by the notification loop.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use kloset::Progress;
use tokio::sync::Semaphore;

use super::gates::PruneGates;
use crate::config::DesiredState;
use crate::config::desired::Action;
use crate::notify::{self, Ending, RunFacts, Wake};
use crate::scheduler::Clock;
use crate::state::{NewTask, NotifyEvent, Origin, Outcome, StateHandle, TaskId, TaskStatus};
use crate::status::{Fault, Live, RunningTask};
use crate::tasks::{TaskResult, execute};

/// What the runner needs, shared by every task.
#[derive(Clone, Debug)]
pub struct Runner {
    /// The state database.
    pub db: StateHandle,
    /// Permits for `max_concurrent_tasks`.
    pub permits: Arc<Semaphore>,
    /// Running tasks and the rest of the live status.
    pub live: Arc<Live>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// One prune per store at a time.
    pub gates: Arc<PruneGates>,
    /// Rung when notifications were queued.
    pub wake: Wake,
    /// This host's name, for notifications.
    pub host: Arc<str>,
}

/// One run to start.
#[derive(Clone, Debug)]
pub struct Job {
    /// Schedule or one-shot task.
    pub origin: Origin,
    /// What it does.
    pub action: Action,
    /// The configuration it runs under.
    pub desired: Arc<DesiredState>,
    /// The run's id when already recorded (one-shot claims).
    pub claimed: Option<TaskId>,
    /// The cron time it stands for (schedules).
    pub nominal: Option<DateTime<Utc>>,
}

impl Runner {
    /// Registers `job` as running now (so the scheduler sees it at once,
    /// even before it gets a permit) and returns the future that runs it.
    pub fn start(&self, job: Job) -> Result<impl Future<Output = ()> + Send + 'static> {
        let progress = Arc::new(Progress::new());
        let queued = self.clock.now();
        let entry = RunningTask {
            id: job.claimed,
            kind: job.action.kind(),
            origin: job.origin.clone(),
            store: job.action.store().to_string(),
            queued_at: queued,
            started_at: queued,
            has_slot: false,
            progress: progress.clone(),
        };
        self.live.task_queued(entry).map_err(|e| anyhow!(e))?;
        let runner = self.clone();
        Ok(async move {
            let origin = job.origin.clone();
            match runner.run(job, progress, queued).await {
                Ok(()) => runner.live.fault_cleared(Fault::TaskBookkeeping),
                Err(e) => runner
                    .live
                    .fault(Fault::TaskBookkeeping, format!("{}: {e:#}", origin.name())),
            }
            runner.live.task_ended(&origin);
        })
    }

    /// Records a run that was skipped.
    pub async fn record_skip(
        &self,
        origin: Origin,
        action: &Action,
        revision: &str,
        nominal: DateTime<Utc>,
        reason: String,
    ) -> Result<()> {
        tracing::warn!(origin = %origin.name(), %nominal, %reason, "run skipped");
        let new = NewTask {
            kind: action.kind(),
            origin: origin.clone(),
            store: Some(action.store().to_string()),
            scheduled_for: Some(nominal),
            started_at: self.clock.now(),
            revision: Some(revision.to_string()),
        };
        self.db
            .call(move |db| {
                db.record_skipped(&new, &reason)?;
                if let Origin::Schedule(name) = &origin {
                    db.increment_skipped(name)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn run(&self, job: Job, progress: Arc<Progress>, queued: DateTime<Utc>) -> Result<()> {
        // Recorded before the wait for a slot, so a queued run is visible
        // (`running`, with `queued_at`) and its wait is not its duration.
        let id = match job.claimed {
            Some(id) => id,
            None => {
                let new = NewTask {
                    kind: job.action.kind(),
                    origin: job.origin.clone(),
                    store: Some(job.action.store().to_string()),
                    scheduled_for: job.nominal,
                    started_at: queued,
                    revision: Some(job.desired.revision.clone()),
                };
                self.db.call(move |db| db.start_task(&new)).await?
            }
        };
        self.live.task_recorded(&job.origin, id);
        // One prune per store at a time in this daemon, waiting without a
        // permit; backups and other tasks are never held back by it.
        let gate =
            matches!(job.action, Action::Prune { .. }).then(|| self.gates.gate(job.action.store()));
        let _pruning = match &gate {
            Some(g) => Some(g.clone().lock_owned().await),
            None => None,
        };
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .context("task permits closed")?;
        let started = self.clock.now();
        let channels = notify::channels_of(&job.desired, &job.origin).to_vec();
        let facts = RunFacts {
            origin: &job.origin,
            action: &job.action,
            id,
            started_at: started,
            host: &self.host,
        };
        let starts = notify::messages(&job.desired, &channels, NotifyEvent::Start, &facts.start());
        let ring = !starts.is_empty();
        self.db
            .call(move |db| {
                db.atomically(|db| {
                    db.mark_started(id, started)?;
                    db.queue_notifications(&starts, started)
                })
            })
            .await?;
        if ring {
            self.wake.notify_one();
        }
        self.live.task_got_slot(&job.origin, started);
        let name = job.origin.name().to_string();
        tracing::info!(origin = %name, task = %id, kind = job.action.kind().as_str(), "task started");
        let (desired, action) = (job.desired.clone(), job.action.clone());
        let result =
            match tokio::task::spawn_blocking(move || execute(&desired, &action, progress)).await {
                Ok(r) => r,
                Err(e) if e.is_panic() => TaskResult::panicked(&*e.into_panic()),
                Err(e) => return Err(anyhow!("the task thread failed: {e}")),
            };
        let status = result.task_status();
        tracing::info!(
            origin = %name,
            task = %id,
            status = status.as_str(),
            error = result.error.as_deref().unwrap_or(""),
            "task finished"
        );
        self.live.maintenance_recorded(&job.action, &result.stats);
        let finished = self.clock.now();
        let outcome = Outcome {
            status,
            finished_at: finished,
            stats: Some(result.stats),
            error: result.error,
            snapshot_id: result.snapshot_id,
        };
        let duration = (finished - started).num_milliseconds().max(0) as u64;
        let bytes = result.bytes_added;
        let host = self.host.clone();
        let queued = self
            .db
            .call(move |db| {
                db.atomically(|db| {
                    db.finish_task(id, &outcome)?;
                    let succeeded = matches!(status, TaskStatus::Succeeded | TaskStatus::Partial);
                    let mut was_in_trouble = false;
                    let mut last_success_at = None;
                    if let Origin::Schedule(s) = &job.origin {
                        let before = db.schedule_state(s)?.unwrap_or_default();
                        was_in_trouble = matches!(
                            before.last_status,
                            Some(TaskStatus::Failed | TaskStatus::Partial)
                        );
                        if succeeded && db.end_stale(s)?.is_some() {
                            was_in_trouble = true;
                        }
                        db.record_schedule_finished(s, status, finished, duration, bytes)?;
                        // What record_schedule_finished just stored.
                        last_success_at = succeeded.then_some(finished).or(before.last_success_at);
                    }
                    let facts = RunFacts {
                        origin: &job.origin,
                        action: &job.action,
                        id,
                        started_at: started,
                        host: &host,
                    };
                    let end = Ending {
                        status,
                        finished_at: finished,
                        error: outcome.error.as_deref(),
                        snapshot_id: outcome.snapshot_id.as_deref(),
                        was_in_trouble,
                        last_success_at,
                    };
                    let messages = match notify::ending(&facts, &end) {
                        Some((event, body)) => {
                            notify::messages(&job.desired, &channels, event, &body)
                        }
                        None => Vec::new(),
                    };
                    db.queue_notifications(&messages, finished)?;
                    Ok(messages.len())
                })
            })
            .await?;
        if queued > 0 {
            self.wake.notify_one();
        }
        Ok(())
    }
}
