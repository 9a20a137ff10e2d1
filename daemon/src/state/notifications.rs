//! The notification queue: one row per message to one `[notify.NAME]`
//! channel, retried until delivered or dropped.
//!
//! Invariants: a message is queued in the same transaction as the outcome it
//! reports ([`StateDb::atomically`]), so a recorded outcome never loses its
//! notifications, and a restart sends what was queued before it. A message
//! ends exactly once, delivered or dropped. Delivery is at least once: a
//! crash between a receiver's answer and [`StateDb::notification_delivered`]
//! sends it again, with the same `uid` for the receiver to deduplicate.
//! Bodies hold no secrets (the channel's URL is read at delivery).

use chrono::{DateTime, Utc};
use rusqlite::{Row, params};
use serde::Serialize;

use super::types::{DbTime, DbU64, NotifyEvent};
use super::{Result, SqlContext, StateDb};

/// How long delivered and dropped messages stay in the table.
pub const RETAIN_FINISHED: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// A queued message's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct NotificationId(pub i64);

/// A message to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// The `[notify.NAME]` it goes to.
    pub channel: String,
    /// What it reports.
    pub event: NotifyEvent,
    /// Unique id, sent in the body.
    pub uid: String,
    /// The webhook body (every kind renders from it).
    pub body: serde_json::Value,
}

/// A message waiting for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedNotification {
    /// Its row.
    pub id: NotificationId,
    /// The `[notify.NAME]` it goes to.
    pub channel: String,
    /// What it reports.
    pub event: NotifyEvent,
    /// The webhook body.
    pub body: serde_json::Value,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// One channel's messages that are not delivered yet: what status and
/// `/metrics` show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChannelHealth {
    /// The channel.
    pub channel: String,
    /// Messages waiting (first attempt or a retry).
    pub pending: u64,
    /// Of those, the ones that failed at least once.
    pub retrying: u64,
    /// Messages dropped in the retention window (retries exhausted, or the
    /// channel was removed).
    pub dropped: u64,
    /// The latest error of a waiting or dropped message (never a secret:
    /// URLs are not part of errors).
    pub last_error: Option<String>,
    /// When that error happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// When the next retry is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, channel, event, body_json, created_at, attempts";

fn queued_from_row(row: &Row<'_>) -> rusqlite::Result<QueuedNotification> {
    let body: String = row.get(3)?;
    Ok(QueuedNotification {
        id: NotificationId(row.get(0)?),
        channel: row.get(1)?,
        event: row.get(2)?,
        body: serde_json::from_str(&body).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        created_at: row.get::<_, DbTime>(4)?.0,
        attempts: u32::try_from(row.get::<_, DbU64>(5)?.0).unwrap_or(u32::MAX),
    })
}

impl StateDb {
    /// Queues `messages`, due at once.
    pub fn queue_notifications(
        &mut self,
        messages: &[NewNotification],
        now: DateTime<Utc>,
    ) -> Result<()> {
        const OP: &str = "queue notifications";
        let tx = super::Tx::begin(&mut self.conn).op(OP)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO notifications (uid, channel, event, body_json, created_at, \
                     next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                )
                .op(OP)?;
            for m in messages {
                stmt.execute(params![
                    m.uid,
                    m.channel,
                    m.event,
                    m.body.to_string(),
                    DbTime(now)
                ])
                .op(OP)?;
            }
        }
        tx.commit().op(OP)
    }

    /// Messages due at `now`, oldest first, at most `limit`.
    pub fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<QueuedNotification>> {
        const OP: &str = "list due notifications";
        let sql = format!(
            "SELECT {COLUMNS} FROM notifications \
             WHERE delivered_at IS NULL AND dropped_at IS NULL AND next_attempt_at <= ?1 \
             ORDER BY next_attempt_at, id LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql).op(OP)?;
        let rows = stmt
            .query_map(params![DbTime(now), limit], queued_from_row)
            .op(OP)?;
        rows.collect::<rusqlite::Result<_>>().op(OP)
    }

    /// When the next waiting message is due, if any waits.
    pub fn next_notification_at(&self) -> Result<Option<DateTime<Utc>>> {
        self.conn
            .query_row(
                "SELECT min(next_attempt_at) FROM notifications \
                 WHERE delivered_at IS NULL AND dropped_at IS NULL",
                [],
                |r| r.get::<_, Option<DbTime>>(0),
            )
            .map(|t| t.map(|t| t.0))
            .op("next notification")
    }

    /// `id` was delivered at `at`.
    pub fn notification_delivered(&mut self, id: NotificationId, at: DateTime<Utc>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE notifications SET delivered_at = ?2, last_attempt_at = ?2 \
                 WHERE id = ?1 AND delivered_at IS NULL AND dropped_at IS NULL",
                params![id.0, DbTime(at)],
            )
            .op("record notification delivered")?;
        Ok(())
    }

    /// An attempt to deliver `id` failed at `at` with `error`: it is retried
    /// at `retry_at`, or dropped when that is `None`.
    pub fn notification_failed(
        &mut self,
        id: NotificationId,
        at: DateTime<Utc>,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let (next, dropped) = match retry_at {
            Some(t) => (Some(DbTime(t)), None),
            None => (None, Some(DbTime(at))),
        };
        self.conn
            .execute(
                "UPDATE notifications SET attempts = attempts + 1, last_attempt_at = ?2, \
                 last_error = ?3, next_attempt_at = coalesce(?4, next_attempt_at), \
                 dropped_at = ?5 \
                 WHERE id = ?1 AND delivered_at IS NULL AND dropped_at IS NULL",
                params![id.0, DbTime(at), error, next, dropped],
            )
            .op("record notification failure")?;
        Ok(())
    }

    /// Per channel: what waits, what retries, what was dropped lately, and
    /// the latest error. Channels with nothing to report are left out.
    pub fn notification_health(&self) -> Result<Vec<ChannelHealth>> {
        const OP: &str = "summarise notifications";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT channel, \
                 sum(delivered_at IS NULL AND dropped_at IS NULL), \
                 sum(delivered_at IS NULL AND dropped_at IS NULL AND attempts > 0), \
                 sum(dropped_at IS NOT NULL), \
                 min(CASE WHEN delivered_at IS NULL AND dropped_at IS NULL \
                     THEN next_attempt_at END) \
                 FROM notifications GROUP BY channel \
                 HAVING sum(delivered_at IS NULL) > 0 ORDER BY channel",
            )
            .op(OP)?;
        let mut out: Vec<ChannelHealth> = stmt
            .query_map([], |r| {
                Ok(ChannelHealth {
                    channel: r.get(0)?,
                    pending: r.get::<_, DbU64>(1)?.0,
                    retrying: r.get::<_, DbU64>(2)?.0,
                    dropped: r.get::<_, DbU64>(3)?.0,
                    next_attempt_at: r.get::<_, Option<DbTime>>(4)?.map(|t| t.0),
                    ..ChannelHealth::default()
                })
            })
            .op(OP)?
            .collect::<rusqlite::Result<_>>()
            .op(OP)?;
        let mut last = self
            .conn
            .prepare_cached(
                "SELECT last_error, last_attempt_at FROM notifications \
                 WHERE channel = ?1 AND delivered_at IS NULL AND last_error IS NOT NULL \
                 ORDER BY last_attempt_at DESC LIMIT 1",
            )
            .op(OP)?;
        for health in &mut out {
            let found = last
                .query_map([&health.channel], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, DbTime>(1)?.0))
                })
                .op(OP)?
                .next()
                .transpose()
                .op(OP)?;
            if let Some((error, at)) = found {
                health.last_error = Some(error);
                health.last_error_at = Some(at);
            }
        }
        Ok(out)
    }

    /// Deletes delivered and dropped messages older than `before`; returns
    /// how many.
    pub fn forget_finished_notifications(&mut self, before: DateTime<Utc>) -> Result<u64> {
        let n = self
            .conn
            .execute(
                "DELETE FROM notifications WHERE coalesce(delivered_at, dropped_at) < ?1",
                params![DbTime(before)],
            )
            .op("forget finished notifications")?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::at;

    fn message(uid: &str, channel: &str) -> NewNotification {
        NewNotification {
            channel: channel.into(),
            event: NotifyEvent::Failure,
            uid: uid.into(),
            body: serde_json::json!({"version": 1, "id": uid}),
        }
    }

    #[test]
    fn a_message_waits_retries_and_ends_once() {
        let mut db = StateDb::open_in_memory().unwrap();
        db.queue_notifications(&[message("a", "ops"), message("b", "hc")], at(100))
            .unwrap();
        assert!(db.due_notifications(at(99), 10).unwrap().is_empty());
        let due = db.due_notifications(at(100), 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].body["id"], "a");
        db.notification_failed(due[0].id, at(101), "HTTP 500", Some(at(103)))
            .unwrap();
        let due_now: Vec<_> = db.due_notifications(at(102), 10).unwrap();
        assert_eq!(due_now.len(), 1, "the failed one waits for its retry");
        assert_eq!(db.next_notification_at().unwrap(), Some(at(100)));
        db.notification_delivered(due[1].id, at(102)).unwrap();
        assert_eq!(db.next_notification_at().unwrap(), Some(at(103)));
        let health = db.notification_health().unwrap();
        assert_eq!(health.len(), 1, "{health:?}");
        assert_eq!(health[0].channel, "ops");
        assert_eq!((health[0].pending, health[0].retrying), (1, 1));
        assert_eq!(health[0].last_error.as_deref(), Some("HTTP 500"));
        let retry = db.due_notifications(at(103), 10).unwrap();
        assert_eq!(retry[0].attempts, 1);
        db.notification_delivered(retry[0].id, at(104)).unwrap();
        // Ending twice changes nothing.
        db.notification_failed(retry[0].id, at(105), "late", None)
            .unwrap();
        assert!(db.notification_health().unwrap().is_empty());
        assert_eq!(db.next_notification_at().unwrap(), None);
        assert_eq!(db.forget_finished_notifications(at(200)).unwrap(), 2);
    }

    #[test]
    fn a_dropped_message_is_reported_until_forgotten() {
        let mut db = StateDb::open_in_memory().unwrap();
        db.queue_notifications(&[message("a", "ops")], at(100))
            .unwrap();
        let due = db.due_notifications(at(100), 10).unwrap();
        db.notification_failed(due[0].id, at(101), "channel removed", None)
            .unwrap();
        let health = db.notification_health().unwrap();
        assert_eq!((health[0].pending, health[0].dropped), (0, 1));
        assert!(db.due_notifications(at(1000), 10).unwrap().is_empty());
    }

    #[test]
    fn an_outcome_and_its_messages_land_together_or_not_at_all() {
        let mut db = StateDb::open_in_memory().unwrap();
        let failed: Result<()> = db.atomically(|db| {
            db.queue_notifications(&[message("a", "ops")], at(100))?;
            db.queue_notifications(&[message("a", "ops")], at(100)) // same uid: refused
        });
        assert!(failed.is_err());
        assert!(db.due_notifications(at(100), 10).unwrap().is_empty());
        db.atomically(|db| db.queue_notifications(&[message("b", "ops")], at(100)))
            .unwrap();
        assert_eq!(db.due_notifications(at(100), 10).unwrap().len(), 1);
    }
}
