//! The live status of what klosetd tells people about: stale schedules
//! (`alert_after`) and the notification queue's health per channel.
//!
//! Both are warnings, not readiness problems: `/readyz` keeps its code and
//! lists them in its body. A stale schedule or a receiver that is down is
//! not fixed by restarting or rerouting around the daemon, which is what an
//! orchestrator does with a failing readiness probe; the alert rules and
//! notifications are the way to tell people.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::Live;
use crate::state::ChannelHealth;

/// A stale schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleInfo {
    /// Since when: its last success (or the start of watching) plus
    /// `alert_after`.
    pub since: DateTime<Utc>,
    /// Its last success, if any.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Its `alert_after`.
    pub alert_after: Duration,
}

/// Delivery attempts of one channel since the daemon started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Messages delivered.
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub failed: u64,
    /// Messages given up on.
    pub dropped: u64,
}

/// How an attempt ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Delivered.
    Delivered,
    /// Failed; retried later.
    Failed,
    /// Failed; given up.
    Dropped,
}

impl Live {
    /// The stale schedules now, by name (replaces the previous set).
    pub fn stale_changed(&self, stale: BTreeMap<String, StaleInfo>) {
        if let Ok(mut s) = self.stale.write() {
            *s = stale;
        }
    }

    /// The stale schedules, by name.
    pub fn stale(&self) -> BTreeMap<String, StaleInfo> {
        self.stale.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The queue's health per channel, as last read.
    pub fn notifications_changed(&self, health: Vec<ChannelHealth>) {
        if let Ok(mut n) = self.notifications.write() {
            *n = health;
        }
    }

    /// Per channel: what waits, retries or was dropped.
    pub fn notifications(&self) -> Vec<ChannelHealth> {
        self.notifications
            .read()
            .map(|n| n.clone())
            .unwrap_or_default()
    }

    /// Counts one delivery attempt of `channel`.
    pub fn delivery_attempted(&self, channel: &str, attempt: Attempt) {
        if let Ok(mut d) = self.deliveries.lock() {
            let c = d.entry(channel.to_string()).or_default();
            match attempt {
                Attempt::Delivered => c.delivered += 1,
                Attempt::Failed => c.failed += 1,
                Attempt::Dropped => {
                    c.failed += 1;
                    c.dropped += 1;
                }
            }
        }
    }

    /// Delivery counters per channel since start.
    pub fn deliveries(&self) -> BTreeMap<String, DeliveryCounts> {
        self.deliveries
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// What deserves attention without making the daemon unready: stale
    /// schedules and failing notification channels, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut out = Vec::new();
        for (name, s) in self.stale() {
            let last = match s.last_success_at {
                Some(t) => format!("last success {}", time(t)),
                None => "no success yet".to_string(),
            };
            out.push(format!(
                "schedule.{name} is stale since {}: {last} (alert_after {})",
                time(s.since),
                humantime::format_duration(s.alert_after)
            ));
        }
        // Channels failing now; what was dropped stays in status and the
        // metrics (and the alert rule), not in every probe for 30 days.
        for h in self.notifications() {
            if h.retrying == 0 {
                continue;
            }
            let error = h
                .last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            out.push(format!(
                "notify.{}: {} message(s) retrying, {} dropped{error}",
                h.channel, h.retrying, h.dropped
            ));
        }
        out
    }
}
