//! What connection tests share: the reason of an I/O error, and a probe
//! that writes and deletes one object through a store backend.

use bytes::Bytes;
use kloset::Storage;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};

use super::seam::NotConnected;

/// The reason of a local I/O error.
pub fn io_reason(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "NotFound",
        std::io::ErrorKind::PermissionDenied => "PermissionDenied",
        std::io::ErrorKind::NotADirectory => "NotADirectory",
        _ => "Unreachable",
    }
}

/// A failure of a local I/O call on `what`.
pub fn io_failure(what: &str, e: &std::io::Error) -> NotConnected {
    NotConnected::new(io_reason(e), format!("{what}: {e}"))
}

/// Writes a probe object and deletes it again.
pub fn probe_write(storage: &Storage) -> Result<(), std::io::Error> {
    let store = storage.object_store();
    let name = format!(
        ".klosetd-probe-{}",
        kloset::id::SnapshotId::random().short()
    );
    let key = if storage.prefix().is_empty() {
        name
    } else {
        format!("{}/{name}", storage.prefix())
    };
    // As written: `ObjPath::from` would percent-encode a non-ASCII prefix.
    let path = ObjPath::parse(&key).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{key} cannot be an object key: {e}"),
        )
    })?;
    storage
        .run(async move {
            store
                .put(
                    &path,
                    PutPayload::from(Bytes::from_static(b"klosetd write test")),
                )
                .await?;
            store.delete(&path).await
        })
        .map_err(|e| {
            let kind = match &e {
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. } => {
                    std::io::ErrorKind::PermissionDenied
                }
                object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
                _ => std::io::ErrorKind::Other,
            };
            std::io::Error::new(kind, e.to_string())
        })
}
