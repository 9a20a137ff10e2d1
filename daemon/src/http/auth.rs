//! The bearer token of the data-reading endpoints: when `[daemon]
//! token_file` is set, they need `Authorization: Bearer <token>`. The token
//! is read from its file at each request (rotating it needs no reload) and
//! compared in constant time (BLAKE3 hashes compare in constant time, and
//! hashing first hides the length). An unreadable token file refuses every
//! data request: it fails closed.

// A handler's early answer travels as the `Err` of a `Result<_, Reply>`:
// it is built once and sent, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};

use super::Ctx;
use super::response::{Reply, error};
use crate::config::desired::SecretRef;

fn challenge(mut reply: Reply) -> Reply {
    reply.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"klosetd\""),
    );
    reply
}

/// Ok when no token is configured or the request carries it.
pub fn check(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Reply> {
    let file = ctx.live.daemon_settings().and_then(|d| d.token_file);
    let Some(file) = file else {
        return Ok(());
    };
    let expected = SecretRef::File(file).read().map_err(|_| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the bearer token file cannot be read; data endpoints are closed",
        )
    })?;
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        None => Err(challenge(error(
            StatusCode::UNAUTHORIZED,
            "this endpoint reads backed-up data: send Authorization: Bearer <token>",
        ))),
        Some(token) if blake3::hash(token.as_bytes()) == blake3::hash(&expected) => Ok(()),
        Some(_) => Err(challenge(error(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not valid",
        ))),
    }
}
