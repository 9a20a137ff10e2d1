//! Reconciling: record every attempt to read the config directory; keep the
//! last good configuration when an attempt is invalid; apply a valid new
//! revision object by object (daemon settings, schedules, readiness tests
//! of changed stores, sources and destinations, then one-shot tasks, which
//! wait for their objects: [`super::oneshots`]); keep the conditions of
//! every object, and fire the runs that are due.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::live::{ObjectKey, short};
use super::readiness::Tested;
use super::runner::Job;
use super::watch::ConfigWatcher;
use super::{Daemon, Trigger, systemd};
use crate::config::desired::{Action, DaemonSettings};
use crate::config::diff::{Change, ObjectRef, definitions, diff, fingerprint};
use crate::config::{Attempt, DesiredState};
use crate::scheduler::cursor::Action as Due;
use crate::state::{AppliedObject, Condition, ObjectKind, Origin};

fn object_kind(kind: &str) -> Option<ObjectKind> {
    match kind {
        "store" => Some(ObjectKind::Store),
        "source" => Some(ObjectKind::Source),
        "destination" => Some(ObjectKind::Destination),
        _ => None,
    }
}

fn object_ref(key: &ObjectKey) -> ObjectRef {
    ObjectRef {
        kind: key.0.as_str().to_string(),
        name: key.1.clone(),
    }
}

/// The objects a schedule's or one-shot's action needs.
pub(super) fn dependencies(action: &Action) -> Vec<ObjectKey> {
    let mut deps = vec![(ObjectKind::Store, action.store().to_string())];
    match action {
        Action::Backup { source, .. } => deps.push((ObjectKind::Source, source.clone())),
        Action::Restore { destination, .. } => {
            deps.push((ObjectKind::Destination, destination.clone()))
        }
        Action::Sync { to, .. } => deps.push((ObjectKind::Store, to.clone())),
        Action::Check { .. } | Action::Prune { .. } => {}
    }
    deps
}

impl Daemon {
    /// Re-reads the directory and reconciles.
    pub(super) async fn reload(&mut self, trigger: Trigger, watcher: &mut ConfigWatcher) {
        watcher.rewatch();
        if trigger == Trigger::Signal {
            self.readiness.retry_now();
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
            Err(e) => tracing::error!("reading the configuration failed: {e}"),
        }
    }

    /// Records an attempt and applies it when it is valid and new.
    pub(super) async fn handle_attempt(&mut self, attempt: Attempt, trigger: Trigger) {
        let now = Utc::now();
        let current = self.live.config_status();
        let valid = attempt.result.is_ok();
        let errors = attempt.result.as_ref().err().cloned().unwrap_or_default();
        let new_attempt = trigger == Trigger::Start
            || current.attempted_revision != attempt.revision
            || current.valid != valid
            || current.errors != errors;
        if new_attempt {
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
                for e in &errors {
                    tracing::warn!("config error: {e}");
                }
            }
            let json = (!valid).then(|| serde_json::to_value(&errors).unwrap_or_default());
            if let Err(e) = self
                .db
                .call(move |db| db.record_attempt(&revision, valid, json.as_ref(), now))
                .await
            {
                tracing::error!("recording the config attempt failed: {e}");
            }
            if let Ok(mut c) = self.live.config.write() {
                c.attempted_revision = attempt.revision.clone();
                c.attempted_at = Some(now);
                c.valid = valid;
                c.errors = errors;
                c.reloads += 1;
                if !valid {
                    c.reload_failures += 1;
                }
            }
        }
        if let Ok(desired) = attempt.result
            && current.applied_revision.as_deref() != Some(desired.revision.as_str())
        {
            self.apply(Arc::new(desired), now).await;
        }
        if new_attempt {
            systemd::status(&self.one_line_status());
        }
    }

    async fn apply(&mut self, desired: Arc<DesiredState>, now: DateTime<Utc>) {
        let definitions = definitions(&desired);
        let prints: crate::config::diff::Fingerprints = definitions
            .iter()
            .map(|(o, d)| (o.clone(), fingerprint(d)))
            .collect();
        let changes = diff(&self.applied_prints, &prints);
        self.apply_daemon_settings(&desired.daemon).await;
        if let Ok(mut a) = self.live.applied.write() {
            *a = Some(desired.clone());
        }
        match self.schedules.apply(&self.db, &desired, now).await {
            Ok(removed) => {
                for name in removed {
                    tracing::info!(schedule = %name, "schedule removed: no further runs");
                    if let Ok(mut n) = self.live.next_runs.write() {
                        n.remove(&name);
                    }
                    self.forget_condition((ObjectKind::Schedule, name.clone()))
                        .await;
                    let result = self.db.call(move |db| db.set_next_run(&name, None)).await;
                    if let Err(e) = result {
                        tracing::error!("clearing a removed schedule's next run failed: {e}");
                    }
                }
            }
            Err(e) => tracing::error!("applying schedules failed: {e:#}"),
        }
        let mut pending = Vec::new();
        for (object, change) in &changes {
            let Some(kind) = object_kind(&object.kind) else {
                continue;
            };
            let key = (kind, object.name.clone());
            match (change, prints.get(object)) {
                (Change::Removed, _) | (_, None) => {
                    self.readiness.forget(&key);
                    self.forget_condition(key).await;
                }
                (Change::Added | Change::Changed, Some(print)) => {
                    // Not ready until its test says so: an old condition
                    // describes the old definition.
                    pending.push((
                        key.clone(),
                        Condition {
                            ready: false,
                            reason: "Pending".into(),
                            message: "testing the connection".into(),
                            revision: Some(desired.revision.clone()),
                        },
                    ));
                    self.readiness.test(&desired, key, print.clone())
                }
            }
        }
        if !pending.is_empty() {
            self.write_conditions(pending).await;
        }
        self.applied = Some(desired.clone());
        self.applied_prints = prints;
        self.start_oneshots().await;
        self.refresh_conditions().await;
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
        let recorded = self
            .db
            .call(move |db| {
                db.record_applied(&revision, now)?;
                db.set_applied_objects(&objects)
            })
            .await;
        if let Err(e) = recorded {
            tracing::error!("recording the applied revision failed: {e}");
        }
        if let Ok(mut c) = self.live.config.write() {
            c.applied_revision = Some(desired.revision.clone());
            c.applied_at = Some(now);
        }
        let summary: Vec<String> = changes
            .iter()
            .map(|(o, c)| format!("{}{o}", c.sign()))
            .collect();
        tracing::info!(
            revision = short(&desired.revision),
            changes = %summary.join(" "),
            "configuration applied"
        );
    }

    /// Applies `[daemon]`: the bound on concurrent tasks at once, `listen`
    /// by rebinding; `state_dir` needs a restart.
    async fn apply_daemon_settings(&mut self, new: &DaemonSettings) {
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
        if &new.listen != self.http.listen() {
            match self.http.rebind(&new.listen).await {
                Ok(()) => tracing::info!(listen = ?new.listen, "status endpoint moved"),
                Err(e) => notes.push(format!(
                    "cannot listen on {:?} ({e:#}); still serving on {:?}",
                    new.listen,
                    self.http.listen()
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
        if let Ok(mut c) = self.live.config.write() {
            c.restart_required = notes;
        }
        if let Ok(mut d) = self.live.daemon.write() {
            *d = new.clone();
        }
    }

    /// A readiness test finished.
    pub(super) async fn on_tested(&mut self, mut tested: Tested) {
        let current = self.applied_prints.get(&object_ref(&tested.key));
        if current != Some(&tested.fingerprint) {
            self.readiness.discard(&tested);
            return;
        }
        self.readiness.finished(&tested);
        let (kind, name) = &tested.key;
        let c = &tested.condition;
        if c.ready {
            tracing::info!(object = %format!("{kind}.{name}"), reason = %c.reason, "ready");
        } else {
            tracing::warn!(object = %format!("{kind}.{name}"), reason = %c.reason, message = %c.message, "not ready; retrying with backoff");
        }
        tested.condition.revision = self.applied.as_ref().map(|d| d.revision.clone());
        self.write_conditions(vec![(tested.key.clone(), tested.condition)])
            .await;
        self.refresh_conditions().await;
        // A one-shot may have been waiting for this object.
        self.start_oneshots().await;
    }

    /// Starts the readiness retries that are due.
    pub(super) fn retry_due(&mut self) {
        let Some(desired) = self.applied.clone() else {
            return;
        };
        for key in self.readiness.due(tokio::time::Instant::now()) {
            if let Some(print) = self.applied_prints.get(&object_ref(&key)).cloned() {
                self.readiness.test(&desired, key, print);
            }
        }
    }

    /// Recomputes schedule conditions from their dependencies and stamps
    /// every condition with the applied revision; writes what changed.
    async fn refresh_conditions(&mut self) {
        let Some(desired) = self.applied.clone() else {
            return;
        };
        let conditions = self.live.conditions();
        let mut updates = Vec::new();
        for (key, record) in &conditions {
            if key.0 != ObjectKind::Schedule
                && record.revision.as_deref() != Some(&desired.revision)
            {
                updates.push((
                    key.clone(),
                    Condition {
                        ready: record.ready,
                        reason: record.reason.clone(),
                        message: record.message.clone(),
                        revision: Some(desired.revision.clone()),
                    },
                ));
            }
        }
        for (name, def) in &desired.schedules {
            let wanted = schedule_condition(&dependencies(&def.action), &conditions, &desired);
            let key = (ObjectKind::Schedule, name.clone());
            let same = conditions.get(&key).is_some_and(|r| {
                r.ready == wanted.ready
                    && r.reason == wanted.reason
                    && r.message == wanted.message
                    && r.revision == wanted.revision
            });
            if !same {
                updates.push((key, wanted));
            }
        }
        if !updates.is_empty() {
            self.write_conditions(updates).await;
        }
    }

    pub(super) async fn write_conditions(&self, updates: Vec<(ObjectKey, Condition)>) {
        let rows: Vec<(ObjectKind, String, Condition)> =
            updates.into_iter().map(|((k, n), c)| (k, n, c)).collect();
        match self
            .db
            .call(move |db| db.set_conditions(&rows, Utc::now()))
            .await
        {
            Ok(records) => {
                if let Ok(mut live) = self.live.conditions.write() {
                    for r in records {
                        live.insert((r.kind, r.name.clone()), r);
                    }
                }
            }
            Err(e) => tracing::error!("recording conditions failed: {e}"),
        }
    }

    pub(super) async fn forget_condition(&self, key: ObjectKey) {
        if let Ok(mut live) = self.live.conditions.write() {
            live.remove(&key);
        }
        let (kind, name) = key;
        if let Err(e) = self
            .db
            .call(move |db| db.remove_condition(kind, &name))
            .await
        {
            tracing::error!("removing a condition failed: {e}");
        }
    }

    /// Fires, skips or records the runs that are due; returns when
    /// something is due next.
    pub(super) async fn poll_schedules(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let live = self.live.clone();
        let (due, next) = self.schedules.poll(now, |name| {
            live.is_running(&Origin::Schedule(name.to_string()))
        });
        let Some(desired) = self.applied.clone() else {
            return next;
        };
        for run in due {
            if let Err(e) = self.handle_due(&desired, run).await {
                tracing::error!("handling a due run failed: {e:#}");
            }
        }
        self.publish_next_runs().await;
        next
    }

    async fn handle_due(
        &mut self,
        desired: &Arc<DesiredState>,
        run: super::schedules::DueRun,
    ) -> anyhow::Result<()> {
        let origin = Origin::Schedule(run.name.clone());
        let last = self.schedules.last_run(&run.name);
        let (name, persisted) = (run.name.clone(), last);
        match run.due {
            Due::Fire { nominal, catch_up } => {
                tracing::info!(schedule = %run.name, %nominal, catch_up, "run due");
                let job = Job {
                    origin,
                    action: run.action,
                    desired: desired.clone(),
                    claimed: None,
                    nominal: Some(nominal),
                };
                // Registered as running before anything awaits, so the next
                // poll never fires it twice.
                let task = self.runner.start(job)?;
                self.db
                    .call(move |db| db.record_schedule_started(&name, nominal))
                    .await?;
                self.tasks.spawn(task);
                return Ok(());
            }
            Due::Skip { nominal, reason } => {
                self.runner
                    .record_skip(
                        origin,
                        &run.action,
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
                    .record_skip(origin, &run.action, &desired.revision, first, reason)
                    .await?;
            }
            Due::Wait { .. } => return Ok(()),
        }
        if let Some(at) = persisted {
            self.db
                .call(move |db| db.record_schedule_started(&name, at))
                .await?;
        }
        Ok(())
    }

    /// Writes next run times that changed to the live state and the database.
    async fn publish_next_runs(&self) {
        let now_next = self.schedules.next_runs();
        let changed: Vec<(String, Option<DateTime<Utc>>)> = {
            let Ok(shown) = self.live.next_runs.read() else {
                return;
            };
            now_next
                .iter()
                .filter(|(n, at)| shown.get(*n) != Some(*at))
                .map(|(n, at)| (n.clone(), *at))
                .collect()
        };
        if changed.is_empty() {
            return;
        }
        if let Ok(mut shown) = self.live.next_runs.write() {
            for (n, at) in &changed {
                shown.insert(n.clone(), *at);
            }
        }
        if let Err(e) = self.db.call(move |db| db.set_next_runs(&changed)).await {
            tracing::error!("recording next runs failed: {e}");
        }
    }
}

/// A schedule's (or waiting one-shot's) condition from its dependencies'.
pub(super) fn schedule_condition(
    deps: &[ObjectKey],
    conditions: &BTreeMap<ObjectKey, crate::state::ConditionRecord>,
    desired: &DesiredState,
) -> Condition {
    let mut waiting = Vec::new();
    for dep in deps {
        let label = format!("{}.{}", dep.0, dep.1);
        match conditions.get(dep) {
            Some(c) if c.ready => {}
            Some(c) => {
                return Condition {
                    ready: false,
                    reason: "DependencyNotReady".into(),
                    message: format!("{label} is not ready ({}): {}", c.reason, c.message),
                    revision: Some(desired.revision.clone()),
                };
            }
            None => waiting.push(label),
        }
    }
    if waiting.is_empty() {
        Condition {
            ready: true,
            reason: "Scheduled".into(),
            message: String::new(),
            revision: Some(desired.revision.clone()),
        }
    } else {
        Condition {
            ready: false,
            reason: "Pending".into(),
            message: format!("waiting for the test of {}", waiting.join(", ")),
            revision: Some(desired.revision.clone()),
        }
    }
}
