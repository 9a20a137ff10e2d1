//! One-shot tasks (`[task.NAME]`): when each may start.
//!
//! Rules, re-applied whenever something they depend on changes (a config is
//! applied, a readiness test reports, a one-shot run ends):
//! - A one-shot starts only once every object it uses (its store, source or
//!   destination, a sync's second store) is ready. Until then it stays
//!   pending: nothing is claimed, so it is never marked done without
//!   running, and its condition (`task.NAME`, reason `Pending` or
//!   `DependencyNotReady`) says what it waits for.
//! - One-shots that share a store run one after another in declaration
//!   order: by file (lexical), then line. A one-shot waits (reason `Queued`)
//!   while one declared before it on the same store has not finished, or
//!   has not started yet; a finished one (whatever its outcome) or one
//!   already handled for its content no longer holds anything back.
//! - A started one-shot is `Started`, a handled one `Done` (its outcome is
//!   in its task run). Conditions of tasks no longer declared are removed by
//!   the apply that removes them (from its diff).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::Daemon;
use super::conditions::{dependencies, same_condition, schedule_condition};
use super::runner::Job;
use crate::config::DesiredState;
use crate::config::desired::OneShotDef;
use crate::state::{Claim, Condition, NewTask, ObjectKind, OneshotRecord, OneshotState, Origin};
use crate::status::{Fault, ObjectKey};

/// The stores a one-shot uses (its store, and a sync's destination store).
fn stores(def: &OneShotDef) -> Vec<String> {
    dependencies(&def.action)
        .into_iter()
        .filter(|(k, _)| *k == ObjectKind::Store)
        .map(|(_, n)| n)
        .collect()
}

fn condition(ready: bool, reason: &str, message: String, desired: &DesiredState) -> Condition {
    Condition {
        ready,
        reason: reason.into(),
        message,
        revision: Some(desired.revision.clone()),
    }
}

impl Daemon {
    /// Starts the one-shot tasks that may start now (see the module rules)
    /// and records every one-shot's condition.
    pub(super) async fn start_oneshots(&mut self) {
        let Some(desired) = self.applied.as_ref().map(|a| a.desired.clone()) else {
            return;
        };
        let claims: HashMap<(String, String), OneshotRecord> =
            match self.db.call(|db| db.oneshots()).await {
                Ok(list) => {
                    self.live.fault_cleared(Fault::OneShots);
                    list.into_iter()
                        .map(|r| ((r.name.clone(), r.content_hash.clone()), r))
                        .collect()
                }
                Err(e) => {
                    self.live
                        .fault(Fault::OneShots, format!("reading the one-shot claims: {e}"));
                    return;
                }
            };
        let conditions = self.live.conditions();
        // Store -> the earliest one-shot on it that has not finished.
        let mut held: BTreeMap<String, String> = BTreeMap::new();
        let mut updates: Vec<(ObjectKey, Condition)> = Vec::new();
        for def in desired.oneshots_in_order() {
            let key = (ObjectKind::Task, def.name.clone());
            let used = stores(def);
            let claim = claims.get(&(def.name.clone(), def.origin.hash.clone()));
            let wanted = match claim {
                Some(r) if r.state != OneshotState::Started => Some(condition(
                    true,
                    "Done",
                    format!(
                        "ran as task {} ({}); not run again for this content",
                        r.task_id,
                        r.status.map_or("unknown", |s| s.as_str())
                    ),
                    &desired,
                )),
                Some(r) => Some(condition(
                    true,
                    "Started",
                    format!("running as task {}", r.task_id),
                    &desired,
                )),
                None => {
                    if let Some((store, first)) =
                        used.iter().find_map(|s| held.get(s).map(|f| (s, f)))
                    {
                        Some(condition(
                            true,
                            "Queued",
                            format!("waits for task.{first}, declared before it on store.{store}"),
                            &desired,
                        ))
                    } else {
                        let deps =
                            schedule_condition(&dependencies(&def.action), &conditions, &desired);
                        if deps.ready { None } else { Some(deps) }
                    }
                }
            };
            let wanted = match wanted {
                Some(c) => Some(c),
                None => self.claim_and_start(&desired, def).await,
            };
            // Anything but a handled one-shot holds its stores, even one
            // that could not be claimed: order is kept.
            if wanted.as_ref().is_none_or(|c| c.reason != "Done") {
                for s in used {
                    held.entry(s).or_insert_with(|| def.name.clone());
                }
            }
            let Some(wanted) = wanted else {
                continue;
            };
            let old = conditions.get(&key);
            if wanted.reason == "Done"
                && old.is_none_or(|r| r.reason != "Done" && r.reason != "Started")
            {
                tracing::info!(task = %def.name, "one-shot task already handled for this content; not run again");
            }
            if !same_condition(old, &wanted) {
                updates.push((key, wanted));
            }
        }
        let written = self.write_conditions(updates).await;
        self.conditions_fault(written);
    }

    /// Claims `def` and starts its run; its condition, or `None` when it
    /// cannot be claimed (logged).
    async fn claim_and_start(
        &mut self,
        desired: &Arc<DesiredState>,
        def: &OneShotDef,
    ) -> Option<Condition> {
        let name = &def.name;
        let origin = Origin::Task(name.clone());
        let new = NewTask {
            kind: def.action.kind(),
            origin: origin.clone(),
            store: Some(def.action.store().to_string()),
            scheduled_for: None,
            started_at: self.clock.now(),
            revision: Some(desired.revision.clone()),
        };
        let (n, hash) = (name.clone(), def.origin.hash.clone());
        match self
            .db
            .call(move |db| db.oneshot_claim(&n, &hash, &new))
            .await
        {
            Ok(Claim::New(id)) => {
                let job = Job {
                    origin,
                    action: def.action.clone(),
                    desired: desired.clone(),
                    claimed: Some(id),
                    nominal: None,
                };
                match self.runner.start(job) {
                    Ok(run) => {
                        let done = self.oneshot_done.clone();
                        self.tasks.spawn(async move {
                            run.await;
                            // Wakes the loop: the next one-shot may start.
                            done.notify_one();
                        });
                    }
                    Err(e) => self
                        .live
                        .fault(Fault::OneShots, format!("task.{name}: cannot start: {e:#}")),
                }
                Some(condition(
                    true,
                    "Started",
                    format!("running as task {id}"),
                    desired,
                ))
            }
            Ok(Claim::InProgress(r)) => Some(condition(
                true,
                "Started",
                format!("running as task {}", r.task_id),
                desired,
            )),
            Ok(Claim::AlreadyDone(r) | Claim::Interrupted(r)) => {
                tracing::info!(task = %name, "one-shot task already handled for this content; not run again");
                Some(condition(
                    true,
                    "Done",
                    format!(
                        "ran as task {} ({}); not run again for this content",
                        r.task_id,
                        r.status.map_or("unknown", |s| s.as_str())
                    ),
                    desired,
                ))
            }
            Err(e) => {
                self.live.fault(
                    Fault::OneShots,
                    format!("task.{name}: claiming the one-shot task: {e}"),
                );
                None
            }
        }
    }
}
