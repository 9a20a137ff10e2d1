//! The read-only HTTP endpoint: a hyper HTTP/1 server on a TCP address
//! (loopback by default) or a Unix socket. Only GET and HEAD are served;
//! every other method gets 405. Request heads are bounded in size and time,
//! and connections in number. Handlers read the daemon's live state and the
//! state database through their own connection; none waits on a task.

mod api;
mod auth;
mod browse;
mod browse_json;
mod browse_schema;
mod conditional;
mod doc_parts;
#[cfg(test)]
mod fuzz_tests;
mod listing;
mod metrics;
mod objects;
mod openapi;
#[cfg(test)]
mod openapi_drift;
mod operations;
mod paths;
mod response;
mod schema;
mod stores;
mod task_stats_schema;
mod text;
mod viewer;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::config::desired::Listen;
use crate::state::StateHandle;
use crate::status::Live;
use response::{Reply, error};

/// Time allowed for a client to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (bytes).
pub const MAX_HEAD: usize = 16 * 1024;
/// Longest request target accepted (bytes).
pub const MAX_URI: usize = 4 * 1024;
/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 512;

/// What handlers read.
#[derive(Debug)]
pub struct Ctx {
    /// The daemon's live state.
    pub live: Arc<Live>,
    /// A reading connection to the state database.
    pub db: StateHandle,
    /// Read-only handles on the applied stores.
    pub stores: stores::StoreCache,
}

/// The running endpoint.
#[derive(Debug)]
pub struct HttpServer {
    listen: Listen,
    ctx: Arc<Ctx>,
    accept: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `listen` and starts serving.
    pub async fn start(listen: &Listen, live: Arc<Live>, db: StateHandle) -> Result<HttpServer> {
        let ctx = Arc::new(Ctx {
            live,
            db,
            stores: stores::StoreCache::default(),
        });
        let accept = bind(listen, ctx.clone()).await?;
        Ok(HttpServer {
            listen: listen.clone(),
            ctx,
            accept,
        })
    }

    /// Where it listens.
    pub fn listen(&self) -> &Listen {
        &self.listen
    }

    /// Moves to `listen`: the new address is bound first, so a failure
    /// leaves the old one serving.
    pub async fn rebind(&mut self, listen: &Listen) -> Result<()> {
        let accept = bind(listen, self.ctx.clone()).await?;
        self.accept.abort();
        self.accept = accept;
        self.listen = listen.clone();
        Ok(())
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        self.accept.abort();
    }
}

async fn bind(listen: &Listen, ctx: Arc<Ctx>) -> Result<JoinHandle<()>> {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    match listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let bound = listener.local_addr().unwrap_or(*addr);
            tracing::info!(addr = %bound, "status endpoint listening");
            Ok(tokio::spawn(async move {
                loop {
                    let Ok(permit) = limit.clone().acquire_owned().await else {
                        return;
                    };
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            serve(stream, ctx.clone(), permit);
                        }
                        Err(e) => {
                            tracing::warn!("accepting a connection failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }))
        }
        Listen::Unix(path) => {
            remove_stale_socket(path)?;
            let listener = bind_private(path)?;
            tracing::info!(path = %path.display(), "status endpoint listening");
            Ok(tokio::spawn(async move {
                loop {
                    let Ok(permit) = limit.clone().acquire_owned().await else {
                        return;
                    };
                    match listener.accept().await {
                        Ok((stream, _)) => serve(stream, ctx.clone(), permit),
                        Err(e) => {
                            tracing::warn!("accepting a connection failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }))
        }
    }
}

/// Binds a unix socket at `path` that is owner and group only (0660)
/// from the moment it appears there: it is bound in a new 0700 directory
/// beside `path`, made 0660, then renamed into place. Bound at `path`
/// directly, it existed with the umask's mode until the `chmod` (0755, or
/// open to all under umask 0), and the socket serves backed-up data.
fn bind_private(path: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let parent = path.parent().unwrap_or(Path::new("."));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let staging = parent.join(format!(".klosetd-socket-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("creating {}", staging.display()))?;
    let bound = (|| {
        let inside = staging.join("socket");
        let listener = tokio::net::UnixListener::bind(&inside)
            .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
        std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("setting permissions of {}", inside.display()))?;
        std::fs::rename(&inside, path)
            .with_context(|| format!("moving the socket to {}", path.display()))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    bound
}

/// Removes a socket left by a previous process; refuses to remove
/// anything that is not a socket.
fn remove_stale_socket(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display())),
        Ok(_) => anyhow::bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(_) => Ok(()),
    }
}

fn serve<S>(stream: S, ctx: Arc<Ctx>, permit: tokio::sync::OwnedSemaphorePermit)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = service_fn(move |req| {
            let ctx = ctx.clone();
            async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_HEAD)
            .serve_connection(TokioIo::new(stream), service);
        if let Err(e) = conn.await {
            tracing::debug!("connection ended: {e}");
        }
        drop(permit);
    });
}

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let head = req.method() == Method::HEAD;
    let reply = route(ctx, &req).await;
    if head {
        response::without_body(reply)
    } else {
        reply
    }
}

/// Answers `req` (its method, target and headers; any body is ignored).
async fn route<B>(ctx: &Ctx, req: &Request<B>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return response::method_not_allowed();
    }
    let uri = req.uri();
    if uri.path_and_query().map_or(0, |p| p.as_str().len()) > MAX_URI {
        return error(StatusCode::URI_TOO_LONG, "the request target is too long");
    }
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let raw: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    if raw.len() >= 5 && raw[..3] == ["api", "v1", "stores"] && raw[4] == "snapshots" {
        return snapshot_routes(ctx, req, &raw).await;
    }
    if raw.len() >= 6 && raw[..2] == ["ui", "stores"] && raw[3] == "snapshots" && raw[5] == "tree" {
        // A directory page: its path is raw bytes, like the API's.
        let (Some(store), Some(id)) = (browse::decode(raw[2]), browse::decode(raw[4])) else {
            return viewer::bad_request("the store name or snapshot id is not valid UTF-8");
        };
        return match paths::SnapPath::decode(&raw[6..].join("/")) {
            Ok(path) => viewer::tree_page(ctx, &store, &id, &path, query, req.headers()).await,
            Err(message) => viewer::bad_request(&message),
        };
    }
    let Some(segments) = raw
        .iter()
        .map(|p| browse::decode(p))
        .collect::<Option<Vec<String>>>()
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "the path is not valid UTF-8 once decoded",
        );
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    use operations as op;
    match segments.as_slice() {
        [] | [""] => viewer::page(ctx, &[], query, req.headers()).await,
        ["ui", rest @ ..] => viewer::page(ctx, rest, query, req.headers()).await,
        ["api", "v1", "openapi.json"] => op::openapi(),
        ["healthz"] => op::healthz(),
        ["readyz"] => op::readyz(ctx),
        ["status"] => op::status_text(ctx).await,
        ["metrics"] => op::metrics(ctx).await,
        ["api", "v1", "status"] => op::status(ctx),
        ["api", "v1", "schedules"] => op::list_schedules(ctx).await,
        ["api", "v1", "schedules", name] => op::get_schedule(ctx, name).await,
        ["api", "v1", "tasks"] => op::list_tasks(ctx, query).await,
        ["api", "v1", "tasks", id] => op::get_task(ctx, id).await,
        ["api", "v1", "resources"] => op::list_resources(ctx).await,
        ["api", "v1", "resources", name] => op::get_resource(ctx, name).await,
        ["api", "v1", "stores"] => op::list_stores(ctx).await,
        ["api", "v1", "stores", name] => op::get_store(ctx, name).await,
        ["api", "v1", "sources"] => op::list_sources(ctx).await,
        ["api", "v1", "sources", name] => op::get_source(ctx, name).await,
        ["api", "v1", "destinations"] => op::list_destinations(ctx).await,
        ["api", "v1", "destinations", name] => op::get_destination(ctx, name).await,
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

/// `/api/v1/stores/{store}/snapshots[/{id}[/tree|files/{path}]]`: reads
/// backed-up data, so the bearer token is checked first.
async fn snapshot_routes<B>(ctx: &Ctx, req: &Request<B>, raw: &[&str]) -> Reply {
    if let Err(reply) = auth::check(ctx, req.headers()) {
        return reply;
    }
    let Some(store) = browse::decode(raw[3]) else {
        return error(StatusCode::BAD_REQUEST, "the store name is not valid UTF-8");
    };
    let Some(id) = raw.get(5).map(|i| browse::decode(i)) else {
        let query = req.uri().query().unwrap_or("");
        return browse_schema::list_snapshots(ctx, &store, query).await;
    };
    let Some(id) = id else {
        return error(
            StatusCode::BAD_REQUEST,
            "the snapshot id is not valid UTF-8",
        );
    };
    // Raw bytes: a name inside a snapshot need not be UTF-8.
    let rest = raw.get(7..).map(|r| r.join("/")).unwrap_or_default();
    let path = match paths::SnapPath::decode(&rest) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    use browse_schema as op;
    match raw.get(6) {
        None => op::get_snapshot(ctx, &store, &id).await,
        Some(&"tree") => {
            let query = req.uri().query().unwrap_or("");
            if rest.is_empty() {
                op::list_snapshot_root(ctx, &store, &id, &path, query).await
            } else {
                op::list_snapshot_dir(ctx, &store, &id, &path, query).await
            }
        }
        Some(&"files") => op::get_snapshot_file(ctx, &store, &id, &path, req.headers()).await,
        Some(_) => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {}", req.uri().path()),
        ),
    }
}
