//! Fuzz targets for what the HTTP server parses from a request: the path
//! inside a snapshot (`paths.rs`), `Range` (`browse.rs`), `If-None-Match`
//! and `If-Range` (`conditional.rs`) and the page cursor (`listing.rs`). Run
//! by `kloset::fuzz` under `cargo test -p klosetd --lib http::fuzz_tests`;
//! seeds in `daemon/fuzz-corpus/http-*/`.

use std::path::PathBuf;

use hyper::header::{self as header, HeaderMap, HeaderValue};

use super::browse::parse_range;
use super::conditional::{none_match, range_allowed};
use super::listing::SnapshotCursor;
use super::paths::SnapPath;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target);
    kloset::fuzz::load_corpus(&dir).unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
}

#[test]
fn fuzz_snapshot_paths() {
    kloset::fuzz::run("http-path", &corpus("http-path"), |input| {
        let text = String::from_utf8_lossy(input);
        if let Ok(path) = SnapPath::decode(&text) {
            // What the server writes into links decodes to the same path.
            let again = SnapPath::decode(&path.encoded()).expect("an encoded path decodes");
            assert_eq!(again, path, "{text:?}");
            let _ = path.display();
        }
    });
}

#[test]
fn fuzz_range_header() {
    kloset::fuzz::run("http-range", &corpus("http-range"), |input| {
        // `RANGE\nLENGTH`: the header and the file's length.
        let text = String::from_utf8_lossy(input);
        let (range, len) = text.split_once('\n').unwrap_or((&text, "1000"));
        let len: u64 = len.trim().parse().unwrap_or(1000);
        if let Ok(Some(r)) = parse_range(Some(range), len) {
            assert!(r.start <= r.end && r.end < len, "{range:?} {len}: {r:?}");
        }
    });
}

#[test]
fn fuzz_conditional_headers() {
    kloset::fuzz::run("http-conditional", &corpus("http-conditional"), |input| {
        // `IF-NONE-MATCH\nIF-RANGE\nETAG`, each a header value.
        let mut parts = input.split(|b| *b == b'\n');
        let mut headers = HeaderMap::new();
        if let Some(Ok(v)) = parts.next().map(HeaderValue::from_bytes) {
            headers.append(header::IF_NONE_MATCH, v);
        }
        if let Some(Ok(v)) = parts.next().map(HeaderValue::from_bytes) {
            headers.append(header::IF_RANGE, v);
        }
        let etag = String::from_utf8_lossy(parts.next().unwrap_or(b"\"x\""));
        let _ = none_match(&headers, &etag);
        let _ = range_allowed(&headers, &etag);
    });
}

#[test]
fn fuzz_page_cursor() {
    kloset::fuzz::run("http-cursor", &corpus("http-cursor"), |input| {
        if let Ok(cursor) = SnapshotCursor::decode(input) {
            assert_eq!(cursor.encode().as_bytes(), input, "a cursor round-trips");
        }
    });
}
