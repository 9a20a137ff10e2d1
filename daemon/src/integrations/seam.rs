//! The seam every integration implements: [`Integration`] parses its part of
//! a resource and of an app into a typed [`Connector`], which tests the
//! connection and builds the importer, the restore target and the store
//! backend. [`Endpoint`] is what the rest of the daemon holds: a connector
//! with its integration, protocol, location and resource.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kloset::Storage;
use kloset::export::Exporter;
use kloset::import::Importer;
use serde::Serialize;

use super::place::Place;
use super::secret::SecretRef;

/// A connector role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Backs data up (importer).
    Source,
    /// Receives restores (exporter).
    Destination,
    /// Holds a Kloset store.
    Store,
}

impl Role {
    /// `"source"`, `"destination"` or `"store"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Destination => "destination",
            Role::Store => "store",
        }
    }
}

/// Why an endpoint is not usable: a machine reason, shared by connection
/// tests and store readiness, and a message for humans (never a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotConnected {
    /// `NotFound`, `PermissionDenied`, `HostKeyMismatch`, `Unreachable`, ...
    pub reason: &'static str,
    /// What was found.
    pub message: String,
}

impl NotConnected {
    /// A failure with its reason.
    pub fn new(reason: &'static str, message: impl Into<String>) -> NotConnected {
        NotConnected {
            reason,
            message: message.into(),
        }
    }
}

/// What a backend is opened for: a connection test answers within seconds
/// (short timeouts, one retry); work keeps the backend's patient retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Readiness and `test connection`.
    Test,
    /// Backups, restores and maintenance.
    Work,
}

/// Where a restore goes.
pub enum RestoreTarget {
    /// A local directory (the engine's own restore path: sparse files,
    /// owners, modes, times, read-back verification).
    Local(PathBuf),
    /// Anything else.
    Exporter(Box<dyn Exporter>),
}

impl fmt::Debug for RestoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreTarget::Local(p) => write!(f, "Local({})", p.display()),
            RestoreTarget::Exporter(x) => write!(f, "Exporter({})", x.target()),
        }
    }
}

/// How a restore into a destination picks what to write.
#[derive(Clone, Copy, Debug)]
pub enum RestorePick {
    /// The whole tree under the restored path.
    Tree,
    /// One file: a file path as given, or in a directory the one file for
    /// which this returns true (e.g. `NAME.dump`).
    OneFile(fn(&str) -> bool),
}

/// What an endpoint's integration promises, for tasks to follow.
#[derive(Clone, Copy, Debug)]
pub struct Policies {
    /// A source whose data is useless when partial (a dump): one unreadable
    /// part fails the backup instead of writing a partial snapshot.
    pub all_or_nothing: bool,
    /// How a restore picks its files.
    pub restore: RestorePick,
}

impl Default for Policies {
    fn default() -> Policies {
        Policies {
            all_or_nothing: false,
            restore: RestorePick::Tree,
        }
    }
}

/// One endpoint of one integration, with typed settings; built only by its
/// integration's [`Integration::connector`]. Roles the integration does not
/// offer keep the default answers.
pub trait Connector: Send + Sync + fmt::Debug {
    /// The settings as data, for fingerprints and `plan`: every setting that
    /// changes where or how it connects, secrets only by reference.
    fn settings(&self) -> serde_json::Value;

    /// Where it is, for overlap checks; `None` when it has no place that
    /// another app could share (a command).
    fn place(&self) -> Option<Place>;

    /// What tasks must know about it.
    fn policies(&self) -> Policies {
        Policies::default()
    }

    /// Its credentials by name, to read before connecting (so that an
    /// unreadable one is reported as such, not as a connection failure).
    fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        Vec::new()
    }

    /// Tests the connection for `role`; `Ok` carries the success reason
    /// (`Readable`, `Writable`, ...). Stores are tested by opening them.
    fn test(&self, role: Role) -> Result<&'static str, NotConnected> {
        Err(unsupported(role))
    }

    /// The importer a backup reads.
    fn importer(&self) -> Result<Box<dyn Importer>, String> {
        Err(unsupported(Role::Source).message)
    }

    /// Where a restore writes, `subdir` (a restore test's per-snapshot
    /// directory) appended when given.
    fn restore_target(&self, subdir: Option<&str>) -> Result<RestoreTarget, String> {
        let _ = subdir;
        Err(unsupported(Role::Destination).message)
    }

    /// The store backend; `create` makes a missing local directory.
    fn storage(&self, create: bool, purpose: Purpose) -> kloset::Result<Storage> {
        let _ = (create, purpose);
        Err(kloset::Error::InvalidArgument(
            unsupported(Role::Store).message,
        ))
    }

    /// The reason for an engine error of this backend (`Unreachable`,
    /// `HostKeyMismatch`, `AuthenticationFailed`, ...), the same one its
    /// connection test gives; `None` when the error is not about the
    /// connection.
    fn failure_reason(&self, e: &kloset::Error) -> Option<&'static str> {
        let _ = e;
        None
    }
}

fn unsupported(role: Role) -> NotConnected {
    NotConnected::new(
        "Unsupported",
        format!("this integration has no {} connector", role.as_str()),
    )
}

/// The part of a config an integration parses: the app's own keys, and the
/// resource's or the location's.
#[derive(Debug)]
pub struct AppInput<'a> {
    /// The role the app plays.
    pub role: Role,
    /// The protocol chosen.
    pub protocol: &'static str,
    /// The app's name (e.g. `offsite`).
    pub name: &'a str,
    /// The app's integration keys (`path`, `bucket`, `command`, ...).
    pub app: &'a toml::Table,
    /// The file that declares the app (relative paths start there).
    pub app_file: &'a Path,
    /// Where the connection comes from.
    pub base: Base<'a>,
}

/// Where an app's connection is declared.
#[derive(Debug)]
pub enum Base<'a> {
    /// A `[resource.NAME]`: its keys other than `class` and `subclass`.
    Resource {
        /// The table.
        table: &'a toml::Table,
        /// Its file.
        file: &'a Path,
    },
    /// `location = "…"`, as written.
    Location(&'a str),
    /// Neither (a command needs no connection).
    Nothing,
}

/// Where a parse error is: the resource's table or the app's, and the key
/// when one is to blame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// In the resource's keys.
    Resource(String),
    /// In the app's keys (or its location).
    App(String),
    /// At this key of the resource.
    ResourceKey(String, String),
    /// At this key of the app.
    AppKey(String, String),
}

impl ParseError {
    /// The message, wherever it is.
    pub fn message(&self) -> &str {
        match self {
            ParseError::Resource(m)
            | ParseError::App(m)
            | ParseError::ResourceKey(_, m)
            | ParseError::AppKey(_, m) => m,
        }
    }
}

/// A parsed endpoint: its location as shown and its connector.
#[derive(Debug)]
pub struct Parsed {
    /// Path or URL, never with a credential.
    pub location: String,
    /// The typed connector.
    pub connector: Arc<dyn Connector>,
}

/// A built-in integration: what it serves, and how it parses.
pub trait Integration: Sync + fmt::Debug {
    /// Its name, as written in `integration = …`.
    fn name(&self) -> &'static str;
    /// `(class, subclass)` pairs it serves.
    fn classes(&self) -> &'static [(&'static str, &'static str)];
    /// Location schemes it reads (`""` for a plain path).
    fn schemes(&self) -> &'static [&'static str];
    /// Protocols; more than one means `protocol = …` is required.
    fn protocols(&self) -> &'static [&'static str];
    /// Roles it provides.
    fn roles(&self) -> &'static [Role];
    /// Keys it reads from a resource table.
    fn resource_keys(&self) -> &'static [&'static str];
    /// Keys it reads from an app table in `role`.
    fn app_keys(&self, role: Role) -> &'static [&'static str];
    /// Parses and validates `input` (only keys it declared are present).
    fn connector(&self, input: &AppInput<'_>) -> Result<Parsed, Vec<ParseError>>;
}

/// How to reach a store, source or destination.
#[derive(Clone)]
pub struct Endpoint {
    /// The integration serving it.
    pub integration: &'static str,
    /// Its protocol.
    pub protocol: &'static str,
    /// The location (path or URL; never contains credentials).
    pub location: String,
    /// The resource it came from, if any.
    pub resource: Option<String>,
    connector: Arc<dyn Connector>,
}

impl Endpoint {
    /// Wraps a parsed connector.
    pub fn new(
        integration: &'static dyn Integration,
        protocol: &'static str,
        resource: Option<String>,
        parsed: Parsed,
    ) -> Endpoint {
        Endpoint {
            integration: integration.name(),
            protocol,
            location: parsed.location,
            resource,
            connector: parsed.connector,
        }
    }

    /// The typed connector.
    pub fn connector(&self) -> &dyn Connector {
        self.connector.as_ref()
    }

    /// Reads every credential once; the error names the credential and
    /// where it is read from, never its value.
    pub fn check_secrets(&self) -> Result<(), String> {
        for (name, secret) in self.connector.secrets() {
            secret.read().map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }

    /// Where it is, for overlap checks.
    pub fn place(&self) -> Option<Place> {
        self.connector.place()
    }

    /// What tasks must know about it.
    pub fn policies(&self) -> Policies {
        self.connector.policies()
    }

    /// Tests the connection for `role`.
    pub fn test(&self, role: Role) -> Result<&'static str, NotConnected> {
        self.connector.test(role)
    }

    /// The importer a backup reads.
    pub fn importer(&self) -> Result<Box<dyn Importer>, String> {
        self.connector.importer()
    }

    /// Where a restore writes.
    pub fn restore_target(&self, subdir: Option<&str>) -> Result<RestoreTarget, String> {
        self.connector.restore_target(subdir)
    }

    /// The store backend.
    pub fn storage(&self, create: bool, purpose: Purpose) -> kloset::Result<Storage> {
        self.connector.storage(create, purpose)
    }

    /// The connection reason of an engine error, `Unreachable` for an I/O
    /// failure the integration does not classify.
    pub fn failure_reason(&self, e: &kloset::Error) -> Option<&'static str> {
        self.connector.failure_reason(e)
    }

    fn as_data(&self) -> serde_json::Value {
        serde_json::json!({
            "integration": self.integration,
            "protocol": self.protocol,
            "location": self.location,
            "resource": self.resource,
            "settings": self.connector.settings(),
        })
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("integration", &self.integration)
            .field("protocol", &self.protocol)
            .field("location", &self.location)
            .field("resource", &self.resource)
            .field("connector", &self.connector)
            .finish()
    }
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Endpoint) -> bool {
        self.as_data() == other.as_data()
    }
}

impl Eq for Endpoint {}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_data().serialize(s)
    }
}
