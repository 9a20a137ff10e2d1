//! What a schedule or one-shot task does: required and forbidden keys per
//! task kind, references to declared objects, and value checks.

use super::desired::Action;
use super::load::{Located, RawConfig};
use super::model::{ReadData, TaskKind, TaskTable};
use super::retention;
use super::validate::{Ctx, parse_duration};

/// A prune repacks packs with more than this share unused by default.
const DEFAULT_MAX_UNUSED: f64 = 0.2;
/// A prune repacks at most this much per run by default.
const DEFAULT_MAX_REPACK: u64 = 4 << 30;
/// A prune waits at least this long between marking and deleting by default.
const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

pub(super) fn action(
    cx: &mut Ctx,
    raw: &RawConfig,
    l: &Located<TaskTable>,
    object: &str,
) -> Option<Action> {
    let t = &l.value;
    let kind = t.task;
    let allowed: &[&str] = match kind {
        TaskKind::Backup => &["source", "store", "tags", "retention"],
        TaskKind::Check => &["store", "read_data", "allow_cold_read"],
        TaskKind::Sync => &[
            "store",
            "to",
            "tags_filter",
            "sources_filter",
            "latest",
            "allow_cold_read",
        ],
        TaskKind::Restore => &[
            "store",
            "source",
            "destination",
            "snapshot",
            "path",
            "allow_cold_read",
            "overwrite",
        ],
        TaskKind::Prune => &[
            "store",
            "max_unused",
            "max_repack",
            "grace",
            "allow_cold_read",
        ],
    };
    let present = [
        ("source", t.source.is_some()),
        ("store", t.store.is_some()),
        ("to", t.to.is_some()),
        ("destination", t.destination.is_some()),
        ("tags", !t.tags.is_empty()),
        ("retention", t.retention.is_some()),
        ("read_data", t.read_data.is_some()),
        ("snapshot", t.snapshot.is_some()),
        ("path", t.path.is_some()),
        ("tags_filter", !t.tags_filter.is_empty()),
        ("sources_filter", !t.sources_filter.is_empty()),
        ("latest", t.latest.is_some()),
        ("allow_cold_read", t.allow_cold_read.is_some()),
        ("overwrite", t.overwrite.is_some()),
        ("max_unused", t.max_unused.is_some()),
        ("max_repack", t.max_repack.is_some()),
        ("grace", t.grace.is_some()),
    ];
    let mut ok = true;
    for (key, set) in present {
        if set && !allowed.contains(&key) {
            cx.err(
                l,
                object,
                format!("`{key}` does not apply to a {} task", kind.as_str()),
            );
            ok = false;
        }
    }
    let mut need = |cx: &mut Ctx,
                    key: &str,
                    value: &Option<String>,
                    table: &str,
                    exists: bool|
     -> Option<String> {
        match value {
            None => {
                cx.err(l, object, format!("a {} task needs `{key}`", kind.as_str()));
                ok = false;
                None
            }
            Some(v) if !exists => {
                cx.err(
                    l,
                    object,
                    format!("{key} = {v:?}: no [{table}.{v}] is declared"),
                );
                ok = false;
                None
            }
            Some(v) => Some(v.clone()),
        }
    };
    let store_exists = t.store.as_ref().is_some_and(|s| raw.stores.contains_key(s));
    let store = need(cx, "store", &t.store, "store", store_exists);
    let action = match kind {
        TaskKind::Backup => {
            let exists = t
                .source
                .as_ref()
                .is_some_and(|s| raw.sources.contains_key(s));
            let source = need(cx, "source", &t.source, "source", exists);
            if let Some(table) = &t.retention
                && let Err(e) = retention::policy(table)
            {
                cx.err(l, object, e);
                ok = false;
            }
            Action::Backup {
                source: source?,
                store: store?,
                tags: t.tags.clone(),
                retention: t.retention.clone(),
            }
        }
        TaskKind::Check => {
            let read_data = match &t.read_data {
                None | Some(ReadData::Flag(false)) => None,
                Some(ReadData::Flag(true)) => Some(100.0),
                Some(ReadData::Percent(p)) => Some(*p),
                Some(ReadData::Text(s)) => match s.trim_end_matches('%').trim().parse::<f64>() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        cx.err(
                            l,
                            object,
                            format!("read_data = {s:?}: write true, false, a number or \"10%\""),
                        );
                        ok = false;
                        None
                    }
                },
            };
            if let Some(p) = read_data
                && !(0.0..=100.0).contains(&p)
            {
                cx.err(
                    l,
                    object,
                    format!("read_data = {p}: a percentage is between 0 and 100"),
                );
                ok = false;
            }
            Action::Check {
                store: store?,
                read_data,
                allow_cold_read: t.allow_cold_read.unwrap_or(false),
            }
        }
        TaskKind::Sync => {
            let exists = t.to.as_ref().is_some_and(|s| raw.stores.contains_key(s));
            let to = need(cx, "to", &t.to, "store", exists);
            if t.latest == Some(0) {
                cx.err(l, object, "`latest` must be at least 1");
                ok = false;
            }
            if to.is_some() && to == store {
                cx.err(
                    l,
                    object,
                    "a sync needs two different stores (`store` and `to`)",
                );
                ok = false;
            }
            Action::Sync {
                store: store?,
                to: to?,
                tags: t.tags_filter.clone(),
                sources: t.sources_filter.clone(),
                latest: t.latest,
                allow_cold_read: t.allow_cold_read.unwrap_or(false),
            }
        }
        TaskKind::Restore => {
            let exists = t
                .destination
                .as_ref()
                .is_some_and(|s| raw.destinations.contains_key(s));
            let destination = need(cx, "destination", &t.destination, "destination", exists);
            if let Some(src) = &t.source
                && !raw.sources.contains_key(src)
            {
                cx.err(
                    l,
                    object,
                    format!("source = {src:?}: no [source.{src}] is declared"),
                );
                ok = false;
            }
            let snapshot = t.snapshot.clone().unwrap_or_else(|| "latest".into());
            let is_prefix = !snapshot.is_empty() && snapshot.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_prefix && snapshot != "latest" && snapshot != super::desired::LATEST_READABLE {
                cx.err_at(
                    l,
                    l.line_of_key("snapshot"),
                    object,
                    format!(
                        "snapshot = {snapshot:?}: write \"latest\", \"latest-readable\" or a hex id prefix such as \"4cb295be\""
                    ),
                );
                ok = false;
            }
            let path = t.path.clone().unwrap_or_else(|| "/".into());
            if path.split('/').any(|c| c == "..") {
                cx.err(l, object, format!("path = {path:?} must not contain `..`"));
                ok = false;
            }
            Action::Restore {
                store: store?,
                destination: destination?,
                snapshot,
                path,
                allow_cold_read: t.allow_cold_read.unwrap_or(false),
                // A schedule's restore is a restore test: a fresh directory
                // per snapshot. A one-shot restore is a real restore into
                // the destination itself.
                into_snapshot_dir: object.starts_with("schedule."),
                source: t.source.clone(),
                overwrite: t.overwrite.unwrap_or(false),
            }
        }
        TaskKind::Prune => {
            let max_unused = match t.max_unused.as_ref().map(retention::share) {
                None => Some(DEFAULT_MAX_UNUSED),
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    cx.err(l, object, e);
                    ok = false;
                    None
                }
            };
            let max_repack = match t.max_repack.as_ref().map(retention::size) {
                None => Some(DEFAULT_MAX_REPACK),
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    cx.err(l, object, e);
                    ok = false;
                    None
                }
            };
            let grace = match &t.grace {
                None => Some(DEFAULT_GRACE),
                Some(g) => {
                    let d = parse_duration(cx, l, object, "grace", g);
                    ok &= d.is_some();
                    d
                }
            };
            Action::Prune {
                store: store?,
                max_unused: max_unused?,
                max_repack: max_repack?,
                grace_ms: u64::try_from(grace?.as_millis()).unwrap_or(u64::MAX),
                allow_cold_read: t.allow_cold_read.unwrap_or(false),
            }
        }
    };
    ok.then_some(action)
}
