//! The overview page (`/`): the configuration revision, its validity and
//! every problem first; then the runs going now, the stores (condition,
//! storage type, snapshot count, sizes), the schedules (last status, last
//! and next run, condition) and the 20 most recent runs. A store that
//! cannot be read in time shows why instead of holding the page.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use tokio::time::Instant;

use super::html::{self, badge, dash, esc, href, link, name};
use super::{Ctx, Failure, Page, tasks};
use crate::config::desired::{Action, StoreDef};
use crate::config::model::StorageType;
use crate::state::{ConditionRecord, ObjectKind, ScheduleState, TaskFilter};
use crate::status::short;

/// Runs listed on the overview.
const RECENT: u32 = 20;
/// How long the page waits for all store statistics together.
const STORES_BUDGET: Duration = Duration::from_secs(8);

/// A condition badge; the message shows below it when not ready.
pub fn condition(c: Option<&ConditionRecord>) -> String {
    match c {
        None => badge("idle", "unknown"),
        Some(c) if c.ready => format!(
            "<span title=\"{}\">{}</span>",
            esc(&c.message),
            badge("ok", &c.reason)
        ),
        Some(c) => format!(
            "{} <div class=\"err\">{}</div>",
            badge("bad", &c.reason),
            esc(&c.message)
        ),
    }
}

fn revision(r: Option<&str>) -> String {
    r.map_or_else(dash, |r| {
        format!(
            "<span class=\"mono\" title=\"{}\">{}</span>",
            esc(r),
            esc(short(r))
        )
    })
}

fn config_card(ctx: &Ctx) -> String {
    let c = ctx.live.config_status();
    let validity = match (&c.attempted_revision, c.valid) {
        (None, _) => badge("bad", "unreadable"),
        (Some(_), true) => badge("ok", "valid"),
        (Some(_), false) => badge("bad", "invalid"),
    };
    let applied_note = if c.applied_revision.is_some() && c.applied_revision == c.attempted_revision
    {
        badge("ok", "applied")
    } else if c.applied_revision.is_some() {
        badge("warn", "older revision keeps running")
    } else {
        badge("bad", "nothing applied")
    };
    let mut out = String::from("<div class=\"card\"><dl class=\"kv\">");
    let _ = write!(
        out,
        "<dt>Config directory</dt><dd class=\"mono\">{}</dd>\
         <dt>Latest attempt</dt><dd>{} {validity} {}</dd>\
         <dt>Applied revision</dt><dd>{} {applied_note} {}</dd>\
         <dt>Reloads</dt><dd>{} ({} invalid)</dd>\
         <dt>Daemon</dt><dd>klosetd {}, started {}</dd>",
        esc(&ctx.live.config_dir.display().to_string()),
        revision(c.attempted_revision.as_deref()),
        html::opt_time(c.attempted_at.as_ref()),
        revision(c.applied_revision.as_deref()),
        html::opt_time(c.applied_at.as_ref()),
        c.reloads,
        c.reload_failures,
        env!("CARGO_PKG_VERSION"),
        html::time(&ctx.live.started_at),
    );
    out.push_str("</dl></div>\n");
    out
}

/// Snapshot count and sizes of a store, or why they are not known.
async fn contents(
    ctx: &Ctx,
    def: &StoreDef,
    deadline: Instant,
) -> Result<kloset::ops::browse::StoreInfo, String> {
    let work = async {
        let repo = super::open(ctx, def, false).await.map_err(|f| f.message)?;
        super::blocking(move || kloset::ops::browse::info(&repo))
            .await
            .map_err(|f| f.message)
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err("no answer in time".into()),
    }
}

async fn stores_table(
    ctx: &Ctx,
    conditions: &BTreeMap<(ObjectKind, String), ConditionRecord>,
) -> String {
    let Some(applied) = ctx.live.applied() else {
        return "<p class=\"muted\">No configuration is applied.</p>".into();
    };
    if applied.stores.is_empty() {
        return "<p class=\"muted\">No store is declared.</p>".into();
    }
    let deadline = Instant::now() + STORES_BUDGET;
    let mut out = String::from(
        "<table class=\"stores\">\n<thead><tr><th>Store</th><th>Condition</th><th>Type</th>\
         <th>Location</th><th class=\"num\">Snapshots</th><th class=\"num\">Size</th>\
         <th class=\"num\">Stored</th></tr></thead>\n<tbody>\n",
    );
    for def in applied.stores.values() {
        let cond = conditions.get(&(ObjectKind::Store, def.name.clone()));
        let (count, logical, stored) = match contents(ctx, def, deadline).await {
            Ok(i) => (
                i.snapshots.to_string(),
                html::bytes(i.logical_bytes),
                html::bytes(i.stored_bytes),
            ),
            Err(e) => (
                format!("<span class=\"muted\" title=\"{}\">unknown</span>", esc(&e)),
                dash(),
                dash(),
            ),
        };
        let kind = match def.storage_type {
            StorageType::Standard => badge("idle", "standard"),
            StorageType::Cold => badge("run", "cold"),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{kind}</td><td class=\"mono\">{}</td>\
             <td class=\"num\">{count}</td><td class=\"num\">{logical}</td><td class=\"num\">{stored}</td></tr>",
            link(&href(&["ui", "stores", &def.name]), &name(&def.name)),
            condition(cond),
            esc(&def.endpoint.location),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// What a schedule runs: `backup src → store`.
pub fn action(a: &Action) -> String {
    let store = |s: &str| link(&href(&["ui", "stores", s]), &name(s));
    match a {
        Action::Backup {
            source, store: s, ..
        } => {
            format!("backup {} → {}", name(source), store(s))
        }
        Action::Check { store: s, .. } => format!("check {}", store(s)),
        Action::Sync { store: s, to, .. } => format!("sync {} → {}", store(s), store(to)),
        Action::Restore {
            store: s,
            destination,
            ..
        } => format!("restore {} → {}", store(s), name(destination)),
        Action::Prune { store: s, .. } => format!("prune {}", store(s)),
    }
}

async fn schedules_table(
    ctx: &Ctx,
    conditions: &BTreeMap<(ObjectKind, String), ConditionRecord>,
) -> String {
    let Some(applied) = ctx.live.applied() else {
        return String::new();
    };
    if applied.schedules.is_empty() {
        return "<p class=\"muted\">No schedule is declared.</p>".into();
    }
    let (states, db_error) = match ctx.db.call(|db| db.all_schedule_states()).await {
        Ok(l) => (l, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let states: BTreeMap<String, ScheduleState> =
        states.into_iter().map(|s| (s.name.clone(), s)).collect();
    let mut out = String::new();
    if let Some(e) = db_error {
        let _ = write!(
            out,
            "<div class=\"problems\">state database: {}</div>",
            esc(&e)
        );
    }
    out.push_str(
        "<table class=\"schedules\">\n<thead><tr><th>Schedule</th><th>Runs</th><th>When</th>\
         <th>Last status</th><th>Last finished</th><th class=\"num\">Duration</th>\
         <th>Next run</th><th>Condition</th></tr></thead>\n<tbody>\n",
    );
    let stale = ctx.live.stale();
    for def in applied.schedules.values() {
        let s = states.get(&def.name).cloned().unwrap_or_default();
        let last = match s.last_status {
            Some(st) => html::status(st),
            None => badge("idle", "never ran"),
        };
        let skipped = if s.skipped_count > 0 {
            format!(" <span class=\"muted\">{} skipped</span>", s.skipped_count)
        } else {
            String::new()
        };
        let running = if ctx
            .live
            .is_running(&crate::state::Origin::Schedule(def.name.clone()))
        {
            format!(" {}", badge("run", "running"))
        } else {
            String::new()
        };
        let running = if stale.contains_key(&def.name) {
            format!("{running} {}", badge("warn", "stale"))
        } else {
            running
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"nowrap\">{}</td><td class=\"nowrap\"><span class=\"mono\">{}</span> \
             <span class=\"muted\">{}</span></td><td>{last}{running}{skipped}</td>\
             <td class=\"nowrap\">{}</td><td class=\"num\">{}</td><td class=\"nowrap\">{}</td><td>{}</td></tr>",
            link(&href(&["ui", "schedules", &def.name]), &name(&def.name)),
            action(&def.action),
            esc(&def.cron),
            esc(&def.timezone),
            html::opt_time(s.last_finished_at.as_ref()),
            s.last_duration_ms.map_or_else(dash, html::duration_ms),
            html::opt_time(ctx.live.next_run(&def.name).as_ref()),
            condition(conditions.get(&(ObjectKind::Schedule, def.name.clone()))),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// `GET /`.
pub async fn page(ctx: &Ctx) -> Result<Page, Failure> {
    let problems = ctx.live.problems();
    let conditions = ctx.live.conditions();
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Overview {}</h1>",
        if problems.is_empty() {
            badge("ok", "ready")
        } else {
            badge("bad", "degraded")
        }
    );
    if !problems.is_empty() {
        body.push_str("<div class=\"problems\"><h2>Problems</h2><ul>");
        for p in &problems {
            let _ = write!(body, "<li>{}</li>", esc(p.trim_start()));
        }
        body.push_str("</ul></div>\n");
    }
    let warnings = ctx.live.warnings();
    if !warnings.is_empty() {
        body.push_str("<div class=\"warnings\"><h2>Warnings</h2><ul>");
        for w in &warnings {
            let _ = write!(body, "<li>{}</li>", esc(w));
        }
        body.push_str("</ul></div>\n");
    }
    body.push_str("<h2>Configuration</h2>\n");
    body.push_str(&config_card(ctx));
    let running = ctx.live.running_tasks();
    body.push_str(&tasks::running_table(&running));
    body.push_str("<h2>Stores</h2>\n");
    body.push_str(&stores_table(ctx, &conditions).await);
    body.push_str("<h2>Schedules</h2>\n");
    body.push_str(&schedules_table(ctx, &conditions).await);
    let _ = writeln!(body, "<h2>Recent tasks</h2>");
    let filter = TaskFilter {
        limit: Some(RECENT),
        ..Default::default()
    };
    match ctx.db.call(move |db| db.list_tasks(&filter)).await {
        Ok(list) => body.push_str(&tasks::table(&list, &running, true)),
        Err(e) => {
            let _ = write!(
                body,
                "<div class=\"problems\">state database: {}</div>",
                esc(&e.to_string())
            );
        }
    }
    let _ = write!(
        body,
        "<p class=\"muted\">Full history: {}</p>",
        link("/api/v1/tasks", "<code>/api/v1/tasks</code>")
    );
    Ok(Page {
        title: "Overview".into(),
        crumbs: Vec::new(),
        body,
        rest: None,
    })
}
