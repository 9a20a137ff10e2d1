//! `/api/v1/{resources,stores,sources,destinations}` and `/{name}`: the
//! applied objects with their integration, location, condition, and for
//! stores the storage type, snapshot count, sizes and last check result.
//! Credentials show only where they are read from (a file path, lossy for
//! bytes that are not UTF-8, or an environment variable name), never a value.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::Ctx;
use super::api::condition;
use super::response::{Reply, error, json};
use super::stores::OpenError;
use crate::config::desired::{DesiredState, Endpoint, SecretRef};
use crate::state::{ObjectKind, TaskFilter, TaskKind};

/// Which object list.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `[resource.*]`
    Resources,
    /// `[store.*]`
    Stores,
    /// `[source.*]`
    Sources,
    /// `[destination.*]`
    Destinations,
}

impl Kind {
    fn plural(self) -> &'static str {
        match self {
            Kind::Resources => "resources",
            Kind::Stores => "stores",
            Kind::Sources => "sources",
            Kind::Destinations => "destinations",
        }
    }

    fn singular(self) -> &'static str {
        self.plural().trim_end_matches('s')
    }
}

fn endpoint_json(e: &Endpoint) -> Value {
    json!({
        "integration": e.integration,
        "protocol": e.protocol,
        "location": e.location,
        "resource": e.resource,
    })
}

/// Where a secret is read from, never its value: `{"file": PATH}` (lossy
/// for bytes that are not UTF-8, so the answer is always valid JSON) or
/// `{"env": NAME}`.
fn secret_json(s: &SecretRef) -> Value {
    match s {
        SecretRef::File(p) => json!({ "file": p.to_string_lossy() }),
        SecretRef::Env(name) => json!({ "env": name }),
    }
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn names(applied: &DesiredState, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Resources => applied.resources.keys().cloned().collect(),
        Kind::Stores => applied.stores.keys().cloned().collect(),
        Kind::Sources => applied.sources.keys().cloned().collect(),
        Kind::Destinations => applied.destinations.keys().cloned().collect(),
    }
}

async fn one(
    ctx: &Ctx,
    applied: &DesiredState,
    kind: Kind,
    name: &str,
    detail: bool,
) -> Option<Value> {
    let conditions = ctx.live.conditions();
    let cond = |k: ObjectKind| condition(conditions.get(&(k, name.to_string())));
    let declared =
        |o: &crate::config::desired::Declaration| format!("{}:{}", o.file.display(), o.line);
    Some(match kind {
        Kind::Resources => {
            let r = applied.resources.get(name)?;
            json!({
                "name": r.name,
                "class": r.class,
                "subclass": r.subclass,
                "fields": r.fields,
                "credentials": r.credentials.iter()
                    .map(|(k, v)| (k.clone(), secret_json(v)))
                    .collect::<serde_json::Map<String, Value>>(),
                "declared_at": declared(&r.origin),
            })
        }
        Kind::Sources => {
            let s = applied.sources.get(name)?;
            merge(
                json!({ "name": s.name, "excludes": s.excludes, "condition": cond(ObjectKind::Source),
                        "declared_at": declared(&s.origin) }),
                endpoint_json(&s.endpoint),
            )
        }
        Kind::Destinations => {
            let d = applied.destinations.get(name)?;
            merge(
                json!({ "name": d.name, "condition": cond(ObjectKind::Destination),
                        "declared_at": declared(&d.origin) }),
                endpoint_json(&d.endpoint),
            )
        }
        Kind::Stores => {
            let s = applied.stores.get(name)?;
            let filter = TaskFilter {
                kind: Some(TaskKind::Check),
                store: Some(name.to_string()),
                limit: Some(1),
                ..Default::default()
            };
            let last_check = ctx
                .db
                .call(move |db| db.list_tasks(&filter))
                .await
                .ok()
                .and_then(|l| l.into_iter().next())
                .map(|t| serde_json::to_value(t).unwrap_or_default());
            let contents = if detail {
                contents(ctx, s).await
            } else {
                Value::Null
            };
            merge(
                json!({
                    "name": s.name,
                    "storage_type": s.storage_type,
                    "init": s.init,
                    "condition": cond(ObjectKind::Store),
                    "last_check": last_check,
                    "contents": contents,
                    "declared_at": declared(&s.origin),
                }),
                endpoint_json(&s.endpoint),
            )
        }
    })
}

/// Snapshot count and sizes of a store (opens it; `null` fields and an
/// `error` when it cannot be read).
async fn contents(ctx: &Ctx, def: &crate::config::desired::StoreDef) -> Value {
    let repo = match ctx.stores.get(def, false).await {
        Ok(r) => r,
        Err(OpenError::Problem(p)) => return json!({ "error": p.to_string() }),
        Err(OpenError::Internal(e)) => return json!({ "error": e }),
    };
    match tokio::task::spawn_blocking(move || kloset::ops::browse::info(&repo)).await {
        Ok(Ok(info)) => json!({
            "snapshots": info.snapshots,
            "logical_bytes": info.logical_bytes,
            "raw_bytes": info.raw_bytes,
            "stored_bytes": info.stored_bytes,
            "packs": info.packs,
        }),
        Ok(Err(e)) => json!({ "error": e.to_string() }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// `GET /api/v1/{kind}` (`detail`: also open stores for their contents).
pub async fn list(ctx: &Ctx, kind: Kind, detail: bool) -> Reply {
    let Some(applied) = ctx.live.applied() else {
        return json(StatusCode::OK, &json!({ kind.plural(): [] }));
    };
    let mut items = Vec::new();
    for name in names(&applied, kind) {
        if let Some(v) = one(ctx, &applied, kind, &name, detail).await {
            items.push(v);
        }
    }
    json(StatusCode::OK, &json!({ kind.plural(): items }))
}

/// `GET /api/v1/{kind}/{name}`.
pub async fn get(ctx: &Ctx, kind: Kind, name: &str) -> Reply {
    let found = match ctx.live.applied() {
        Some(applied) => one(ctx, &applied, kind, name, true).await,
        None => None,
    };
    match found {
        Some(v) => json(StatusCode::OK, &v),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no {} named {name:?}", kind.singular()),
        ),
    }
}
