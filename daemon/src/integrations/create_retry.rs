//! Retries of create-only writes to cloud object stores, which object_store
//! does not retry itself once the request may have reached the server.
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

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// Pauses before the retries of one write (about 2 minutes in all).
const PAUSES: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

/// A store whose create-only writes are retried over transport failures.
#[derive(Debug)]
pub struct CreateRetry {
    inner: Arc<dyn ObjectStore>,
}

impl CreateRetry {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> CreateRetry {
        CreateRetry { inner }
    }
}

/// Whether `e` failed in the transport (nothing tells the write did not
/// land, nothing tells it did).
pub fn is_transport(e: &object_store::Error) -> bool {
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

/// A create-only write by `put`, retried after each of `pauses` while it
/// fails in the transport; a name found taken after such a failure is the
/// earlier attempt when `ours` says the stored object is the one written.
async fn create_with_retries<P, PF, O, OF>(
    mut put: P,
    ours: O,
    pauses: &[Duration],
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
                Some(pause) => {
                    tracing::warn!(object = %location, error = %e, retry_in = ?pause, "writing an object failed in transit; retrying");
                    failed_before = true;
                    tokio::time::sleep(*pause).await;
                }
                None => return Err(e),
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

impl fmt::Display for CreateRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CreateRetry {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if !matches!(opts.mode, PutMode::Create) {
            return self.inner.put_opts(location, payload, opts).await;
        }
        let inner = &self.inner;
        create_with_retries(
            || inner.put_opts(location, payload.clone(), opts.clone()),
            || async {
                let stored = inner.get(location).await?.bytes().await?;
                Ok(same_bytes(&payload, &stored))
            },
            &PAUSES,
            location,
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn transport() -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(
                HttpErrorKind::Request,
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe"),
            )),
        }
    }

    fn taken() -> object_store::Error {
        object_store::Error::AlreadyExists {
            path: "packs/ab/x".into(),
            source: "exists".into(),
        }
    }

    fn done() -> PutResult {
        PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        }
    }

    /// Runs a write whose attempts answer `script` in turn; a taken name
    /// holds this write's bytes when `ours`. Returns the outcome and how
    /// many attempts were made.
    async fn run(
        script: Vec<object_store::Result<PutResult>>,
        ours: bool,
    ) -> (object_store::Result<PutResult>, usize) {
        let script = Mutex::new(script.into_iter());
        let attempts = Mutex::new(0);
        let pauses = [Duration::ZERO; 3];
        let result = create_with_retries(
            || {
                *attempts.lock().expect("lock") += 1;
                let next = script.lock().expect("lock").next().expect("scripted");
                async move { next }
            },
            || async move { Ok(ours) },
            &pauses,
            &Path::from("packs/ab/x"),
        )
        .await;
        let n = *attempts.lock().expect("lock");
        (result, n)
    }

    #[test]
    fn the_stored_object_must_be_byte_for_byte_the_payload() {
        let payload = PutPayload::from_iter([Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]);
        assert!(same_bytes(&payload, b"abcd"));
        assert!(!same_bytes(&payload, b"abce"));
        assert!(!same_bytes(&payload, b"abc"));
        assert!(!same_bytes(&payload, b"abcde"));
    }

    #[tokio::test]
    async fn a_write_broken_in_transit_is_tried_again() {
        let (r, n) = run(vec![Err(transport()), Ok(done())], true).await;
        assert!(r.is_ok() && n == 2, "{r:?} after {n}");
    }

    #[tokio::test]
    async fn a_lost_answer_whose_write_landed_counts_as_written() {
        let (r, n) = run(vec![Err(transport()), Err(taken())], true).await;
        assert!(r.is_ok() && n == 2, "{r:?} after {n}");
    }

    #[tokio::test]
    async fn a_name_another_writer_took_stays_taken() {
        let (r, _) = run(vec![Err(transport()), Err(taken())], false).await;
        assert!(
            matches!(r, Err(object_store::Error::AlreadyExists { .. })),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_taken_name_without_a_failure_before_is_taken() {
        let (r, n) = run(vec![Err(taken())], true).await;
        assert!(matches!(r, Err(object_store::Error::AlreadyExists { .. })) && n == 1);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried_and_retries_end() {
        let other = object_store::Error::Generic {
            store: "S3",
            source: "403 Forbidden".into(),
        };
        let (r, n) = run(vec![Err(other)], true).await;
        assert!(r.is_err() && n == 1);
        let (r, n) = run((0..4).map(|_| Err(transport())).collect(), true).await;
        assert!(r.is_err() && n == 4, "three pauses, four attempts: {n}");
    }
}
