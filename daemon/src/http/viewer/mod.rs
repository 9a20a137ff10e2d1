//! `GET /` and `/ui/…`: the server-rendered web viewer (no JavaScript, no
//! external assets). Placeholder until the viewer lands: the endpoint list.

use hyper::header::HeaderMap;

use super::Ctx;
use super::response::Reply;

/// Renders the viewer page for `segments` (the path after `/ui`; empty for
/// `/`) with the raw `query`.
pub async fn page(ctx: &Ctx, segments: &[&str], _query: &str, _headers: &HeaderMap) -> Reply {
    let _ = segments;
    super::text::index(ctx)
}
