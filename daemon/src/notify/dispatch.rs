//! The delivery loop: sends what is due from the queue (channels in
//! parallel, each channel's messages in order), records each attempt, and retries failures with backoff until
//! [`MAX_AGE`]. It runs beside the daemon loop and never holds a task back.
//!
//! The channel definitions are read from the applied configuration at each
//! attempt, so a fixed URL applies to messages already queued; a message
//! for a channel that is no longer declared is dropped, saying so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use super::body::Body;
use super::deliver::{client, deliver};
use crate::scheduler::{Clock, sleep_until_hint};
use crate::state::{QueuedNotification, RETAIN_FINISHED, StateHandle};
use crate::status::{Attempt, Fault, Live};

/// How long a message is retried before it is dropped.
pub const MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Messages sent at once.
const IN_FLIGHT: u32 = 8;

/// The wait before attempt `failures + 1`: 1 s, doubling, at most
/// [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(12);
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

/// Wakes the loop when a message was queued.
pub type Wake = Arc<tokio::sync::Notify>;

/// The delivery loop's parts.
#[derive(Debug)]
pub struct Dispatcher {
    /// The queue.
    pub db: StateHandle,
    /// Channel definitions (the applied configuration) and the counters.
    pub live: Arc<Live>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Rung when something was queued.
    pub wake: Wake,
}

impl Dispatcher {
    /// Runs until the runtime stops. Whatever is not delivered stays queued.
    pub async fn run(self) {
        let client = match client() {
            Ok(c) => c,
            Err(e) => {
                self.live.fault(Fault::Notifications, e);
                return;
            }
        };
        let mut last_forget: Option<DateTime<Utc>> = None;
        let mut changed = true;
        loop {
            let now = self.clock.now();
            if self.live.applied().is_none() {
                // Channels are not known before a configuration is applied:
                // nothing is sent (or dropped as undeclared) until then.
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(sleep_until_hint(now, None)) => {}
                }
                continue;
            }
            if last_forget.is_none_or(|t| now - t > chrono::TimeDelta::hours(1)) {
                let before = now - RETAIN_FINISHED;
                if self
                    .db
                    .call(move |db| db.forget_finished_notifications(before))
                    .await
                    .is_ok()
                {
                    last_forget = Some(now);
                    changed = true;
                }
            }
            let due = match self
                .db
                .call(move |db| db.due_notifications(now, IN_FLIGHT))
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    self.live.fault(Fault::Notifications, e.to_string());
                    Vec::new()
                }
            };
            if !due.is_empty() {
                changed = true;
                if self.send_all(&client, due).await {
                    continue; // more may be due
                }
                // An attempt could not be recorded: it is due again at once,
                // so wait before the next round instead of resending in a loop.
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if changed {
                match self.db.call(|db| db.notification_health()).await {
                    Ok(health) => {
                        self.live.notifications_changed(health);
                        self.live.fault_cleared(Fault::Notifications);
                        changed = false;
                    }
                    Err(e) => self.live.fault(Fault::Notifications, e.to_string()),
                }
            }
            let next = self
                .db
                .call(|db| db.next_notification_at())
                .await
                .ok()
                .flatten();
            tokio::select! {
                _ = self.wake.notified() => changed = true,
                _ = tokio::time::sleep(sleep_until_hint(self.clock.now(), next)) => {}
            }
        }
    }

    /// Sends `due`: channels in parallel, each channel's messages in queue
    /// order (a healthchecks `start` never overtakes the end before it).
    /// `false` when an attempt could not be recorded.
    async fn send_all(&self, client: &reqwest::Client, due: Vec<QueuedNotification>) -> bool {
        let channels = self
            .live
            .applied()
            .map(|a| a.notify.clone())
            .unwrap_or_default();
        let channels = Arc::new(channels);
        let mut by_channel: BTreeMap<String, Vec<QueuedNotification>> = BTreeMap::new();
        for message in due {
            by_channel
                .entry(message.channel.clone())
                .or_default()
                .push(message);
        }
        let mut flying = JoinSet::new();
        for (_, messages) in by_channel {
            let (client, channels) = (client.clone(), channels.clone());
            flying.spawn(async move {
                let mut results = Vec::with_capacity(messages.len());
                for message in messages {
                    let result = attempt(&client, &channels, &message).await;
                    results.push((message, result));
                }
                results
            });
        }
        let mut all_recorded = true;
        while let Some(done) = flying.join_next().await {
            let Ok(results) = done else {
                all_recorded = false; // a panicked attempt is retried when due again
                continue;
            };
            for (message, result) in results {
                all_recorded &= self.record(message, result).await;
            }
        }
        all_recorded
    }

    /// Records an attempt; `false` when the database refused.
    async fn record(&self, message: QueuedNotification, result: Result<(), String>) -> bool {
        let now = self.clock.now();
        let id = message.id;
        let channel = message.channel.clone();
        let (attempt, write) = match result {
            Ok(()) => {
                tracing::info!(channel = %channel, event = %message.event, "notification delivered");
                (Attempt::Delivered, None)
            }
            Err(error) => {
                let failures = message.attempts + 1;
                let retry_at = now + backoff(failures);
                let give_up = retry_at - message.created_at > MAX_AGE || error.starts_with(GONE);
                let (attempt, retry) = if give_up {
                    tracing::error!(channel = %channel, event = %message.event, attempts = failures, %error, "notification dropped");
                    (Attempt::Dropped, None)
                } else {
                    tracing::warn!(channel = %channel, event = %message.event, attempts = failures, %error, retry_at = %retry_at, "notification not delivered; retrying");
                    (Attempt::Failed, Some(retry_at))
                };
                (attempt, Some((error, retry)))
            }
        };
        let recorded = self
            .db
            .call(move |db| match write {
                None => db.notification_delivered(id, now),
                Some((error, retry)) => db.notification_failed(id, now, &error, retry),
            })
            .await;
        match recorded {
            Ok(()) => {
                self.live.delivery_attempted(&channel, attempt);
                true
            }
            Err(e) => {
                self.live.fault(Fault::Notifications, e.to_string());
                false
            }
        }
    }
}

/// Why a message for a channel that is no longer declared is dropped.
const GONE: &str = "the channel is no longer declared";

async fn attempt(
    client: &reqwest::Client,
    channels: &BTreeMap<String, crate::config::desired::NotifyDef>,
    message: &QueuedNotification,
) -> Result<(), String> {
    let Some(def) = channels.get(&message.channel) else {
        return Err(format!("{GONE} ([notify.{}])", message.channel));
    };
    let body: Body = serde_json::from_value(message.body.clone())
        .map_err(|e| format!("the queued message is unreadable: {e}"))?;
    deliver(client, def, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(13), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
