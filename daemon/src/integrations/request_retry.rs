//! Retries that object_store does not make itself: create-only writes to
//! cloud object stores once the request may have reached the server, and
//! any request that was never sent.
//!
//! The engine writes every object under a fresh name with
//! `PutMode::Create`, and object_store treats such a request as not
//! idempotent: when a connection breaks while the body is sent (a server
//! restarting, a load balancer dropping it), it gives up at once, and a
//! backup fails over a blip that its reads and listings ride out. Here the
//! write is tried again after a pause when the failure was in the transport
//! (connect, send, time-out, interruption). If a retry finds the name taken,
//! the earlier attempt may have landed (an object is stored whole or not at
//! all): it counts as written only if the stored object is byte for byte
//! the one being written. A fixed name (the store header) that another
//! writer took meanwhile stays taken.
//!
//! Any other request is tried again here only when it was never sent: the
//! HTTP client found its pooled connection closed as the request was about
//! to go out (hyper's "connection was not ready", which object_store gives
//! up on as an unknown error). Everything else object_store already
//! retried within its own budget.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// How long a create is tried again after its first attempt began: each
/// attempt is itself object_store's retries for up to 5 minutes, so a
/// server that stays down fails a write after 10 to 15 minutes, not after
/// every pause below.
const CREATE_RETRY_FOR: Duration = Duration::from_secs(600);

/// Pauses before the retries of one write (about 2 minutes in all).
const PAUSES: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

/// Pauses before the retries of a request that was never sent.
const UNSENT_PAUSES: [Duration; 4] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// A store whose create-only writes are retried over transport failures,
/// and whose other requests are retried when they were never sent.
#[derive(Debug)]
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
}

impl RetryingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> RetryingStore {
        RetryingStore { inner }
    }
}

/// Whether `e` failed in the transport (nothing tells the write did not
/// land, nothing tells it did).
pub fn is_transport(e: &object_store::Error) -> bool {
    if was_not_sent(e) {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(http) = s.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        source = s.source();
    }
    false
}

/// Whether `e` says the request never left: the client's connection was
/// closed before it could be sent (hyper calls that canceled).
pub fn was_not_sent(e: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// A request by `send`, tried again after each of `pauses` while it fails
/// without having been sent.
async fn unsent_with_retries<T, S, SF>(
    mut send: S,
    pauses: &[Duration],
    what: &(dyn fmt::Display + Sync),
) -> object_store::Result<T>
where
    S: FnMut() -> SF,
    SF: Future<Output = object_store::Result<T>>,
{
    let mut pauses = pauses.iter();
    loop {
        match send().await {
            Err(e) if was_not_sent(&e) => match pauses.next() {
                Some(pause) => {
                    tracing::warn!(object = %what, error = %e, retry_in = ?pause, "a request was not sent (its connection closed); retrying");
                    tokio::time::sleep(*pause).await;
                }
                None => return Err(e),
            },
            other => return other,
        }
    }
}

/// Where a listing stands: what it lists, the last key it gave, the pauses
/// left and the listing of the remaining keys.
struct Listing {
    inner: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    after: Option<Path>,
    pauses: std::slice::Iter<'static, Duration>,
    rest: BoxStream<'static, object_store::Result<ObjectMeta>>,
    failed: bool,
}

impl Listing {
    fn open(&mut self) {
        self.rest = match &self.after {
            Some(after) => self.inner.list_with_offset(self.prefix.as_ref(), after),
            None => self.inner.list(self.prefix.as_ref()),
        };
    }
}

/// The keys under `prefix` (after `offset`, if given); a page request that
/// was never sent resumes the listing after the last key it gave (listings
/// are in key order).
fn resumable_list(
    inner: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    offset: Option<Path>,
) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
    let mut listing = Listing {
        inner,
        prefix,
        after: offset,
        pauses: UNSENT_PAUSES.iter(),
        rest: futures::stream::empty().boxed(),
        failed: false,
    };
    listing.open();
    futures::stream::unfold(listing, |mut listing| async move {
        if listing.failed {
            return None;
        }
        loop {
            match listing.rest.next().await? {
                Ok(meta) => {
                    listing.after = Some(meta.location.clone());
                    return Some((Ok(meta), listing));
                }
                Err(e) if was_not_sent(&e) => match listing.pauses.next() {
                    Some(pause) => {
                        let prefix = listing.prefix.clone().unwrap_or_default();
                        tracing::warn!(prefix = %prefix, error = %e, retry_in = ?pause, "a listing request was not sent (its connection closed); resuming");
                        tokio::time::sleep(*pause).await;
                        listing.open();
                    }
                    None => {
                        listing.failed = true;
                        return Some((Err(e), listing));
                    }
                },
                Err(e) => {
                    listing.failed = true;
                    return Some((Err(e), listing));
                }
            }
        }
    })
    .boxed()
}

/// A create-only write by `put`, retried after each of `pauses` while it
/// fails in the transport and began less than `retry_for` ago; a name
/// found taken after such a failure is the earlier attempt when `ours`
/// says the stored object is the one written.
async fn create_with_retries<P, PF, O, OF>(
    mut put: P,
    ours: O,
    (pauses, retry_for): (&[Duration], Duration),
    location: &Path,
) -> object_store::Result<PutResult>
where
    P: FnMut() -> PF,
    PF: Future<Output = object_store::Result<PutResult>>,
    O: FnOnce() -> OF,
    OF: Future<Output = object_store::Result<bool>>,
{
    let mut pauses = pauses.iter();
    let mut failed_before = false;
    let started = tokio::time::Instant::now();
    loop {
        match put().await {
            Err(object_store::Error::AlreadyExists { path, source }) if failed_before => {
                // An attempt whose answer was lost may have landed.
                return match ours().await {
                    Ok(true) => Ok(PutResult {
                        e_tag: None,
                        version: None,
                        extensions: Default::default(),
                    }),
                    _ => Err(object_store::Error::AlreadyExists { path, source }),
                };
            }
            Err(e) if is_transport(&e) => match pauses.next() {
                Some(pause) if started.elapsed() < retry_for => {
                    tracing::warn!(object = %location, error = %e, retry_in = ?pause, "writing an object failed in transit; retrying");
                    failed_before = true;
                    tokio::time::sleep(*pause).await;
                }
                _ => return Err(e),
            },
            other => return other,
        }
    }
}

/// Whether `stored` holds exactly the bytes of `payload`.
fn same_bytes(payload: &PutPayload, stored: &[u8]) -> bool {
    let mut at = 0;
    for chunk in payload.iter() {
        if stored.get(at..at + chunk.len()) != Some(chunk.as_ref()) {
            return false;
        }
        at += chunk.len();
    }
    at == stored.len()
}

impl fmt::Display for RetryingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RetryingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let inner = &self.inner;
        if !matches!(opts.mode, PutMode::Create) {
            return unsent_with_retries(
                || inner.put_opts(location, payload.clone(), opts.clone()),
                &UNSENT_PAUSES,
                location,
            )
            .await;
        }
        create_with_retries(
            || inner.put_opts(location, payload.clone(), opts.clone()),
            || async {
                let stored = inner.get(location).await?.bytes().await?;
                Ok(same_bytes(&payload, &stored))
            },
            (&PAUSES, CREATE_RETRY_FOR),
            location,
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        unsent_with_retries(
            || self.inner.put_multipart_opts(location, opts.clone()),
            &UNSENT_PAUSES,
            location,
        )
        .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        unsent_with_retries(
            || self.inner.get_opts(location, options.clone()),
            &UNSENT_PAUSES,
            location,
        )
        .await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        unsent_with_retries(
            || self.inner.get_ranges(location, ranges),
            &UNSENT_PAUSES,
            location,
        )
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        resumable_list(Arc::clone(&self.inner), prefix.cloned(), None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        resumable_list(
            Arc::clone(&self.inner),
            prefix.cloned(),
            Some(offset.clone()),
        )
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let what = prefix.map_or_else(String::new, ToString::to_string);
        unsent_with_retries(
            || self.inner.list_with_delimiter(prefix),
            &UNSENT_PAUSES,
            &what,
        )
        .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        unsent_with_retries(
            || self.inner.copy_opts(from, to, options.clone()),
            &UNSENT_PAUSES,
            to,
        )
        .await
    }
}

#[cfg(test)]
#[path = "request_retry_tests.rs"]
mod tests;
