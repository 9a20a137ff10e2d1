//! `s3`: a bucket prefix on any S3-compatible service as source,
//! destination and store. A resource holds the service (`endpoint`,
//! `region`, `allow_http`, credentials) and may hold a `bucket` and
//! `prefix`; an app adds its own `bucket` and `prefix` (relative to the
//! resource's prefix in the same bucket, or absolute with a leading `/`).

use std::sync::Arc;

use kloset::Storage;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use super::keys::{secret_of, string, text};
use super::place::Place;
use super::prefix::{
    clean_prefix, import_from, place_in, restore_into, secrets_of, test_client, test_prefix,
    with_subdir,
};
use super::probe::io_reason;
use super::seam::{
    AppInput, Base, Connector, Integration, NotConnected, ParseError, Parsed, Purpose,
    RestoreTarget, Role,
};
use super::secret::SecretRef;

pub use super::prefix::{TEST_CONNECT_TIMEOUT, TEST_REQUEST_TIMEOUT};

/// The `s3` integration.
#[derive(Debug)]
pub struct S3;

impl Integration for S3 {
    fn name(&self) -> &'static str {
        "s3"
    }
    fn classes(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("object-storage", "s3"),
            ("object-storage", "minio"),
            ("object-storage", "ceph"),
            ("object-storage", "garage"),
        ]
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["s3"]
    }
    fn protocols(&self) -> &'static [&'static str] {
        &["s3"]
    }
    fn roles(&self) -> &'static [Role] {
        &[Role::Source, Role::Destination, Role::Store]
    }
    fn resource_keys(&self) -> &'static [&'static str] {
        &[
            "endpoint",
            "region",
            "bucket",
            "prefix",
            "allow_http",
            "access_key_id_file",
            "access_key_id_env",
            "secret_access_key_file",
            "secret_access_key_env",
        ]
    }
    fn app_keys(&self, _: Role) -> &'static [&'static str] {
        &["bucket", "prefix"]
    }
    fn connector(&self, input: &AppInput<'_>) -> Result<Parsed, Vec<ParseError>> {
        let app = |r: Result<Option<String>, String>| r.map_err(|m| vec![ParseError::App(m)]);
        let res = |r: Result<Option<String>, String>| r.map_err(|m| vec![ParseError::Resource(m)]);
        let app_bucket = app(string(input.app, "bucket"))?;
        let app_prefix = app(text(input.app, "prefix"))?;
        let settings = match &input.base {
            Base::Resource { table, file } => {
                let res_bucket = res(string(table, "bucket"))?;
                let res_prefix = res(text(table, "prefix"))?;
                let allow_http = match table.get("allow_http") {
                    None => None,
                    Some(toml::Value::Boolean(b)) => Some(*b),
                    Some(_) => {
                        return Err(vec![ParseError::Resource(
                            "`allow_http` is true or false".into(),
                        )]);
                    }
                };
                let cred = |what: &str| {
                    secret_of(table, file, what).map_err(|m| vec![ParseError::Resource(m)])
                };
                let (bucket, prefix) =
                    place_in("bucket", res_bucket, res_prefix, app_bucket, app_prefix)?;
                S3Settings {
                    bucket,
                    prefix,
                    endpoint: res(string(table, "endpoint"))?,
                    region: res(string(table, "region"))?,
                    allow_http,
                    access_key_id: cred("access_key_id")?,
                    secret_access_key: cred("secret_access_key")?,
                }
            }
            Base::Location(loc) => {
                if app_bucket.is_some() || app_prefix.is_some() {
                    return Err(vec![ParseError::App(
                        "`bucket` and `prefix` go with `resource`; a `location` is already the whole place".into(),
                    )]);
                }
                let rest = loc
                    .strip_prefix("s3://")
                    .unwrap_or(loc)
                    .trim_end_matches('/');
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(vec![ParseError::App(
                        "an s3:// location names a bucket: s3://bucket/prefix".into(),
                    )]);
                }
                S3Settings {
                    bucket: bucket.to_string(),
                    prefix: clean_prefix(prefix).map_err(|m| vec![ParseError::App(m)])?,
                    endpoint: None,
                    region: None,
                    allow_http: None,
                    access_key_id: None,
                    secret_access_key: None,
                }
            }
            Base::Nothing => {
                return Err(vec![ParseError::App(
                    "`resource` or `location` is required".into(),
                )]);
            }
        };
        Ok(Parsed {
            location: settings.location(),
            connector: Arc::new(S3Connector { s: settings }),
        })
    }
}

/// Everything that says where a bucket prefix is and how to sign in.
#[derive(Clone, Debug)]
struct S3Settings {
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    region: Option<String>,
    allow_http: Option<bool>,
    access_key_id: Option<SecretRef>,
    secret_access_key: Option<SecretRef>,
}

impl S3Settings {
    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// A bucket prefix.
#[derive(Debug)]
struct S3Connector {
    s: S3Settings,
}

impl S3Connector {
    /// The backend at the prefix, `subdir` appended when given.
    fn open(&self, purpose: Purpose, subdir: Option<&str>) -> kloset::Result<Storage> {
        let s = &self.s;
        let config_err = |m: String| kloset::Error::InvalidArgument(m);
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&s.bucket);
        if let Some(e) = &s.endpoint {
            builder = builder.with_endpoint(e);
        }
        if let Some(r) = &s.region {
            builder = builder.with_region(r);
        }
        if let Some(h) = s.allow_http {
            builder = builder.with_allow_http(h);
        }
        if let Some(k) = &s.access_key_id {
            let v = k
                .read_text()
                .map_err(|e| config_err(format!("access_key_id: {e}")))?;
            builder = builder.with_access_key_id(v.as_str());
        }
        if let Some(k) = &s.secret_access_key {
            let v = k
                .read_text()
                .map_err(|e| config_err(format!("secret_access_key: {e}")))?;
            builder = builder.with_secret_access_key(v.as_str());
        }
        if purpose == Purpose::Test {
            let (client, retry) = test_client();
            for (k, v) in client {
                builder = builder.with_config(AmazonS3ConfigKey::Client(k), v);
            }
            builder = builder.with_retry(retry);
        } else {
            builder = builder.with_retry(super::prefix::work_retry());
        }
        let s3 = builder
            .build()
            .map_err(|e| config_err(format!("configuring S3 bucket {}: {e}", s.bucket)))?;
        let (prefix, location) = with_subdir(&s.prefix, &s.location(), subdir);
        let store: Arc<dyn object_store::ObjectStore> = match purpose {
            Purpose::Test => Arc::new(s3),
            _ => Arc::new(super::request_retry::RetryingStore::new(Arc::new(s3))),
        };
        Storage::from_object_store(store, &prefix, &location, None)
    }
}

impl Connector for S3Connector {
    fn settings(&self) -> serde_json::Value {
        let s = &self.s;
        serde_json::json!({
            "bucket": s.bucket,
            "prefix": s.prefix,
            "endpoint": s.endpoint,
            "region": s.region,
            "allow_http": s.allow_http,
            "access_key_id": s.access_key_id,
            "secret_access_key": s.secret_access_key,
        })
    }

    fn place(&self) -> Option<Place> {
        let service = self
            .s
            .endpoint
            .as_deref()
            .unwrap_or("aws")
            .trim_end_matches('/');
        Some(Place::new(
            format!("s3://{service}"),
            &format!("{}/{}", self.s.bucket, self.s.prefix),
        ))
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        secrets_of(&[
            ("access_key_id", &self.s.access_key_id),
            ("secret_access_key", &self.s.secret_access_key),
        ])
    }

    fn test(&self, role: Role) -> Result<&'static str, NotConnected> {
        let storage = self.open(Purpose::Test, None);
        test_prefix(storage, &self.s.location(), role, failure)
    }

    fn importer(&self) -> Result<Box<dyn kloset::import::Importer>, String> {
        import_from(self.open(Purpose::Work, None))
    }

    fn restore_target(&self, subdir: Option<&str>) -> Result<RestoreTarget, String> {
        restore_into(self.open(Purpose::Work, subdir))
    }

    fn storage(&self, _create: bool, purpose: Purpose) -> kloset::Result<Storage> {
        self.open(purpose, None)
    }

    fn failure_reason(&self, e: &kloset::Error) -> Option<&'static str> {
        Some(failure("", "", &e.to_string(), None).reason)
    }
}

/// S3 error codes meaning the credentials were not accepted (AWS, MinIO,
/// Ceph, Garage, s3s), whatever the HTTP status.
const AUTH_CODES: &[&str] = &[
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
fn failure(location: &str, op: &str, text: &str, io: Option<&std::io::Error>) -> NotConnected {
    let code = |c: &str| text.contains(&format!("<Code>{c}</Code>"));
    let kind = io.map(|e| e.kind());
    let reason = if AUTH_CODES.iter().any(|c| code(c))
        || text.contains("401 Unauthorized")
        || text.contains("lacked valid authentication credentials")
    {
        "AuthenticationFailed"
    } else if code("NoSuchBucket") {
        "NotFound"
    } else if code("AccessDenied")
        || text.contains("403 Forbidden")
        || kind == Some(std::io::ErrorKind::PermissionDenied)
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
        io.map_or("Unreachable", io_reason)
    };
    NotConnected::new(reason, format!("cannot {op} {location}: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_get_the_reason_of_the_service_code() {
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
            assert_eq!(
                failure("s3://b", "list", &text, Some(&e)).reason,
                want,
                "{text}"
            );
        }
    }
}
