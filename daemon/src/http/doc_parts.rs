//! The reusable parts of the OpenAPI document: shared responses (each a
//! `utoipa::ToResponse`, referenced from operations as
//! `#/components/responses/NAME`), the bearer security scheme, and the
//! schema of the task filters.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{ToResponse, ToSchema};

/// The name of the bearer security scheme.
pub const BEARER: &str = "bearer";

/// What a response header's value is.
#[derive(Clone, Copy, Debug)]
pub enum HeaderForm {
    /// This exact text.
    Exactly(&'static str),
    /// Text matching this pattern.
    Matching(&'static str),
    /// Any text.
    Text,
    /// A non-negative integer.
    Count,
}

/// A response header: its value's schema and a description.
pub fn header(description: &str, form: HeaderForm) -> utoipa::openapi::Header {
    let text = ObjectBuilder::new().schema_type(Type::String);
    let schema = match form {
        HeaderForm::Exactly(value) => text.enum_values(Some([value])),
        HeaderForm::Matching(pattern) => text.pattern(Some(pattern)),
        HeaderForm::Text => text,
        HeaderForm::Count => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0)),
    };
    HeaderBuilder::new()
        .schema(schema)
        .description(Some(description))
        .build()
}

/// A response whose body is the JSON error.
fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name("Error"))),
    )
}

macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident => $description:expr;)+) => {$(
        $(#[$doc])*
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (stringify!($name), error_response($description).build().into())
            }
        }
    )+};
}

error_responses! {
    /// 400.
    BadRequest => "A malformed request: a bad parameter value, an unknown parameter, a path that \
        is not UTF-8 once decoded or leaves the snapshot, an ambiguous snapshot prefix, the wrong \
        kind of file";
    /// 404.
    NotFound => "No such object, task, snapshot or path";
    /// 409.
    Cold => "The store is cold (`storage_type = \"cold\"`): its data is not read here";
    /// 422.
    Corrupt => "The store's data is damaged (e.g. a chunk missing from the index)";
    /// 503.
    ServiceUnavailable => "The state database, the store or the bearer token file cannot be \
        read now";
    /// 414.
    UriTooLong => "The request target is longer than 4 KiB";
}

/// 401, with the challenge.
pub struct Unauthorized;

impl<'s> ToResponse<'s> for Unauthorized {
    fn response() -> (&'s str, RefOr<Response>) {
        let response =
            error_response("`token_file` is set and the request has no or a wrong bearer token")
                .header(
                    "WWW-Authenticate",
                    header(
                        "The challenge",
                        HeaderForm::Exactly("Bearer realm=\"klosetd\""),
                    ),
                );
        ("Unauthorized", response.build().into())
    }
}

/// 405 for any method but GET and HEAD, on any path.
pub struct MethodNotAllowed;

impl<'s> ToResponse<'s> for MethodNotAllowed {
    fn response() -> (&'s str, RefOr<Response>) {
        let response = error_response("Any method but GET and HEAD, on any path").header(
            "Allow",
            header("The methods served", HeaderForm::Exactly("GET, HEAD")),
        );
        ("MethodNotAllowed", response.build().into())
    }
}

/// 416, with the length of the file.
pub struct RangeNotSatisfiable;

impl<'s> ToResponse<'s> for RangeNotSatisfiable {
    fn response() -> (&'s str, RefOr<Response>) {
        let response = error_response("The `bytes=` range does not fit the file").header(
            "Content-Range",
            header(
                "The file's length",
                HeaderForm::Matching("^bytes \\*/[0-9]+$"),
            ),
        );
        ("RangeNotSatisfiable", response.build().into())
    }
}

/// A plain-text answer that is not cached, its body of `form`.
fn plain_text(description: &str, form: HeaderForm) -> RefOr<Response> {
    let text = ObjectBuilder::new().schema_type(Type::String);
    let body = match form {
        HeaderForm::Exactly(value) => text.enum_values(Some([value])),
        HeaderForm::Matching(pattern) => text.pattern(Some(pattern)),
        HeaderForm::Text | HeaderForm::Count => text,
    };
    ResponseBuilder::new()
        .description(description)
        .header(
            "Cache-Control",
            header("Never cached", HeaderForm::Exactly("no-store")),
        )
        .content("text/plain; charset=utf-8", Content::new(Some(body)))
        .build()
        .into()
}

macro_rules! text_responses {
    ($($(#[$doc:meta])* $name:ident => $description:expr, $form:expr;)+) => {$(
        $(#[$doc])*
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (stringify!($name), plain_text($description, $form))
            }
        }
    )+};
}

text_responses! {
    /// Any plain text.
    Text => "Plain text", HeaderForm::Text;
    /// `/healthz`: alive.
    Healthy => "`ok`", HeaderForm::Exactly("ok\n");
    /// `/readyz`: ready.
    Ready => "`ready`", HeaderForm::Exactly("ready\n");
    /// `/readyz`: not ready, and why.
    NotReady => "`not ready`, then one reason per line", HeaderForm::Matching("^not ready\n");
}

/// The bearer token of the data endpoints.
pub fn bearer_scheme() -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "The content of `[daemon] token_file`, read at each request. Only enforced when \
                 `token_file` is set; an unreadable token file answers 503 (fails closed).",
            ))
            .build(),
    )
}

/// The filters of `GET /api/v1/tasks`, each its own query parameter
/// (parsed pair by pair by `api::task_filter`, to name the bad one; this
/// type only describes them). `schedule` excludes `task`.
#[derive(ToSchema)]
#[schema(as = TaskFilter)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // schema only, see above
pub struct TaskFilterQuery {
    /// Runs of this kind.
    #[schema(nullable = false)]
    kind: Option<crate::state::TaskKind>,
    /// Runs with this status.
    #[schema(nullable = false)]
    status: Option<crate::state::TaskStatus>,
    /// Runs of this schedule.
    #[schema(nullable = false)]
    schedule: Option<String>,
    /// Runs of this one-shot task.
    #[schema(nullable = false)]
    task: Option<String>,
    /// Runs on this store.
    #[schema(nullable = false)]
    store: Option<String>,
    /// Runs started at or after this time (RFC 3339).
    #[schema(nullable = false, format = DateTime)]
    since: Option<String>,
    /// Runs with a smaller id: the `next` of the previous page.
    #[schema(nullable = false, minimum = 1, maximum = 9223372036854775807_i64)]
    before: Option<i64>,
    /// At most this many runs (default 100).
    #[schema(nullable = false, minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
}
