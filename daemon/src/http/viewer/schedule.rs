//! One schedule (`/ui/schedules/NAME`): its definition and state, plots of
//! the duration and bytes added of its succeeded runs over time (from the
//! task history), and a table of its recent runs. A schedule removed from
//! the configuration still shows its history.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::html::{self, Crumb, badge, dash, esc, name};
use super::overview::{action, condition};
use super::svg::{BYTE_UNITS, DURATION_UNITS, plot};
use super::{Ctx, Failure, Page, tasks};
use crate::state::{ObjectKind, Origin, OriginKind, TaskFilter, TaskRecord, TaskStatus};

/// Succeeded runs plotted.
const PLOTTED: u32 = 200;
/// Runs listed.
const LISTED: u32 = 30;

fn filter(schedule: &str, status: Option<TaskStatus>, limit: u32) -> TaskFilter {
    TaskFilter {
        origin_kind: Some(OriginKind::Schedule),
        origin_name: Some(schedule.to_string()),
        status,
        limit: Some(limit),
        ..Default::default()
    }
}

async fn history(ctx: &Ctx, f: TaskFilter) -> Result<Vec<TaskRecord>, Failure> {
    ctx.db.call(move |db| db.list_tasks(&f)).await.map_err(|e| {
        Failure::new(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            format!("state database: {e}"),
        )
    })
}

/// (start time, value) of every run that has the value.
fn series(
    runs: &[TaskRecord],
    value: impl Fn(&TaskRecord) -> Option<u64>,
) -> Vec<(DateTime<Utc>, f64)> {
    runs.iter()
        .filter_map(|t| value(t).map(|v| (t.started_at, v as f64)))
        .collect()
}

fn definition(ctx: &Ctx, schedule: &str) -> String {
    let Some(def) = ctx
        .live
        .applied()
        .and_then(|a| a.schedules.get(schedule).cloned())
    else {
        return "<div class=\"problems\">This schedule is not in the applied configuration; \
                its history is kept.</div>\n"
            .into();
    };
    let conditions = ctx.live.conditions();
    format!(
        "<div class=\"card\"><dl class=\"kv\">\
         <dt>Runs</dt><dd>{}</dd>\
         <dt>When</dt><dd><span class=\"mono\">{}</span> {} \
         <span class=\"muted\">jitter {} s, catch-up {}</span></dd>\
         <dt>Next run</dt><dd>{}</dd>\
         <dt>Condition</dt><dd>{}</dd>\
         <dt>Declared at</dt><dd class=\"mono\">{}:{}</dd>\
         </dl></div>\n",
        action(&def.action),
        esc(&def.cron),
        esc(&def.timezone),
        def.jitter.as_secs(),
        if def.catch_up { "on" } else { "off" },
        html::opt_time(ctx.live.next_run(schedule).as_ref()),
        condition(conditions.get(&(ObjectKind::Schedule, schedule.to_string()))),
        esc(&def.origin.file.display().to_string()),
        def.origin.line,
    )
}

async fn state(ctx: &Ctx, schedule: &str) -> String {
    let n = schedule.to_string();
    let s = match ctx.db.call(move |db| db.schedule_state(&n)).await {
        Ok(Some(s)) => s,
        Ok(None) => return String::new(),
        Err(e) => {
            return format!(
                "<div class=\"problems\">state database: {}</div>",
                esc(&e.to_string())
            );
        }
    };
    let stale = match ctx.live.stale().get(schedule) {
        Some(info) => format!(
            "<dt>Stale</dt><dd>{} since {}</dd>",
            badge("warn", "stale"),
            html::opt_time(Some(&info.since))
        ),
        None => String::new(),
    };
    format!(
        "<div class=\"card\"><dl class=\"kv\">{stale}\
         <dt>Last status</dt><dd>{}</dd>\
         <dt>Last run (cron time)</dt><dd>{}</dd>\
         <dt>Last finished</dt><dd>{}</dd>\
         <dt>Last success</dt><dd>{}</dd>\
         <dt>Last duration</dt><dd>{}</dd>\
         <dt>Last bytes added</dt><dd>{}</dd>\
         <dt>Skipped runs</dt><dd>{}</dd>\
         </dl></div>\n",
        s.last_status
            .map_or_else(|| badge("idle", "never ran"), html::status),
        html::opt_time(s.last_run_at.as_ref()),
        html::opt_time(s.last_finished_at.as_ref()),
        html::opt_time(s.last_success_at.as_ref()),
        s.last_duration_ms.map_or_else(dash, html::duration_ms),
        s.last_bytes_added.map_or_else(dash, html::bytes),
        s.skipped_count,
    )
}

/// `GET /ui/schedules/NAME`.
pub async fn page(ctx: &Ctx, schedule: &str) -> Result<Page, Failure> {
    let succeeded = history(ctx, filter(schedule, Some(TaskStatus::Succeeded), PLOTTED)).await?;
    let recent = history(ctx, filter(schedule, None, LISTED)).await?;
    let declared = ctx
        .live
        .applied()
        .is_some_and(|a| a.schedules.contains_key(schedule));
    if !declared && recent.is_empty() {
        return Err(Failure::not_found(format!(
            "no schedule named {schedule:?}"
        )));
    }
    let mut body = format!(
        "<h1>Schedule <span class=\"mono\">{}</span></h1>\n",
        name(schedule)
    );
    body.push_str("<div class=\"cards\">");
    body.push_str(&definition(ctx, schedule));
    body.push_str(&state(ctx, schedule).await);
    body.push_str("</div>\n");
    let running: Vec<_> = ctx
        .live
        .running_tasks()
        .into_iter()
        .filter(|t| t.origin == Origin::Schedule(schedule.to_string()))
        .collect();
    body.push_str(&tasks::running_table(&running));

    let durations = series(&succeeded, |t| t.duration_ms);
    let added = series(&succeeded, |t| {
        t.stats.as_ref()?.get("bytes_added")?.as_u64()
    });
    let _ = write!(
        body,
        "<h2>Succeeded runs over time <span class=\"muted\">({} plotted)</span></h2>\n\
         <div class=\"plots\">\
         <figure class=\"plot\" id=\"plot-duration\"><h3>Duration</h3>{}</figure>\
         <figure class=\"plot\" id=\"plot-bytes-added\"><h3>Bytes added</h3>{}</figure></div>\n",
        succeeded.len(),
        plot(
            "Duration of succeeded runs",
            &durations,
            DURATION_UNITS,
            "#2f6fd0"
        ),
        if added.is_empty() && !succeeded.is_empty() {
            "<p class=\"muted\">This task adds no data (only backups do).</p>".to_string()
        } else {
            plot(
                "Bytes added by succeeded runs",
                &added,
                BYTE_UNITS,
                "#1f8a4c",
            )
        },
    );
    let _ = write!(
        body,
        "<h2>Recent runs</h2>\n{}<p class=\"muted\">Full history: {}</p>",
        tasks::table(&recent, &running, false),
        html::link(
            &format!("/api/v1/tasks?schedule={}", html::seg(schedule)),
            &format!("<code>/api/v1/tasks?schedule={}</code>", name(schedule))
        )
    );
    Ok(Page {
        title: format!("Schedule {schedule}"),
        crumbs: vec![
            Crumb::link("/".into(), "Overview".into()),
            Crumb::here(format!(
                "schedule <span class=\"mono\">{}</span>",
                name(schedule)
            )),
        ],
        body,
        rest: None,
    })
}
