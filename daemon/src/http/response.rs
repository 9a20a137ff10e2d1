//! Building responses: JSON and text bodies, JSON errors with status codes
//! that mean what they say, 405 with `Allow`, HEAD without a body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

use super::schema::{ErrorBody, ErrorDetail};

/// Every response of the endpoint.
pub type Reply = Response<Body>;

/// A response body: bytes in memory, or chunks streamed from a producer
/// (a file download: memory stays bounded by the channel's capacity).
#[derive(Debug)]
pub enum Body {
    /// The whole body (taken when sent).
    Full(Option<Bytes>),
    /// Chunks from a producer, and the total length when known.
    Stream(mpsc::Receiver<Result<Bytes, std::io::Error>>, Option<u64>),
}

impl Body {
    /// A body of `bytes`.
    pub fn full(bytes: Bytes) -> Body {
        Body::Full((!bytes.is_empty()).then_some(bytes))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx, _) => rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(_, Some(len)) => SizeHint::with_exact(*len),
            Body::Stream(_, None) => SizeHint::default(),
        }
    }
}

fn build(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Pretty JSON with sorted object keys and a final newline.
fn encode<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut body = serde_json::to_vec_pretty(&serde_json::to_value(value)?)?;
    body.push(b'\n');
    Ok(body)
}

/// A JSON body, pretty-printed with its object keys sorted (as the
/// endpoint always sent them: a `serde_json::Value` object is sorted).
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    match encode(value) {
        Ok(body) => build(status, "application/json", Bytes::from(body)),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the response: {e}"),
        ),
    }
}

/// A body streamed from `rx` (length unknown), with the headers of
/// [`json`] and [`text`] answers.
pub fn streamed(
    status: StatusCode,
    content_type: &'static str,
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> Reply {
    let mut r = build(status, content_type, Bytes::new());
    *r.body_mut() = Body::Stream(rx, None);
    r
}

/// A plain text body.
pub fn text(status: StatusCode, body: String) -> Reply {
    build(status, "text/plain; charset=utf-8", Bytes::from(body))
}

/// A body with a given content type.
pub fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    build(status, content_type, Bytes::from(body))
}

/// A JSON error: `{"error": {"status": 404, "message": "…"}}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    let body = ErrorBody {
        error: ErrorDetail {
            status: status.as_u16(),
            message: message.into(),
        },
    };
    let bytes = encode(&body).unwrap_or_default();
    build(status, "application/json", Bytes::from(bytes))
}

/// 405 for every method but GET and HEAD.
pub fn method_not_allowed() -> Reply {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint is read-only: only GET and HEAD are allowed",
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

/// The same response without its body (HEAD); `Content-Length` still
/// says what GET would send.
pub fn without_body(reply: Reply) -> Reply {
    let (mut parts, body) = reply.into_parts();
    if let Some(size) = hyper::body::Body::size_hint(&body).exact()
        && !parts.headers.contains_key(hyper::header::CONTENT_LENGTH)
    {
        parts
            .headers
            .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    Response::from_parts(parts, Body::Full(None))
}
