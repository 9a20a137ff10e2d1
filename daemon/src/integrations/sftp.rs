//! `sftp`: a directory on an SSH server as source, destination and store,
//! with the host key checked against `known_hosts`. A resource holds the
//! server (`host`, `port`, `user`, credentials) and may hold a base
//! `path`; an app's `path` is relative to it, or absolute.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kloset::Storage;
use kloset_connectors::sftp::{
    SftpAuth, SftpConfig, SftpExporter, SftpImporter, SftpStore, SftpUrl,
};

use super::keys::{port, secret_of, string};
use super::place::Place;
use super::probe::{io_reason, probe_write};
use super::seam::{
    AppInput, Base, Connector, Integration, NotConnected, ParseError, Parsed, Purpose,
    RestoreTarget, Role,
};
use super::secret::{SecretRef, resolve_path};

/// How long a connection test waits for the server at each step (connect,
/// handshake, each request), instead of the 60 s of transfers.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The `sftp` integration.
#[derive(Debug)]
pub struct Sftp;

impl Integration for Sftp {
    fn name(&self) -> &'static str {
        "sftp"
    }
    fn classes(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("filesystem", "sftp"),
            ("filesystem", "nas"),
            ("server", "ssh"),
        ]
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["sftp"]
    }
    fn protocols(&self) -> &'static [&'static str] {
        &["sftp"]
    }
    fn roles(&self) -> &'static [Role] {
        &[Role::Source, Role::Destination, Role::Store]
    }
    fn resource_keys(&self) -> &'static [&'static str] {
        &[
            "host",
            "port",
            "user",
            "path",
            "key_file",
            "known_hosts_file",
            "password_file",
            "password_env",
        ]
    }
    fn app_keys(&self, _: Role) -> &'static [&'static str] {
        &["path"]
    }
    fn connector(&self, input: &AppInput<'_>) -> Result<Parsed, Vec<ParseError>> {
        let app_path = string(input.app, "path").map_err(|m| vec![ParseError::App(m)])?;
        let settings = match &input.base {
            Base::Resource { table, file } => from_resource(table, file, app_path)?,
            Base::Location(loc) => {
                if app_path.is_some() {
                    return Err(vec![ParseError::App(
                        "`path` goes with `resource`; a `location` is already the whole place"
                            .into(),
                    )]);
                }
                let Ok(SftpUrl {
                    user,
                    host,
                    port,
                    path,
                }) = SftpUrl::parse(loc)
                else {
                    return Err(vec![ParseError::App(
                        "give sftp://[user@]host[:port]/absolute/path".into(),
                    )]);
                };
                SftpSettings {
                    host,
                    port: (port != 22).then_some(port),
                    user,
                    path,
                    key_file: None,
                    known_hosts: None,
                    password: None,
                }
            }
            Base::Nothing => {
                return Err(vec![ParseError::App(
                    "`resource` or `location` is required".into(),
                )]);
            }
        };
        Ok(Parsed {
            location: settings.url(&settings.path),
            connector: Arc::new(SftpConnector { s: settings }),
        })
    }
}

fn from_resource(
    table: &toml::Table,
    file: &std::path::Path,
    app_path: Option<String>,
) -> Result<SftpSettings, Vec<ParseError>> {
    let res = |m: String| vec![ParseError::Resource(m)];
    let host = string(table, "host")
        .map_err(res)?
        .ok_or_else(|| res("an SFTP resource needs `host`".into()))?;
    let port = port(table, "port").map_err(res)?;
    let base = string(table, "path").map_err(res)?;
    if base.as_deref().is_some_and(|p| !p.starts_with('/')) {
        return Err(res("an SFTP `path` is absolute on the server".into()));
    }
    let path = match (base, app_path) {
        (_, Some(p)) if p.starts_with('/') => p,
        (Some(b), Some(p)) => {
            if p.split('/').any(|part| part == "..") {
                return Err(vec![ParseError::App(format!(
                    "path = {p:?} is relative to the resource's path and may not leave it with `..`; write an absolute path instead"
                ))]);
            }
            format!("{}/{}", b.trim_end_matches('/'), p.trim_matches('/'))
        }
        (Some(b), None) => b,
        (None, Some(p)) => {
            return Err(vec![ParseError::App(format!(
                "path = {p:?} is relative, and the resource has no `path` to start from"
            ))]);
        }
        (None, None) => {
            return Err(res(
                "an SFTP resource needs `path` (or give `path` on each app)".into(),
            ));
        }
    };
    let path = match path.trim_end_matches('/') {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    let resolved = |key: &str| -> Result<Option<PathBuf>, Vec<ParseError>> {
        match string(table, key).map_err(res)? {
            Some(v) => resolve_path(file, &v).map(Some).map_err(res),
            None => Ok(None),
        }
    };
    let key_file = resolved("key_file")?;
    if let Some(k) = &key_file {
        // The key is a secret: read now, so a missing file is a validation
        // error with file and line. known_hosts is not: an empty or missing
        // one is the connection test's HostKeyUnknown.
        SecretRef::File(k.clone())
            .read()
            .map_err(|m| res(format!("key_file: {m}")))?;
    }
    let password = secret_of(table, file, "password").map_err(res)?;
    if key_file.is_some() && password.is_some() {
        return Err(res("give either `key_file` or a password, not both".into()));
    }
    if key_file.is_none() && password.is_none() {
        return Err(res(
            "an SFTP resource needs `key_file` or `password_file`/`password_env`".into(),
        ));
    }
    Ok(SftpSettings {
        host,
        port,
        user: string(table, "user").map_err(res)?,
        path,
        key_file,
        known_hosts: resolved("known_hosts_file")?,
        password,
    })
}

/// Where an SFTP directory is and how to sign in.
#[derive(Clone, Debug)]
struct SftpSettings {
    host: String,
    port: Option<u16>,
    user: Option<String>,
    path: String,
    key_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    password: Option<SecretRef>,
}

impl SftpSettings {
    fn url(&self, path: &str) -> String {
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "sftp://{user}{host}{port}{}",
            if path == "/" { "" } else { path }
        )
    }
}

/// A directory on an SSH server.
#[derive(Debug)]
struct SftpConnector {
    s: SftpSettings,
}

impl SftpConnector {
    /// The engine's settings, at `subdir` of the directory when given.
    fn config(&self, purpose: Purpose, subdir: Option<&str>) -> kloset::Result<SftpConfig> {
        let s = &self.s;
        let path = match subdir {
            Some(d) => format!("{}/{d}", s.path.trim_end_matches('/')),
            None => s.path.clone(),
        };
        let auth = match (&s.key_file, &s.password) {
            (Some(k), _) => Some(SftpAuth::KeyFile {
                path: k.clone(),
                passphrase: None,
            }),
            (None, Some(p)) => {
                Some(SftpAuth::Password(p.read_text().map_err(|e| {
                    kloset::Error::InvalidArgument(format!("password: {e}"))
                })?))
            }
            (None, None) => None,
        };
        let mut config = match auth {
            // A command-line location: the engine finds the defaults (the
            // local user, a key in ~/.ssh).
            None => SftpConfig::from_url(
                &SftpUrl {
                    user: s.user.clone(),
                    host: s.host.clone(),
                    port: s.port.unwrap_or(22),
                    path,
                },
                &Vec::new(),
            )?,
            Some(auth) => {
                let user = match &s.user {
                    Some(u) => u.clone(),
                    None => std::env::var("USER")
                        .or_else(|_| std::env::var("LOGNAME"))
                        .map_err(|_| {
                            kloset::Error::InvalidArgument(format!(
                                "{}: no `user` given and $USER is not set",
                                s.url(&s.path)
                            ))
                        })?,
                };
                SftpConfig::new(&s.host, &user, &path, auth)
            }
        };
        config.port = s.port.unwrap_or(22);
        if let Some(kh) = &s.known_hosts {
            config.known_hosts = kh.clone();
        }
        if purpose == Purpose::Test {
            config.timeout = TEST_TIMEOUT;
        }
        Ok(config)
    }

    fn open(&self, create: bool, purpose: Purpose) -> kloset::Result<Storage> {
        let store = SftpStore::open(self.config(purpose, None)?, create)?;
        Storage::from_object_store(Arc::new(store), "", &self.s.url(&self.s.path), None)
    }
}

/// The reason of an error that may come from SFTP.
fn reason_of(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    kloset_connectors::sftp::error_kind(e).map(|k| k.reason())
}

impl Connector for SftpConnector {
    fn settings(&self) -> serde_json::Value {
        let s = &self.s;
        serde_json::json!({
            "host": s.host,
            "port": s.port,
            "user": s.user,
            "path": s.path,
            "key_file": s.key_file.as_ref().map(|p| p.to_string_lossy()),
            "known_hosts_file": s.known_hosts.as_ref().map(|p| p.to_string_lossy()),
            "password": s.password,
        })
    }

    fn place(&self) -> Option<Place> {
        let host = self.s.host.to_ascii_lowercase();
        Some(Place::new(
            format!("sftp://{host}:{}", self.s.port.unwrap_or(22)),
            &self.s.path,
        ))
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        self.s.password.iter().map(|p| ("password", p)).collect()
    }

    fn test(&self, role: Role) -> Result<&'static str, NotConnected> {
        let invalid = |e: kloset::Error| NotConnected::new("InvalidConfig", e.to_string());
        match role {
            Role::Source => {
                let importer =
                    SftpImporter::connect(self.config(Purpose::Test, None).map_err(invalid)?)
                        .map_err(|e| NotConnected::new(e.kind().reason(), e.to_string()))?;
                kloset::import::Importer::root(&importer).map_err(|e| io_failure(&e))?;
                Ok("Listable")
            }
            Role::Destination => {
                // A restore makes the directory too, so the test may.
                let storage = self.open(true, Purpose::Test).map_err(|e| {
                    NotConnected::new(reason_of(&e).unwrap_or("Unreachable"), e.to_string())
                })?;
                probe_write(&storage).map_err(|e| io_failure(&e))?;
                Ok("Writable")
            }
            Role::Store => Err(NotConnected::new(
                "Unsupported",
                "stores are tested by opening them",
            )),
        }
    }

    fn importer(&self) -> Result<Box<dyn kloset::import::Importer>, String> {
        let config = self
            .config(Purpose::Work, None)
            .map_err(|e| e.to_string())?;
        Ok(Box::new(
            SftpImporter::connect(config).map_err(|e| e.to_string())?,
        ))
    }

    fn restore_target(&self, subdir: Option<&str>) -> Result<RestoreTarget, String> {
        let config = self
            .config(Purpose::Work, subdir)
            .map_err(|e| e.to_string())?;
        Ok(RestoreTarget::Exporter(Box::new(
            SftpExporter::connect(config).map_err(|e| e.to_string())?,
        )))
    }

    fn storage(&self, create: bool, purpose: Purpose) -> kloset::Result<Storage> {
        self.open(create, purpose)
    }

    fn failure_reason(&self, e: &kloset::Error) -> Option<&'static str> {
        reason_of(e)
    }
}

/// An I/O error that may wrap an SFTP failure.
fn io_failure(e: &std::io::Error) -> NotConnected {
    NotConnected::new(reason_of(e).unwrap_or_else(|| io_reason(e)), e.to_string())
}
