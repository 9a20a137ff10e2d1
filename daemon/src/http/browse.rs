//! Browsing restore points: `/api/v1/stores/{store}/snapshots`, `…/{id}`
//! (a unique id prefix or `latest`), `…/{id}/tree/{path}` (a directory
//! listing) and `…/{id}/files/{path}` (one file, streamed, with `Range`,
//! `ETag` and `Content-Length`). Listings come in pages (`limit`, `cursor`;
//! see [`super::listing`]), streamed; a directory's page is read from its
//! tree blob as it decompresses, never the whole directory. Paths are percent-decoded once into raw
//! bytes ([`SnapPath`]: names need not be UTF-8) and checked before anything
//! is read: no `..`, NUL or empty component can leave the snapshot. Each
//! listed entry carries `name_encoded` and `href`, its exact name and URL.
//! Every data-reading endpoint needs the bearer token when one is set.

// A handler's early answer travels as the `Err` of a `Result<_, Reply>`:
// it is built once and sent, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{HeaderMap, HeaderValue};
use kloset::ops::browse::{DirPage, Entry, list_page};
use kloset::tree::NodeKind;
use kloset::{BlobKind, ErrorKind, Repository, Snapshot};
use std::io::Write;

use super::Ctx;
use super::browse_json::{SnapshotDetail, SnapshotList, SnapshotSummary, TreeEntry, TreeListing};
use super::conditional;
use super::listing::{self, Paging, SnapshotCursor};
use super::paths::{self, SnapPath};
use super::response::{Body, Reply, error, json};
use super::stores::OpenError;
use crate::config::model::StorageType;

/// Chunks buffered between the reading thread and the connection.
const STREAM_DEPTH: usize = 4;
/// How long a download waits for a client to take the next chunk.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Percent-decodes one URL part; `None` if it is not UTF-8.
pub fn decode(part: &str) -> Option<String> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn engine_error(e: &kloset::Error) -> Reply {
    let status = match e.kind() {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Corrupt => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

/// The store named `name`, opened; or the reply explaining why not.
async fn open(ctx: &Ctx, name: &str, fresh: bool) -> Result<(Arc<Repository>, bool), Reply> {
    let Some(applied) = ctx.live.applied() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no store named {name:?}"),
        ));
    };
    let Some(def) = applied.stores.get(name) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no store named {name:?}"),
        ));
    };
    let cold = def.storage_type == StorageType::Cold;
    match ctx.stores.get(def, fresh).await {
        Ok(repo) => Ok((repo, cold)),
        Err(OpenError::Problem(p)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, p.to_string())),
        Err(OpenError::Internal(e)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, e)),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> kloset::Result<T> + Send + 'static,
) -> Result<T, Reply> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(engine_error(&e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// Resolves `spec` in `store`; retries once with a fresh index when the
/// snapshot is newer than the cached handle.
async fn snapshot(
    ctx: &Ctx,
    store: &str,
    spec: &str,
) -> Result<(Arc<Repository>, Snapshot, bool), Reply> {
    let (repo, cold) = open(ctx, store, false).await?;
    let spec = spec.to_string();
    let r = repo.clone();
    let snap = blocking(move || r.resolve_snapshot(&spec)).await?;
    if !matches!(repo.index().get(&snap.tree), Ok(Some(_))) {
        let (repo, cold) = open(ctx, store, true).await?;
        return Ok((repo, snap, cold));
    }
    Ok((repo, snap, cold))
}

/// `GET /api/v1/stores/{store}/snapshots`: newest first, a page of at most
/// `limit` after `cursor` (see [`listing`]).
pub async fn snapshots(ctx: &Ctx, store: &str, query: &str) -> Reply {
    let paging = match Paging::parse(query) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let after = match paging.cursor.as_deref().map(SnapshotCursor::decode) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(message)) => return error(StatusCode::BAD_REQUEST, message),
    };
    let (repo, _) = match open(ctx, store, false).await {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let limit = paging.limit;
    let (page, more) = match blocking(move || snapshot_page(&repo, after, limit)).await {
        // Any damaged snapshot fails the list, as `kloset ls` does.
        Ok(found) => match found.problems.into_iter().next() {
            None => (found.page, found.more),
            Some((_, e)) => return engine_error(&e),
        },
        Err(reply) => return reply,
    };
    let next_cursor = more
        .then(|| page.last().map(|s| SnapshotCursor::from(s).encode()))
        .flatten();
    let body = SnapshotList {
        limit: paging.limit,
        next: next_cursor.as_ref().map(|c| {
            format!(
                "/api/v1/stores/{}/snapshots{}",
                paths::encode(store.as_bytes()),
                paging.next_query(c)
            )
        }),
        next_cursor,
        snapshots: page.iter().map(SnapshotSummary::from).collect(),
    };
    stream_json(body)
}

/// A page of a store's snapshots, newest first, read header by header.
#[derive(Debug)]
pub struct SnapshotPage {
    /// At most `limit` snapshots after the cursor, newest first.
    pub page: Vec<Snapshot>,
    /// Whether more follow.
    pub more: bool,
    /// How many snapshots the store has (readable ones).
    pub total: usize,
    /// Snapshots that cannot be read, by object path.
    pub problems: Vec<kloset::repository::SnapshotProblem>,
}

/// The snapshots after `after` (newest first), at most `limit`. Keeps only
/// the `limit + 1` newest before the cursor while reading, so memory
/// follows the page, not the number of snapshots in the store.
pub fn snapshot_page(
    repo: &Repository,
    after: Option<SnapshotCursor>,
    limit: usize,
) -> kloset::Result<SnapshotPage> {
    let mut kept: std::collections::BTreeMap<SnapshotCursor, Snapshot> = Default::default();
    let mut total = 0;
    let mut problems = Vec::new();
    repo.visit_snapshots(|path, read| match read {
        Ok(s) => {
            total += 1;
            let at = SnapshotCursor::from(&s);
            if after.is_none_or(|a| at < a) {
                kept.insert(at, s);
                if kept.len() > limit.saturating_add(1) {
                    kept.pop_first();
                }
            }
        }
        Err(e) => problems.push((path.to_string(), e)),
    })?;
    problems.sort_by(|a, b| a.0.cmp(&b.0));
    let mut page: Vec<Snapshot> = kept.into_values().rev().collect();
    let more = page.len() > limit;
    page.truncate(limit);
    Ok(SnapshotPage {
        page,
        more,
        total,
        problems,
    })
}

/// A JSON body written as it is serialized.
fn stream_json<T: serde::Serialize + Send + 'static>(body: T) -> Reply {
    listing::stream(StatusCode::OK, "application/json", move |w| {
        serde_json::to_writer_pretty(&mut *w, &body)?;
        w.write_all(b"\n")
    })
}

/// `GET /api/v1/stores/{store}/snapshots/{id}`.
pub async fn snapshot_detail(ctx: &Ctx, store: &str, spec: &str) -> Reply {
    match snapshot(ctx, store, spec).await {
        Ok((_, snap, _)) => json(
            StatusCode::OK,
            &SnapshotDetail {
                summary: SnapshotSummary::from(&snap),
                unreadable_files: snap.errors,
            },
        ),
        Err(reply) => reply,
    }
}

fn cold_refusal() -> Reply {
    error(
        StatusCode::CONFLICT,
        "this store is cold (storage_type = \"cold\"): reading its data is refused here; \
         restore with a task that sets allow_cold_read = true",
    )
}

/// [`snapshot`] for reading its data: refused on a cold store.
async fn readable(
    ctx: &Ctx,
    store: &str,
    spec: &str,
) -> Result<(Arc<Repository>, Snapshot), Reply> {
    match snapshot(ctx, store, spec).await? {
        (_, _, true) => Err(cold_refusal()),
        (repo, snap, false) => Ok((repo, snap)),
    }
}

/// `GET /api/v1/stores/{store}/snapshots/{id}/tree/{path}`: a page of at
/// most `limit` entries after `cursor`, by name bytes. The page is read
/// from the tree blob as it is decompressed (never the whole directory),
/// checked, then streamed.
pub async fn tree(ctx: &Ctx, store: &str, spec: &str, path: &SnapPath, query: &str) -> Reply {
    let paging = match Paging::parse(query) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let (repo, snap) = match readable(ctx, store, spec).await {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let id = snap.id.to_string();
    let (p, after, limit) = (path.clone(), paging.cursor.clone(), paging.limit);
    let listing = blocking(move || {
        let node = paths::find_node(&repo, &snap, &p)?;
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(tree)) => list_page(&repo, &tree, after.as_deref(), limit).map(Ok),
            (NodeKind::Dir, None) => Ok(Ok(DirPage {
                entries: Vec::new(),
                more: false,
            })),
            (kind, _) => Ok(Err(kind)),
        }
    })
    .await;
    let page = match listing {
        Ok(Ok(page)) => page,
        Ok(Err(kind)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{} is a {kind:?}, not a directory; files are under …/files/",
                    path.display()
                )
                .to_lowercase(),
            );
        }
        Err(reply) => return reply,
    };
    let base = format!(
        "/api/v1/stores/{}/snapshots/{id}",
        paths::encode(store.as_bytes())
    );
    let here = format!("{base}/tree/{}", path.encoded());
    let next_cursor = page
        .more
        .then(|| page.entries.last().map(|e| paths::encode(&e.name)))
        .flatten();
    let entries = page
        .entries
        .iter()
        .map(|n| {
            let e = Entry::from(n);
            let href = match e.kind {
                NodeKind::Dir => Some(format!("{base}/tree/{}", path.join(&n.name).encoded())),
                NodeKind::File => Some(format!("{base}/files/{}", path.join(&n.name).encoded())),
                _ => None,
            };
            TreeEntry {
                name: e.name,
                name_encoded: paths::encode(&n.name),
                href,
                kind: e.kind,
                size: e.size,
                mode: format!("{:o}", e.mode & 0o7777),
                mtime: kloset::snapshot::format_time(e.mtime_ns),
                target: e.target,
            }
        })
        .collect();
    drop(page);
    stream_json(TreeListing {
        path: path.display(),
        next: next_cursor
            .as_ref()
            .map(|c| format!("{here}{}", paging.next_query(c))),
        href: here,
        limit: paging.limit,
        next_cursor,
        entries,
    })
}

/// One byte range of a file, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte.
    pub end: u64,
}

/// Parses a single-range `Range` header against a file of `len` bytes:
/// `Ok(None)` means "send everything" (absent, several ranges, or not
/// bytes), `Err(())` means unsatisfiable.
pub fn parse_range(header: Option<&str>, len: u64) -> Result<Option<ByteRange>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || len == 0 {
            return Err(());
        }
        ByteRange {
            start: len.saturating_sub(n),
            end: len - 1,
        }
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
        };
        if start >= len || end < start {
            return Err(());
        }
        ByteRange { start, end }
    };
    Ok(Some(range))
}

/// `GET /api/v1/stores/{store}/snapshots/{id}/files/{path}`.
pub async fn file(
    ctx: &Ctx,
    store: &str,
    spec: &str,
    path: &SnapPath,
    headers: &HeaderMap,
) -> Reply {
    let (repo, snap) = match readable(ctx, store, spec).await {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let p = path.clone();
    let r = repo.clone();
    let node = match blocking(move || paths::find_node(&r, &snap, &p)).await {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    if node.kind != NodeKind::File {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "{} is a {:?}, not a regular file",
                path.display(),
                node.kind
            )
            .to_lowercase(),
        );
    }
    // Blob sizes from the index: the range maps onto blobs without reading.
    let mut sizes = Vec::with_capacity(node.content.len());
    {
        let index = repo.index();
        for id in &node.content {
            match index.get(id) {
                Ok(Some(loc)) => sizes.push(u64::from(loc.raw_length)),
                Err(e) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("reading the store index: {e}"),
                    );
                }
                Ok(None) => {
                    // Names the index objects that could not be read, if
                    // any: the chunk may be listed in one of them.
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "a chunk of {} is missing from the store index: {}",
                            path.display(),
                            repo.missing_blob(BlobKind::Data, id)
                        ),
                    );
                }
            }
        }
    }
    let len: u64 = sizes.iter().sum();
    let etag = {
        let mut h = blake3::Hasher::new();
        for id in &node.content {
            h.update(id.as_bytes());
        }
        format!("\"{}\"", &h.finalize().to_hex()[..32])
    };
    if conditional::none_match(headers, &etag) {
        return with_file_headers(
            hyper::Response::builder().status(StatusCode::NOT_MODIFIED),
            &etag,
            path,
            node.mtime_ns,
        )
        .body(Body::Full(None))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    }
    let if_range_ok = conditional::range_allowed(headers, &etag);
    let range = if if_range_ok {
        let range = headers
            .get(hyper::header::RANGE)
            .and_then(|v| v.to_str().ok());
        match parse_range(range, len) {
            Ok(r) => r,
            Err(()) => {
                let mut reply = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!("the file has {len} bytes"),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    reply.headers_mut().insert(hyper::header::CONTENT_RANGE, v);
                }
                return reply;
            }
        }
    } else {
        None
    };
    let (start, end_excl) = range.map_or((0, len), |r| (r.start, r.end + 1));
    // The first blob of the range is read before the answer starts, so a
    // damaged or missing one is an error status naming the object rather
    // than a 200 cut short. A later one can only cut the stream (below).
    let mut first = None;
    let mut offset = 0u64;
    for (i, size) in sizes.iter().enumerate() {
        if offset + size > start && offset < end_excl {
            let (r, id) = (repo.clone(), node.content[i]);
            match blocking(move || r.load_blob(BlobKind::Data, &id)).await {
                Ok(data) => first = Some((i, data)),
                Err(reply) => return reply,
            }
            break;
        }
        offset += size;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_DEPTH);
    let content = node.content.clone();
    let runtime = tokio::runtime::Handle::current();
    // A client that stops reading is dropped after SEND_TIMEOUT, so it
    // cannot pin a reading thread forever.
    let send = move |item: Result<Bytes, std::io::Error>| -> bool {
        runtime
            .block_on(tokio::time::timeout(SEND_TIMEOUT, tx.send(item)))
            .is_ok_and(|sent| sent.is_ok())
    };
    tokio::task::spawn_blocking(move || {
        let mut offset = 0u64;
        for (i, (id, size)) in content.iter().zip(sizes).enumerate() {
            let (blob_start, blob_end) = (offset, offset + size);
            offset = blob_end;
            if blob_end <= start {
                continue;
            }
            if blob_start >= end_excl {
                break;
            }
            let loaded = match first.take() {
                Some((at, data)) if at == i => Ok(data),
                _ => repo.load_blob(BlobKind::Data, id),
            };
            let data = match loaded {
                Ok(d) => d,
                Err(e) => {
                    // The connection is cut: a client never gets a silently
                    // short or corrupt file.
                    tracing::error!("download failed: {e}");
                    send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            let from = start.saturating_sub(blob_start) as usize;
            let to = (end_excl.min(blob_end) - blob_start) as usize;
            let chunk = Bytes::from(data).slice(from.min(to)..to);
            if !send(Ok(chunk)) {
                return; // the client went away or stopped reading
            }
        }
    });
    let length = end_excl - start;
    let mut builder = hyper::Response::builder()
        .status(if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header(hyper::header::CONTENT_LENGTH, length)
        .header(hyper::header::ACCEPT_RANGES, "bytes");
    if let Some(r) = range {
        builder = builder.header(
            hyper::header::CONTENT_RANGE,
            format!("bytes {}-{}/{len}", r.start, r.end),
        );
    }
    let content_type = mime_guess::from_path(path.display())
        .first_raw()
        .unwrap_or("application/octet-stream");
    with_file_headers(builder, &etag, path, node.mtime_ns)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Body::Stream(rx, Some(length)))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Headers of every file answer: a download, never rendered in the
/// endpoint's origin (backed-up HTML must not run scripts there).
fn with_file_headers(
    builder: hyper::http::response::Builder,
    etag: &str,
    path: &SnapPath,
    mtime_ns: i64,
) -> hyper::http::response::Builder {
    let name = path.name().unwrap_or(b"file");
    let last_modified = chrono::DateTime::from_timestamp(mtime_ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
    let mut b = builder
        .header(hyper::header::ETAG, etag)
        .header(hyper::header::CACHE_CONTROL, "private, no-cache")
        .header("x-content-type-options", "nosniff")
        .header(
            hyper::header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        )
        .header(
            hyper::header::CONTENT_DISPOSITION,
            paths::content_disposition(name),
        );
    if let Some(lm) = last_modified {
        b = b.header(hyper::header::LAST_MODIFIED, lm);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |s: &str| parse_range(Some(s), 100);
        assert_eq!(r("bytes=0-9"), Ok(Some(ByteRange { start: 0, end: 9 })));
        assert_eq!(r("bytes=90-"), Ok(Some(ByteRange { start: 90, end: 99 })));
        assert_eq!(r("bytes=-10"), Ok(Some(ByteRange { start: 90, end: 99 })));
        assert_eq!(r("bytes=-1000"), Ok(Some(ByteRange { start: 0, end: 99 })));
        assert_eq!(
            r("bytes=50-1000"),
            Ok(Some(ByteRange { start: 50, end: 99 }))
        );
        assert_eq!(r("bytes=0-1,5-6"), Ok(None));
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(r("items=0-1"), Ok(None));
        assert_eq!(r("bytes=100-"), Err(()));
        assert_eq!(r("bytes=9-3"), Err(()));
        assert_eq!(r("bytes=-0"), Err(()));
        assert_eq!(r("bytes=x-1"), Err(()));
        assert_eq!(parse_range(Some("bytes=0-"), 0), Err(()));
    }

    #[test]
    fn decoding() {
        assert_eq!(decode("a%20b"), Some("a b".into()));
        assert_eq!(decode("%2e%2e"), Some("..".into()));
        assert_eq!(decode("%ff"), None);
    }
}
