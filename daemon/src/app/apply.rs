//! Reconciling: record every attempt to read the config directory, keep the
//! last good configuration when an attempt is invalid, and apply a valid
//! new revision as a whole: `apply(desired, observed) -> Result`, where
//! observed is what runs now.
//!
//! An apply is prepared first (the diff against the applied objects, the
//! new schedule table, conditions), recorded in the state database in one
//! call, and only then committed in memory (the live status included) (schedules swapped in, readiness tests started,
//! one-shot tasks considered). A revision is recorded as applied only when
//! all of that succeeded. A failed apply changes nothing that runs; it is
//! retried with backoff (as kube-runtime's error policy requeues) and shown
//! in `/api/v1/status` and `/readyz` until it succeeds or a newer valid
//! revision replaces it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::readiness::backoff;
use super::watch::ConfigWatcher;
use super::{Applied, Daemon, PendingApply, Trigger, systemd};
use crate::config::desired::DaemonSettings;
use crate::config::diff::{Change, Diff, definitions, diff, fingerprint};
use crate::config::{Attempt, DesiredState};
use crate::scheduler::Update;
use crate::state::{AppliedObject, Condition, ObjectKind, StateError};
use crate::status::{ApplyFailure, Fault, short};

/// Why applying a revision failed: the step, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {cause:#}")]
pub struct ApplyError {
    step: &'static str,
    cause: anyhow::Error,
}

fn failed(step: &'static str) -> impl FnOnce(StateError) -> ApplyError {
    move |cause| ApplyError {
        step,
        cause: cause.into(),
    }
}

/// The kinds whose objects have a connection test.
fn testable(kind: ObjectKind) -> bool {
    matches!(
        kind,
        ObjectKind::Store | ObjectKind::Source | ObjectKind::Destination
    )
}

impl Daemon {
    /// Re-reads the directory and reconciles.
    pub(super) async fn reload(&mut self, trigger: Trigger, watcher: &mut ConfigWatcher) {
        watcher.rewatch();
        self.report_moved_state();
        if trigger == Trigger::Signal {
            self.readiness.retry_now();
            if let Some(p) = &mut self.pending {
                p.retry_at = self.clock.now();
            }
        }
        let dir = self.dir.clone();
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || crate::config::attempt(&dir)).await {
            Ok(attempt) => {
                let read = started.elapsed();
                self.handle_attempt(attempt, trigger).await;
                tracing::debug!(
                    trigger = trigger.as_str(),
                    read_ms = read.as_millis() as u64,
                    total_ms = started.elapsed().as_millis() as u64,
                    "reload handled"
                );
            }
            // The reading thread panicked: the next resync reads again.
            Err(e) => self.live.fault(
                Fault::RecordAttempt,
                format!("reading the configuration: {e}"),
            ),
        }
    }

    /// Records an attempt and applies it when it is valid and new.
    pub(super) async fn handle_attempt(&mut self, attempt: Attempt, trigger: Trigger) {
        let now = self.clock.now();
        let current = self.live.config_status();
        let valid = attempt.result.is_ok();
        let errors = attempt.result.as_ref().err().cloned().unwrap_or_default();
        // Recorded again while recording failed: the fault ends only when
        // the database has the latest attempt.
        let new_attempt = trigger == Trigger::Start
            || current.attempted_revision != attempt.revision
            || current.valid != valid
            || current.errors != errors
            || self.live.faults().contains_key(&Fault::RecordAttempt);
        if new_attempt {
            self.record_attempt(&attempt, &errors, trigger, now).await;
        }
        if let Ok(desired) = attempt.result {
            let applied = current.applied_revision.as_deref() == Some(desired.revision.as_str());
            let waiting = self
                .pending
                .as_ref()
                .is_some_and(|p| p.desired.revision == desired.revision);
            if applied {
                // Back to the running revision: the one waiting is dropped.
                if self.pending.take().is_some() {
                    tracing::info!(
                        revision = short(&desired.revision),
                        "the configuration is back to the running revision; the failed one is no longer retried"
                    );
                    self.live.apply_superseded();
                }
            } else if !waiting {
                // A revision waiting for its retry keeps its backoff.
                self.try_apply(Arc::new(desired)).await;
            }
        }
        if new_attempt {
            systemd::status(&self.one_line_status());
        }
    }

    async fn record_attempt(
        &mut self,
        attempt: &Attempt,
        errors: &[crate::config::ConfigError],
        trigger: Trigger,
        now: DateTime<Utc>,
    ) {
        let valid = errors.is_empty() && attempt.result.is_ok();
        let revision = attempt
            .revision
            .clone()
            .unwrap_or_else(|| "unreadable".to_string());
        if valid {
            tracing::info!(
                revision = short(&revision),
                trigger = trigger.as_str(),
                "configuration is valid"
            );
        } else {
            tracing::warn!(
                revision = short(&revision),
                trigger = trigger.as_str(),
                errors = errors.len(),
                "configuration is invalid; the last good configuration keeps running"
            );
            for e in errors {
                tracing::warn!("config error: {e}");
            }
        }
        let json = match (!valid).then(|| serde_json::to_value(errors)).transpose() {
            Ok(json) => json,
            Err(e) => Some(serde_json::Value::String(format!(
                "the errors could not be encoded: {e}"
            ))),
        };
        match self
            .db
            .call(move |db| db.record_attempt(&revision, valid, json.as_ref(), now))
            .await
        {
            Ok(_) => self.live.fault_cleared(Fault::RecordAttempt),
            Err(e) => self.live.fault(Fault::RecordAttempt, e.to_string()),
        }
        self.live
            .attempt_recorded(attempt.revision.clone(), errors.to_vec(), now);
    }

    /// Retries a failed apply when its backoff has passed.
    pub(super) async fn retry_apply_if_due(&mut self, now: DateTime<Utc>) {
        if let Some(p) = self.pending.as_ref().filter(|p| p.retry_at <= now) {
            let desired = p.desired.clone();
            self.try_apply(desired).await;
        }
    }

    /// Applies `desired`; on failure plans a retry with backoff and shows
    /// why.
    async fn try_apply(&mut self, desired: Arc<DesiredState>) {
        match self.apply(desired.clone()).await {
            Ok(changes) => {
                self.pending = None;
                tracing::info!(
                    revision = short(&desired.revision),
                    changes = %changes.summary(),
                    "configuration applied"
                );
            }
            Err(e) => {
                let failures = match &self.pending {
                    Some(p) if p.desired.revision == desired.revision => p.failures + 1,
                    _ => 1,
                };
                let wait = backoff(failures);
                let retry_at =
                    self.clock.now() + TimeDelta::from_std(wait).unwrap_or(TimeDelta::seconds(300));
                tracing::error!(
                    revision = short(&desired.revision),
                    failures,
                    retry_in_s = wait.as_secs(),
                    "applying the configuration failed; the previous one keeps running: {e}"
                );
                self.live.apply_failed(ApplyFailure {
                    revision: desired.revision.clone(),
                    message: e.to_string(),
                    failures,
                    retry_at,
                });
                self.pending = Some(PendingApply {
                    desired,
                    failures,
                    retry_at,
                });
            }
        }
    }

    /// Applies `desired` against what runs now; returns the changes. On
    /// error nothing that runs has changed.
    pub(super) async fn apply(&mut self, desired: Arc<DesiredState>) -> Result<Diff, ApplyError> {
        let now = self.clock.now();
        for w in &desired.warnings {
            tracing::warn!("config warning: {w}");
        }
        let definitions = definitions(&desired);
        let prints: crate::config::diff::Fingerprints = definitions
            .iter()
            .map(|(o, d)| (o.clone(), fingerprint(d)))
            .collect();
        let empty = crate::config::diff::Fingerprints::new();
        let observed = self.applied.as_ref().map_or(&empty, |a| &a.prints);
        let changes = diff(observed, &prints);

        // Prepare: the new schedule table, from the persisted last runs.
        let last_runs: BTreeMap<String, Option<DateTime<Utc>>> = self
            .db
            .call(|db| db.all_schedule_states())
            .await
            .map_err(failed("reading schedule states"))?
            .into_iter()
            .map(|s| (s.name, s.last_run_at))
            .collect();
        let mut schedules = self.schedules.clone();
        schedules.apply(
            changes.of(ObjectKind::Schedule).map(|(name, change)| {
                match desired.schedules.get(name) {
                    Some(def) if change != Change::Removed => (name, Update::Upsert(&def.spec)),
                    _ => (name, Update::Remove),
                }
            }),
            &last_runs,
            now,
        );

        // Record, in one call to the database: conditions of changed and
        // removed objects, next runs of removed schedules, then the
        // revision and its objects. Each step may be repeated harmlessly,
        // and the live status is not touched until the commit.
        let mut pending = Vec::new();
        let mut removed = Vec::new();
        for (object, change) in &changes.changes {
            match change {
                Change::Removed => removed.push((object.kind, object.name.clone())),
                Change::Added | Change::Changed if testable(object.kind) => {
                    // Not ready until its test says so: an old condition
                    // describes the old definition.
                    pending.push((
                        object.kind,
                        object.name.clone(),
                        Condition {
                            ready: false,
                            reason: "Pending".into(),
                            message: "testing the connection".into(),
                            revision: Some(desired.revision.clone()),
                        },
                    ))
                }
                Change::Added | Change::Changed => {}
            }
        }
        let gone_schedules: Vec<String> = removed
            .iter()
            .filter(|(kind, _)| *kind == ObjectKind::Schedule)
            .map(|(_, name)| name.clone())
            .collect();
        let revision = desired.revision.clone();
        let objects: Vec<AppliedObject> = definitions
            .into_iter()
            .map(|(o, definition)| AppliedObject {
                fingerprint: fingerprint(&definition),
                kind: o.kind,
                name: o.name,
                definition,
            })
            .collect();
        let (gone, forgotten) = (gone_schedules.clone(), removed.clone());
        let conditions = self
            .db
            .call(move |db| {
                let written = db.set_conditions(&pending, now)?;
                for (kind, name) in &forgotten {
                    db.remove_condition(*kind, name)?;
                }
                for name in &gone {
                    db.set_next_run(name, None)?;
                }
                db.set_applied_objects(&objects)?;
                match db.record_applied(&revision, now) {
                    // Recording the attempt itself failed earlier.
                    Err(StateError::RevisionNotAttempted { .. }) => {
                        db.record_attempt(&revision, true, None, now)?;
                        db.record_applied(&revision, now)?;
                    }
                    other => {
                        other?;
                    }
                }
                Ok(written)
            })
            .await
            .map_err(failed("recording the revision and its conditions"))?;

        // Commit.
        let restart = self.apply_daemon_settings(&desired.daemon).await;
        self.schedules = schedules;
        for name in &gone_schedules {
            tracing::info!(schedule = %name, "schedule removed: no further runs");
        }
        self.live.schedules_removed(&gone_schedules);
        self.live.conditions_written(conditions);
        for key in &removed {
            self.live.condition_removed(key);
            self.readiness.forget(key);
        }
        for (object, change) in &changes.changes {
            if testable(object.kind)
                && *change != Change::Removed
                && let Some(print) = prints.get(object)
            {
                self.readiness
                    .test(&desired, (object.kind, object.name.clone()), print.clone());
            }
        }
        self.applied = Some(Applied {
            desired: desired.clone(),
            prints,
        });
        let secret_env = desired.secret_env_names();
        kloset_connectors::command::hide_from_children(secret_env.clone());
        crate::redact::remember(secret_env, desired.secret_files());
        self.live.revision_applied(desired, now, restart);
        self.stale_watch.dirty = true;
        self.start_oneshots().await;
        self.refresh_conditions().await;
        Ok(changes)
    }

    /// Applies `[daemon]`: the bound on concurrent tasks at once, `listen`
    /// by rebinding; `state_dir` needs a restart. Returns the settings that
    /// wait for a restart (or could not be applied), as notes.
    async fn apply_daemon_settings(&mut self, new: &DaemonSettings) -> Vec<String> {
        let mut notes = Vec::new();
        if new.max_concurrent_tasks != self.max_tasks {
            let (old, wanted) = (self.max_tasks, new.max_concurrent_tasks.max(1));
            if wanted > old {
                self.runner.permits.add_permits((wanted - old) as usize);
            } else {
                let permits = self.runner.permits.clone();
                // Fewer permits: take the surplus as running tasks end.
                tokio::spawn(async move {
                    if let Ok(p) = permits.acquire_many_owned(old - wanted).await {
                        p.forget();
                    }
                });
            }
            self.max_tasks = wanted;
        }
        if let Some(http) = &mut self.http
            && &new.listen != http.listen()
        {
            match http.rebind(&new.listen).await {
                Ok(()) => tracing::info!(listen = ?new.listen, "status endpoint moved"),
                Err(e) => notes.push(format!(
                    "cannot listen on {:?} ({e:#}); still serving on {:?}",
                    new.listen,
                    http.listen()
                )),
            }
        }
        if new.state_dir != self.state_dir {
            notes.push(format!(
                "state_dir changed to {}; the daemon keeps using {} until it is restarted",
                new.state_dir.display(),
                self.state_dir.display()
            ));
        }
        for n in &notes {
            tracing::warn!("{n}");
        }
        notes
    }
}
