//! The daemon: reconcile the config directory into running schedules and
//! tasks, and serve status.
//!
//! One async loop owns everything that changes: it reloads on file events
//! ([`watch`]), SIGHUP and a periodic resync ([`reconcile`]); fires due
//! runs ([`schedules`], [`runner`]); tests object readiness with backoff
//! ([`readiness`]); starts one-shot tasks once their objects are ready, in
//! declaration order per store ([`oneshots`]); pings the systemd watchdog
//! ([`systemd`]); and on SIGTERM or SIGINT cancels running tasks (no partial snapshot is ever
//! written) and exits within [`SHUTDOWN_DEADLINE`]. The HTTP endpoint reads
//! [`live::Live`] and the state database and never waits on a task.

pub mod live;
pub mod locks;
pub mod maintenance;
pub mod oneshots;
mod readiness;
mod reconcile;
pub mod runner;
mod schedules;
mod systemd;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::DesiredState;
use crate::config::diff::Fingerprints;
use crate::http::HttpServer;
use crate::scheduler::sleep_until_hint;
use crate::state::{INTERRUPTED_ERROR, StateHandle};
use live::Live;
use readiness::Readiness;
use runner::Runner;
use schedules::ScheduleTable;

/// How long running tasks get to stop after SIGTERM.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);
/// How often the directory is re-read even without events.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);

/// Runs the daemon on `config_dir` until SIGTERM or SIGINT.
pub fn run(config_dir: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("klosetd")
        .build()
        .context("starting the runtime")?;
    // Absolute (symlinks kept: a swapped link must be followed anew).
    let dir = std::path::absolute(config_dir)
        .with_context(|| format!("resolving {}", config_dir.display()))?;
    runtime.block_on(run_async(dir))
}

/// Why a reload happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Daemon start.
    Start,
    /// A file event.
    Watch,
    /// SIGHUP (`systemctl reload`): also retries objects that are not ready.
    Signal,
    /// The periodic resync.
    Resync,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Watch => "file change",
            Trigger::Signal => "SIGHUP",
            Trigger::Resync => "resync",
        }
    }
}

/// Everything the daemon loop owns.
pub(crate) struct Daemon {
    dir: PathBuf,
    /// The state directory opened at start (changing it needs a restart).
    state_dir: PathBuf,
    live: Arc<Live>,
    db: StateHandle,
    runner: Runner,
    schedules: ScheduleTable,
    readiness: Readiness,
    applied: Option<Arc<DesiredState>>,
    applied_prints: Fingerprints,
    max_tasks: u32,
    tasks: JoinSet<()>,
    /// Notified when a one-shot run ends (the next one may start).
    oneshot_done: Arc<tokio::sync::Notify>,
    http: HttpServer,
}

async fn run_async(dir: PathBuf) -> Result<()> {
    // Watch before the first read, so no change can slip in between.
    let mut watcher = watch::ConfigWatcher::new(&dir)?;
    let first = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || crate::config::attempt(&dir))
            .await
            .context("reading the configuration")?
    };
    let settings = match &first.result {
        Ok(desired) => desired.daemon.clone(),
        Err(errors) => {
            tracing::error!(
                errors = errors.len(),
                listen = ?first.fallback_daemon.listen,
                state_dir = %first.fallback_daemon.state_dir.display(),
                "the configuration in {} is invalid; serving status until it is fixed",
                dir.display(),
            );
            first.fallback_daemon.clone()
        }
    };
    let state_dir = settings.state_dir.clone();
    let db_path = state_dir.join(crate::state::DB_FILE_NAME);
    let db = {
        let path = db_path.clone();
        tokio::task::spawn_blocking(move || StateHandle::open(&path))
            .await
            .context("opening the state database")??
    };
    // The endpoint reads through its own connection (WAL: readers never
    // wait for the daemon's writes).
    let reader = {
        let path = db_path.clone();
        tokio::task::spawn_blocking(move || StateHandle::open(&path))
            .await
            .context("opening the state database for reading")??
    };
    let interrupted = db
        .call(|db| db.mark_interrupted_running(INTERRUPTED_ERROR, Utc::now()))
        .await?;
    if interrupted.tasks > 0 {
        tracing::warn!(
            tasks = interrupted.tasks,
            "runs left running by a previous process were marked failed ({INTERRUPTED_ERROR})"
        );
    }
    let live = Arc::new(Live::new(dir.clone(), settings.clone()));
    tokio::spawn(locks::poll(live.clone()));
    let http = HttpServer::start(&settings.listen, live.clone(), reader)
        .await
        .with_context(|| format!("serving status on {:?}", settings.listen))?;
    let max_tasks = settings.max_concurrent_tasks.max(1);
    let runner = Runner {
        db: db.clone(),
        permits: Arc::new(Semaphore::new(max_tasks as usize)),
        live: live.clone(),
    };
    let mut daemon = Daemon {
        dir: dir.clone(),
        state_dir: state_dir.clone(),
        live,
        db,
        runner,
        schedules: ScheduleTable::default(),
        readiness: Readiness::default(),
        applied: None,
        applied_prints: Fingerprints::new(),
        max_tasks,
        tasks: JoinSet::new(),
        oneshot_done: Arc::new(tokio::sync::Notify::new()),
        http,
    };
    daemon.handle_attempt(first, Trigger::Start).await;
    systemd::ready(&daemon.one_line_status());
    tracing::info!(
        config = %dir.display(),
        state = %state_dir.display(),
        "klosetd started"
    );
    daemon.serve(&mut watcher).await?;
    daemon.shutdown().await;
    Ok(())
}

impl Daemon {
    async fn serve(&mut self, watcher: &mut watch::ConfigWatcher) -> Result<()> {
        let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut resync = tokio::time::interval(RESYNC_INTERVAL);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.reset();
        let watchdog_every = systemd::watchdog_interval();
        let mut watchdog =
            tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
        loop {
            let now = Utc::now();
            let next = self.poll_schedules(now).await;
            while let Some(done) = self.tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!("a task panicked: {e}");
                }
            }
            let oneshot_done = self.oneshot_done.clone();
            let retry_at = self
                .readiness
                .next_retry()
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                _ = hangup.recv() => {
                    systemd::reloading();
                    self.reload(Trigger::Signal, watcher).await;
                    systemd::ready(&self.one_line_status());
                }
                _ = watcher.changed() => self.reload(Trigger::Watch, watcher).await,
                _ = resync.tick() => self.reload(Trigger::Resync, watcher).await,
                Some(tested) = self.readiness.next_result() => self.on_tested(tested).await,
                _ = tokio::time::sleep_until(retry_at) => self.retry_due(),
                _ = oneshot_done.notified() => self.start_oneshots().await,
                _ = watchdog.tick(), if watchdog_every.is_some() => systemd::watchdog(),
                _ = tokio::time::sleep(sleep_until_hint(Utc::now(), next)) => {}
            }
        }
        Ok(())
    }

    async fn shutdown(&mut self) {
        systemd::stopping();
        let running = self.live.running_tasks();
        tracing::info!(
            running = running.len(),
            "stopping: cancelling running tasks"
        );
        for task in &running {
            task.progress.cancel();
        }
        let tasks = &mut self.tasks;
        let drained = tokio::time::timeout(SHUTDOWN_DEADLINE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "tasks did not stop within {SHUTDOWN_DEADLINE:?}; exiting anyway (a cancelled task never writes a snapshot)"
            );
        }
        self.http.stop();
    }

    /// One line for `systemctl status`.
    fn one_line_status(&self) -> String {
        let config = self.live.config_status();
        let problems = self.live.problems();
        let revision = config
            .applied_revision
            .as_deref()
            .map(live::short)
            .unwrap_or("none");
        if problems.is_empty() {
            format!(
                "ready: revision {revision}, {} schedules",
                self.schedules.len()
            )
        } else {
            format!(
                "degraded: revision {revision}, {} problem(s): {}",
                problems.len(),
                problems[0]
            )
        }
    }
}
