//! Test connection of sources and destinations: what "connected" means for
//! each connector and role. A failure has a machine reason and a message
//! that never holds a secret. (Stores are tested by opening them:
//! `tasks::store`.)
//!
//! - fs: a source exists and can be listed or opened; a destination's
//!   nearest existing parent is a writable directory.
//! - s3: a source's prefix can be listed; a destination accepts a probe
//!   object, which is then deleted. Tests use short timeouts
//!   (`connectors::object_storage_for_test`), so a silent endpoint is
//!   `Unreachable` in seconds.
//! - sftp: the server is reached, its host key is known, the credentials
//!   are accepted; a source's directory can be listed; a destination
//!   directory is made if missing and accepts a probe file, then deleted.
//!   Each step waits at most [`SFTP_TEST_TIMEOUT_S`].
//! - postgresql: `psql` connects with the credentials and the user may
//!   connect to (source) or create in (destination) the database.
//! - exec: the program is found and executable.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use kloset::import::Importer;
use kloset::{Location, Storage};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};

use super::connectors::object_storage_for_test;
use crate::config::desired::Endpoint;

/// Why an endpoint is not usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotConnected {
    /// `NotFound`, `PermissionDenied`, `NotADirectory`, `Unsupported`, ...
    pub reason: &'static str,
    /// What was found, for humans.
    pub message: String,
}

fn io_reason(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "NotFound",
        std::io::ErrorKind::PermissionDenied => "PermissionDenied",
        std::io::ErrorKind::NotADirectory => "NotADirectory",
        _ => "Unreachable",
    }
}

/// A source is connected when its data can be read: a local path that
/// exists and, for a directory, can be listed.
pub fn test_source(endpoint: &Endpoint) -> Result<&'static str, NotConnected> {
    match endpoint.integration {
        "fs" => {
            let path = Path::new(&endpoint.location);
            let meta = std::fs::metadata(path).map_err(|e| NotConnected {
                reason: io_reason(&e),
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            if meta.is_dir() {
                std::fs::read_dir(path).map_err(|e| NotConnected {
                    reason: io_reason(&e),
                    message: format!("cannot list {}: {e}", path.display()),
                })?;
            } else {
                std::fs::File::open(path).map_err(|e| NotConnected {
                    reason: io_reason(&e),
                    message: format!("cannot open {}: {e}", path.display()),
                })?;
            }
            Ok("Readable")
        }
        "s3" => {
            let storage =
                object_storage_for_test(endpoint).map_err(|m| not_connected("InvalidConfig", m))?;
            kloset::bucket::BucketImporter::new(storage)
                .root()
                .map_err(|e| s3_failure(&endpoint.location, "list", &e))?;
            Ok("Listable")
        }
        "sftp" => {
            let config = sftp_config(endpoint)?;
            let importer =
                kloset::sftp::SftpImporter::connect(config).map_err(|e| sftp_failure(&e))?;
            importer.root().map_err(|e| io_failure(&e))?;
            Ok("Listable")
        }
        "postgresql" => super::postgresql::test_source(
            &super::connectors::pg_connection(endpoint)
                .map_err(|m| not_connected("SecretUnreadable", m))?,
        ),
        "exec" => executable(endpoint),
        other => Err(unsupported(other, "source")),
    }
}

fn not_connected(reason: &'static str, message: impl Into<String>) -> NotConnected {
    NotConnected {
        reason,
        message: message.into(),
    }
}

/// An I/O error that may wrap an SFTP failure.
fn io_failure(e: &std::io::Error) -> NotConnected {
    let reason = kloset::sftp::error_kind(e)
        .map(|k| k.reason())
        .unwrap_or_else(|| io_reason(e));
    not_connected(reason, e.to_string())
}

fn sftp_failure(e: &kloset::sftp::SftpError) -> NotConnected {
    not_connected(e.kind().reason(), e.to_string())
}

/// How long an SFTP connection test waits for the server at each step
/// (connect, handshake, each request), instead of the 60 s of transfers.
pub const SFTP_TEST_TIMEOUT_S: u64 = 10;

/// The backend options of an SFTP endpoint for a connection test.
fn sftp_test_options(endpoint: &Endpoint) -> Result<Vec<(String, String)>, NotConnected> {
    let mut options = endpoint
        .backend_options()
        .map_err(|m| not_connected("SecretUnreadable", m))?;
    options.push(("sftp_timeout".into(), SFTP_TEST_TIMEOUT_S.to_string()));
    Ok(options)
}

fn sftp_config(endpoint: &Endpoint) -> Result<kloset::sftp::SftpConfig, NotConnected> {
    let location = Location::parse(&endpoint.location)
        .map_err(|e| not_connected("InvalidConfig", e.to_string()))?;
    let options = sftp_test_options(endpoint)?;
    kloset::sftp::SftpConfig::from_location(&location, &options)
        .map_err(|e| not_connected("InvalidConfig", e.to_string()))
}

/// S3 error codes meaning the credentials were not accepted (AWS, MinIO,
/// Ceph, Garage, s3s), whatever the HTTP status.
const S3_AUTH_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NotSignedUp",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
    "AuthorizationHeaderMalformed",
];

/// Reasons for S3 failures: the service's error code first (`<Code>…`),
/// then the HTTP status, then object_store's typed errors; connection
/// failures are `Unreachable`. An answer from the server is never
/// `Unreachable`.
fn s3_failure(location: &str, op: &str, e: &std::io::Error) -> NotConnected {
    let text = e.to_string();
    let code = |c: &str| text.contains(&format!("<Code>{c}</Code>"));
    let reason = if S3_AUTH_CODES.iter().any(|c| code(c))
        || text.contains("401 Unauthorized")
        || text.contains("lacked valid authentication credentials")
    {
        "AuthenticationFailed"
    } else if code("NoSuchBucket") {
        "NotFound"
    } else if code("AccessDenied")
        || text.contains("403 Forbidden")
        || e.kind() == std::io::ErrorKind::PermissionDenied
    {
        "PermissionDenied"
    } else if text.contains("error sending request")
        || text.contains("onnection refused")
        || text.contains("dns error")
        || text.contains("timed out")
        || text.contains("Server returned non-2xx status code: 5")
    {
        "Unreachable"
    } else {
        io_reason(e)
    };
    not_connected(reason, format!("cannot {op} {location}: {text}"))
}

fn executable(endpoint: &Endpoint) -> Result<&'static str, NotConnected> {
    use std::os::unix::fs::PermissionsExt;
    let Some(program) = endpoint.command.first() else {
        return Err(not_connected("InvalidConfig", "no command"));
    };
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect())
            .unwrap_or_default()
    };
    for c in &candidates {
        if let Ok(meta) = std::fs::metadata(c)
            && meta.is_file()
        {
            return if meta.permissions().mode() & 0o111 != 0 {
                Ok("Executable")
            } else {
                Err(not_connected(
                    "PermissionDenied",
                    format!("{} is not executable", c.display()),
                ))
            };
        }
    }
    Err(not_connected(
        "NotFound",
        format!("command {program:?} was not found (PATH is searched for names without `/`)"),
    ))
}

/// Writes a probe object and deletes it again.
fn probe_write(storage: &Storage) -> Result<(), std::io::Error> {
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

/// A destination is connected when a restore can write there: an existing
/// directory, or a path whose nearest existing parent is a directory that
/// is not read-only.
pub fn test_destination(endpoint: &Endpoint) -> Result<&'static str, NotConnected> {
    match endpoint.integration {
        "fs" => {
            let path = PathBuf::from(&endpoint.location);
            let mut probe = path.as_path();
            let meta = loop {
                match std::fs::metadata(probe) {
                    Ok(meta) => break meta,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => match probe.parent() {
                        Some(parent) => probe = parent,
                        None => {
                            return Err(NotConnected {
                                reason: "NotFound",
                                message: format!("no parent of {} exists", path.display()),
                            });
                        }
                    },
                    Err(e) => {
                        return Err(NotConnected {
                            reason: io_reason(&e),
                            message: format!("cannot inspect {}: {e}", probe.display()),
                        });
                    }
                }
            };
            if !meta.is_dir() {
                return Err(NotConnected {
                    reason: "NotADirectory",
                    message: format!("{} exists and is not a directory", probe.display()),
                });
            }
            if meta.permissions().readonly() {
                return Err(NotConnected {
                    reason: "PermissionDenied",
                    message: format!("{} is read-only", probe.display()),
                });
            }
            Ok("Writable")
        }
        "s3" => {
            let storage =
                object_storage_for_test(endpoint).map_err(|m| not_connected("InvalidConfig", m))?;
            probe_write(&storage).map_err(|e| s3_failure(&endpoint.location, "write to", &e))?;
            Ok("Writable")
        }
        "sftp" => {
            let location = Location::parse(&endpoint.location)
                .map_err(|e| not_connected("InvalidConfig", e.to_string()))?;
            let options = sftp_test_options(endpoint)?;
            // A restore makes the directory too, so the test may.
            let storage = Storage::open(&location, &options, true).map_err(|e| {
                let reason = kloset::sftp::error_kind(&e).map_or("Unreachable", |k| k.reason());
                not_connected(reason, e.to_string())
            })?;
            probe_write(&storage).map_err(|e| io_failure(&e))?;
            Ok("Writable")
        }
        "postgresql" => {
            let mut conn = super::connectors::pg_connection(endpoint)
                .map_err(|m| not_connected("SecretUnreadable", m))?;
            // A pg_dumpall restore connects to `postgres` unless told otherwise.
            if endpoint.protocol == "pg_dumpall" && conn.database.is_none() {
                conn.database = Some("postgres".into());
            }
            super::postgresql::test_destination(&conn)
        }
        "exec" => executable(endpoint),
        other => Err(unsupported(other, "destination")),
    }
}

fn unsupported(integration: &str, role: &str) -> NotConnected {
    NotConnected {
        reason: "Unsupported",
        message: format!("the {integration} integration has no {role} connector in this build"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(location: &Path) -> Endpoint {
        Endpoint {
            integration: "fs",
            protocol: "fs",
            location: location.display().to_string(),
            resource: None,
            options: vec![],
            credentials: vec![],
            command: vec![],
        }
    }

    #[test]
    fn s3_failures_get_the_reason_of_the_service_code() {
        let answer = |status: &str, code: &str| {
            format!(
                "Generic S3 error: Error performing list request: Error performing GET \
                 http://127.0.0.1:9000/b?list-type=2 in 1ms - Server returned non-2xx status \
                 code: {status}: <?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}\
                 </Code><Message>m</Message></Error>"
            )
        };
        let cases = [
            (
                answer("403 Forbidden", "SignatureDoesNotMatch"),
                "AuthenticationFailed",
            ),
            (
                answer("403 Forbidden", "InvalidAccessKeyId"),
                "AuthenticationFailed",
            ),
            (
                answer("403 Forbidden", "NotSignedUp"),
                "AuthenticationFailed",
            ),
            (
                answer("400 Bad Request", "ExpiredToken"),
                "AuthenticationFailed",
            ),
            (answer("404 Not Found", "NoSuchBucket"), "NotFound"),
            (answer("403 Forbidden", "AccessDenied"), "PermissionDenied"),
            (
                answer("403 Forbidden", "AllAccessDisabled"),
                "PermissionDenied",
            ),
            (answer("503 Service Unavailable", "SlowDown"), "Unreachable"),
            (
                "Generic S3 error: Error performing GET http://127.0.0.1:1/b in 2s, after 10 \
                 retries - HTTP error: error sending request"
                    .to_string(),
                "Unreachable",
            ),
        ];
        for (text, want) in cases {
            let e = std::io::Error::other(text.clone());
            assert_eq!(s3_failure("s3://b", "list", &e).reason, want, "{text}");
        }
    }

    #[test]
    fn sources_must_exist_and_destinations_need_a_directory_parent() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(test_source(&fs(dir.path())), Ok("Readable"));
        let missing = dir.path().join("missing");
        assert_eq!(
            test_source(&fs(&missing)).map_err(|e| e.reason),
            Err("NotFound")
        );
        assert_eq!(test_destination(&fs(&missing.join("a/b"))), Ok("Writable"));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        assert_eq!(test_source(&fs(&file)), Ok("Readable"));
        assert_eq!(
            test_destination(&fs(&file.join("sub"))).map_err(|e| e.reason),
            Err("NotADirectory")
        );
    }
}
