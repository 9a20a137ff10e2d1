//! The restore-point operations (`/api/v1/stores/{store}/snapshots…`) in
//! the OpenAPI document, and the shapes `browse.rs` sends today.
//!
//! `browse.rs` still builds its bodies with `serde_json::json!`; the types
//! here describe those bodies (`tests`: their fields are the ones sent)
//! until `browse.rs` returns typed bodies of its own. Then its types
//! replace the ones here in [`BrowseApi`], the only place `openapi.rs`
//! takes the browse part of the document from.

use std::collections::BTreeMap;

use hyper::HeaderMap;
use serde::Serialize;
use serde_json::json;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{Content, KnownFormat, Ref, RefOr, Response, ResponseBuilder, SchemaFormat};
use utoipa::{IntoResponses, ToResponse, ToSchema};

use super::Ctx;
use super::browse;
use super::browse_json::{SnapshotPageQuery, TreePageQuery};
use super::doc_parts::{
    BadRequest, Cold, Corrupt, HeaderForm, NotFound, RangeNotSatisfiable, ServiceUnavailable,
    Unauthorized, header,
};
use super::paths::SnapPath;
use super::response::Reply;

/// `GET /api/v1/stores/{store}/snapshots`: a page.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // describes the body browse.rs builds
pub struct SnapshotList {
    /// The page size asked for (or the default, 1000).
    #[schema(minimum = 1, maximum = 10000)]
    limit: u64,
    /// The `cursor` of the next page; `null` on the last page.
    #[schema(required = true, pattern = "^[0-9a-f]{80}$")]
    next_cursor: Option<String>,
    /// The URL of the next page; `null` on the last page.
    #[schema(required = true, pattern = "^/api/v1/stores/[^/]+/snapshots\\?")]
    next: Option<String>,
    /// At most `limit` snapshots, newest first.
    snapshots: Vec<Snapshot>,
}

/// A snapshot.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // describes the body browse.rs builds
pub struct Snapshot {
    /// Its id.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    id: String,
    /// The first 8 digits of its id.
    #[schema(pattern = "^[0-9a-f]{8}$")]
    short_id: String,
    /// When it was taken.
    #[schema(format = DateTime)]
    time: String,
    /// The host it was taken on.
    host: String,
    /// What was read.
    source: String,
    /// Its tags.
    tags: Vec<String>,
    /// The snapshot it was compared with.
    #[schema(required = true, pattern = "^[0-9a-f]{64}$")]
    parent: Option<String>,
    /// Its numbers.
    stats: SnapshotStats,
    /// Files that could not be read.
    errors: u64,
}

/// A snapshot, with the files that could not be read.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // describes the body browse.rs builds
pub struct SnapshotDetail {
    /// The snapshot.
    #[serde(flatten)]
    snapshot: Snapshot,
    /// The files that could not be read, and why.
    unreadable_files: Vec<UnreadableFile>,
}

/// A file a backup could not read.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // describes the body browse.rs builds
pub struct UnreadableFile {
    /// Its path.
    path: String,
    /// Why.
    error: String,
}

/// What a backup did.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // describes the body browse.rs builds
pub struct SnapshotStats {
    /// Regular files.
    files: u64,
    /// Directories.
    dirs: u64,
    /// Other entries (symlinks, devices, …).
    others: u64,
    /// Bytes of the files.
    bytes: u64,
    /// Files unchanged since the parent.
    files_unchanged: u64,
    /// Chunks added.
    blobs_added: u64,
    /// Bytes added, uncompressed.
    bytes_added: u64,
    /// Bytes stored.
    bytes_stored: u64,
    /// How long it took.
    duration_ms: u64,
}

/// A directory listing.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // describes the body browse.rs builds
pub struct Tree {
    /// The normalized path, for display (lossy for names that are not UTF-8).
    #[schema(pattern = "^/")]
    path: String,
    /// This listing's URL: the full snapshot id and the exact path, every
    /// name byte outside `A-Za-z0-9-._~` percent-encoded.
    #[schema(pattern = "^/api/v1/stores/[^/]+/snapshots/[0-9a-f]{64}/tree/")]
    href: String,
    /// The page size asked for (or the default, 1000).
    #[schema(minimum = 1, maximum = 10000)]
    limit: u64,
    /// The `cursor` of the next page (the last name of this one,
    /// percent-encoded); `null` on the last page.
    #[schema(required = true, min_length = 1)]
    next_cursor: Option<String>,
    /// The URL of the next page; `null` on the last page.
    #[schema(
        required = true,
        pattern = "^/api/v1/stores/[^/]+/snapshots/[0-9a-f]{64}/tree/"
    )]
    next: Option<String>,
    /// At most `limit` entries, by raw name bytes.
    entries: Vec<TreeEntry>,
}

/// The type of a directory entry.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // describes the body browse.rs builds
pub enum EntryType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    Chardevice,
    /// A block device.
    Blockdevice,
    /// A socket.
    Socket,
}

/// A directory entry.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // describes the body browse.rs builds
pub struct TreeEntry {
    /// The name for display: lossy (U+FFFD) for bytes that are not UTF-8,
    /// so two names may look alike.
    name: String,
    /// The exact name: its raw bytes, every byte outside `A-Za-z0-9-._~`
    /// percent-encoded; decodes back to the stored bytes.
    #[schema(pattern = "^[A-Za-z0-9%._~-]+$")]
    name_encoded: String,
    /// The URL that lists this directory (`…/tree/…`) or downloads this
    /// regular file (`…/files/…`), built from the exact name; `null` for
    /// symlinks and special files.
    #[schema(
        required = true,
        pattern = "^/api/v1/stores/[^/]+/snapshots/[0-9a-f]{64}/(tree|files)/"
    )]
    href: Option<String>,
    /// Its type.
    #[serde(rename = "type")]
    kind: EntryType,
    /// Its size in bytes.
    size: u64,
    /// Permission bits in octal.
    #[schema(pattern = "^[0-7]{1,4}$")]
    mode: String,
    /// Its modification time.
    #[schema(format = DateTime)]
    mtime: String,
    /// A symlink's target.
    #[schema(required = true)]
    target: Option<String>,
}

/// A schema-only path parameter type: its schema is built by hand, where
/// the derive cannot say it (a `not` pattern).
macro_rules! param_schema {
    ($(#[$doc:meta])* $name:ident => $build:expr) => {
        $(#[$doc])*
        #[allow(dead_code)] // only its schema is used
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $build.into()
            }
        }

        impl ToSchema for $name {}
    };
}

/// A string schema with a pattern, and what it must not match.
fn path_schema(pattern: &str, not: serde_json::Value) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .extensions(Some(Extensions::from_iter([("not", not)])))
}

param_schema! {
    /// `latest` or a unique prefix of a snapshot id.
    SnapshotSpec => ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^(latest|[0-9A-Fa-f]{1,64})$"))
}

param_schema! {
    /// A path inside a snapshot that stays inside it.
    TreePathParam => path_schema("^[^\\x00]*$", json!({ "pattern": "(^|/)\\.\\.(/|$)" }))
        .min_length(Some(1))
        .examples(["etc"])
}

param_schema! {
    /// A path inside a snapshot that names something below its root.
    FilePathParam => path_schema(
        "^[^\\x00]*$",
        json!({ "anyOf": [{ "pattern": "(^|/)\\.\\.(/|$)" }, { "pattern": "^(\\.?/)*\\.?$" }] }),
    )
    .examples(["etc/hosts"])
}

/// The error answers of every restore-point operation (each a shared
/// response, referenced by name).
pub struct ReadErrors;

impl IntoResponses for ReadErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        fn named<'s, R: ToResponse<'s>>(status: &str) -> (String, RefOr<Response>) {
            let reference = Ref::from_response_name(R::response().0);
            (status.to_string(), RefOr::Ref(reference))
        }
        BTreeMap::from([
            named::<BadRequest>("400"),
            named::<Unauthorized>("401"),
            named::<NotFound>("404"),
            named::<Corrupt>("422"),
            named::<ServiceUnavailable>("503"),
        ])
    }
}

const STORE: &str = "A store's name";
const SNAPSHOT: &str =
    "`latest` or a unique prefix of a snapshot id (hex, any case); an ambiguous prefix is a 400";
const TREE_PATH: &str = "A path inside the snapshot, percent-decoded once; empty and `.` \
    components are skipped, a `..` or NUL component is a 400 (no path leaves the snapshot)";
const FILE_PATH: &str = "The path of a regular file inside the snapshot (rules of the tree path; \
    a path naming the root or another directory, a symlink or a special file is a 400)";

/// `GET /api/v1/stores/{store}/snapshots`.
#[utoipa::path(get, path = "/api/v1/stores/{store}/snapshots", tag = "snapshots",
    operation_id = "listSnapshots", summary = "The snapshots of a store, newest first",
    security(("bearer" = [])),
    params(("store" = String, Path, description = STORE, example = "local",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"), SnapshotPageQuery),
    responses(
        (status = 200, description = "A page of snapshots, newest first (streamed)",
            body = inline(SnapshotList)),
        ReadErrors))]
pub async fn list_snapshots(ctx: &Ctx, store: &str, query: &str) -> Reply {
    browse::snapshots(ctx, store, query).await
}

/// `GET /api/v1/stores/{store}/snapshots/{id}`.
#[utoipa::path(get, path = "/api/v1/stores/{store}/snapshots/{id}", tag = "snapshots",
    operation_id = "getSnapshot",
    summary = "One snapshot, with the files that could not be read",
    security(("bearer" = [])),
    params(("store" = String, Path, description = STORE, example = "local",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
        ("id" = inline(SnapshotSpec), Path, description = SNAPSHOT, example = "latest")),
    responses(
        (status = 200, description = "The snapshot", body = SnapshotDetail),
        ReadErrors))]
pub async fn get_snapshot(ctx: &Ctx, store: &str, id: &str) -> Reply {
    browse::snapshot_detail(ctx, store, id).await
}

/// `GET /api/v1/stores/{store}/snapshots/{id}/tree`.
#[utoipa::path(get, path = "/api/v1/stores/{store}/snapshots/{id}/tree", tag = "snapshots",
    operation_id = "listSnapshotRoot", summary = "The root directory of a snapshot",
    security(("bearer" = [])),
    params(("store" = String, Path, description = STORE, example = "local",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
        ("id" = inline(SnapshotSpec), Path, description = SNAPSHOT, example = "latest"),
        TreePageQuery),
    responses(
        (status = 200, description = "A page of the root directory (streamed)", body = Tree),
        ReadErrors,
        (status = 409, response = Cold)))]
pub async fn list_snapshot_root(
    ctx: &Ctx,
    store: &str,
    id: &str,
    path: &SnapPath,
    query: &str,
) -> Reply {
    browse::tree(ctx, store, id, path, query).await
}

/// `GET /api/v1/stores/{store}/snapshots/{id}/tree/{path}`.
#[utoipa::path(get, path = "/api/v1/stores/{store}/snapshots/{id}/tree/{path}",
    tag = "snapshots", operation_id = "listSnapshotDir",
    summary = "A directory of a snapshot (400 if the path is not a directory)",
    security(("bearer" = [])),
    params(("store" = String, Path, description = STORE, example = "local",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
        ("id" = inline(SnapshotSpec), Path, description = SNAPSHOT, example = "latest"),
        ("path" = inline(TreePathParam), Path, description = TREE_PATH),
        TreePageQuery),
    responses(
        (status = 200, description = "A page of the directory (streamed)", body = Tree),
        ReadErrors,
        (status = 409, response = Cold)))]
pub async fn list_snapshot_dir(
    ctx: &Ctx,
    store: &str,
    id: &str,
    path: &SnapPath,
    query: &str,
) -> Reply {
    browse::tree(ctx, store, id, path, query).await
}

/// `GET /api/v1/stores/{store}/snapshots/{id}/files/{path}`.
#[utoipa::path(get, path = "/api/v1/stores/{store}/snapshots/{id}/files/{path}",
    tag = "snapshots", operation_id = "getSnapshotFile",
    summary = "Downloads one regular file of a snapshot, streamed, without a restore",
    description = "Always a download (`Content-Disposition: attachment`, \
        `Content-Security-Policy: sandbox`), `Content-Type` guessed from the name. One byte range \
        is served (206); several ranges, a unit other than `bytes` or an `If-Range` that is not \
        the current ETag send the whole file. If a chunk turns out damaged while streaming, the \
        connection is cut rather than a wrong byte sent.",
    security(("bearer" = [])),
    params(("store" = String, Path, description = STORE, example = "local",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
        ("id" = inline(SnapshotSpec), Path, description = SNAPSHOT, example = "latest"),
        ("path" = inline(FilePathParam), Path, description = FILE_PATH),
        ("Range" = Option<String>, Header, example = "bytes=0-1023",
            description = "One range: `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`. An \
                unsatisfiable or malformed `bytes=` range is a 416; any other value is ignored."),
        ("If-Range" = Option<String>, Header,
            description = "Serve the range only if this is the current ETag, by the strong \
                comparison (RFC 9110 §13.1.5): a weak tag (`W/\"…\"`), another tag or a date \
                sends the whole file"),
        ("If-None-Match" = Option<String>, Header,
            description = "`*` or a list of ETags, weak (`W/\"…\"`) or strong, over one or more \
                header lines: 304 when one is the current ETag by the weak comparison (RFC 9110 \
                §13.1.2); a malformed value never matches")),
    responses(
        (status = 200, response = WholeFile),
        (status = 206, response = PartOfFile),
        (status = 304, response = NotModified),
        ReadErrors,
        (status = 409, response = Cold),
        (status = 416, response = RangeNotSatisfiable)))]
pub async fn get_snapshot_file(
    ctx: &Ctx,
    store: &str,
    id: &str,
    path: &SnapPath,
    headers: &HeaderMap,
) -> Reply {
    browse::file(ctx, store, id, path, headers).await
}

/// The headers of every download answer: name, description, value.
const FILE_HEADERS: [(&str, &str, HeaderForm); 6] = [
    (
        "ETag",
        "Strong, from the file's content ids",
        HeaderForm::Matching("^\"[0-9a-f]{32}\"$"),
    ),
    (
        "Last-Modified",
        "The file's mtime (HTTP date), when representable",
        HeaderForm::Text,
    ),
    (
        "Cache-Control",
        "Revalidated before reuse",
        HeaderForm::Exactly("private, no-cache"),
    ),
    (
        "Content-Disposition",
        "RFC 6266: an ASCII fallback `filename` (other characters and `\"`, `\\`, `%`, `;` \
         become `_`) and the name as UTF-8 in `filename*` (lossy for bytes that are not UTF-8), \
         percent-encoded",
        HeaderForm::Matching(
            "^attachment; filename=\"[ -~]*\"; filename\\*=UTF-8''[A-Za-z0-9%._~-]*$",
        ),
    ),
    (
        "Accept-Ranges",
        "Byte ranges are served",
        HeaderForm::Exactly("bytes"),
    ),
    (
        "Content-Security-Policy",
        "Never rendered as a page",
        HeaderForm::Exactly("sandbox; default-src 'none'"),
    ),
];

/// A download response with `headers`, and a body unless `body` is false.
fn download(
    description: &str,
    headers: &[(&str, &str, HeaderForm)],
    body: bool,
) -> RefOr<Response> {
    let mut response = ResponseBuilder::new().description(description);
    for (name, about, form) in headers {
        response = response.header(*name, header(about, *form));
    }
    if body {
        let binary = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)));
        response = response.content("*/*", Content::new(Some(binary)));
    }
    response.build().into()
}

/// 200 of a download.
pub struct WholeFile;

impl<'s> ToResponse<'s> for WholeFile {
    fn response() -> (&'s str, RefOr<Response>) {
        let mut headers = FILE_HEADERS.to_vec();
        headers.push(("Content-Length", "The file's length", HeaderForm::Count));
        ("WholeFile", download("The whole file", &headers, true))
    }
}

/// 206 of a download.
pub struct PartOfFile;

impl<'s> ToResponse<'s> for PartOfFile {
    fn response() -> (&'s str, RefOr<Response>) {
        let mut headers = FILE_HEADERS.to_vec();
        headers.push(("Content-Length", "The range's length", HeaderForm::Count));
        let range = HeaderForm::Matching("^bytes [0-9]+-[0-9]+/[0-9]+$");
        headers.push(("Content-Range", "The range and the file's length", range));
        (
            "PartOfFile",
            download("The requested byte range", &headers, true),
        )
    }
}

/// 304 of a download.
pub struct NotModified;

impl<'s> ToResponse<'s> for NotModified {
    fn response() -> (&'s str, RefOr<Response>) {
        let description = "`If-None-Match` holds the current ETag by the weak comparison (`W/` \
            ignored), or `*`: no body";
        (
            "NotModified",
            download(description, &FILE_HEADERS[..4], false),
        )
    }
}

/// The restore-point part of the document: its operations and the
/// schemas of their bodies.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_snapshots,
        get_snapshot,
        list_snapshot_root,
        list_snapshot_dir,
        get_snapshot_file
    ),
    components(
        schemas(SnapshotList, Snapshot, SnapshotDetail, Tree, TreeEntry),
        responses(WholeFile, PartOfFile, NotModified)
    )
)]
pub struct BrowseApi;
