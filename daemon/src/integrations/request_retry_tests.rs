//! Tests of the retries in `request_retry.rs`, with real hyper errors and a
//! real in-memory store.

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
        (&pauses, Duration::MAX),
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
async fn a_write_is_not_tried_again_once_its_time_is_up() {
    // As CREATE_RETRY_FOR (10 min) over attempts that each spend
    // object_store's 5 minutes, scaled down: each attempt fails after
    // 40 ms, and retries stop once 100 ms went by; pauses are left.
    let attempts = Mutex::new(0);
    let pauses = [Duration::from_millis(1); 6];
    let result = create_with_retries(
        || {
            *attempts.lock().expect("lock") += 1;
            async {
                tokio::time::sleep(Duration::from_millis(40)).await;
                Err(transport())
            }
        },
        || async { Ok(false) },
        (&pauses, Duration::from_millis(100)),
        &Path::from("packs/ab/x"),
    )
    .await;
    let n = *attempts.lock().expect("lock");
    assert!(result.is_err(), "{result:?}");
    // At 0, ~41 and ~82 ms (fewer on a slow machine); all seven without
    // the time limit.
    assert!((1..=3).contains(&n), "{n} attempts");
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

/// The error hyper's client gives when its connection closed before a
/// request could be sent, as object_store wraps it.
async fn not_sent() -> object_store::Error {
    let (client_io, _server_io) = tokio::io::duplex(64);
    let io = hyper_util::rt::TokioIo::new(client_io);
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, String>(io)
        .await
        .expect("handshake");
    drop(connection);
    let request = hyper::Request::new(String::new());
    let e = sender
        .send_request(request)
        .await
        .expect_err("no connection");
    assert!(e.is_canceled(), "{e}");
    object_store::Error::Generic {
        store: "S3",
        source: Box::new(HttpError::new(HttpErrorKind::Unknown, e)),
    }
}

#[tokio::test]
async fn a_request_that_was_never_sent_is_sent_again() {
    let e = not_sent().await;
    assert!(was_not_sent(&e) && is_transport(&e), "{e}");
    let (r, n) = run(vec![Err(not_sent().await), Ok(done())], true).await;
    assert!(r.is_ok() && n == 2, "{r:?} after {n}");

    let mut script = vec![Err(not_sent().await), Ok(7)].into_iter();
    let attempts = std::cell::Cell::new(0);
    let r = unsent_with_retries(
        || {
            attempts.set(attempts.get() + 1);
            let next = script.next().expect("scripted");
            async move { next }
        },
        &[Duration::ZERO; 2],
        &"packs/ab/x",
    )
    .await;
    assert!(matches!(r, Ok(7)) && attempts.get() == 2, "{r:?}");

    // A transport error after sending is object_store's to retry.
    let mut script = vec![Err(transport()), Ok(7)].into_iter();
    let r = unsent_with_retries(
        || {
            let next = script.next().expect("scripted");
            async move { next }
        },
        &[Duration::ZERO; 2],
        &"packs/ab/x",
    )
    .await;
    assert!(r.is_err(), "{r:?}");
}

/// A real in-memory store whose first listing breaks, unsent, after
/// two keys.
#[derive(Debug)]
struct ListBreaksOnce {
    inner: object_store::memory::InMemory,
    error: Mutex<Option<object_store::Error>>,
}

impl fmt::Display for ListBreaksOnce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListBreaksOnce")
    }
}

#[async_trait]
impl ObjectStore for ListBreaksOnce {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
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
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let listed = self.inner.list(prefix);
        match self.error.lock().expect("lock").take() {
            Some(e) => listed
                .take(2)
                .chain(futures::stream::iter([Err(e)]))
                .boxed(),
            None => listed,
        }
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

#[tokio::test]
async fn a_listing_broken_before_a_page_was_sent_resumes_after_its_last_key() {
    let flaky = Arc::new(ListBreaksOnce {
        inner: object_store::memory::InMemory::new(),
        error: Mutex::new(Some(not_sent().await)),
    });
    let keys: Vec<String> = (0..5).map(|i| format!("index/{i}")).collect();
    for key in &keys {
        flaky
            .put(&Path::from(key.as_str()), PutPayload::from_static(b"x"))
            .await
            .expect("put");
    }
    let store = RetryingStore::new(flaky);
    let listed: Vec<String> = store
        .list(Some(&Path::from("index")))
        .map(|m| m.expect("listed").location.to_string())
        .collect()
        .await;
    assert_eq!(listed, keys, "every key once, in order");
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
