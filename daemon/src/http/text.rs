//! The plain-text endpoints for curl and probes: `/healthz` (alive),
//! `/readyz` (200 only when the latest config is valid and applied and
//! every object is ready, else 503 with the reasons) and `/status` (a short
//! summary like `systemctl status`, problems first; 503 when degraded).

use std::fmt::Write;

use chrono::Utc;
use hyper::StatusCode;

use super::Ctx;
use super::api::time;
use super::response::{Reply, text};
use crate::state::Origin;
use crate::status::short;

/// `GET /healthz`: the process answers.
pub fn healthz() -> Reply {
    text(StatusCode::OK, "ok\n".into())
}

/// `GET /readyz`.
pub fn readyz(ctx: &Ctx) -> Reply {
    let problems = ctx.live.problems();
    if problems.is_empty() {
        // Warnings (a stale schedule, a failing notification channel) are
        // listed but keep the code: restarting or rerouting around the
        // daemon, which is what a failing probe makes an orchestrator do,
        // fixes neither. Alert on them from /metrics or notifications.
        let mut body = String::from("ready\n");
        for w in ctx.live.warnings() {
            let _ = writeln!(body, "warning: {w}");
        }
        text(StatusCode::OK, body)
    } else {
        let mut body = String::from("not ready\n");
        for p in problems {
            let _ = writeln!(body, "{p}");
        }
        for w in ctx.live.warnings() {
            let _ = writeln!(body, "warning: {w}");
        }
        text(StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

fn ago(t: chrono::DateTime<Utc>) -> String {
    let secs = (Utc::now() - t).num_seconds();
    if secs < 0 {
        format!(
            "in {}",
            humantime::format_duration(std::time::Duration::from_secs(secs.unsigned_abs()))
        )
    } else {
        format!(
            "{} ago",
            humantime::format_duration(std::time::Duration::from_secs(secs as u64))
        )
    }
}

/// `GET /status`.
pub async fn status(ctx: &Ctx) -> Reply {
    let live = &ctx.live;
    let config = live.config_status();
    let problems = live.problems();
    let mut out = String::new();
    let state = if problems.is_empty() {
        "ready"
    } else {
        "degraded"
    };
    let _ = writeln!(out, "klosetd {} — {state}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(out, "config:   {}", live.config_dir.display());
    let applied = config
        .applied_revision
        .as_deref()
        .map_or("none".to_string(), |r| short(r).to_string());
    let attempted = match (&config.attempted_revision, config.valid) {
        (Some(r), true) => format!("{} (valid)", short(r)),
        (Some(r), false) => format!("{} (INVALID)", short(r)),
        (None, _) => "none (directory unreadable)".to_string(),
    };
    let _ = writeln!(
        out,
        "revision: applied {applied}, latest attempt {attempted}"
    );
    if !problems.is_empty() {
        let _ = writeln!(out, "\nproblems:");
        for p in &problems {
            let _ = writeln!(out, "  ! {p}");
        }
    }
    let warnings = live.warnings();
    if !warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for w in &warnings {
            let _ = writeln!(out, "  ~ {w}");
        }
    }
    let running = live.running_tasks();
    let _ = writeln!(out, "\nrunning: {}", running.len());
    for t in &running {
        let p = t.progress.snapshot();
        let id = t.id.map_or("-".to_string(), |i| i.to_string());
        let _ = writeln!(
            out,
            "  task {id} {} {} on {}: {} files, {} (started {})",
            t.kind.as_str(),
            match &t.origin {
                Origin::Schedule(n) => format!("schedule {n}"),
                Origin::Task(n) => format!("task {n}"),
            },
            t.store,
            p.files,
            bytesize::ByteSize(p.bytes),
            ago(t.started_at)
        );
    }
    if let Some(applied) = live.applied() {
        let states = ctx
            .db
            .call(|db| db.all_schedule_states())
            .await
            .unwrap_or_default();
        let _ = writeln!(out, "\nschedules: {}", applied.schedules.len());
        for (name, def) in &applied.schedules {
            let s = states.iter().find(|s| &s.name == name);
            let last = match s.and_then(|s| s.last_finished_at.zip(s.last_status)) {
                Some((at, status)) => format!("{} {}", status.as_str(), ago(at)),
                None => "never ran".to_string(),
            };
            let next = live
                .next_run(name)
                .map_or("none".to_string(), |t| format!("{} ({})", time(&t), ago(t)));
            let _ = writeln!(
                out,
                "  {name}: {} \"{}\" {}; last {last}; next {next}",
                def.action.kind().as_str(),
                def.cron,
                def.timezone
            );
        }
    }
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(code, out)
}
