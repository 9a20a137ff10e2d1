//! Conditions of objects: readiness results of stores, sources and
//! destinations (with retries), schedules' conditions from their
//! dependencies, and writing them to the state database and the live
//! status.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::Daemon;
use super::readiness::Tested;
use crate::config::DesiredState;
use crate::config::desired::Action;
use crate::config::diff::ObjectRef;
use crate::state::{Condition, ConditionRecord, ObjectKind};
use crate::status::{Fault, ObjectKey};

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
    /// A readiness test finished.
    pub(super) async fn on_tested(&mut self, mut tested: Tested) {
        let (kind, name) = &tested.key;
        let object = ObjectRef::new(*kind, name.clone());
        let current = self.applied.as_ref().and_then(|a| a.prints.get(&object));
        if current != Some(&tested.fingerprint) {
            self.readiness.discard(&tested);
            return;
        }
        self.readiness.finished(&tested);
        let c = &tested.condition;
        if c.ready {
            tracing::info!(%object, reason = %c.reason, "ready");
        } else {
            tracing::warn!(%object, reason = %c.reason, message = %c.message, "not ready; retrying with backoff");
        }
        tested.condition.revision = self.applied.as_ref().map(|a| a.desired.revision.clone());
        let written = self
            .write_conditions(vec![(tested.key.clone(), tested.condition)])
            .await;
        self.conditions_fault(written);
        self.refresh_conditions().await;
        // A one-shot may have been waiting for this object.
        self.start_oneshots().await;
    }

    /// Starts the readiness retries that are due at `now`.
    pub(super) fn retry_due(&mut self, now: DateTime<Utc>) {
        let Some(applied) = &self.applied else {
            return;
        };
        for key in self.readiness.due(now) {
            let object = ObjectRef::new(key.0, key.1.clone());
            if let Some(print) = applied.prints.get(&object).cloned() {
                self.readiness.test(&applied.desired, key, print);
            }
        }
    }

    /// Recomputes schedule conditions from their dependencies and stamps
    /// every condition with the applied revision; writes what changed.
    pub(super) async fn refresh_conditions(&mut self) {
        let Some(desired) = self.applied.as_ref().map(|a| a.desired.clone()) else {
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
            if !same_condition(conditions.get(&key), &wanted) {
                updates.push((key, wanted));
            }
        }
        let written = self.write_conditions(updates).await;
        self.conditions_fault(written);
    }

    /// Shows (or clears) a failure to record conditions outside an apply.
    pub(super) fn conditions_fault(&self, written: anyhow::Result<()>) {
        match written {
            Ok(()) => self.live.fault_cleared(Fault::RecordConditions),
            Err(e) => self.live.fault(Fault::RecordConditions, format!("{e:#}")),
        }
    }

    /// Writes conditions to the database, then to the live status.
    pub(super) async fn write_conditions(
        &self,
        updates: Vec<(ObjectKey, Condition)>,
    ) -> anyhow::Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let rows: Vec<(ObjectKind, String, Condition)> =
            updates.into_iter().map(|((k, n), c)| (k, n, c)).collect();
        let now = self.clock.now();
        let records = self
            .db
            .call(move |db| db.set_conditions(&rows, now))
            .await
            .context("writing conditions to the state database")?;
        self.live.conditions_written(records);
        Ok(())
    }
}

/// Whether a recorded condition already says `new`.
pub(super) fn same_condition(old: Option<&ConditionRecord>, new: &Condition) -> bool {
    old.is_some_and(|r| {
        r.ready == new.ready
            && r.reason == new.reason
            && r.message == new.message
            && r.revision == new.revision
    })
}

/// A schedule's (or waiting one-shot's) condition from its dependencies'.
pub(super) fn schedule_condition(
    deps: &[ObjectKey],
    conditions: &BTreeMap<ObjectKey, ConditionRecord>,
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
