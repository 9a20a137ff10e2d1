//! The documented operations of the status and object endpoints: the
//! router calls these functions, and each carries the `#[utoipa::path]`
//! that puts it in `/api/v1/openapi.json` (parameters, response bodies by
//! type, error responses). HEAD twins and 414 are added to every operation
//! by `openapi.rs`. The restore-point operations are in `browse_schema.rs`.

use super::Ctx;
use super::doc_parts::{BadRequest, Healthy, NotFound, NotReady, Ready, ServiceUnavailable, Text};
use super::objects::{
    self, Destination, DestinationList, Kind, Resource, ResourceList, Source, SourceList, Store,
    StoreList,
};
use super::response::Reply;
use super::schema::{Schedule, ScheduleList, Status, Task, TaskPage};
use super::{api, metrics, openapi, text};

/// The description of a `{name}` path parameter.
const NAME: &str = "The object's name in the configuration";

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", tag = "probes", operation_id = "getHealthz",
    summary = "Liveness: 200 while the process answers",
    responses((status = 200, response = Healthy)))]
pub fn healthz() -> Reply {
    text::healthz()
}

/// `GET /readyz`.
#[utoipa::path(get, path = "/readyz", tag = "probes", operation_id = "getReadyz",
    summary = "Readiness: 200 `ready` when the latest configuration is valid and applied and \
        every object is ready, else 503 `not ready` and one reason per line",
    responses((status = 200, response = Ready), (status = 503, response = NotReady)))]
pub fn readyz(ctx: &Ctx) -> Reply {
    text::readyz(ctx)
}

/// `GET /status`.
#[utoipa::path(get, path = "/status", tag = "probes", operation_id = "getStatusText",
    summary = "A short human-readable summary (problems first, running tasks, schedules); 503 \
        when degraded",
    responses((status = 200, response = Text), (status = 503, response = Text)))]
pub async fn status_text(ctx: &Ctx) -> Reply {
    text::status(ctx).await
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "probes", operation_id = "getMetrics",
    summary = "Prometheus text exposition format 0.0.4",
    responses((status = 200, description = "The metrics", body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8",
        headers(("Cache-Control" = String, description = "`no-store`")))))]
pub async fn metrics(ctx: &Ctx) -> Reply {
    metrics::metrics(ctx).await
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "status", operation_id = "getOpenApi",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub fn openapi() -> Reply {
    openapi::document()
}

/// `GET /api/v1/status`.
#[utoipa::path(get, path = "/api/v1/status", tag = "status", operation_id = "getStatus",
    summary = "Readiness, problems, configuration revisions and errors, object counts, running \
        tasks",
    responses((status = 200, description = "The status", body = Status)))]
pub fn status(ctx: &Ctx) -> Reply {
    api::status(ctx)
}

/// `GET /api/v1/schedules`.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "status", operation_id = "listSchedules",
    summary = "The applied schedules with their last and next runs",
    responses(
        (status = 200, description = "Every schedule, by name", body = inline(ScheduleList)),
        (status = 503, response = ServiceUnavailable)))]
pub async fn list_schedules(ctx: &Ctx) -> Reply {
    api::schedules(ctx, None).await
}

/// `GET /api/v1/schedules/{name}`.
#[utoipa::path(get, path = "/api/v1/schedules/{name}", tag = "status",
    operation_id = "getSchedule", summary = "One schedule",
    params(("name" = String, Path, description = NAME,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")),
    responses(
        (status = 200, description = "The schedule", body = Schedule),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable)))]
pub async fn get_schedule(ctx: &Ctx, name: &str) -> Reply {
    api::schedules(ctx, Some(name)).await
}

/// `GET /api/v1/tasks`.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "status", operation_id = "listTasks",
    summary = "Task history, newest first, filtered and paged",
    description = "Every filter is optional; an unknown parameter, a bad value, or `schedule` \
        together with `task` is a 400. `next` is the `before` value of the next page, `null` on \
        the last one.",
    params(("filter" = Option<super::doc_parts::TaskFilterQuery>, Query, style = Form, explode,
        description = "The filters, each its own query parameter (`?kind=backup&limit=10`). No \
            other parameter is accepted, and `schedule` excludes `task`.")),
    responses(
        (status = 200, description = "A page of tasks", body = inline(TaskPage)),
        (status = 400, response = BadRequest),
        (status = 503, response = ServiceUnavailable)))]
pub async fn list_tasks(ctx: &Ctx, query: &str) -> Reply {
    api::tasks(ctx, query).await
}

/// `GET /api/v1/tasks/{id}`.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "status", operation_id = "getTask",
    summary = "One task run, with live progress while it runs",
    params(("id" = i64, Path, description = "A task id", minimum = 1)),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable)))]
pub async fn get_task(ctx: &Ctx, id: &str) -> Reply {
    api::task(ctx, id).await
}

/// Declares the list and the get operation of one kind of object.
macro_rules! object_operations {
    ($(
        $kind:ident, $list_path:literal, $get_path:literal, $plural:literal, $list_fn:ident, $list_id:literal, $list_summary:literal,
        $list_body:ty, $get_fn:ident, $get_id:literal, $get_summary:literal, $got:literal, $get_body:ty,
        $detail:literal;
    )+) => {$(
        #[doc = concat!("`GET ", $list_path, "`.")]
        #[utoipa::path(get, path = $list_path, tag = "objects",
            operation_id = $list_id, summary = $list_summary,
            responses((status = 200, description = $plural, body = inline($list_body))))]
        pub async fn $list_fn(ctx: &Ctx) -> Reply {
            objects::list(ctx, Kind::$kind, $detail).await
        }

        #[doc = concat!("`GET ", $get_path, "`.")]
        #[utoipa::path(get, path = $get_path, tag = "objects",
            operation_id = $get_id, summary = $get_summary,
            params(("name" = String, Path, description = NAME,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")),
            responses(
                (status = 200, description = $got, body = $get_body),
                (status = 400, response = BadRequest),
                (status = 404, response = NotFound)))]
        pub async fn $get_fn(ctx: &Ctx, name: &str) -> Reply {
            objects::get(ctx, Kind::$kind, name).await
        }
    )+};
}

object_operations! {
    Resources, "/api/v1/resources", "/api/v1/resources/{name}", "Every resource", list_resources, "listResources", "The applied resources",
        ResourceList, get_resource, "getResource", "One resource", "The resource", Resource, false;
    Stores, "/api/v1/stores", "/api/v1/stores/{name}", "Every store", list_stores, "listStores", "The applied stores, each opened for its contents",
        StoreList, get_store, "getStore", "One store", "The store", Store, true;
    Sources, "/api/v1/sources", "/api/v1/sources/{name}", "Every source", list_sources, "listSources", "The applied sources",
        SourceList, get_source, "getSource", "One source", "The source", Source, false;
    Destinations, "/api/v1/destinations", "/api/v1/destinations/{name}",
        "Every destination", list_destinations, "listDestinations",
        "The applied destinations", DestinationList, get_destination, "getDestination",
        "One destination", "The destination", Destination, false;
}
