//! `azure`: a container prefix of Azure Blob Storage (or Azurite, or a
//! sovereign cloud) as source, destination and store, through
//! object_store's `azure` backend. A resource holds the account (`account`,
//! `endpoint`, `allow_http`, an account key or a SAS token) and may hold a
//! `container` and `prefix`; an app adds its own `container` and `prefix`
//! with the rules of S3's `bucket` and `prefix` ([`super::prefix`]).
//!
//! Invariants: credentials are references, read when a backend is built and
//! handed to object_store only; a SAS token travels in request URLs, which
//! object_store keeps out of its error messages, so no message here holds
//! one. A connection test uses short timeouts and one retry.

use std::sync::Arc;

use kloset::Storage;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

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

/// The `azure` integration.
#[derive(Debug)]
pub struct Azure;

impl Integration for Azure {
    fn name(&self) -> &'static str {
        "azure"
    }
    fn classes(&self) -> &'static [(&'static str, &'static str)] {
        &[("object-storage", "azure")]
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["azure", "az"]
    }
    fn protocols(&self) -> &'static [&'static str] {
        &["azure"]
    }
    fn roles(&self) -> &'static [Role] {
        &[Role::Source, Role::Destination, Role::Store]
    }
    fn resource_keys(&self) -> &'static [&'static str] {
        &[
            "account",
            "endpoint",
            "container",
            "prefix",
            "allow_http",
            "account_key_file",
            "account_key_env",
            "sas_token_file",
            "sas_token_env",
        ]
    }
    fn app_keys(&self, _: Role) -> &'static [&'static str] {
        &["container", "prefix"]
    }
    fn connector(&self, input: &AppInput<'_>) -> Result<Parsed, Vec<ParseError>> {
        let app = |r: Result<Option<String>, String>| r.map_err(|m| vec![ParseError::App(m)]);
        let res = |r: Result<Option<String>, String>| r.map_err(|m| vec![ParseError::Resource(m)]);
        let app_container = app(string(input.app, "container"))?;
        let app_prefix = app(text(input.app, "prefix"))?;
        let settings = match &input.base {
            Base::Resource { table, file } => {
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
                let account = res(string(table, "account"))?.ok_or_else(|| {
                    vec![ParseError::Resource(
                        "an Azure resource needs `account` (the storage account's name)".into(),
                    )]
                })?;
                let (container, prefix) = place_in(
                    "container",
                    res(string(table, "container"))?,
                    res(text(table, "prefix"))?,
                    app_container,
                    app_prefix,
                )?;
                let (account_key, sas_token) = (cred("account_key")?, cred("sas_token")?);
                if account_key.is_some() && sas_token.is_some() {
                    return Err(vec![ParseError::Resource(
                        "give an account key or a SAS token, not both".into(),
                    )]);
                }
                AzureSettings {
                    account: Some(account),
                    container,
                    prefix,
                    endpoint: res(string(table, "endpoint"))?,
                    allow_http,
                    account_key,
                    sas_token,
                }
            }
            Base::Location(loc) => {
                if app_container.is_some() || app_prefix.is_some() {
                    return Err(vec![ParseError::App(
                        "`container` and `prefix` go with `resource`; a `location` is already the whole place".into(),
                    )]);
                }
                let (container, prefix) =
                    parse_location(loc).map_err(|m| vec![ParseError::App(m)])?;
                AzureSettings {
                    account: None,
                    container,
                    prefix,
                    endpoint: None,
                    allow_http: None,
                    account_key: None,
                    sas_token: None,
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
            connector: Arc::new(AzureConnector { s: settings }),
        })
    }
}

/// `azure://CONTAINER[/PREFIX]` (or `az://…`): the container and prefix.
fn parse_location(loc: &str) -> Result<(String, String), String> {
    let rest = loc
        .split_once("://")
        .map_or(loc, |(_, r)| r)
        .trim_end_matches('/');
    let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if container.is_empty() || container.contains(['@', ':', '?']) {
        return Err(
            "an azure:// location names a container: azure://container/prefix (the account and its credentials come from AZURE_STORAGE_* variables, or declare a [resource])".into(),
        );
    }
    Ok((container.to_string(), clean_prefix(prefix)?))
}

/// Everything that says where a container prefix is and how to sign in.
#[derive(Clone, Debug)]
struct AzureSettings {
    /// `None` for a location: `AZURE_STORAGE_ACCOUNT_NAME`.
    account: Option<String>,
    container: String,
    prefix: String,
    endpoint: Option<String>,
    allow_http: Option<bool>,
    account_key: Option<SecretRef>,
    sas_token: Option<SecretRef>,
}

impl AzureSettings {
    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("azure://{}", self.container)
        } else {
            format!("azure://{}/{}", self.container, self.prefix)
        }
    }
}

/// A container prefix.
#[derive(Debug)]
struct AzureConnector {
    s: AzureSettings,
}

impl AzureConnector {
    /// The backend at the prefix, `subdir` appended when given.
    fn open(&self, purpose: Purpose, subdir: Option<&str>) -> kloset::Result<Storage> {
        let s = &self.s;
        let config_err = |m: String| kloset::Error::InvalidArgument(m);
        let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(&s.container);
        if let Some(a) = &s.account {
            builder = builder.with_account(a);
        }
        if let Some(e) = &s.endpoint {
            builder = builder.with_endpoint(e.trim_end_matches('/').to_string());
        }
        if let Some(h) = s.allow_http {
            builder = builder.with_allow_http(h);
        }
        if let Some(k) = &s.account_key {
            let v = k
                .read_text()
                .map_err(|e| config_err(format!("account_key: {e}")))?;
            builder = builder.with_access_key(v.as_str());
        }
        if let Some(t) = &s.sas_token {
            let v = t
                .read_text()
                .map_err(|e| config_err(format!("sas_token: {e}")))?;
            builder = builder.with_config(AzureConfigKey::SasKey, v.trim_start_matches('?'));
        }
        if purpose == Purpose::Test {
            let (client, retry) = test_client();
            for (k, v) in client {
                builder = builder.with_config(AzureConfigKey::Client(k), v);
            }
            builder = builder.with_retry(retry);
        } else {
            builder = builder.with_retry(super::prefix::work_retry());
        }
        let azure = builder
            .build()
            .map_err(|e| config_err(format!("configuring Azure container {}: {e}", s.container)))?;
        let (prefix, location) = with_subdir(&s.prefix, &s.location(), subdir);
        let store: Arc<dyn object_store::ObjectStore> = match purpose {
            Purpose::Test => Arc::new(azure),
            _ => Arc::new(super::request_retry::RetryingStore::new(Arc::new(azure))),
        };
        Storage::from_object_store(store, &prefix, &location, None)
    }

    /// The account's service, for places: the endpoint, or the account.
    fn service(&self) -> String {
        match (&self.s.endpoint, &self.s.account) {
            (Some(e), _) => e.trim_end_matches('/').to_string(),
            (None, Some(a)) => format!("https://{a}.blob.core.windows.net"),
            (None, None) => "AZURE_STORAGE_ACCOUNT_NAME".to_string(),
        }
    }
}

impl Connector for AzureConnector {
    fn settings(&self) -> serde_json::Value {
        let s = &self.s;
        serde_json::json!({
            "account": s.account,
            "container": s.container,
            "prefix": s.prefix,
            "endpoint": s.endpoint,
            "allow_http": s.allow_http,
            "account_key": s.account_key,
            "sas_token": s.sas_token,
        })
    }

    fn place(&self) -> Option<Place> {
        Some(Place::new(
            format!("azure://{}", self.service()),
            &format!("{}/{}", self.s.container, self.s.prefix),
        ))
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        secrets_of(&[
            ("account_key", &self.s.account_key),
            ("sas_token", &self.s.sas_token),
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

/// Azure error codes meaning the credentials were not accepted.
const AUTH_CODES: &[&str] = &[
    "AuthenticationFailed",
    "InvalidAuthenticationInfo",
    "NoAuthenticationInformation",
];

/// Azure error codes meaning the credentials are valid but may not do it.
const DENIED_CODES: &[&str] = &[
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch",
    "AuthorizationSourceIPMismatch",
    "AuthorizationProtocolMismatch",
    "InsufficientAccountPermissions",
];

/// Reasons for Azure failures: the service's error code first
/// (`<Code>…` in the body, or `x-ms-error-code`), then object_store's
/// typed errors; connection failures are `Unreachable`. An answer from
/// the service is never `Unreachable`, unless it is a 5xx.
fn failure(location: &str, op: &str, text: &str, io: Option<&std::io::Error>) -> NotConnected {
    let code = |c: &str| text.contains(c);
    // Azurite answers a bad signature with `AuthorizationFailure` and Azure's
    // own message for `AuthenticationFailed`; the message decides.
    let reason = if AUTH_CODES.iter().any(|c| code(c))
        || text.contains("Server failed to authenticate the request")
        || text.contains("401 Unauthorized")
    {
        "AuthenticationFailed"
    } else if code("ContainerNotFound") || code("ResourceNotFound") {
        "NotFound"
    } else if DENIED_CODES.iter().any(|c| code(c))
        || text.contains("403 Forbidden")
        || io.is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    {
        "PermissionDenied"
    } else {
        io.map_or("Unreachable", io_reason)
    };
    NotConnected::new(reason, format!("cannot {op} {location}: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_a_container_and_a_prefix() {
        assert_eq!(
            parse_location("azure://backups/host1/").expect("valid"),
            ("backups".into(), "host1".into())
        );
        assert_eq!(
            parse_location("az://backups").expect("valid"),
            ("backups".into(), String::new())
        );
        assert!(parse_location("azure://").is_err());
        assert!(parse_location("azure://acct@c/p").is_err());
        assert!(parse_location("azure://c/a/../b").is_err());
    }

    #[test]
    fn failures_get_the_reason_of_the_service_code() {
        let answer = |status: &str, code: &str| {
            format!(
                "Generic MicrosoftAzure error: Error performing list request: Server returned \
                 non-2xx status code: {status}: <?xml version=\"1.0\" encoding=\"utf-8\"?>\
                 <Error><Code>{code}</Code><Message>m</Message></Error>"
            )
        };
        let cases = [
            (
                answer("403 Forbidden", "AuthenticationFailed"),
                "AuthenticationFailed",
            ),
            (answer("404 Not Found", "ContainerNotFound"), "NotFound"),
            (
                answer("403 Forbidden", "AuthorizationPermissionMismatch"),
                "PermissionDenied",
            ),
            (
                answer("403 Forbidden", "AuthorizationFailure"),
                "PermissionDenied",
            ),
            (
                answer("403 Forbidden", "AuthorizationFailure").replace(
                    "<Message>m",
                    "<Message>Server failed to authenticate the request. Make sure the \
                     value of the Authorization header is formed correctly",
                ),
                "AuthenticationFailed",
            ),
            (
                "Generic MicrosoftAzure error: HTTP error: error sending request".to_string(),
                "Unreachable",
            ),
        ];
        for (text, want) in cases {
            let e = std::io::Error::other(text.clone());
            assert_eq!(
                failure("azure://c", "list", &text, Some(&e)).reason,
                want,
                "{text}"
            );
        }
    }
}
