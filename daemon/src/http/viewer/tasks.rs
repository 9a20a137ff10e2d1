//! Task tables shared by the overview and the schedule pages: recorded runs
//! (status, times, duration, result or error) and the runs going now with
//! their live progress, read from the live state without waiting on them.

use std::fmt::Write;

use chrono::Utc;

use super::html::{self, dash, esc, href, link, name};
use crate::state::{Origin, TaskKind, TaskRecord};
use crate::status::RunningTask;

/// Where a run comes from, linked when it is a schedule.
fn origin(o: &Origin) -> String {
    match o {
        Origin::Schedule(n) => format!(
            "<span class=\"muted\">schedule</span> {}",
            link(&href(&["ui", "schedules", n]), &name(n))
        ),
        Origin::Task(n) => format!("<span class=\"muted\">task</span> {}", name(n)),
    }
}

fn store(s: Option<&str>) -> String {
    s.map_or_else(dash, |s| link(&href(&["ui", "stores", s]), &name(s)))
}

/// `12 files, 3.4 MiB` of a running task.
fn progress(task: &RunningTask) -> String {
    let p = task.progress.snapshot();
    let mut out = format!("{} files, {}", p.files, html::bytes(p.bytes));
    if p.total_bytes > 0 {
        let pct = (p.bytes as f64 / p.total_bytes as f64 * 100.0).min(100.0);
        let _ = write!(out, " of {} ({pct:.0}%)", html::bytes(p.total_bytes));
    }
    out
}

fn stat(t: &TaskRecord, key: &str) -> Option<u64> {
    t.stats.as_ref()?.get(key)?.as_u64()
}

/// The result cell: the snapshot written, bytes added, the error.
fn result(t: &TaskRecord) -> String {
    let mut out = String::new();
    if let (Some(id), Some(s)) = (&t.snapshot_id, &t.store) {
        let short = id.get(..8).unwrap_or(id);
        let label = format!("<span class=\"mono\">{}</span>", esc(short));
        if t.kind == TaskKind::Backup {
            let _ = write!(
                out,
                "snapshot {}",
                link(
                    &format!("{}/", href(&["ui", "stores", s, "snapshots", id, "tree"])),
                    &label
                )
            );
        } else {
            let _ = write!(out, "snapshot {label}");
        }
        if let Some(b) = stat(t, "bytes_added") {
            let _ = write!(out, " <span class=\"muted\">+{}</span>", html::bytes(b));
        }
    }
    if let Some(r) = &t.reason {
        let _ = write!(out, "<div class=\"muted\">{}</div>", esc(r));
    }
    if let Some(e) = &t.error {
        let _ = write!(out, "<div class=\"err\">{}</div>", esc(e));
    }
    if out.is_empty() { dash() } else { out }
}

/// A table of recorded runs, newest first; `with_origin`: add the
/// schedule or task column.
pub fn table(list: &[TaskRecord], running: &[RunningTask], with_origin: bool) -> String {
    if list.is_empty() {
        return "<p class=\"muted\">No task has run yet.</p>".into();
    }
    let mut out =
        String::from("<table class=\"tasks\">\n<thead><tr><th class=\"num\">ID</th><th>Kind</th>");
    if with_origin {
        out.push_str("<th>From</th>");
    }
    out.push_str(
        "<th>Store</th><th>Status</th><th>Started</th><th class=\"num\">Duration</th>\
         <th>Result</th></tr></thead>\n<tbody>\n",
    );
    for t in list {
        let _ = write!(
            out,
            "<tr><td class=\"num mono\">{}</td><td>{}</td>",
            t.id,
            t.kind.as_str()
        );
        if with_origin {
            let _ = write!(out, "<td class=\"nowrap\">{}</td>", origin(&t.origin));
        }
        let live = running.iter().find(|r| r.id == Some(t.id));
        let duration = match (t.duration_ms, live) {
            (Some(ms), _) => html::duration_ms(ms),
            (None, Some(r)) => format!(
                "{} <div class=\"muted\">{}</div>",
                html::duration_ms((Utc::now() - r.started_at).num_milliseconds().max(0) as u64),
                esc(&progress(r))
            ),
            (None, None) => dash(),
        };
        let _ = writeln!(
            out,
            "<td>{}</td><td>{}</td><td class=\"nowrap\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            store(t.store.as_deref()),
            html::status(t.status),
            html::time(&t.started_at),
            duration,
            result(t)
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// The runs going now, with live progress; empty when none is.
pub fn running_table(running: &[RunningTask]) -> String {
    if running.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Running now</h2>\n<table class=\"running\">\n<thead><tr><th class=\"num\">ID</th>\
         <th>Kind</th><th>From</th><th>Store</th><th>Started</th><th>Progress</th></tr></thead>\n<tbody>\n",
    );
    for r in running {
        let _ = writeln!(
            out,
            "<tr><td class=\"num mono\">{}</td><td>{}</td><td class=\"nowrap\">{}</td><td>{}</td>\
             <td class=\"nowrap\">{}</td><td>{} {}</td></tr>",
            r.id.map_or_else(dash, |i| i.to_string()),
            r.kind.as_str(),
            origin(&r.origin),
            store(Some(&r.store)),
            html::time(&r.started_at),
            html::badge("run", "running"),
            esc(&progress(r))
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out
}
