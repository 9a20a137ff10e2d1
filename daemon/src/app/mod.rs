//! The daemon: reconcile the config directory into running schedules and
//! tasks, and keep the live status that the HTTP endpoint serves.
//!
//! One async loop owns everything that changes: it reloads on file events
//! ([`watch`]), SIGHUP and a periodic resync, and applies a valid new
//! revision as a whole ([`apply`]: a failed apply is retried with backoff
//! and shown); fires due runs ([`schedules`], [`runner`]); tests object
//! readiness with backoff ([`readiness`], [`conditions`]); starts one-shot
//! tasks once their objects are ready, in declaration order per store
//! ([`oneshots`]); pings the systemd watchdog ([`systemd`]); and on SIGTERM
//! or SIGINT cancels running tasks (no partial snapshot is ever written)
//! and exits within [`SHUTDOWN_DEADLINE`].
//!
//! Time comes from an injected [`Clock`]: the loop sleeps at most a second
//! at a time and looks at the clock again ([`Daemon::tick`] does whatever
//! is due), so tests drive it with a `ManualClock` and no sleeps.

mod apply;
mod conditions;
mod gates;
pub mod locks;
mod oneshots;
mod readiness;
pub mod runner;
mod schedules;
#[cfg(test)]
mod stale_tests;
mod staleness;
mod state_file;
mod systemd;
#[cfg(test)]
mod tests;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::DesiredState;
use crate::config::diff::Fingerprints;
use crate::http::HttpServer;
use crate::scheduler::{Clock, ScheduleTable, SystemClock, sleep_until_hint};
use crate::state::{INTERRUPTED_ERROR, StateHandle};
use crate::status::{Live, short};
use readiness::Readiness;
use runner::Runner;

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
    /// SIGHUP (`systemctl reload`): also retries objects that are not
    /// ready, and a failed apply, now.
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

/// The configuration running now, with its objects' fingerprints (what
/// the next diff is taken against).
#[derive(Debug)]
struct Applied {
    desired: Arc<DesiredState>,
    prints: Fingerprints,
}

/// A valid revision whose apply failed, waiting for its retry.
#[derive(Debug)]
struct PendingApply {
    desired: Arc<DesiredState>,
    failures: u32,
    retry_at: DateTime<Utc>,
}

/// Everything the daemon loop owns.
pub(crate) struct Daemon {
    dir: PathBuf,
    /// The state directory opened at start (changing it needs a restart).
    state_dir: PathBuf,
    clock: Arc<dyn Clock>,
    live: Arc<Live>,
    db: StateHandle,
    runner: Runner,
    schedules: ScheduleTable,
    readiness: Readiness,
    applied: Option<Applied>,
    pending: Option<PendingApply>,
    max_tasks: u32,
    tasks: JoinSet<()>,
    /// Notified when a one-shot run ends (the next one may start).
    oneshot_done: Arc<tokio::sync::Notify>,
    /// The status endpoint (`None` in in-process tests).
    http: Option<HttpServer>,
    /// Schedule states for `alert_after`.
    stale_watch: staleness::StaleWatch,
}

impl Daemon {
    /// A daemon on `dir` that has applied nothing yet.
    fn new(
        dir: PathBuf,
        settings: &crate::config::desired::DaemonSettings,
        db: StateHandle,
        clock: Arc<dyn Clock>,
    ) -> Daemon {
        let live = Arc::new(Live::new(dir.clone(), settings.clone(), clock.now()));
        let max_tasks = settings.max_concurrent_tasks.max(1);
        let runner = Runner {
            db: db.clone(),
            permits: Arc::new(Semaphore::new(max_tasks as usize)),
            live: live.clone(),
            clock: clock.clone(),
            gates: Default::default(),
            wake: Default::default(),
            host: crate::notify::body::host_name().into(),
        };
        Daemon {
            dir,
            state_dir: settings.state_dir.clone(),
            readiness: Readiness::new(clock.clone()),
            clock,
            live,
            db,
            runner,
            schedules: ScheduleTable::default(),
            applied: None,
            pending: None,
            max_tasks,
            tasks: JoinSet::new(),
            oneshot_done: Arc::new(tokio::sync::Notify::new()),
            http: None,
            stale_watch: Default::default(),
        }
    }
}

/// The signals the daemon answers, taken over first thing, so a SIGTERM
/// during start-up (status already served, the first revision still being
/// applied) waits for the loop instead of killing the process.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn take_over() -> Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            hangup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        })
    }
}

async fn run_async(dir: PathBuf) -> Result<()> {
    let mut signals = Signals::take_over()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
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
    let db_path = settings.state_dir.join(crate::state::DB_FILE_NAME);
    let db = state_file::open_writer(&db_path, clock.now()).await?;
    // The endpoint reads through its own connection (WAL: readers never
    // wait for the daemon's writes).
    let reader = open_db(&db_path, "opening the state database for reading").await?;
    let now = clock.now();
    let interrupted = db
        .call(move |db| db.mark_interrupted_running(INTERRUPTED_ERROR, now))
        .await?;
    if interrupted.tasks > 0 {
        tracing::warn!(
            tasks = interrupted.tasks,
            "runs left running by a previous process were marked failed ({INTERRUPTED_ERROR})"
        );
    }
    let mut daemon = Daemon::new(dir.clone(), &settings, db, clock);
    daemon.report_moved_state();
    tokio::spawn(locks::poll(daemon.live.clone()));
    tokio::spawn(daemon.dispatcher().run());
    daemon.http = Some(
        HttpServer::start(&settings.listen, daemon.live.clone(), reader)
            .await
            .with_context(|| format!("serving status on {:?}", settings.listen))?,
    );
    #[cfg(debug_assertions)]
    debug_hold_start().await;
    daemon.handle_attempt(first, Trigger::Start).await;
    systemd::ready(&daemon.one_line_status());
    tracing::info!(
        config = %dir.display(),
        state = %settings.state_dir.display(),
        "klosetd started"
    );
    daemon.serve(&mut watcher, &mut signals).await?;
    daemon.shutdown().await;
    Ok(())
}

/// Debug builds only: with `KLOSETD_DEBUG_HOLD_START=PATH`, start-up
/// stops once the endpoint serves (before the first configuration is
/// applied), creates `PATH.held` and waits until `PATH` exists, so that a
/// test can signal the daemon in that window (`tests/daemon_readiness.rs`).
#[cfg(debug_assertions)]
async fn debug_hold_start() {
    let Some(release) = std::env::var_os("KLOSETD_DEBUG_HOLD_START").map(PathBuf::from) else {
        return;
    };
    let mut held = release.clone().into_os_string();
    held.push(".held");
    if let Err(e) = std::fs::write(&held, b"") {
        tracing::error!("KLOSETD_DEBUG_HOLD_START: {e}");
        return;
    }
    while !release.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn open_db(path: &Path, what: &'static str) -> Result<StateHandle> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || StateHandle::open(&path))
        .await
        .context(what)?
        .context(what)
}

impl Daemon {
    async fn serve(
        &mut self,
        watcher: &mut watch::ConfigWatcher,
        signals: &mut Signals,
    ) -> Result<()> {
        let mut resync = tokio::time::interval(RESYNC_INTERVAL);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.reset();
        let watchdog_every = systemd::watchdog_interval();
        let mut watchdog =
            tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
        loop {
            let next = self.tick().await;
            let oneshot_done = self.oneshot_done.clone();
            tokio::select! {
                _ = signals.terminate.recv() => break,
                _ = signals.interrupt.recv() => break,
                _ = signals.hangup.recv() => {
                    systemd::reloading();
                    self.reload(Trigger::Signal, watcher).await;
                    systemd::ready(&self.one_line_status());
                }
                _ = watcher.changed() => self.reload(Trigger::Watch, watcher).await,
                _ = resync.tick() => self.reload(Trigger::Resync, watcher).await,
                Some(tested) = self.readiness.next_result() => self.on_tested(tested).await,
                _ = oneshot_done.notified() => self.start_oneshots().await,
                _ = watchdog.tick(), if watchdog_every.is_some() => systemd::watchdog(),
                _ = tokio::time::sleep(sleep_until_hint(self.clock.now(), next)) => {}
            }
        }
        Ok(())
    }

    /// Does everything that is due by the clock: reaps finished tasks,
    /// retries a failed apply, starts readiness retries, fires due runs.
    /// Returns when something is due next.
    async fn tick(&mut self) -> Option<DateTime<Utc>> {
        while let Some(done) = self.tasks.try_join_next() {
            self.stale_watch.dirty = true;
            if let Err(e) = done {
                self.live.fault(
                    crate::status::Fault::TaskBookkeeping,
                    crate::redact::redact(&format!("a task panicked: {e}")),
                );
            }
        }
        let now = self.clock.now();
        self.retry_apply_if_due(now).await;
        self.retry_due(now);
        let next = self.poll_schedules(now).await;
        let stale_next = self.check_staleness(now).await;
        [
            next,
            stale_next,
            self.readiness.next_retry(),
            self.pending.as_ref().map(|p| p.retry_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The notification loop of this daemon (spawned by `run`, or by a test).
    fn dispatcher(&self) -> crate::notify::Dispatcher {
        crate::notify::Dispatcher {
            db: self.db.clone(),
            live: self.live.clone(),
            clock: self.clock.clone(),
            wake: self.runner.wake.clone(),
        }
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
        if let Some(http) = &self.http {
            http.stop();
        }
    }

    /// One line for `systemctl status`.
    fn one_line_status(&self) -> String {
        let config = self.live.config_status();
        let problems = self.live.problems();
        let revision = config
            .applied_revision
            .as_deref()
            .map(short)
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
