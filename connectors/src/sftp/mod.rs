//! SFTP integration: connection settings, typed errors, and the store
//! backend, importer and exporter built on them (libssh2 via `ssh2`).
//!
//! Invariants:
//! - A server's host key is always checked against an OpenSSH `known_hosts`
//!   file; an unknown or different key refuses the connection with the
//!   key's SHA256 fingerprint. Nothing is ever accepted blindly.
//! - Passwords and key passphrases live in [`Zeroizing`] strings and are
//!   never printed: [`SftpAuth`]'s `Debug` redacts them and no error message
//!   includes them.
//! - Every failure carries an [`SftpErrorKind`] callers can branch on (the
//!   daemon maps them to condition reasons), findable through any error
//!   chain with [`error_kind`].
//! - ssh2 calls block; async code runs them on `spawn_blocking` threads.

mod conn;
mod durable;
mod export;
mod import;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

pub use export::SftpExporter;
pub use import::SftpImporter;
pub use store::SftpStore;

use kloset::{Error, Result};

/// Backend settings by name (`sftp_key_file`, ...), as embedders pass them.
pub type BackendOptions = Vec<(String, String)>;

/// A directory on an SFTP server: `sftp://[user@]host[:port]/abs/path`.
/// Credentials come from options, never from the URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftpUrl {
    /// Login name (`None`: the local user's name).
    pub user: Option<String>,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (22 unless given).
    pub port: u16,
    /// Absolute remote directory, without a trailing `/` (except `/`).
    pub path: String,
}

impl SftpUrl {
    /// Parses `sftp://[user@]host[:port]/abs/path` (`[v6addr]` for IPv6).
    pub fn parse(s: &str) -> Result<SftpUrl> {
        let rest = s
            .strip_prefix("sftp://")
            .ok_or_else(|| Error::InvalidArgument("an SFTP location starts with sftp://".into()))?;
        parse_location(rest)
    }
}

/// The store backend at `url` as a [`kloset::Storage`]; `create` makes a
/// missing directory.
pub fn open_storage(
    url: &SftpUrl,
    options: &BackendOptions,
    create: bool,
) -> Result<kloset::Storage> {
    let store = SftpStore::open(SftpConfig::from_url(url, options)?, create)?;
    kloset::Storage::from_object_store(std::sync::Arc::new(store), "", &url.to_string(), None)
}

impl std::fmt::Display for SftpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fmt_location(f, self.user.as_deref(), &self.host, self.port, &self.path)
    }
}

/// The default SSH port.
pub const DEFAULT_PORT: u16 = 22;

/// How to authenticate.
#[derive(Clone)]
pub enum SftpAuth {
    /// A private key file (OpenSSH or PEM format), optionally encrypted.
    KeyFile {
        /// The private key's path.
        path: PathBuf,
        /// Its passphrase, if it is encrypted.
        passphrase: Option<Zeroizing<String>>,
    },
    /// A password.
    Password(Zeroizing<String>),
}

impl std::fmt::Debug for SftpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SftpAuth::KeyFile { path, passphrase } => f
                .debug_struct("KeyFile")
                .field("path", path)
                .field("passphrase", &passphrase.as_ref().map(|_| "<redacted>"))
                .finish(),
            SftpAuth::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct SftpConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login name.
    pub user: String,
    /// The remote root directory (absolute).
    pub path: String,
    /// Credentials.
    pub auth: SftpAuth,
    /// The OpenSSH `known_hosts` file the host key must be listed in.
    pub known_hosts: PathBuf,
    /// Timeout of the TCP connect and of every SSH call.
    pub timeout: Duration,
    /// Sessions opened at most (parallel workers share them).
    pub max_sessions: usize,
}

impl SftpConfig {
    /// Settings with the defaults: port 22, `$HOME/.ssh/known_hosts`, a
    /// 60 s timeout and up to 4 sessions.
    pub fn new(host: &str, user: &str, path: &str, auth: SftpAuth) -> SftpConfig {
        SftpConfig {
            host: host.to_string(),
            port: DEFAULT_PORT,
            user: user.to_string(),
            path: normalize_root(path),
            auth,
            known_hosts: home_dir().join(".ssh/known_hosts"),
            timeout: Duration::from_secs(60),
            max_sessions: 4,
        }
    }

    /// Settings from an `sftp://` location and `sftp_*` backend options:
    /// `sftp_key_file`, `sftp_key_passphrase`, `sftp_password`,
    /// `sftp_known_hosts_file`, `sftp_timeout` (whole seconds, replacing
    /// the default [`SftpConfig::timeout`]). Other options are errors. Without a key
    /// file or password, the first of `~/.ssh/id_ed25519`, `id_ecdsa`,
    /// `id_rsa` that exists is used.
    pub fn from_url(location: &SftpUrl, options: &BackendOptions) -> Result<SftpConfig> {
        let SftpUrl {
            user,
            host,
            port,
            path,
        } = location;
        let (mut key_file, mut passphrase, mut password, mut known_hosts) =
            (None, None, None, None);
        let mut timeout = None;
        for (key, value) in options {
            match key.as_str() {
                "sftp_key_file" => key_file = Some(PathBuf::from(value)),
                "sftp_key_passphrase" => passphrase = Some(Zeroizing::new(value.clone())),
                "sftp_password" => password = Some(Zeroizing::new(value.clone())),
                "sftp_known_hosts_file" => known_hosts = Some(PathBuf::from(value)),
                "sftp_timeout" => match value.parse::<u64>() {
                    Ok(secs) if secs > 0 => timeout = Some(Duration::from_secs(secs)),
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "{location}: sftp_timeout {value:?} is not a positive number of seconds"
                        )));
                    }
                },
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown SFTP option {other:?} (known: sftp_key_file, \
                         sftp_key_passphrase, sftp_password, sftp_known_hosts_file, sftp_timeout)"
                    )));
                }
            }
        }
        let auth = match (key_file, password) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidArgument(format!(
                    "{location}: give either sftp_key_file or sftp_password, not both"
                )));
            }
            (Some(path), None) => SftpAuth::KeyFile { path, passphrase },
            (None, Some(pw)) => {
                if passphrase.is_some() {
                    return Err(Error::InvalidArgument(format!(
                        "{location}: sftp_key_passphrase needs sftp_key_file"
                    )));
                }
                SftpAuth::Password(pw)
            }
            (None, None) => {
                let ssh = home_dir().join(".ssh");
                let found = ["id_ed25519", "id_ecdsa", "id_rsa"]
                    .iter()
                    .map(|n| ssh.join(n))
                    .find(|p| p.is_file())
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "{location}: no credentials: set sftp_key_file or sftp_password \
                             (no default key in {})",
                            ssh.display()
                        ))
                    })?;
                SftpAuth::KeyFile {
                    path: found,
                    passphrase,
                }
            }
        };
        let user = match user {
            Some(u) => u.clone(),
            None => std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .map_err(|_| {
                    Error::InvalidArgument(format!(
                        "{location}: no user given and $USER is not set; use sftp://USER@HOST/PATH"
                    ))
                })?,
        };
        let mut config = SftpConfig::new(host, &user, path, auth);
        config.port = *port;
        if let Some(kh) = known_hosts {
            config.known_hosts = kh;
        }
        if let Some(t) = timeout {
            config.timeout = t;
        }
        Ok(config)
    }

    /// `sftp://user@host[:port]/path`, as shown to users (no secrets).
    pub fn url(&self) -> String {
        SftpUrl {
            user: Some(self.user.clone()),
            host: self.host.clone(),
            port: self.port,
            path: self.path.clone(),
        }
        .to_string()
    }

    /// `host:port` (`[v6]:port`), for messages.
    pub(crate) fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn normalize_root(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Parses what follows `sftp://`: `[user@]host[:port]/abs/path`, with
/// `[v6addr]` for IPv6. A password in the URL is refused.
fn parse_location(rest: &str) -> Result<SftpUrl> {
    let bad =
        |why: &str| Error::InvalidArgument(format!("invalid SFTP location sftp://{rest}: {why}"));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => return Err(bad("expected sftp://[USER@]HOST[:PORT]/ABSOLUTE/PATH")),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => {
            if u.contains(':') {
                // Never echo the input: it holds a password.
                return Err(Error::InvalidArgument(
                    "invalid SFTP location: passwords do not belong in the location; \
                     use the sftp_password option"
                        .into(),
                ));
            }
            if u.is_empty() {
                return Err(bad("empty user name"));
            }
            (Some(u.to_string()), h)
        }
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
        };
        (h, port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
    };
    if path.split('/').any(|c| c == "..") {
        return Err(bad("'..' is not allowed in the path"));
    }
    Ok(SftpUrl {
        user,
        host: host.to_string(),
        port,
        path: normalize_root(path),
    })
}

/// Writes an `sftp://` location (the inverse of [`parse_location`]).
fn fmt_location(
    f: &mut std::fmt::Formatter<'_>,
    user: Option<&str>,
    host: &str,
    port: u16,
    path: &str,
) -> std::fmt::Result {
    f.write_str("sftp://")?;
    if let Some(u) = user {
        write!(f, "{u}@")?;
    }
    if host.contains(':') {
        write!(f, "[{host}]")?;
    } else {
        f.write_str(host)?;
    }
    if port != DEFAULT_PORT {
        write!(f, ":{port}")?;
    }
    f.write_str(path)
}

/// What kind of SFTP failure happened, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SftpErrorKind {
    /// The TCP connection (or SSH handshake) could not be made.
    Unreachable,
    /// The server's host key is not in the known_hosts file.
    HostKeyUnknown,
    /// The known_hosts file lists a different key for the server.
    HostKeyMismatch,
    /// The server refused the credentials (or the key file is unusable).
    AuthenticationFailed,
    /// The server refused an operation on a path.
    PermissionDenied,
    /// A remote path does not exist.
    NotFound,
    /// A remote path exists already (a create that must not overwrite).
    AlreadyExists,
    /// An established connection broke or timed out.
    ConnectionLost,
    /// Anything else the server or libssh2 reported.
    Other,
}

impl SftpErrorKind {
    /// The condition reason the daemon shows (`Unreachable`, `HostKeyUnknown`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            SftpErrorKind::Unreachable => "Unreachable",
            SftpErrorKind::HostKeyUnknown => "HostKeyUnknown",
            SftpErrorKind::HostKeyMismatch => "HostKeyMismatch",
            SftpErrorKind::AuthenticationFailed => "AuthenticationFailed",
            SftpErrorKind::PermissionDenied => "PermissionDenied",
            SftpErrorKind::NotFound => "NotFound",
            SftpErrorKind::AlreadyExists => "AlreadyExists",
            SftpErrorKind::ConnectionLost => "ConnectionLost",
            SftpErrorKind::Other => "Error",
        }
    }

    fn io_kind(self) -> std::io::ErrorKind {
        use std::io::ErrorKind as K;
        match self {
            SftpErrorKind::Unreachable => K::ConnectionRefused,
            SftpErrorKind::HostKeyUnknown
            | SftpErrorKind::HostKeyMismatch
            | SftpErrorKind::AuthenticationFailed
            | SftpErrorKind::PermissionDenied => K::PermissionDenied,
            SftpErrorKind::NotFound => K::NotFound,
            SftpErrorKind::AlreadyExists => K::AlreadyExists,
            SftpErrorKind::ConnectionLost => K::ConnectionAborted,
            SftpErrorKind::Other => K::Other,
        }
    }
}

/// An SFTP failure: its kind and a message naming the host and path (never
/// a secret).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SftpError {
    kind: SftpErrorKind,
    message: String,
}

impl SftpError {
    pub(crate) fn new(kind: SftpErrorKind, message: impl Into<String>) -> SftpError {
        SftpError {
            kind,
            message: message.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> SftpErrorKind {
        self.kind
    }

    /// As an `std::io::Error` of the matching kind (the SFTP error inside).
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::new(self.kind.io_kind(), self)
    }

    /// As an `object_store` error about `path`.
    pub(crate) fn into_object_store(self, path: &str) -> object_store::Error {
        let path = path.to_string();
        match self.kind {
            SftpErrorKind::NotFound => object_store::Error::NotFound {
                path,
                source: Box::new(self),
            },
            SftpErrorKind::AlreadyExists => object_store::Error::AlreadyExists {
                path,
                source: Box::new(self),
            },
            SftpErrorKind::PermissionDenied => object_store::Error::PermissionDenied {
                path,
                source: Box::new(self),
            },
            SftpErrorKind::AuthenticationFailed => object_store::Error::Unauthenticated {
                path,
                source: Box::new(self),
            },
            _ => object_store::Error::Generic {
                store: store::STORE_NAME,
                source: Box::new(self),
            },
        }
    }

    /// As an engine error (what opening an SFTP store returns).
    pub(crate) fn into_engine(self, context: String) -> Error {
        Error::Storage {
            context,
            source: self.into_object_store(""),
        }
    }
}

/// The SFTP failure kind somewhere in `err`'s chain (through engine,
/// `object_store` and `std::io` errors), if it came from SFTP.
pub fn error_kind(err: &(dyn std::error::Error + 'static)) -> Option<SftpErrorKind> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(s) = e.downcast_ref::<SftpError>() {
            return Some(s.kind);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<SftpError>())
        {
            return Some(inner.kind);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_display() {
        let l = SftpUrl::parse("sftp://bob@example.org:2222/srv/backups/").expect("parse");
        assert_eq!(
            l,
            SftpUrl {
                user: Some("bob".into()),
                host: "example.org".into(),
                port: 2222,
                path: "/srv/backups".into()
            }
        );
        assert_eq!(l.to_string(), "sftp://bob@example.org:2222/srv/backups");
        let v6 = SftpUrl::parse("sftp://[::1]/x").expect("v6");
        assert_eq!(v6.to_string(), "sftp://[::1]/x");
        assert!((v6.port, v6.user.is_none()) == (22, true));
        for bad in [
            "sftp://host",
            "sftp://bob:secret@host/x",
            "sftp://host:0/x",
            "sftp://host:99999/x",
            "sftp:///x",
            "sftp://h/a/../b",
        ] {
            let e = SftpUrl::parse(bad).expect_err(bad);
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn options_are_checked_and_secrets_never_printed() {
        let l = SftpUrl::parse("sftp://bob@h/x").expect("parse");
        let opts = vec![
            ("sftp_key_file".to_string(), "/k".to_string()),
            ("sftp_key_passphrase".to_string(), "hunter2".to_string()),
            ("sftp_known_hosts_file".to_string(), "/kh".to_string()),
        ];
        let c = SftpConfig::from_url(&l, &opts).expect("config");
        assert_eq!(c.known_hosts, PathBuf::from("/kh"));
        assert!(!format!("{c:?}").contains("hunter2"));
        let pw = vec![("sftp_password".to_string(), "hunter2".to_string())];
        let c = SftpConfig::from_url(&l, &pw).expect("config");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.url(), "sftp://bob@h/x");
        let unknown = vec![("sftp_pasword".to_string(), "hunter2".to_string())];
        let e = SftpConfig::from_url(&l, &unknown).expect_err("unknown");
        assert!(e.to_string().contains("sftp_pasword") && !e.to_string().contains("hunter2"));
        let both = [opts[0].clone(), pw[0].clone()].to_vec();
        assert!(SftpConfig::from_url(&l, &both).is_err());
        let timeout = [pw[0].clone(), ("sftp_timeout".into(), "7".into())].to_vec();
        let c = SftpConfig::from_url(&l, &timeout).expect("config");
        assert_eq!(c.timeout, Duration::from_secs(7));
        for bad in ["0", "-1", "7s", ""] {
            let t = [pw[0].clone(), ("sftp_timeout".into(), bad.into())].to_vec();
            let e = SftpConfig::from_url(&l, &t).expect_err(bad);
            assert!(e.to_string().contains("sftp_timeout"), "{e}");
        }
    }

    #[test]
    fn error_kind_is_found_through_chains() {
        let e = SftpError::new(SftpErrorKind::HostKeyUnknown, "x");
        let engine = e.into_engine("connecting".into());
        assert_eq!(error_kind(&engine), Some(SftpErrorKind::HostKeyUnknown));
        let io = SftpError::new(SftpErrorKind::NotFound, "y").into_io();
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(error_kind(&io), Some(SftpErrorKind::NotFound));
    }
}
