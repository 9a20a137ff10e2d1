//! `GET /metrics`: Prometheus text exposition format 0.0.4, named by the
//! Prometheus conventions (`klosetd_` prefix, base units, `_total` for
//! counters, `_timestamp_seconds` for times).

use std::fmt::Write;

use hyper::StatusCode;

use super::Ctx;
use super::response::{Reply, with_type};
use crate::state::{ScheduleState, TaskStatus};
use crate::status::StoreCounters;
use chrono::{DateTime, Utc};

/// Reads one time of a schedule's state.
type ScheduleTime = fn(&ScheduleState) -> Option<DateTime<Utc>>;

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every metric.
pub async fn metrics(ctx: &Ctx) -> Reply {
    let live = &ctx.live;
    let config = live.config_status();
    let mut out = String::with_capacity(4096);

    header(
        &mut out,
        "klosetd_config_reload_success",
        "gauge",
        "Whether the latest attempted configuration was valid and is applied (1) or not (0).",
    );
    let ok = config.valid && config.applied_revision == config.attempted_revision;
    let _ = writeln!(out, "klosetd_config_reload_success {}", u8::from(ok));
    header(
        &mut out,
        "klosetd_config_reloads_total",
        "counter",
        "Configuration attempts that changed the revision or its validity.",
    );
    let _ = writeln!(out, "klosetd_config_reloads_total {}", config.reloads);
    header(
        &mut out,
        "klosetd_config_reload_failures_total",
        "counter",
        "Configuration attempts that were invalid.",
    );
    let _ = writeln!(
        out,
        "klosetd_config_reload_failures_total {}",
        config.reload_failures
    );
    header(
        &mut out,
        "klosetd_config_info",
        "gauge",
        "The applied and latest attempted configuration revisions (always 1).",
    );
    let _ = writeln!(
        out,
        "klosetd_config_info{{applied_revision=\"{}\",attempted_revision=\"{}\"}} 1",
        label(config.applied_revision.as_deref().unwrap_or("")),
        label(config.attempted_revision.as_deref().unwrap_or(""))
    );
    header(
        &mut out,
        "klosetd_config_apply_failures",
        "gauge",
        "Failed attempts in a row to apply the latest valid configuration (0: none waiting).",
    );
    let failures = config.apply_failure.as_ref().map_or(0, |f| f.failures);
    let _ = writeln!(out, "klosetd_config_apply_failures {failures}");
    header(
        &mut out,
        "klosetd_faults",
        "gauge",
        "Daemon bookkeeping steps failing now (see faults in /api/v1/status).",
    );
    let _ = writeln!(out, "klosetd_faults {}", live.faults().len());

    header(
        &mut out,
        "klosetd_object_ready",
        "gauge",
        "Whether each store, source, destination and schedule is ready (1) or not (0).",
    );
    for ((kind, name), c) in live.conditions() {
        let _ = writeln!(
            out,
            "klosetd_object_ready{{kind=\"{kind}\",name=\"{}\",reason=\"{}\"}} {}",
            label(&name),
            label(&c.reason),
            u8::from(c.ready)
        );
    }

    let applied = live.applied();
    let states = ctx
        .db
        .call(|db| db.all_schedule_states())
        .await
        .unwrap_or_default();
    let declared = |name: &str| {
        applied
            .as_ref()
            .is_some_and(|a| a.schedules.contains_key(name))
    };
    let times: [(&str, &str, ScheduleTime); 3] = [
        (
            "klosetd_schedule_last_success_timestamp_seconds",
            "When each schedule's last successful or partial run ended (Unix time).",
            |s| s.last_success_at,
        ),
        (
            "klosetd_schedule_last_run_timestamp_seconds",
            "When each schedule's last run ended, whatever its status (Unix time).",
            |s| s.last_finished_at,
        ),
        (
            "klosetd_schedule_last_failure_timestamp_seconds",
            "When each schedule's last failed run ended (Unix time).",
            |s| s.last_failure_at,
        ),
    ];
    for (name, help, time) in times {
        header(&mut out, name, "gauge", help);
        for s in states.iter().filter(|s| declared(&s.name)) {
            if let Some(t) = time(s) {
                let _ = writeln!(
                    out,
                    "{name}{{schedule=\"{}\"}} {}",
                    label(&s.name),
                    t.timestamp_millis() as f64 / 1000.0
                );
            }
        }
    }
    header(
        &mut out,
        "klosetd_schedule_last_duration_seconds",
        "gauge",
        "How long each schedule's last run took.",
    );
    for s in states.iter().filter(|s| declared(&s.name)) {
        if let Some(ms) = s.last_duration_ms {
            let _ = writeln!(
                out,
                "klosetd_schedule_last_duration_seconds{{schedule=\"{}\"}} {}",
                label(&s.name),
                ms as f64 / 1000.0
            );
        }
    }
    header(
        &mut out,
        "klosetd_schedule_last_added_bytes",
        "gauge",
        "New bytes stored by each schedule's last backup.",
    );
    for s in states.iter().filter(|s| declared(&s.name)) {
        if let Some(b) = s.last_bytes_added {
            let _ = writeln!(
                out,
                "klosetd_schedule_last_added_bytes{{schedule=\"{}\"}} {b}",
                label(&s.name)
            );
        }
    }
    header(
        &mut out,
        "klosetd_schedule_last_status",
        "gauge",
        "Each schedule's last run status: 1 for the current status, 0 for the others.",
    );
    for s in states.iter().filter(|s| declared(&s.name)) {
        if let Some(last) = s.last_status {
            for status in TaskStatus::ALL
                .iter()
                .filter(|s| **s != TaskStatus::Running)
            {
                let _ = writeln!(
                    out,
                    "klosetd_schedule_last_status{{schedule=\"{}\",status=\"{}\"}} {}",
                    label(&s.name),
                    status.as_str(),
                    u8::from(*status == last)
                );
            }
        }
    }
    header(
        &mut out,
        "klosetd_schedule_skipped_runs_total",
        "counter",
        "Runs skipped because the previous run was still going or the daemon was down.",
    );
    for s in states.iter().filter(|s| declared(&s.name)) {
        let _ = writeln!(
            out,
            "klosetd_schedule_skipped_runs_total{{schedule=\"{}\"}} {}",
            label(&s.name),
            s.skipped_count
        );
    }

    header(
        &mut out,
        "klosetd_tasks_total",
        "counter",
        "Finished task runs by kind and status (running ones are in klosetd_tasks_running).",
    );
    let counts = ctx.db.call(|db| db.task_counts()).await.unwrap_or_default();
    for c in counts.iter().filter(|c| c.status != TaskStatus::Running) {
        let _ = writeln!(
            out,
            "klosetd_tasks_total{{kind=\"{}\",status=\"{}\"}} {}",
            c.kind.as_str(),
            c.status.as_str(),
            c.count
        );
    }
    let bytes = ctx.db.call(|db| db.byte_totals()).await.unwrap_or_default();
    for (name, help, value) in [
        (
            "klosetd_backup_source_bytes_total",
            "Logical bytes of the files covered by succeeded backups (unchanged files included).",
            bytes.backup_source,
        ),
        (
            "klosetd_backup_added_bytes_total",
            "New plaintext bytes added to stores by succeeded backups.",
            bytes.backup_added,
        ),
        (
            "klosetd_backup_deduplicated_bytes_total",
            "Bytes of succeeded backups that were already in the store (source minus added).",
            bytes.backup_source.saturating_sub(bytes.backup_added),
        ),
        (
            "klosetd_backup_written_bytes_total",
            "Bytes succeeded backups wrote to storage (compressed and encrypted).",
            bytes.backup_stored,
        ),
        (
            "klosetd_restore_written_bytes_total",
            "Bytes succeeded restores wrote.",
            bytes.restore_written,
        ),
    ] {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    header(
        &mut out,
        "klosetd_tasks_running",
        "gauge",
        "Tasks running now (or waiting for a permit).",
    );
    let _ = writeln!(out, "klosetd_tasks_running {}", live.running_tasks().len());
    maintenance(&mut out, live);
    alerts(&mut out, live);
    with_type(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        out,
    )
}

/// Reads one counter of a store.
type Pick = fn(&StoreCounters) -> u64;

/// Prune and retention counters (since the daemon started) and the lock
/// poller's gauges, by store; every configured store is listed.
fn maintenance(out: &mut String, live: &crate::status::Live) {
    let counters = live.store_counters();
    let mut stores: std::collections::BTreeSet<String> = counters.keys().cloned().collect();
    if let Some(desired) = live.applied() {
        stores.extend(desired.stores.keys().cloned());
    }
    let count = |store: &str, pick: Pick| counters.get(store).map(pick).unwrap_or(0);
    let rows: [(&str, &str, Pick); 3] = [
        (
            "klosetd_prune_freed_bytes_total",
            "Bytes of packs deleted by prune tasks, by store.",
            |c| c.prune_freed_bytes,
        ),
        (
            "klosetd_prune_repacked_packs_total",
            "Packs rewritten by prune tasks, by store.",
            |c| c.prune_repacked_packs,
        ),
        (
            "klosetd_retention_forgotten_snapshots_total",
            "Snapshots forgotten by the retention of backup schedules, by store.",
            |c| c.retention_forgotten,
        ),
    ];
    for (name, help, pick) in rows {
        header(out, name, "counter", help);
        for store in &stores {
            let _ = writeln!(
                out,
                "{name}{{store=\"{}\"}} {}",
                label(store),
                count(store, pick)
            );
        }
    }
    let locks = live.locks();
    header(
        out,
        "klosetd_store_lock_holders",
        "gauge",
        "Holders of locks on each store at the latest poll (every minute; stores that could not be opened are absent).",
    );
    for (store, l) in &locks {
        let _ = writeln!(
            out,
            "klosetd_store_lock_holders{{store=\"{}\"}} {}",
            label(store),
            l.holders
        );
    }
    header(
        out,
        "klosetd_store_oldest_lock_age_seconds",
        "gauge",
        "Age of the oldest lock holder on each store at the latest poll, by the holder's clock (0 with none).",
    );
    for (store, l) in &locks {
        let _ = writeln!(
            out,
            "klosetd_store_oldest_lock_age_seconds{{store=\"{}\"}} {:.3}",
            label(store),
            l.oldest_age_s
        );
    }
}

/// Staleness of schedules with `alert_after`, and the notification queue
/// by channel (every declared channel is listed).
fn alerts(out: &mut String, live: &crate::status::Live) {
    let applied = live.applied();
    let stale = live.stale();
    let watched: Vec<(&String, u64)> = applied
        .as_deref()
        .map(|d| {
            d.schedules
                .values()
                .filter_map(|s| s.alert_after.map(|a| (&s.name, a.as_secs())))
                .collect()
        })
        .unwrap_or_default();
    header(
        out,
        "klosetd_schedule_stale",
        "gauge",
        "Whether each schedule with alert_after has had no success for longer than that (1) or not (0).",
    );
    for (name, _) in &watched {
        let _ = writeln!(
            out,
            "klosetd_schedule_stale{{schedule=\"{}\"}} {}",
            label(name),
            u8::from(stale.contains_key(*name))
        );
    }
    header(
        out,
        "klosetd_schedule_alert_after_seconds",
        "gauge",
        "Each schedule's alert_after: the longest time without a success before it is stale.",
    );
    for (name, secs) in &watched {
        let _ = writeln!(
            out,
            "klosetd_schedule_alert_after_seconds{{schedule=\"{}\"}} {secs}",
            label(name)
        );
    }
    let health = live.notifications();
    let deliveries = live.deliveries();
    let mut channels: std::collections::BTreeSet<String> = deliveries.keys().cloned().collect();
    channels.extend(health.iter().map(|h| h.channel.clone()));
    if let Some(d) = &applied {
        channels.extend(d.notify.keys().cloned());
    }
    let queue = |name: &str| health.iter().find(|h| h.channel == name);
    for (metric, help, pick) in [
        (
            "klosetd_notifications_pending",
            "Notifications waiting for delivery, by channel.",
            (|h| h.pending) as fn(&crate::state::ChannelHealth) -> u64,
        ),
        (
            "klosetd_notifications_retrying",
            "Notifications waiting for delivery that failed at least once, by channel.",
            |h| h.retrying,
        ),
    ] {
        header(out, metric, "gauge", help);
        for c in &channels {
            let _ = writeln!(
                out,
                "{metric}{{channel=\"{}\"}} {}",
                label(c),
                queue(c).map(pick).unwrap_or(0)
            );
        }
    }
    header(
        out,
        "klosetd_notification_deliveries_total",
        "counter",
        "Delivery attempts since the daemon started, by channel and result (delivered, failed: retried later, dropped: given up).",
    );
    for c in &channels {
        let d = deliveries.get(c).copied().unwrap_or_default();
        for (result, n) in [
            ("delivered", d.delivered),
            ("failed", d.failed.saturating_sub(d.dropped)),
            ("dropped", d.dropped),
        ] {
            let _ = writeln!(
                out,
                "klosetd_notification_deliveries_total{{channel=\"{}\",result=\"{result}\"}} {n}",
                label(c)
            );
        }
    }
}
