//! The daemon runtime (first increment): open the state, mark runs left by
//! a crashed process as interrupted, run one-shot tasks once per name and
//! content, run schedules on their cron times without overlapping
//! themselves, bound the total with `max_concurrent_tasks`, and on SIGTERM
//! or SIGINT cancel running tasks cleanly (no partial snapshot) and exit.
//!
//! Not yet here: reloading (file watch, SIGHUP, resync), the HTTP endpoint
//! and sd_notify. The configuration is read once at start.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use chrono::Utc;
use kloset::Progress;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::desired::{Action, DesiredState};
use crate::scheduler::cursor::{Action as Due, ScheduleCursor};
use crate::scheduler::{CronSpec, ScheduleSpec, sleep_until_hint};
use crate::state::{
    Claim, INTERRUPTED_ERROR, NewTask, Origin, Outcome, StateHandle, TaskId, TaskKind, TaskStatus,
};
use crate::tasks::{RunStatus, execute};

/// How long running tasks get to stop after SIGTERM.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// Runs the daemon on `config_dir` until SIGTERM or SIGINT.
pub fn run(config_dir: &Path) -> Result<()> {
    let desired = crate::config::load_and_validate(config_dir).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow!(
            "the configuration in {} is invalid:\n{}",
            config_dir.display(),
            list.join("\n")
        )
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run_async(Arc::new(desired)))
}

struct Shared {
    desired: Arc<DesiredState>,
    db: StateHandle,
    permits: Arc<Semaphore>,
    /// Progress of every running task, by origin name, for cancellation.
    running: Mutex<HashMap<String, Arc<Progress>>>,
}

impl Shared {
    fn is_running(&self, name: &str) -> bool {
        self.running
            .lock()
            .map(|r| r.contains_key(name))
            .unwrap_or(true)
    }
}

fn state_kind(action: &Action) -> Result<TaskKind> {
    action.kind().as_str().parse().map_err(|e| anyhow!("{e}"))
}

async fn run_async(desired: Arc<DesiredState>) -> Result<()> {
    let state_dir = desired.daemon.state_dir.clone();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating state directory {}", state_dir.display()))?;
    let db = StateHandle::open(&state_dir.join(crate::state::DB_FILE_NAME))
        .context("opening the state database")?;
    let revision = desired.revision.clone();
    let interrupted = db
        .call(move |db| {
            let now = Utc::now();
            let counts = db.mark_interrupted_running(INTERRUPTED_ERROR, now)?;
            db.record_attempt(&revision, true, None, now)?;
            db.record_applied(&revision, now)?;
            Ok(counts)
        })
        .await?;
    tracing::info!(revision = %&desired.revision[..12], interrupted = interrupted.tasks, "klosetd started");
    let shared = Arc::new(Shared {
        permits: Arc::new(Semaphore::new(desired.daemon.max_concurrent_tasks as usize)),
        desired: desired.clone(),
        db,
        running: Mutex::new(HashMap::new()),
    });
    let mut tasks = JoinSet::new();

    for (name, def) in &desired.tasks {
        let new = NewTask {
            kind: state_kind(&def.action)?,
            origin: Origin::Task(name.clone()),
            store: Some(def.action.store().to_string()),
            scheduled_for: None,
            started_at: Utc::now(),
            revision: Some(desired.revision.clone()),
        };
        let (n, hash) = (name.clone(), def.origin.hash.clone());
        match shared
            .db
            .call(move |db| db.oneshot_claim(&n, &hash, &new))
            .await?
        {
            Claim::New(id) => {
                tasks.spawn(run_task(
                    shared.clone(),
                    name.clone(),
                    def.action.clone(),
                    Some(id),
                    None,
                ));
            }
            other => {
                tracing::info!(task = %name, claim = ?std::mem::discriminant(&other), "one-shot task already handled; not run again")
            }
        }
    }

    let mut cursors = Vec::new();
    for (name, def) in &desired.schedules {
        let spec = ScheduleSpec {
            name: name.clone(),
            cron: CronSpec::parse(&def.cron)?,
            timezone: def.timezone.parse().map_err(|e| anyhow!("{e}"))?,
            jitter: def.jitter,
            catch_up: def.catch_up,
        };
        let n = name.clone();
        let last = shared
            .db
            .call(move |db| db.schedule_state(&n))
            .await?
            .and_then(|s| s.last_run_at);
        cursors.push((
            spec.clone(),
            ScheduleCursor::start(&spec, last, Utc::now()),
            def.action.clone(),
            None,
        ));
    }

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("SIGINT handler")?;
    loop {
        let now = Utc::now();
        let mut next = None;
        for (spec, cursor, action, shown_next) in cursors.iter_mut() {
            let running = shared.is_running(&spec.name);
            match cursor.poll(spec, now, running) {
                Due::Wait { until } => {
                    next = match (next, until) {
                        (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                        (a, b) => a.or(b),
                    };
                    if *shown_next != until {
                        *shown_next = until;
                        let n = spec.name.clone();
                        shared.db.call(move |db| db.set_next_run(&n, until)).await?;
                    }
                }
                Due::Fire { nominal, catch_up } => {
                    tracing::info!(schedule = %spec.name, %nominal, catch_up, "run due");
                    let n = spec.name.clone();
                    shared
                        .db
                        .call(move |db| db.record_schedule_started(&n, nominal))
                        .await?;
                    // Marked running now, so the next poll sees it even
                    // before the task gets a permit.
                    let progress = Arc::new(Progress::new());
                    if let Ok(mut r) = shared.running.lock() {
                        r.insert(spec.name.clone(), progress);
                    }
                    tasks.spawn(run_task(
                        shared.clone(),
                        spec.name.clone(),
                        action.clone(),
                        None,
                        Some(nominal),
                    ));
                }
                Due::Skip { nominal, reason } => {
                    record_skip(&shared, &spec.name, action, nominal, reason.to_string()).await?;
                }
                Due::Missed { first, count } => {
                    let reason = format!(
                        "{count} run(s) missed while the daemon was not running (catch_up = false)"
                    );
                    record_skip(&shared, &spec.name, action, first, reason).await?;
                }
            }
        }
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!("a task panicked: {e}");
            }
        }
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = tokio::time::sleep(sleep_until_hint(Utc::now(), next)) => {}
        }
    }
    tracing::info!("stopping: cancelling running tasks");
    if let Ok(r) = shared.running.lock() {
        for p in r.values() {
            p.cancel();
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_DEADLINE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "tasks did not stop within {SHUTDOWN_DEADLINE:?}; exiting anyway (no snapshot is written by a cancelled task)"
        );
    }
    Ok(())
}

async fn record_skip(
    shared: &Arc<Shared>,
    name: &str,
    action: &Action,
    nominal: chrono::DateTime<Utc>,
    reason: String,
) -> Result<()> {
    tracing::warn!(schedule = %name, %nominal, %reason, "run skipped");
    let new = NewTask {
        kind: state_kind(action)?,
        origin: Origin::Schedule(name.to_string()),
        store: Some(action.store().to_string()),
        scheduled_for: Some(nominal),
        started_at: Utc::now(),
        revision: Some(shared.desired.revision.clone()),
    };
    let n = name.to_string();
    shared
        .db
        .call(move |db| {
            db.record_skipped(&new, &reason)?;
            db.increment_skipped(&n)
        })
        .await?;
    Ok(())
}

/// Runs one task: waits for a permit, records it, executes it off the
/// runtime, records the outcome. Failures are recorded, never fatal.
async fn run_task(
    shared: Arc<Shared>,
    name: String,
    action: Action,
    claimed: Option<TaskId>,
    nominal: Option<chrono::DateTime<Utc>>,
) {
    if let Err(e) = run_task_inner(&shared, &name, action, claimed, nominal).await {
        tracing::error!(origin = %name, "task bookkeeping failed: {e:#}");
    }
    if let Ok(mut r) = shared.running.lock() {
        r.remove(&name);
    }
}

async fn run_task_inner(
    shared: &Arc<Shared>,
    name: &str,
    action: Action,
    claimed: Option<TaskId>,
    nominal: Option<chrono::DateTime<Utc>>,
) -> Result<()> {
    let progress = {
        let mut r = shared
            .running
            .lock()
            .map_err(|_| anyhow!("running-task table poisoned"))?;
        r.entry(name.to_string())
            .or_insert_with(|| Arc::new(Progress::new()))
            .clone()
    };
    let _permit = shared
        .permits
        .clone()
        .acquire_owned()
        .await
        .context("task permits closed")?;
    let started = Utc::now();
    let id = match claimed {
        Some(id) => id,
        None => {
            let new = NewTask {
                kind: state_kind(&action)?,
                origin: Origin::Schedule(name.to_string()),
                store: Some(action.store().to_string()),
                scheduled_for: nominal,
                started_at: started,
                revision: Some(shared.desired.revision.clone()),
            };
            shared.db.call(move |db| db.start_task(&new)).await?
        }
    };
    tracing::info!(origin = %name, task = %id, kind = action.kind().as_str(), "task started");
    let desired = shared.desired.clone();
    let result =
        match tokio::task::spawn_blocking(move || execute(&desired, &action, progress)).await {
            Ok(r) => r,
            Err(e) => return Err(anyhow!("the task thread failed: {e}")),
        };
    let status = match result.status {
        RunStatus::Succeeded => TaskStatus::Succeeded,
        RunStatus::Failed => TaskStatus::Failed,
        RunStatus::Cancelled => TaskStatus::Cancelled,
    };
    tracing::info!(origin = %name, task = %id, status = status.as_str(), error = result.error.as_deref().unwrap_or(""), "task finished");
    let finished = Utc::now();
    let outcome = Outcome {
        status,
        finished_at: finished,
        stats: Some(result.stats),
        error: result.error,
        snapshot_id: result.snapshot_id,
    };
    let schedule = claimed.is_none().then(|| name.to_string());
    let duration = (finished - started).num_milliseconds().max(0) as u64;
    let bytes = result.bytes_added;
    shared
        .db
        .call(move |db| {
            db.finish_task(id, &outcome)?;
            if let Some(s) = schedule {
                db.record_schedule_finished(&s, status, finished, duration, bytes)?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}
