//! Staleness on a manual clock: a schedule with `alert_after` becomes stale
//! once, raises one `stale` message per episode (not again on later ticks or
//! after a restart), and the success that ends the episode raises one
//! `recovery`; a failed run raises `failure`.

use super::Daemon;
use super::tests::{Setup, fires_at, started, utc};
use crate::state::{NotifyEvent, TaskStatus};

/// A daily check at 03:00 with `alert_after = "1h"`, reporting to a webhook
/// nobody listens on (no delivery loop runs here: the queue is read).
const SCHEDULE: &str = "cron = \"0 3 * * *\"\nalert_after = \"1h\"\nnotify = [\"ops\"]\n\n\
     [notify.ops]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n";

impl Daemon {
    /// Every queued message, oldest first: (channel, event, body).
    async fn queued(&self) -> Vec<(String, NotifyEvent, serde_json::Value)> {
        let far = utc("2100-01-01T00:00:00Z");
        self.db
            .call(move |db| db.due_notifications(far, 1000))
            .await
            .expect("queue")
            .into_iter()
            .map(|m| (m.channel, m.event, m.body))
            .collect()
    }

    fn events(list: &[(String, NotifyEvent, serde_json::Value)]) -> Vec<NotifyEvent> {
        list.iter().map(|(_, e, _)| *e).collect()
    }
}

#[tokio::test]
async fn a_stale_schedule_alerts_once_per_episode_and_recovers_once() {
    let setup = Setup::new("2026-06-01T03:30:00Z", SCHEDULE);
    let mut d = started(&setup).await;
    assert!(d.live.stale().is_empty());
    assert!(d.live.warnings().is_empty());

    // Never succeeded: measured from when watching began (03:30).
    setup.at("2026-06-01T04:29:59Z");
    d.tick().await;
    assert!(d.live.stale().is_empty(), "not before alert_after");
    setup.at("2026-06-01T04:30:00Z");
    d.tick().await;
    let stale = d.live.stale();
    let info = stale.get("nightly").expect("stale at 04:30");
    assert_eq!(info.since, utc("2026-06-01T04:30:00Z"));
    assert_eq!(info.last_success_at, None);
    let warnings = d.live.warnings().join("\n");
    assert!(
        warnings.contains("schedule.nightly is stale since 2026-06-01T04:30:00Z"),
        "{warnings}"
    );
    assert!(
        d.live.problems().is_empty(),
        "stale is a warning, not a problem"
    );
    let queued = d.queued().await;
    assert_eq!(Daemon::events(&queued), [NotifyEvent::Stale]);
    let body = &queued[0].2;
    assert_eq!(body["version"], 1);
    assert_eq!(body["event"], "stale");
    assert_eq!(body["schedule"], "nightly");
    assert_eq!(body["status"], "stale");
    assert_eq!(body["alert_after_seconds"], 3600);

    // Later ticks and a restart keep the episode without a second message.
    setup.at("2026-06-01T12:00:00Z");
    d.tick().await;
    drop(d);
    let mut d = started(&setup).await;
    d.tick().await;
    assert!(d.live.stale().contains_key("nightly"), "still stale");
    assert_eq!(Daemon::events(&d.queued().await), [NotifyEvent::Stale]);

    // The 03:00 check succeeds: one recovery, and the episode ends.
    let run = fires_at(
        &setup,
        &mut d,
        "2026-06-02T02:59:59Z",
        "2026-06-02T03:00:00Z",
    )
    .await;
    assert_eq!(run.status, TaskStatus::Succeeded, "{:?}", run.error);
    d.tick().await;
    assert!(d.live.stale().is_empty(), "{:?}", d.live.stale());
    let queued = d.queued().await;
    assert_eq!(
        Daemon::events(&queued),
        [NotifyEvent::Stale, NotifyEvent::Recovery]
    );
    let recovery = &queued[1].2;
    assert_eq!(recovery["status"], "succeeded");
    assert_eq!(recovery["task_id"], run.id.0);
    assert!(recovery["last_success_at"].is_string(), "{recovery}");

    // An hour without a success after that: a new episode, a new message.
    setup.at("2026-06-02T04:00:00Z");
    d.tick().await;
    assert!(d.live.stale().contains_key("nightly"));
    assert_eq!(
        Daemon::events(&d.queued().await),
        [
            NotifyEvent::Stale,
            NotifyEvent::Recovery,
            NotifyEvent::Stale
        ]
    );
}

#[tokio::test]
async fn a_larger_alert_after_ends_an_episode_without_a_recovery() {
    let setup = Setup::new("2026-06-01T03:30:00Z", SCHEDULE);
    let mut d = started(&setup).await;
    setup.at("2026-06-01T05:00:00Z");
    d.tick().await;
    assert!(d.live.stale().contains_key("nightly"));
    setup.write(&SCHEDULE.replace("alert_after = \"1h\"", "alert_after = \"36h\""));
    d.read_config(super::Trigger::Watch).await;
    d.settle_tests().await;
    d.tick().await;
    assert!(d.live.stale().is_empty());
    assert_eq!(Daemon::events(&d.queued().await), [NotifyEvent::Stale]);
    let state =
        d.db.call(|db| db.schedule_state("nightly"))
            .await
            .expect("state")
            .expect("exists");
    assert_eq!(state.stale_since, None);
}
