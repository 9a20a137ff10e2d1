//! Readiness of stores, sources and destinations: each is tested off the
//! runtime (a store is opened with its passphrase, or initialised when
//! empty and `init = "auto"`); a failure is retried with exponential
//! backoff, timed by the daemon's clock. Results carry the fingerprint of
//! the definition they tested, so a result for a definition that changed
//! meanwhile is dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;

use crate::config::DesiredState;
use crate::integrations::{Purpose, Role};
use crate::scheduler::Clock;
use crate::state::{Condition, ObjectKind};
use crate::status::ObjectKey;
use crate::tasks::open_store_detailed;

/// First retry delay after a failed test.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Longest delay between retries.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// The outcome of one test.
#[derive(Debug)]
pub struct Tested {
    /// Which object.
    pub key: ObjectKey,
    /// The fingerprint of the definition tested.
    pub fingerprint: String,
    /// Ready or not, with reason and message (no revision set).
    pub condition: Condition,
}

/// Tests in flight and retries planned.
#[derive(Debug)]
pub struct Readiness {
    clock: Arc<dyn Clock>,
    sender: mpsc::UnboundedSender<Tested>,
    receiver: mpsc::UnboundedReceiver<Tested>,
    in_flight: HashMap<ObjectKey, String>,
    retries: BTreeMap<ObjectKey, (DateTime<Utc>, u32)>,
}

/// The retry delay after `failures` failed attempts in a row (a readiness
/// test, or an apply).
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(10);
    (FIRST_RETRY * factor).min(MAX_RETRY)
}

fn later(at: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    at + TimeDelta::from_std(by).unwrap_or(TimeDelta::seconds(300))
}

impl Readiness {
    /// No tests yet; retries are timed by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Readiness {
            clock,
            sender,
            receiver,
            in_flight: HashMap::new(),
            retries: BTreeMap::new(),
        }
    }

    /// Starts testing `key` as defined in `desired` (fingerprint `print`),
    /// unless that very definition is already being tested.
    pub fn test(&mut self, desired: &Arc<DesiredState>, key: ObjectKey, print: String) {
        if self.in_flight.get(&key) == Some(&print) {
            return;
        }
        self.in_flight.insert(key.clone(), print.clone());
        let desired = desired.clone();
        let sender = self.sender.clone();
        tokio::task::spawn_blocking(move || {
            let condition = run_test(&desired, &key);
            // Fails only when the daemon loop is gone (shutting down).
            let _ = sender.send(Tested {
                key,
                fingerprint: print,
                condition,
            });
        });
    }

    /// Waits for the next test result.
    pub async fn next_result(&mut self) -> Option<Tested> {
        self.receiver.recv().await
    }

    /// Books a finished test: plans a retry after a failure (with the
    /// failures counted so far), clears it after a success.
    pub fn finished(&mut self, tested: &Tested) {
        if self.in_flight.get(&tested.key) == Some(&tested.fingerprint) {
            self.in_flight.remove(&tested.key);
        }
        if tested.condition.ready {
            self.retries.remove(&tested.key);
        } else {
            let failures = self.retries.get(&tested.key).map_or(0, |r| r.1) + 1;
            let at = later(self.clock.now(), backoff(failures));
            self.retries.insert(tested.key.clone(), (at, failures));
        }
    }

    /// How many tests are running now (tests wait for them).
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Drops a result for a definition that changed meanwhile.
    pub fn discard(&mut self, tested: &Tested) {
        if self.in_flight.get(&tested.key) == Some(&tested.fingerprint) {
            self.in_flight.remove(&tested.key);
        }
    }

    /// Forgets an object that is no longer declared.
    pub fn forget(&mut self, key: &ObjectKey) {
        self.retries.remove(key);
        self.in_flight.remove(key);
    }

    /// Makes every planned retry due now (SIGHUP), keeping failure counts.
    pub fn retry_now(&mut self) {
        let now = self.clock.now();
        for r in self.retries.values_mut() {
            r.0 = now;
        }
    }

    /// When the earliest retry is due.
    pub fn next_retry(&self) -> Option<DateTime<Utc>> {
        self.retries.values().map(|r| r.0).min()
    }

    /// The objects whose retry is due (they stay planned until a result
    /// arrives, with their failure count).
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<ObjectKey> {
        let due: Vec<ObjectKey> = self
            .retries
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &due {
            if let Some(r) = self.retries.get_mut(key) {
                // Not due again until this test reports.
                r.0 = later(now, MAX_RETRY);
            }
        }
        due
    }
}

fn condition(ready: bool, reason: &str, message: String) -> Condition {
    Condition {
        ready,
        reason: reason.to_string(),
        message,
        revision: None,
    }
}

/// Tests one object (blocking).
fn run_test(desired: &DesiredState, key: &ObjectKey) -> Condition {
    let (kind, name) = key;
    match kind {
        ObjectKind::Store => match desired.stores.get(name) {
            Some(def) => match open_store_detailed(def, true, Purpose::Test) {
                Ok(opened) => condition(
                    true,
                    opened.reason.as_str(),
                    format!(
                        "kloset store at {} ({}, storage type {})",
                        def.endpoint.location,
                        def.endpoint.integration,
                        def.storage_type.as_str()
                    ),
                ),
                Err(p) => condition(false, p.reason.as_str(), p.message),
            },
            None => condition(false, "NotDeclared", format!("no [store.{name}]")),
        },
        ObjectKind::Source => match desired.sources.get(name) {
            Some(def) => match def.endpoint.test(Role::Source) {
                Ok(reason) => condition(true, reason, def.endpoint.location.clone()),
                Err(e) => condition(false, e.reason, e.message),
            },
            None => condition(false, "NotDeclared", format!("no [source.{name}]")),
        },
        ObjectKind::Destination => match desired.destinations.get(name) {
            Some(def) => match def.endpoint.test(Role::Destination) {
                Ok(reason) => condition(true, reason, def.endpoint.location.clone()),
                Err(e) => condition(false, e.reason, e.message),
            },
            None => condition(false, "NotDeclared", format!("no [destination.{name}]")),
        },
        other => condition(
            false,
            "NotTestable",
            format!("{other} objects have no connection test"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(7), MAX_RETRY);
        assert_eq!(backoff(1000), MAX_RETRY);
    }
}
