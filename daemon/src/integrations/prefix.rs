//! Where an app works in an object store: a bucket (or container) and a
//! prefix, the app's own or relative to its resource's. Shared by the
//! object-storage integrations so that `bucket`/`container` and `prefix`
//! follow one rule everywhere.

use std::time::Duration;

use kloset::Storage;
use kloset::import::Importer;
use kloset_connectors::bucket::{BucketExporter, BucketImporter};
use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};

use super::probe::probe_write;
use super::seam::{NotConnected, ParseError, RestoreTarget, Role};
use super::secret::SecretRef;

/// The bucket (or container: `word`) and prefix of an app: its own bucket
/// with its own prefix, or the resource's bucket with the app's prefix under the resource's (a
/// leading `/` starts at the bucket's root).
pub fn place_in(
    word: &str,
    res_bucket: Option<String>,
    res_prefix: Option<String>,
    app_bucket: Option<String>,
    app_prefix: Option<String>,
) -> Result<(String, String), Vec<ParseError>> {
    let app_err = |m: String| vec![ParseError::App(m)];
    let res_prefix = clean_prefix(res_prefix.as_deref().unwrap_or(""))
        .map_err(|m| vec![ParseError::Resource(m)])?;
    let same_bucket = app_bucket.is_none() || app_bucket == res_bucket;
    let bucket = match (app_bucket, res_bucket) {
        (Some(b), _) | (None, Some(b)) => b,
        (None, None) => {
            return Err(vec![ParseError::Resource(format!(
                "the resource needs `{word}` (or give `{word}` on each store, source and destination)"
            ))]);
        }
    };
    let prefix = match app_prefix {
        Some(p) if p.starts_with('/') || !same_bucket => clean_prefix(&p).map_err(app_err)?,
        Some(p) => {
            let own = clean_prefix(&p).map_err(app_err)?;
            if res_prefix.is_empty() {
                own
            } else {
                format!("{res_prefix}/{own}")
            }
        }
        None if same_bucket => res_prefix,
        None => String::new(),
    };
    Ok((bucket, prefix))
}

/// A prefix without leading or trailing `/`, refusing `.` and `..` parts.
pub fn clean_prefix(p: &str) -> Result<String, String> {
    let trimmed = p.trim_matches('/');
    if trimmed
        .split('/')
        .any(|part| part == ".." || part == "." || (part.is_empty() && !trimmed.is_empty()))
    {
        return Err(format!("prefix {p:?} has an empty, `.` or `..` part"));
    }
    Ok(trimmed.to_string())
}

/// How long a connection test's request may take to connect, and in all.
pub const TEST_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// See [`TEST_CONNECT_TIMEOUT`].
pub const TEST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The client settings of a connection test: an endpoint that accepts
/// connections and never answers is `Unreachable` after about 10 s, not
/// after object_store's default minutes of retries (work keeps those).
pub fn test_client() -> ([(ClientConfigKey, String); 2], RetryConfig) {
    let secs = |d: Duration| format!("{}s", d.as_secs());
    (
        [
            (ClientConfigKey::ConnectTimeout, secs(TEST_CONNECT_TIMEOUT)),
            (ClientConfigKey::Timeout, secs(TEST_REQUEST_TIMEOUT)),
        ],
        RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 1,
            retry_timeout: TEST_REQUEST_TIMEOUT,
        },
    )
}

/// How work (backup, restore, check, prune, sync) retries a failed request:
/// from half a second, each pause drawn between that and twice the last
/// (up to 30 s), for 5 minutes. The count is no limit (with 15, the
/// retries were spent in 15-38 s against a stopped server, so a restore
/// did not ride out an outage of a minute; docs/reliability.md). A server
/// restart or an outage of minutes is carried over (object_store's default
/// gives up after about three seconds of refused connections), creates are
/// tried again on top ([`super::request_retry`]), and a server that stays
/// down fails the task with its error.
pub fn work_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            base: 2.0,
        },
        max_retries: 1_000,
        retry_timeout: Duration::from_secs(300),
    }
}

/// The prefix and the location of a restore test's `subdir` under
/// `prefix` (at `location`); both unchanged without one.
pub fn with_subdir(prefix: &str, location: &str, subdir: Option<&str>) -> (String, String) {
    match subdir {
        Some(d) if prefix.is_empty() => (d.to_string(), format!("{location}/{d}")),
        Some(d) => (format!("{prefix}/{d}"), format!("{location}/{d}")),
        None => (prefix.to_string(), location.to_string()),
    }
}

/// How an object-storage integration names the reason of an error:
/// `(location, operation, error text, I/O error)` → reason and message.
pub type Failure = fn(&str, &str, &str, Option<&std::io::Error>) -> NotConnected;

/// The connection test of a bucket prefix at `location`, `storage` opened
/// for a test: a source lists it (`Listable`), a destination writes a probe
/// object and deletes it (`Writable`).
pub fn test_prefix(
    storage: kloset::Result<Storage>,
    location: &str,
    role: Role,
    failure: Failure,
) -> Result<&'static str, NotConnected> {
    let storage = storage.map_err(|e| NotConnected::new("InvalidConfig", e.to_string()))?;
    let fail = |op: &str, e: &std::io::Error| failure(location, op, &e.to_string(), Some(e));
    match role {
        Role::Source => {
            BucketImporter::new(storage)
                .root()
                .map_err(|e| fail("list", &e))?;
            Ok("Listable")
        }
        Role::Destination => {
            probe_write(&storage).map_err(|e| fail("write to", &e))?;
            Ok("Writable")
        }
        Role::Store => Err(NotConnected::new(
            "Unsupported",
            "stores are tested by opening them",
        )),
    }
}

/// A backup of a bucket prefix.
pub fn import_from(storage: kloset::Result<Storage>) -> Result<Box<dyn Importer>, String> {
    let storage = storage.map_err(|e| e.to_string())?;
    Ok(Box::new(BucketImporter::new(storage)))
}

/// The credentials that are set, by name.
pub fn secrets_of<'a>(
    secrets: &[(&'static str, &'a Option<SecretRef>)],
) -> Vec<(&'static str, &'a SecretRef)> {
    secrets
        .iter()
        .filter_map(|(name, s)| s.as_ref().map(|s| (*name, s)))
        .collect()
}

/// A restore into a bucket prefix.
pub fn restore_into(storage: kloset::Result<Storage>) -> Result<RestoreTarget, String> {
    let storage = storage.map_err(|e| e.to_string())?;
    Ok(RestoreTarget::Exporter(Box::new(BucketExporter::new(
        storage,
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_prefix_is_under_the_resource_prefix_in_the_same_bucket() {
        let s = |x: &str| Some(x.to_string());
        let ok = |r: Result<(String, String), Vec<ParseError>>| r.expect("valid");
        assert_eq!(
            ok(place_in("bucket", s("b"), s("fleet"), None, s("host1"))),
            ("b".into(), "fleet/host1".into())
        );
        assert_eq!(
            ok(place_in("bucket", s("b"), s("fleet"), None, s("/top"))),
            ("b".into(), "top".into())
        );
        assert_eq!(
            ok(place_in("bucket", s("b"), s("fleet"), s("other"), s("x"))),
            ("other".into(), "x".into())
        );
        assert_eq!(
            ok(place_in("bucket", s("b"), s("fleet"), s("other"), None)),
            ("other".into(), String::new())
        );
        assert_eq!(
            ok(place_in("bucket", s("b"), s("fleet"), s("b"), None)),
            ("b".into(), "fleet".into())
        );
        assert_eq!(
            ok(place_in("bucket", None, None, s("b"), s("p/"))),
            ("b".into(), "p".into())
        );
        let e = place_in("bucket", None, None, None, s("p")).expect_err("no bucket");
        assert!(matches!(e.as_slice(), [ParseError::Resource(_)]));
        assert!(place_in("bucket", s("b"), None, None, s("a/../b")).is_err());
    }
}
