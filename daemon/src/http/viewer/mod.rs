//! `GET /` and `/ui/…`: the server-rendered web viewer. Pages are plain
//! HTML with an inline style sheet: no JavaScript, no external assets, no
//! cookies; a strict `Content-Security-Policy` says so to the browser.
//!
//! - `/` (and `/ui`): the overview ([`overview`]).
//! - `/ui/schedules/NAME`: plots and runs of one schedule ([`schedule`]).
//! - `/ui/stores/NAME`, `/ui/stores/NAME/snapshots/ID[/tree/PATH]`: the
//!   restore points, directories and file downloads ([`browse`]); these
//!   read backed-up data and check the bearer token first. A tree path is
//!   raw bytes ([`tree_page`]), so names that are not UTF-8 can be browsed.
//!
//! Every page reads only the live state and the state database's reader;
//! none waits on a task. Unknown pages get an HTML 404.

mod browse;
mod html;
mod overview;
mod schedule;
mod svg;
mod tasks;

use std::sync::Arc;

use hyper::StatusCode;
use hyper::header::{CONTENT_SECURITY_POLICY, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use kloset::{ErrorKind, Repository};

use std::io::Write;

use super::Ctx;
use super::listing::{self, ChunkWriter};
use super::response::{Reply, with_type};
use super::stores::OpenError;
use crate::config::desired::StoreDef;
use html::{Crumb, esc};

/// The policy of every viewer page: inline style and `data:` images only.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// A rendered page.
#[derive(Debug)]
pub struct Page {
    /// Document title.
    pub title: String,
    /// Breadcrumb trail.
    pub crumbs: Vec<Crumb>,
    /// The `<main>` content (raw HTML).
    pub body: String,
    /// More content, written after `body` as it is produced (a long
    /// listing): the page is then streamed.
    pub rest: Option<Rest>,
}

/// Writes the streamed part of a page.
pub type WriteRest = dyn FnOnce(&mut ChunkWriter) -> std::io::Result<()> + Send;

/// The streamed part of a page.
pub struct Rest(pub Box<WriteRest>);

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rest(..)")
    }
}

/// Why a page cannot be shown: an HTTP status and a plain message.
#[derive(Debug)]
pub struct Failure {
    /// The status sent.
    pub status: StatusCode,
    /// What went wrong (escaped when shown).
    pub message: String,
    /// The `WWW-Authenticate` challenge of a refused token.
    pub challenge: Option<HeaderValue>,
}

impl Failure {
    /// A failure without extra headers.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            challenge: None,
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, message)
    }

    /// From an engine error, with the JSON API's status mapping.
    pub fn engine(e: &kloset::Error) -> Failure {
        let status = match e.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorKind::Corrupt => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        Failure::new(status, e.to_string())
    }
}

/// Renders the viewer page for `segments` (the decoded path after `/ui`;
/// empty for `/`).
pub async fn page(ctx: &Ctx, segments: &[&str], query: &str, headers: &HeaderMap) -> Reply {
    let result = match segments {
        [] => overview::page(ctx).await,
        ["schedules", name] => schedule::page(ctx, name).await,
        ["stores", rest @ ..] if !rest.is_empty() => match authorize(ctx, headers) {
            Ok(()) => browse::route(ctx, rest, query).await,
            Err(f) => Err(f),
        },
        _ => Err(Failure::not_found(format!(
            "there is no page at /ui/{}",
            segments.join("/")
        ))),
    };
    match result {
        Ok(p) => page_reply(p),
        Err(f) => failure(f),
    }
}

/// `/ui/stores/NAME/snapshots/ID/tree/PATH`, its path decoded as raw bytes.
pub async fn tree_page(
    ctx: &Ctx,
    store: &str,
    spec: &str,
    path: &crate::http::paths::SnapPath,
    query: &str,
    headers: &HeaderMap,
) -> Reply {
    let result = match authorize(ctx, headers) {
        Ok(()) => browse::tree(ctx, store, spec, path, query).await,
        Err(f) => Err(f),
    };
    match result {
        Ok(p) => page_reply(p),
        Err(f) => failure(f),
    }
}

/// A 400 page.
pub fn bad_request(message: &str) -> Reply {
    failure(Failure::new(StatusCode::BAD_REQUEST, message))
}

/// The bearer-token check of the JSON API, answered as a page.
fn authorize(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Failure> {
    let Err(denied) = super::auth::check(ctx, headers) else {
        return Ok(());
    };
    let status = denied.status();
    let message = if status == StatusCode::UNAUTHORIZED {
        "This page reads backed-up data and the endpoint requires a bearer token \
         ([daemon] token_file). Browsers do not send one: open the viewer through a \
         reverse proxy that adds the header Authorization: Bearer <token>."
    } else {
        "The bearer token file cannot be read, so pages that read backed-up data are closed."
    };
    let mut f = Failure::new(status, message);
    f.challenge = denied.headers().get(WWW_AUTHENTICATE).cloned();
    Err(f)
}

/// A page: whole, or streamed when it has a [`Rest`].
fn page_reply(p: Page) -> Reply {
    let Some(Rest(rest)) = p.rest else {
        return reply(StatusCode::OK, &p.title, &p.crumbs, &p.body);
    };
    let head = html::layout_head(&p.title, &p.crumbs);
    let body = p.body;
    let mut r = listing::stream(StatusCode::OK, "text/html; charset=utf-8", move |w| {
        w.write_all(head.as_bytes())?;
        w.write_all(body.as_bytes())?;
        rest(w)?;
        w.write_all(html::layout_tail().as_bytes())
    });
    r.headers_mut()
        .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    r
}

fn reply(status: StatusCode, title: &str, crumbs: &[Crumb], body: &str) -> Reply {
    let mut r = with_type(
        status,
        "text/html; charset=utf-8",
        html::layout(title, crumbs, body),
    );
    r.headers_mut()
        .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    r
}

fn failure(f: Failure) -> Reply {
    let title = format!(
        "{} {}",
        f.status.as_u16(),
        f.status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<h1>{}</h1>\n<div class=\"problems\"><p class=\"err\">{}</p></div>\n\
         <p><a href=\"/\">Back to the overview</a></p>",
        esc(&title),
        esc(&f.message)
    );
    let crumbs = [Crumb::link("/".into(), "Overview".into())];
    let mut r = reply(f.status, &title, &crumbs, &body);
    if let Some(c) = f.challenge {
        r.headers_mut().insert(WWW_AUTHENTICATE, c);
    }
    r
}

/// The applied definition of store `name`.
pub fn store_def(ctx: &Ctx, name: &str) -> Result<StoreDef, Failure> {
    ctx.live
        .applied()
        .and_then(|a| a.stores.get(name).cloned())
        .ok_or_else(|| Failure::not_found(format!("no store named {name:?}")))
}

/// A read-only handle on `def` from the endpoint's cache.
pub async fn open(ctx: &Ctx, def: &StoreDef, fresh: bool) -> Result<Arc<Repository>, Failure> {
    match ctx.stores.get(def, fresh).await {
        Ok(repo) => Ok(repo),
        Err(OpenError::Problem(p)) => {
            Err(Failure::new(StatusCode::SERVICE_UNAVAILABLE, p.to_string()))
        }
        Err(OpenError::Internal(e)) => Err(Failure::new(StatusCode::SERVICE_UNAVAILABLE, e)),
    }
}

/// Runs engine work off the runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> kloset::Result<T> + Send + 'static,
) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::engine(&e)),
        Err(e) => Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}
