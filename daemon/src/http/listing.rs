//! Long listings in pages, streamed: a directory of a snapshot and the
//! snapshots of a store answer at most `limit` items (default
//! [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) after `cursor`, the token the
//! previous page gave as `next_cursor`. A directory's cursor is the last
//! name returned, percent-encoded like `name_encoded` (so names that are
//! not UTF-8 page exactly); a snapshot list's is `TIME_NS.ID` of the last
//! snapshot returned. Bodies are written through a bounded channel as they
//! are produced ([`stream`]), never built whole.

use std::io::{self, Write};
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use kloset::SnapshotId;
use percent_encoding::percent_decode_str;
use tokio::sync::mpsc;

use super::response::{self, Reply};

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 1_000;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 10_000;
/// Bytes gathered before a chunk goes to the connection.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the producing thread and the connection.
const STREAM_DEPTH: usize = 4;
/// How long a producer waits for a client to take the next chunk.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// The paging parameters of a request: `limit` and `cursor`, percent-decoded
/// once (the cursor as raw bytes). Other parameters are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paging {
    /// Items per page.
    pub limit: usize,
    /// Where the previous page ended (raw bytes), if any.
    pub cursor: Option<Vec<u8>>,
}

impl Paging {
    /// Parses a query string; the error says which value is refused.
    pub fn parse(query: &str) -> Result<Paging, String> {
        let mut paging = Paging {
            limit: DEFAULT_LIMIT,
            cursor: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value: Vec<u8> = percent_decode_str(value).collect();
            match percent_decode_str(key).decode_utf8_lossy().as_ref() {
                "limit" => {
                    paging.limit = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|v| v.parse::<usize>().ok())
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            format!(
                                "limit must be a whole number from 1 to {MAX_LIMIT} \
                                 (default {DEFAULT_LIMIT}), not {:?}",
                                String::from_utf8_lossy(&value)
                            )
                        })?;
                }
                "cursor" => {
                    if value.is_empty() {
                        return Err("cursor must not be empty: leave it out for the first \
                                    page, or pass the next_cursor of the previous page"
                            .into());
                    }
                    paging.cursor = Some(value);
                }
                _ => {}
            }
        }
        Ok(paging)
    }

    /// The query string of the page after `cursor` (already encoded).
    pub fn next_query(&self, cursor: &str) -> String {
        format!("?limit={}&cursor={cursor}", self.limit)
    }
}

/// Where a snapshot list's page ended: the last snapshot's time and id
/// (the list is newest first, by time then id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotCursor {
    /// The snapshot's time, Unix nanoseconds.
    pub time_ns: i64,
    /// Its id.
    pub id: SnapshotId,
}

impl From<&kloset::Snapshot> for SnapshotCursor {
    fn from(s: &kloset::Snapshot) -> Self {
        SnapshotCursor {
            time_ns: s.time_ns,
            id: s.id,
        }
    }
}

impl SnapshotCursor {
    /// 80 lower-case hex digits: the time (16, offset so that they sort
    /// like the time) and the id (64).
    pub fn encode(&self) -> String {
        format!("{:016x}{}", (self.time_ns as u64) ^ (1 << 63), self.id)
    }

    /// Parses what [`SnapshotCursor::encode`] wrote (any 80 lower-case hex
    /// digits).
    pub fn decode(raw: &[u8]) -> Result<SnapshotCursor, String> {
        let refused = || {
            format!(
                "cursor {:?} is not one this endpoint gave (80 lower-case hex digits): \
                 pass the next_cursor of the previous page",
                String::from_utf8_lossy(raw)
            )
        };
        if raw.len() != 80 || !raw.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(refused());
        }
        let text = std::str::from_utf8(raw).map_err(|_| refused())?;
        let time = u64::from_str_radix(&text[..16], 16).map_err(|_| refused())?;
        Ok(SnapshotCursor {
            time_ns: (time ^ (1 << 63)) as i64,
            id: SnapshotId::from_hex(&text[16..]).map_err(|_| refused())?,
        })
    }
}

/// A writer that sends what it is given to a response body in chunks of
/// [`CHUNK`] bytes, waiting (at most [`SEND_TIMEOUT`]) while the channel is
/// full: a slow client slows the producer instead of growing a buffer.
#[derive(Debug)]
pub struct ChunkWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    runtime: tokio::runtime::Handle,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        match self
            .runtime
            .block_on(tokio::time::timeout(SEND_TIMEOUT, self.tx.send(Ok(chunk))))
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
        }
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A `200` (or `status`) response whose body `produce` writes on a blocking
/// thread, sent as it is written. A producer that fails after the head is
/// sent cuts the connection: a client never takes a short body for a whole
/// one. Call from within the runtime.
pub fn stream(
    status: StatusCode,
    content_type: &'static str,
    produce: impl FnOnce(&mut ChunkWriter) -> io::Result<()> + Send + 'static,
) -> Reply {
    let (tx, rx) = mpsc::channel(STREAM_DEPTH);
    let mut writer = ChunkWriter {
        buf: Vec::with_capacity(CHUNK),
        tx,
        runtime: tokio::runtime::Handle::current(),
    };
    tokio::task::spawn_blocking(move || {
        if let Err(e) = produce(&mut writer).and_then(|()| writer.flush()) {
            tracing::debug!("a streamed listing ended early: {e}");
            let _ = writer.tx.try_send(Err(e));
        }
    });
    response::streamed(status, content_type, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_parameters() {
        let p = Paging::parse("").expect("defaults");
        assert_eq!((p.limit, p.cursor), (DEFAULT_LIMIT, None));
        let p = Paging::parse("limit=5&cursor=caf%E9&x=1").expect("both");
        assert_eq!(
            (p.limit, p.cursor.as_deref()),
            (5, Some(b"caf\xe9".as_slice()))
        );
        assert_eq!(Paging::parse("limit=10000").expect("max").limit, MAX_LIMIT);
        for bad in [
            "limit=0",
            "limit=10001",
            "limit=-1",
            "limit=x",
            "limit=",
            "cursor=",
        ] {
            assert!(Paging::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(p.next_query("a%2Fb"), "?limit=5&cursor=a%2Fb");
    }

    #[test]
    fn snapshot_cursors() {
        let id = SnapshotId::from_bytes([0xab; 32]);
        let at = |time_ns| SnapshotCursor { time_ns, id };
        for c in [
            at(-5),
            at(0),
            at(i64::MIN),
            at(i64::MAX),
            at(1_733_450_400_000_000_000),
        ] {
            let text = c.encode();
            assert_eq!(text.len(), 80, "{text}");
            assert_eq!(SnapshotCursor::decode(text.as_bytes()), Ok(c));
        }
        // The text sorts like the cursor.
        assert!(at(-5).encode() < at(3).encode());
        let upper = at(1).encode().to_uppercase();
        for bad in ["", "1", "x.00", &"0".repeat(79), &"g".repeat(80), &upper] {
            assert!(SnapshotCursor::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
