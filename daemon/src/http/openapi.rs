//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the endpoint,
//! generated from the types the handlers send (utoipa).
//!
//! [`ApiDoc`] lists the operations (`operations.rs`, and the restore-point
//! ones from `browse_schema.rs`); each names its response bodies by type,
//! so the schemas are those of the serialized structs. What holds for
//! every operation is added here once, when the document is first served:
//! - each GET gets its HEAD twin: same parameters, statuses and headers,
//!   no body (`response::without_body`);
//! - each operation can answer 414 (a request target over 4 KiB).

use std::sync::OnceLock;

use hyper::StatusCode;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::{RefOr, Schema};

use super::browse_schema::BrowseApi;
use super::doc_parts::{
    self, BadRequest, Cold, Corrupt, Healthy, MethodNotAllowed, NotFound, NotReady,
    RangeNotSatisfiable, Ready, ServiceUnavailable, Text, Unauthorized, UriTooLong,
};
use super::operations;
use super::response::{Reply, error, json};

/// The status and object endpoints; [`generate`] adds the restore-point
/// ones ([`BrowseApi`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "klosetd read-only HTTP endpoint",
        description = "Status, task history, applied objects and restore points of a klosetd \
            daemon. Only GET and HEAD are served: HEAD answers like GET (same status and headers, \
            `Content-Length` included) without a body, and every other method gets 405 with \
            `Allow: GET, HEAD` (see `components.responses.MethodNotAllowed`). Any request target \
            longer than 4 KiB gets 414. Errors are JSON: \
            `{\"error\": {\"status\": 404, \"message\": \"…\"}}`. When `[daemon] token_file` is \
            set, the restore-point endpoints (`/api/v1/stores/{store}/snapshots…`) need \
            `Authorization: Bearer <token>`; status endpoints stay open.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "probes", description = "Plain text for curl, probes and Prometheus."),
        (name = "status", description = "The daemon, its schedules and its task history."),
        (name = "objects", description = "The applied resources, stores, sources and destinations."),
        (name = "snapshots",
            description = "Restore points: reads backed-up data (bearer token when one is set)."),
    ),
    paths(
        operations::healthz, operations::readyz, operations::status_text, operations::metrics,
        operations::openapi, operations::status, operations::list_schedules,
        operations::get_schedule, operations::list_tasks, operations::get_task,
        operations::list_resources, operations::get_resource, operations::list_stores,
        operations::get_store, operations::list_sources, operations::get_source,
        operations::list_destinations, operations::get_destination,
    ),
    components(
        schemas(
            super::schema::ErrorBody,
            super::schema::SnapshotHex,
            crate::state::TaskKind,
            crate::state::TaskStatus,
            doc_parts::TaskFilterQuery
        ),
        responses(BadRequest, Unauthorized, NotFound, MethodNotAllowed, Cold, RangeNotSatisfiable,
            Corrupt, ServiceUnavailable, UriTooLong, Text, Healthy, Ready, NotReady),
    ),
)]
pub struct ApiDoc;

/// What the derive cannot say: the bearer scheme, and how fields of a
/// body depend on each other (JSON Schema keywords added to the schemas).
struct Completion;

impl utoipa::Modify for Completion {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(doc_parts::BEARER, doc_parts::bearer_scheme());
        for (schema, keyword, value) in constraints() {
            let extensions = match components.schemas.get_mut(schema) {
                Some(RefOr::T(Schema::Object(object))) => &mut object.extensions,
                Some(RefOr::T(Schema::AllOf(all_of))) => &mut all_of.extensions,
                _ => continue, // `constraints_land` fails on this
            };
            extensions
                .get_or_insert_with(Extensions::default)
                .insert(keyword.into(), value);
        }
    }
}

/// Per schema, a keyword and its value: a run names its `schedule` or its
/// one-shot `task`, never both; a finished run has `finished_at`; a
/// schedule names its `source` (backup), `destination` (restore) or `to`
/// (sync) exactly for its kind; the task filters `schedule` and `task`
/// exclude each other; a snapshot's detail takes no other field.
fn constraints() -> Vec<(&'static str, &'static str, Value)> {
    let origin = json!([{ "required": ["schedule"] }, { "required": ["task"] }]);
    let only_for = |field: &str, kind: &str| {
        json!({
            "if": { "properties": { "task": { "const": kind } } },
            "then": { "required": [field] },
            "else": { "not": { "required": [field] } },
        })
    };
    let finished = json!({
        "if": { "properties": { "status": { "const": "running" } } },
        "then": { "properties": { "finished_at": { "type": "null" }, "duration_ms": { "type": "null" } } },
        "else": { "properties": { "finished_at": { "type": "string" } } },
    });
    vec![
        ("RunningTask", "oneOf", origin.clone()),
        ("Task", "oneOf", origin),
        ("Task", "allOf", json!([finished])),
        (
            "Schedule",
            "allOf",
            json!([
                only_for("source", "backup"),
                only_for("destination", "restore"),
                only_for("to", "sync"),
            ]),
        ),
        (
            "TaskFilter",
            "not",
            json!({ "required": ["schedule", "task"] }),
        ),
        ("SnapshotDetail", "unevaluatedProperties", json!(false)),
    ]
}

/// The whole generated document (both parts, [`Completion`] applied),
/// before [`complete`].
pub fn generate() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi().merge_from(BrowseApi::openapi());
    utoipa::Modify::modify(&Completion, &mut doc);
    doc
}

/// The document.
pub fn document() -> Reply {
    static DOCUMENT: OnceLock<Result<Value, String>> = OnceLock::new();
    match DOCUMENT.get_or_init(build) {
        Ok(doc) => json(StatusCode::OK, doc),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the OpenAPI document is broken: {e}"),
        ),
    }
}

/// The generated document, completed (HEAD twins, 414).
fn build() -> Result<Value, String> {
    let doc = serde_json::to_value(generate()).map_err(|e| e.to_string())?;
    complete(doc)
}

/// Adds the HEAD twins and 414 to every operation of `doc`.
fn complete(mut doc: Value) -> Result<Value, String> {
    let shared = doc["components"]["responses"].clone();
    let paths = doc
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .ok_or("no paths")?;
    for (path, item) in paths.iter_mut() {
        let item = item
            .as_object_mut()
            .ok_or_else(|| format!("{path}: not an object"))?;
        let get = item
            .get_mut("get")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("{path}: no GET operation"))?;
        let responses = get
            .get_mut("responses")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("{path}: GET has no responses"))?;
        responses.insert(
            "414".into(),
            json!({ "$ref": "#/components/responses/UriTooLong" }),
        );
        let head = head_twin(get, &shared).map_err(|e| format!("{path}: {e}"))?;
        item.insert("head".into(), Value::Object(head));
    }
    Ok(doc)
}

/// The HEAD operation answering like `get` without a body: shared
/// responses are copied in (their bodies are dropped).
fn head_twin(get: &Map<String, Value>, shared: &Value) -> Result<Map<String, Value>, String> {
    let mut head = get.clone();
    let id = get
        .get("operationId")
        .and_then(Value::as_str)
        .ok_or("GET has no operationId")?;
    head.insert("operationId".into(), json!(format!("{id}Head")));
    let summary = get.get("summary").and_then(Value::as_str).unwrap_or("");
    head.insert("summary".into(), json!(format!("{summary} (headers only)")));
    head.remove("description");
    let mut responses = Map::new();
    for (status, response) in get
        .get("responses")
        .and_then(Value::as_object)
        .ok_or("GET has no responses")?
    {
        let mut response = match response.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r
                    .strip_prefix("#/components/responses/")
                    .ok_or_else(|| format!("unexpected reference {r}"))?;
                shared
                    .get(name)
                    .cloned()
                    .ok_or_else(|| format!("no response {name}"))?
            }
            None => response.clone(),
        };
        if let Some(r) = response.as_object_mut() {
            r.remove("content");
        }
        responses.insert(status.clone(), response);
    }
    head.insert("responses".into(), Value::Object(responses));
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        build().expect("the document is generated")
    }

    /// Every `$ref` in `v`.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn constraints_land() {
        let doc = doc();
        for (schema, keyword, value) in constraints() {
            let landed = &doc["components"]["schemas"][schema][keyword];
            assert_eq!(landed, &value, "{schema}.{keyword}");
        }
    }

    #[test]
    fn parses_and_every_reference_resolves() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 50, "{}", all.len());
        for r in all {
            let pointer = r.strip_prefix('#').expect("a local reference");
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn every_route_is_documented_with_get_and_head() {
        let doc = doc();
        let paths = doc["paths"].as_object().expect("paths");
        for route in [
            "/healthz",
            "/readyz",
            "/status",
            "/metrics",
            "/api/v1/openapi.json",
            "/api/v1/status",
            "/api/v1/schedules",
            "/api/v1/schedules/{name}",
            "/api/v1/tasks",
            "/api/v1/tasks/{id}",
            "/api/v1/resources",
            "/api/v1/resources/{name}",
            "/api/v1/stores",
            "/api/v1/stores/{name}",
            "/api/v1/sources",
            "/api/v1/sources/{name}",
            "/api/v1/destinations",
            "/api/v1/destinations/{name}",
            "/api/v1/stores/{store}/snapshots",
            "/api/v1/stores/{store}/snapshots/{id}",
            "/api/v1/stores/{store}/snapshots/{id}/tree",
            "/api/v1/stores/{store}/snapshots/{id}/tree/{path}",
            "/api/v1/stores/{store}/snapshots/{id}/files/{path}",
        ] {
            let item = &paths[route];
            assert!(item["get"].is_object(), "{route}: no GET");
            assert!(item["head"].is_object(), "{route}: no HEAD");
            for method in ["get", "head"] {
                assert!(item[method]["responses"]["414"].is_object(), "{route}");
            }
            let head = item["head"]["responses"].as_object().expect("responses");
            assert!(head.values().all(|r| r.get("content").is_none()), "{route}");
        }
        assert_eq!(paths.len(), 23, "{:?}", paths.keys().collect::<Vec<_>>());
        let mut ids: Vec<&str> = paths
            .values()
            .flat_map(|i| ["get", "head"].map(|m| i[m]["operationId"].as_str().expect("id")))
            .collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "operationIds are unique");
    }

    #[test]
    fn data_endpoints_need_the_bearer_token() {
        let doc = doc();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let secured = item["get"]["security"] == json!([{ "bearer": [] }]);
            assert_eq!(secured, path.contains("/snapshots"), "{path}");
            if secured {
                assert!(item["get"]["responses"]["401"].is_object(), "{path}");
                assert!(
                    item["head"]["responses"]["401"]["headers"]["WWW-Authenticate"].is_object()
                );
            }
        }
    }

    #[test]
    fn served_as_json() {
        let reply = document();
        assert_eq!(reply.status(), StatusCode::OK);
        assert_eq!(
            reply.headers()[hyper::header::CONTENT_TYPE],
            "application/json"
        );
    }
}
