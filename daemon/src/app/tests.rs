//! The daemon core in process, on a manual clock and without sleeps: a
//! failed apply retried with backoff, schedules across daylight-saving
//! changes, catch-up after downtime, and jitter. Tasks really run (a
//! `check` of a local store); the harness waits for them by joining them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Daemon, Trigger};
use crate::scheduler::{Clock, ManualClock, jitter_offset};
use crate::state::{StateHandle, TaskFilter, TaskRecord, TaskStatus};

pub(super) fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

/// A config directory with a local store, and the daemon's state.
pub(super) struct Setup {
    _dir: tempfile::TempDir,
    pub(super) config: PathBuf,
    state: PathBuf,
    clock: Arc<ManualClock>,
}

impl Setup {
    /// A store `main` and `schedule` (a TOML table body for
    /// `[schedule.nightly]`, without `task` and `store`).
    pub(super) fn new(start: &str, schedule: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("conf.d");
        let state = dir.path().join("state");
        std::fs::create_dir(&config).expect("mkdir");
        std::fs::write(dir.path().join("pass"), "in-process-passphrase\n").expect("write");
        let setup = Setup {
            config,
            state,
            clock: Arc::new(ManualClock::new(utc(start))),
            _dir: dir,
        };
        setup.write(schedule);
        setup
    }

    pub(super) fn write(&self, schedule: &str) {
        let root = self.config.parent().expect("parent");
        let text = format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {state:?}\n\n\
             [store.main]\nlocation = {store:?}\npassphrase_file = {pass:?}\ninit = \"auto\"\n\n\
             [schedule.nightly]\ntask = \"check\"\nstore = \"main\"\n{schedule}\n",
            state = self.state,
            store = root.join("store"),
            pass = root.join("pass"),
        );
        std::fs::write(self.config.join("main.toml"), text).expect("write config");
    }

    /// A daemon on this setup (a restart when one ran before).
    pub(super) async fn daemon(&self) -> Daemon {
        let attempt = crate::config::attempt(&self.config);
        let settings = match &attempt.result {
            Ok(d) => d.daemon.clone(),
            Err(e) => panic!("invalid config: {e:?}"),
        };
        std::fs::create_dir_all(&self.state).expect("state dir");
        let db = StateHandle::open(&self.state.join(crate::state::DB_FILE_NAME)).expect("db");
        let clock: Arc<dyn Clock> = self.clock.clone();
        Daemon::new(self.config.clone(), &settings, db, clock)
    }

    pub(super) fn at(&self, time: &str) {
        self.clock.set(utc(time));
    }
}

impl Daemon {
    /// Reads the config directory as a file event would.
    pub(super) async fn read_config(&mut self, trigger: Trigger) {
        let attempt = crate::config::attempt(&self.dir);
        self.handle_attempt(attempt, trigger).await;
    }

    /// Waits for every readiness test in flight and books its result.
    pub(super) async fn settle_tests(&mut self) {
        while self.readiness.in_flight() > 0 {
            let tested = self.readiness.next_result().await.expect("a test result");
            self.on_tested(tested).await;
        }
    }

    /// Waits for every task started so far.
    pub(super) async fn join_tasks(&mut self) {
        while let Some(done) = self.tasks.join_next().await {
            done.expect("task");
            self.stale_watch.dirty = true; // as the tick's reaping does
        }
    }

    pub(super) async fn runs(&self) -> Vec<TaskRecord> {
        let mut runs = self
            .db
            .call(|db| db.list_tasks(&TaskFilter::default()))
            .await
            .expect("list tasks");
        runs.sort_by_key(|r| r.id);
        runs
    }

    async fn applied_in_db(&self) -> Option<String> {
        self.db
            .call(|db| db.latest_applied())
            .await
            .expect("latest applied")
            .map(|r| r.hash)
    }

    async fn read_only(&self, on: bool) {
        self.db
            .call(move |db| db.set_read_only(on))
            .await
            .expect("query_only");
    }
}

/// A fresh daemon that has applied its config and tested its store.
pub(super) async fn started(setup: &Setup) -> Daemon {
    let mut d = setup.daemon().await;
    d.read_config(Trigger::Start).await;
    d.settle_tests().await;
    assert!(d.live.problems().is_empty(), "{:?}", d.live.problems());
    d.tick().await;
    d
}

#[tokio::test]
async fn a_failed_apply_is_retried_with_backoff_and_applied_once_the_fault_is_gone() {
    let setup = Setup::new("2026-06-01T10:00:00Z", "cron = \"0 3 * * *\"");
    let mut d = setup.daemon().await;
    d.read_only(true).await;
    d.read_config(Trigger::Start).await;

    let status = d.live.config_status();
    assert_eq!(
        status.applied_revision, None,
        "nothing may count as applied"
    );
    let failure = status.apply_failure.expect("the failure is shown");
    assert_eq!(failure.failures, 1);
    assert_eq!(failure.retry_at, utc("2026-06-01T10:00:05Z"));
    assert!(failure.message.contains("readonly"), "{}", failure.message);
    let problems = d.live.problems().join("\n");
    assert!(problems.contains("could not be applied"), "{problems}");
    assert!(
        d.schedules.is_empty(),
        "no schedule runs from a failed apply"
    );

    // Not before its backoff, also not on a resync of the same revision.
    setup.at("2026-06-01T10:00:04Z");
    d.tick().await;
    d.read_config(Trigger::Resync).await;
    assert_eq!(
        d.live.config_status().apply_failure.map(|f| f.failures),
        Some(1)
    );

    // Retried at its time, failing again: the backoff doubles.
    setup.at("2026-06-01T10:00:05Z");
    d.tick().await;
    let failure = d.live.config_status().apply_failure.expect("still failing");
    assert_eq!(failure.failures, 2);
    assert_eq!(failure.retry_at, utc("2026-06-01T10:00:15Z"));

    // The fault goes away; the next retry applies the revision, whole.
    d.read_only(false).await;
    setup.at("2026-06-01T10:00:15Z");
    d.tick().await;
    let status = d.live.config_status();
    assert_eq!(status.apply_failure, None);
    let revision = status.attempted_revision.expect("attempted");
    assert_eq!(status.applied_revision.as_deref(), Some(revision.as_str()));
    assert_eq!(d.applied_in_db().await.as_deref(), Some(revision.as_str()));
    assert_eq!(d.schedules.len(), 1);
    d.settle_tests().await;
    // The attempt that could not be recorded at first is, at the next read.
    d.read_config(Trigger::Resync).await;
    assert!(d.live.problems().is_empty(), "{:?}", d.live.problems());
}

#[tokio::test]
async fn a_bookkeeping_failure_is_a_problem_until_it_works_again() {
    let setup = Setup::new("2026-06-01T10:00:00Z", "cron = \"0 3 * * *\"");
    let mut d = started(&setup).await;
    d.read_only(true).await;
    std::fs::write(setup.config.join("extra.toml"), "# a new revision\n").expect("write");
    d.read_config(Trigger::Watch).await;
    let problems = d.live.problems().join("\n");
    assert!(
        problems.contains("recording the configuration attempt failed"),
        "{problems}"
    );
    d.read_only(false).await;
    setup.at("2026-06-01T10:00:05Z");
    d.tick().await;
    d.read_config(Trigger::Resync).await;
    assert!(d.live.problems().is_empty(), "{:?}", d.live.problems());
}

/// Fires the schedule at `time` (nothing before it), waits for the run.
pub(super) async fn fires_at(
    setup: &Setup,
    d: &mut Daemon,
    before: &str,
    time: &str,
) -> TaskRecord {
    let count = d.runs().await.len();
    setup.at(before);
    d.tick().await;
    assert_eq!(d.runs().await.len(), count, "nothing runs before {time}");
    setup.at(time);
    d.tick().await;
    d.join_tasks().await;
    let runs = d.runs().await;
    assert_eq!(runs.len(), count + 1, "one run at {time}");
    runs.last().cloned().expect("a run")
}

#[tokio::test]
async fn fixed_time_schedules_survive_both_daylight_saving_changes() {
    // Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (02:30 does not
    // exist); 2026-10-25 03:00 CEST -> 02:00 CET (02:30 happens twice).
    let setup = Setup::new(
        "2026-03-28T12:00:00Z",
        "cron = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"",
    );
    let mut d = started(&setup).await;
    assert_eq!(
        d.live.next_run("nightly"),
        Some(utc("2026-03-29T01:00:00Z"))
    );
    // Spring forward: the missing 02:30 runs at 03:00 CEST, once.
    let run = fires_at(
        &setup,
        &mut d,
        "2026-03-29T00:59:59Z",
        "2026-03-29T01:00:00Z",
    )
    .await;
    assert_eq!(run.status, TaskStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.scheduled_for, Some(utc("2026-03-29T01:00:00Z")));
    assert_eq!(
        d.live.next_run("nightly"),
        Some(utc("2026-03-30T00:30:00Z"))
    );

    // Fall back: 02:30 CEST (00:30 UTC) runs, the repeated 02:30 CET does not.
    setup.at("2026-10-24T12:00:00Z");
    d.tick().await;
    d.join_tasks().await;
    let skipped = d.runs().await.len();
    let run = fires_at(
        &setup,
        &mut d,
        "2026-10-25T00:29:59Z",
        "2026-10-25T00:30:00Z",
    )
    .await;
    assert_eq!(run.scheduled_for, Some(utc("2026-10-25T00:30:00Z")));
    setup.at("2026-10-25T01:30:00Z");
    d.tick().await;
    assert_eq!(
        d.runs().await.len(),
        skipped + 1,
        "02:30 CET is not a second run"
    );
    assert_eq!(
        d.live.next_run("nightly"),
        Some(utc("2026-10-26T01:30:00Z"))
    );
}

#[tokio::test]
async fn a_run_missed_while_down_is_caught_up_once_or_recorded_as_missed() {
    for catch_up in [true, false] {
        let setup = Setup::new(
            "2026-06-01T00:00:00Z",
            &format!("cron = \"0 1 * * *\"\ncatch_up = {catch_up}"),
        );
        let mut d = started(&setup).await;
        fires_at(
            &setup,
            &mut d,
            "2026-06-01T00:59:59Z",
            "2026-06-01T01:00:00Z",
        )
        .await;
        drop(d);

        // Down for three nights; the daemon starts again at noon.
        setup.at("2026-06-04T12:00:00Z");
        let mut d = started(&setup).await;
        d.tick().await;
        d.join_tasks().await;
        let runs = d.runs().await;
        assert_eq!(
            runs.len(),
            2,
            "catch_up = {catch_up}: one record for the gap"
        );
        let gap = &runs[1];
        assert_eq!(gap.scheduled_for, Some(utc("2026-06-02T01:00:00Z")));
        if catch_up {
            assert_eq!(gap.status, TaskStatus::Succeeded, "{:?}", gap.error);
        } else {
            assert_eq!(gap.status, TaskStatus::Skipped);
            let reason = gap.reason.as_deref().unwrap_or_default();
            assert!(reason.contains("missed"), "{reason}");
        }
        // Then the regular schedule again.
        d.tick().await;
        assert_eq!(d.runs().await.len(), 2);
        assert_eq!(
            d.live.next_run("nightly"),
            Some(utc("2026-06-05T01:00:00Z"))
        );
    }
}

#[tokio::test]
async fn jitter_delays_each_run_by_its_deterministic_offset() {
    let setup = Setup::new(
        "2026-06-01T00:00:00Z",
        "cron = \"0 1 * * *\"\njitter = \"30m\"",
    );
    let mut d = started(&setup).await;
    let nominal = utc("2026-06-01T01:00:00Z");
    let offset = jitter_offset("nightly", nominal, Duration::from_secs(1800));
    assert!(offset < Duration::from_secs(1800));
    let at = nominal + chrono::TimeDelta::from_std(offset).expect("offset");
    assert_eq!(d.live.next_run("nightly"), Some(at));
    let before = (at - chrono::TimeDelta::seconds(1)).to_rfc3339();
    let run = fires_at(&setup, &mut d, &before, &at.to_rfc3339()).await;
    assert_eq!(
        run.scheduled_for,
        Some(nominal),
        "the run stands for its cron time"
    );
}

#[tokio::test]
async fn reloads_add_change_and_remove_schedules_by_the_diff() {
    let setup = Setup::new("2026-06-01T00:00:00Z", "cron = \"0 1 * * *\"");
    let mut d = started(&setup).await;
    assert_eq!(
        d.live.next_run("nightly"),
        Some(utc("2026-06-01T01:00:00Z"))
    );

    // Only what it runs changes: the cursor is kept.
    setup.write("cron = \"0 1 * * *\"\ncatch_up = false\n\n[schedule.hourly]\ntask = \"check\"\nstore = \"main\"\ncron = \"0 * * * *\"");
    setup.at("2026-06-01T00:10:00Z");
    d.read_config(Trigger::Watch).await;
    d.tick().await;
    assert_eq!(
        d.live.next_run("nightly"),
        Some(utc("2026-06-01T01:00:00Z"))
    );
    // Added by a reload: waits for its first cron time, no catch-up.
    assert_eq!(d.live.next_run("hourly"), Some(utc("2026-06-01T01:00:00Z")));

    // Its timing changes: re-planned from now, nothing caught up.
    setup.write("cron = \"30 4 * * *\"\n\n[schedule.hourly]\ntask = \"check\"\nstore = \"main\"\ncron = \"0 * * * *\"");
    setup.at("2026-06-01T02:00:00Z");
    d.read_config(Trigger::Watch).await;
    d.tick().await;
    d.join_tasks().await;
    let runs = d.runs().await;
    assert!(
        runs.iter().all(|r| r.origin.name() == "hourly"),
        "only the hourly schedule ran: {runs:?}"
    );
    assert_eq!(
        d.live.next_run("nightly"),
        Some(utc("2026-06-01T04:30:00Z"))
    );

    // Removed: never fires again, its next run is gone from the status and
    // from the database, and so is its condition.
    setup.write("cron = \"30 4 * * *\"");
    d.read_config(Trigger::Watch).await;
    d.tick().await;
    assert_eq!(d.live.next_run("hourly"), None);
    assert!(!d.live.next_runs().contains_key("hourly"));
    let key = (crate::state::ObjectKind::Schedule, "hourly".to_string());
    assert!(!d.live.conditions().contains_key(&key));
    let before = d.runs().await.len();
    setup.at("2026-06-01T04:00:00Z");
    d.tick().await;
    d.join_tasks().await;
    assert_eq!(
        d.runs().await.len(),
        before,
        "the removed schedule never fires"
    );
    let states =
        d.db.call(|db| db.all_schedule_states())
            .await
            .expect("schedule states");
    let hourly = states.iter().find(|s| s.name == "hourly");
    assert!(hourly.is_none_or(|s| s.next_run_at.is_none()), "{hourly:?}");
}

#[tokio::test]
async fn going_back_to_the_running_revision_drops_the_failed_one() {
    let setup = Setup::new("2026-06-01T10:00:00Z", "cron = \"0 3 * * *\"");
    let mut d = started(&setup).await;
    let running = d.live.config_status().applied_revision;
    d.read_only(true).await;
    setup.write("cron = \"0 4 * * *\"");
    d.read_config(Trigger::Watch).await;
    assert!(d.live.config_status().apply_failure.is_some());

    setup.write("cron = \"0 3 * * *\"");
    d.read_config(Trigger::Watch).await;
    d.read_only(false).await;
    setup.at("2026-06-01T10:10:00Z");
    d.tick().await;
    d.read_config(Trigger::Resync).await;
    let status = d.live.config_status();
    assert_eq!(status.apply_failure, None);
    assert_eq!(
        status.applied_revision, running,
        "the reverted change is never applied"
    );
    assert_eq!(
        d.live.next_run("nightly"),
        Some(utc("2026-06-02T03:00:00Z"))
    );
    assert!(d.live.problems().is_empty(), "{:?}", d.live.problems());
}
