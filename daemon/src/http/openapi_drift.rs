//! Tests that fail when `/api/v1/openapi.json` and what is sent drift
//! apart: bodies built from the response types, as the handlers build them
//! (every optional part present, and absent), are checked against the
//! schema their operation declares in the generated document; the served
//! document is the generated one; and the router serves every operation
//! it lists (`openapi.rs` checks the other way: every route is listed).
//!
//! The check is a small JSON Schema subset, made strict where drift hides:
//! a field sent but not declared, a declared required field not sent, a
//! `null` where the schema does not allow it, a wrong type or enum value.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::objects::{
    Destination, DestinationList, EndpointView, Resource, ResourceList, SecretSource, Source,
    SourceList, Store, StoreContents, StoreCounts, StoreList,
};
use super::openapi::{document, generate};
use super::response::Reply;
use super::schema::{
    ApplyErrorView, Condition, ConfigErrorView, ConfigView, ErrorBody, ErrorDetail, FaultView,
    NotificationChannel, ObjectCounts, OneShot, Progress, RunningTask, Schedule, ScheduleList,
    Status, Task, TaskPage,
};
use crate::state::{TaskKind, TaskStatus};

/// The generated document as JSON.
fn doc() -> Value {
    serde_json::to_value(generate()).expect("the document serializes")
}

/// Follows `$ref`s to the schema they name.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = r.strip_prefix('#').expect("a local reference");
        schema = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{r} does not resolve"));
    }
    schema
}

/// The properties and required names of an object schema, `allOf` merged.
fn object_parts<'a>(
    doc: &'a Value,
    schema: &'a Value,
    properties: &mut BTreeMap<&'a str, &'a Value>,
    required: &mut Vec<&'a str>,
) {
    let schema = resolve(doc, schema);
    if let Some(map) = schema.get("properties").and_then(Value::as_object) {
        properties.extend(map.iter().map(|(k, v)| (k.as_str(), v)));
    }
    if let Some(names) = schema.get("required").and_then(Value::as_array) {
        required.extend(names.iter().filter_map(Value::as_str));
    }
    for branch in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        object_parts(doc, branch, properties, required);
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

/// What in `value` (at `at`) does not fit `schema`.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        let fitting = branches
            .iter()
            .filter(|b| {
                let mut p = Vec::new();
                check(doc, b, value, at, &mut p);
                p.is_empty()
            })
            .count();
        if fitting != 1 {
            problems.push(format!("{at}: fits {fitting} branches of oneOf: {value}"));
            return;
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) if !type_matches(t, value) => {
            problems.push(format!("{at}: not a {t}: {value}"));
            return;
        }
        Some(Value::Array(ts))
            if !ts
                .iter()
                .any(|t| type_matches(t.as_str().unwrap_or(""), value)) =>
        {
            problems.push(format!("{at}: not any of {ts:?}: {value}"));
            return;
        }
        _ => {}
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {values:?}"));
    }
    match value {
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(doc, item_schema, item, &format!("{at}[{i}]"), problems);
                }
            }
        }
        Value::Object(map) => {
            let (mut properties, mut required) = (BTreeMap::new(), Vec::new());
            object_parts(doc, schema, &mut properties, &mut required);
            for name in required {
                if !map.contains_key(name) {
                    problems.push(format!("{at}: required {name:?} is not sent"));
                }
            }
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            // A free-form object (no declared properties) takes any field.
            let closed = !properties.is_empty()
                || additional.is_some()
                || schema["additionalProperties"] == false;
            for (key, field) in map.iter().filter(|_| closed) {
                let here = format!("{at}.{key}");
                match (properties.get(key.as_str()).copied(), additional) {
                    (Some(s), _) | (None, Some(s)) => check(doc, s, field, &here, problems),
                    (None, None) => problems.push(format!("{here}: sent but not in the schema")),
                }
            }
        }
        _ => {}
    }
}

/// Checks `body` against the JSON schema of `path`'s 200 answer.
fn assert_fits<T: Serialize>(doc: &Value, path: &str, body: &T) {
    let pointer = format!(
        "/paths/{}/get/responses/200/content/application~1json/schema",
        path.replace('~', "~0").replace('/', "~1")
    );
    let schema = doc
        .pointer(&pointer)
        .unwrap_or_else(|| panic!("{path}: no JSON 200 answer documented"));
    let value = serde_json::to_value(body).expect("the body serializes");
    let mut problems = Vec::new();
    check(doc, schema, &value, path, &mut problems);
    assert!(
        problems.is_empty(),
        "{path} drifts:\n{}",
        problems.join("\n")
    );
}

const T: &str = "2026-12-06T03:00:00.000Z";
const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn condition() -> Condition {
    Condition {
        ready: true,
        reason: "Ready".into(),
        message: "ok".into(),
        since: T.into(),
        revision: Some(HEX.into()),
    }
}

fn progress(eta: Option<u64>) -> Progress {
    Progress {
        files: 1,
        bytes: 2,
        total_files: 3,
        total_bytes: 4,
        errors: 0,
        bytes_per_second: 5,
        eta_seconds: eta,
    }
}

fn running(id: Option<i64>, from_schedule: bool) -> RunningTask {
    RunningTask {
        id,
        kind: TaskKind::Backup,
        schedule: from_schedule.then(|| "nightly".into()),
        task: (!from_schedule).then(|| "first".into()),
        store: "local".into(),
        status: "running",
        queued_at: T.into(),
        started_at: T.into(),
        waiting_for_slot: id.is_none(),
        progress: progress(id.map(|_| 7)),
    }
}

/// A finished run with every field set, or a running one with none.
fn task(full: bool) -> Task {
    let some = |s: &str| full.then(|| s.to_string());
    Task {
        id: 1,
        kind: TaskKind::Check,
        schedule: full.then(|| "nightly".into()),
        task: (!full).then(|| "verify".into()),
        store: some("local"),
        status: if full {
            TaskStatus::Succeeded
        } else {
            TaskStatus::Running
        },
        reason: some("why"),
        scheduled_for: some(T),
        queued_at: some(T),
        started_at: T.into(),
        finished_at: some(T),
        duration_ms: full.then_some(3),
        stats: full.then(|| {
            json!({
                "files": 1,
                "retention": { "applied": true, "kept": 1, "forgotten_ids": [HEX] },
                "copied": [{ "source": HEX, "target": HEX }],
            })
        }),
        error: some("boom"),
        snapshot_id: some(HEX),
        revision: some(HEX),
        progress: (!full).then(|| progress(None)),
    }
}

fn schedule(full: bool) -> Schedule {
    let some = |s: &str| full.then(|| s.to_string());
    Schedule {
        name: "nightly".into(),
        task: "backup",
        store: "local".into(),
        source: some("data"),
        destination: some("out"),
        to: some("archive"),
        cron: "0 3 * * *".into(),
        timezone: "UTC".into(),
        jitter_seconds: 0,
        catch_up: true,
        next_run: some(T),
        last_run: some(T),
        last_finished: some(T),
        last_success: some(T),
        last_failure: some(T),
        last_status: full.then_some(TaskStatus::Failed),
        last_duration_ms: full.then_some(1),
        last_bytes_added: full.then_some(2),
        skipped_count: 0,
        alert_after_seconds: full.then_some(129_600),
        stale: full,
        stale_since: some(T),
        notify: vec!["ops".into()],
        running: full.then(|| running(Some(4), true)),
        condition: full.then(condition),
        declared_at: "/etc/klosetd/a.toml:3".into(),
    }
}

fn endpoint(resource: bool) -> EndpointView {
    EndpointView {
        integration: "fs",
        protocol: "file",
        location: "/srv".into(),
        resource: resource.then(|| "disk".into()),
    }
}

fn store(full: bool) -> Store {
    Store {
        name: "local".into(),
        endpoint: endpoint(full),
        storage_type: crate::config::model::StorageType::Cold,
        init: crate::config::model::InitPolicy::Never,
        condition: full.then(condition),
        last_check: full.then(|| task(true)),
        contents: Some(if full {
            StoreContents::Counts(StoreCounts {
                snapshots: 1,
                logical_bytes: 2,
                raw_bytes: 3,
                stored_bytes: 4,
                packs: 5,
            })
        } else {
            StoreContents::Unreadable {
                error: "cannot read".into(),
            }
        }),
        declared_at: "a.toml:1".into(),
    }
}

#[test]
fn status_bodies_fit_their_schemas() {
    let doc = doc();
    for full in [true, false] {
        let some = |s: &str| full.then(|| s.to_string());
        let status = Status {
            version: "0",
            ready: full,
            problems: vec!["store.local: not ready".into()],
            started_at: T.into(),
            config: ConfigView {
                dir: "/etc/klosetd".into(),
                valid: full,
                attempted_revision: full.then(|| HEX.into()),
                attempted_at: full.then(|| T.into()),
                applied_revision: full.then(|| HEX.into()),
                applied_at: full.then(|| T.into()),
                errors: vec![ConfigErrorView {
                    file: full.then(|| "a.toml".into()),
                    line: full.then_some(3),
                    object: full.then(|| "store.x".into()),
                    message: "bad".into(),
                }],
                restart_required: vec!["state_dir".into()],
                reloads: 1,
                reload_failures: 0,
                apply_error: full.then(|| ApplyErrorView {
                    revision: HEX.into(),
                    message: "recording conditions: database is locked".into(),
                    failures: 2,
                    retry_at: T.into(),
                }),
            },
            faults: if full {
                vec![FaultView {
                    what: "recording next run times",
                    message: "database is locked".into(),
                }]
            } else {
                Vec::new()
            },
            warnings: vec!["schedule.nightly is stale".into()],
            notifications: vec![NotificationChannel {
                channel: "ops".into(),
                pending: 1,
                retrying: u64::from(full),
                dropped: 0,
                last_error: some("the receiver answered HTTP 500"),
                last_error_at: some(T),
                next_attempt_at: some(T),
            }],
            objects: ObjectCounts {
                stores: 1,
                sources: 1,
                destinations: 1,
                schedules: 1,
                tasks: 1,
            },
            running: vec![running(Some(1), full), running(None, !full)],
            oneshots: vec![OneShot {
                name: "first".into(),
                kind: "backup",
                store: "local".into(),
                declared_at: "a.toml:9".into(),
                condition: full.then(condition),
            }],
        };
        assert_fits(&doc, "/api/v1/status", &status);
        let schedules = ScheduleList {
            schedules: vec![schedule(full)],
        };
        assert_fits(&doc, "/api/v1/schedules", &schedules);
        assert_fits(&doc, "/api/v1/schedules/{name}", &schedule(full));
        let page = TaskPage {
            tasks: vec![task(full)],
            next: full.then_some(1),
        };
        assert_fits(&doc, "/api/v1/tasks", &page);
        assert_fits(&doc, "/api/v1/tasks/{id}", &task(full));
    }
}

#[test]
fn object_bodies_fit_their_schemas() {
    let doc = doc();
    let resource = Resource {
        name: "disk".into(),
        class: "s3".into(),
        subclass: "minio".into(),
        fields: [("bucket".to_string(), "b".to_string())].into(),
        credentials: [
            ("key".to_string(), SecretSource::File("/k".into())),
            ("secret".to_string(), SecretSource::Env("S".into())),
        ]
        .into(),
        declared_at: "a.toml:1".into(),
    };
    assert_fits(&doc, "/api/v1/resources/{name}", &resource);
    let resources = ResourceList {
        resources: vec![resource],
    };
    assert_fits(&doc, "/api/v1/resources", &resources);
    for full in [true, false] {
        let source = Source {
            name: "data".into(),
            endpoint: endpoint(full),
            excludes: vec!["*.tmp".into()],
            condition: full.then(condition),
            declared_at: "a.toml:2".into(),
        };
        assert_fits(&doc, "/api/v1/sources/{name}", &source);
        let sources = SourceList {
            sources: vec![source],
        };
        assert_fits(&doc, "/api/v1/sources", &sources);
        let destination = Destination {
            name: "out".into(),
            endpoint: endpoint(full),
            condition: full.then(condition),
            declared_at: "a.toml:3".into(),
        };
        assert_fits(&doc, "/api/v1/destinations/{name}", &destination);
        let destinations = DestinationList {
            destinations: vec![destination],
        };
        assert_fits(&doc, "/api/v1/destinations", &destinations);
        assert_fits(&doc, "/api/v1/stores/{name}", &store(full));
        let stores = StoreList {
            stores: vec![store(full)],
        };
        assert_fits(&doc, "/api/v1/stores", &stores);
    }
}

#[test]
fn the_error_body_fits_every_error_answer() {
    let doc = doc();
    let body = serde_json::to_value(ErrorBody {
        error: ErrorDetail {
            status: 404,
            message: "no".into(),
        },
    })
    .expect("serializes");
    let responses = doc["components"]["responses"]
        .as_object()
        .expect("responses");
    let mut checked = 0;
    for (name, response) in responses {
        if let Some(schema) = response.pointer("/content/application~1json/schema") {
            let mut problems = Vec::new();
            check(&doc, schema, &body, name, &mut problems);
            assert!(problems.is_empty(), "{problems:?}");
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked}");
}

/// A checker that lets drift through would make the tests above vacuous.
#[test]
fn the_check_finds_drift() {
    let doc = doc();
    let schema = json!({ "$ref": "#/components/schemas/Condition" });
    let mut sent = serde_json::to_value(condition()).expect("serializes");
    let mut problems = Vec::new();
    check(&doc, &schema, &sent, "c", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    sent["extra"] = json!(1);
    sent.as_object_mut().expect("object").remove("since");
    sent["ready"] = Value::Null;
    check(&doc, &schema, &sent, "c", &mut problems);
    assert_eq!(problems.len(), 3, "{problems:?}");
}

fn body(reply: Reply) -> Value {
    match reply.into_body() {
        super::response::Body::Full(Some(bytes)) => {
            serde_json::from_slice(&bytes).expect("the body is JSON")
        }
        other => panic!("not a full body: {other:?}"),
    }
}

#[test]
fn the_served_document_is_the_generated_one() {
    let served = body(document());
    let generated = doc();
    assert_eq!(served["components"], generated["components"]);
    assert_eq!(served["info"], generated["info"]);
    let served_paths = served["paths"].as_object().expect("paths");
    let generated_paths = generated["paths"].as_object().expect("paths");
    assert_eq!(
        served_paths.keys().collect::<Vec<_>>(),
        generated_paths.keys().collect::<Vec<_>>()
    );
    for (path, item) in generated_paths {
        let mut get = item["get"].clone();
        get["responses"]["414"] = json!({ "$ref": "#/components/responses/UriTooLong" });
        assert_eq!(served_paths[path]["get"], get, "{path}");
    }
}

/// A context with no configuration applied and an empty state database.
fn empty_ctx(dir: &std::path::Path) -> super::Ctx {
    let settings = crate::config::validate::daemon_settings_or_default(&Default::default());
    let db = crate::state::StateDb::open_in_memory().expect("a state database");
    super::Ctx {
        live: std::sync::Arc::new(crate::status::Live::new(
            dir.to_path_buf(),
            settings,
            chrono::Utc::now(),
        )),
        db: crate::state::StateHandle::spawn(db).expect("the state thread"),
        stores: Default::default(),
    }
}

/// Every documented operation, GET and HEAD, reaches a handler: the router
/// answers none of them "no such endpoint" or 405.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let dir = tempfile::tempdir().expect("a directory");
    let ctx = empty_ctx(dir.path());
    let served = body(document());
    for (path, item) in served["paths"].as_object().expect("paths") {
        let target = path
            .replace("{name}", "nightly")
            .replace("{store}", "local")
            .replace("{id}", "1")
            .replace("{path}", "etc/hosts");
        for method in ["get", "head"] {
            assert!(item[method].is_object(), "{path}: no {method}");
            let request = hyper::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&target)
                .body(())
                .expect("a request");
            let reply = super::route(&ctx, &request).await;
            assert_ne!(
                reply.status(),
                hyper::StatusCode::METHOD_NOT_ALLOWED,
                "{path}"
            );
            if reply.status() == hyper::StatusCode::NOT_FOUND {
                let answer = body(reply);
                let message = answer["error"]["message"].as_str().unwrap_or("");
                assert!(
                    !message.starts_with("no such endpoint"),
                    "{path}: {message}"
                );
            }
        }
    }
}

#[test]
fn restore_point_bodies_fit_their_schemas() {
    use super::browse_json::{
        SnapshotDetail, SnapshotList, SnapshotSummary, TreeEntry, TreeListing,
    };
    let doc = doc();
    let summary = |parent: bool| SnapshotSummary {
        id: HEX.into(),
        short_id: HEX[..8].into(),
        time: T.into(),
        host: "h".into(),
        source: "/srv".into(),
        tags: vec!["nightly".into()],
        parent: parent.then(|| HEX.into()),
        stats: kloset::snapshot::SnapshotStats::default(),
        errors: 0,
    };
    let snapshots = "/api/v1/stores/{store}/snapshots";
    for last in [true, false] {
        let cursor = format!("{HEX}{}", &HEX[..16]);
        let page = SnapshotList {
            limit: 1,
            next_cursor: (!last).then(|| cursor.clone()),
            next: (!last).then(|| format!("/api/v1/stores/s/snapshots?limit=1&cursor={cursor}")),
            snapshots: vec![summary(last)],
        };
        assert_fits(&doc, snapshots, &page);
        let href = format!("/api/v1/stores/s/snapshots/{HEX}/tree/etc");
        let listing = TreeListing {
            path: "/etc".into(),
            href: href.clone(),
            limit: 1000,
            next_cursor: (!last).then(|| "hosts".into()),
            next: (!last).then(|| format!("{href}?cursor=hosts")),
            entries: vec![TreeEntry {
                name: "hosts".into(),
                name_encoded: "hosts".into(),
                href: last.then(|| format!("/api/v1/stores/s/snapshots/{HEX}/files/etc/hosts")),
                kind: kloset::tree::NodeKind::File,
                size: 3,
                mode: "644".into(),
                mtime: T.into(),
                target: None,
            }],
        };
        assert_fits(
            &doc,
            "/api/v1/stores/{store}/snapshots/{id}/tree/{path}",
            &listing,
        );
        assert_fits(&doc, "/api/v1/stores/{store}/snapshots/{id}/tree", &listing);
    }
    let detail = SnapshotDetail {
        summary: summary(true),
        unreadable_files: Vec::new(),
    };
    assert_fits(&doc, "/api/v1/stores/{store}/snapshots/{id}", &detail);
}
