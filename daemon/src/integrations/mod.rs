//! Integrations behind one seam ([`seam::Integration`] and
//! [`seam::Connector`]): each module parses its part of a resource and of
//! an app into a typed connector, tests its connection, and builds the
//! importer, the restore target or the store backend. The rest of the
//! daemon holds [`Endpoint`]s and never an integration's name.
//!
//! Adding an integration: its module, one line in [`REGISTRY`], its page in
//! `docs/integrations/` and its tests.

pub mod azure;
pub mod exec;
pub mod fs;
mod keys;
pub mod mysql;
pub mod place;
pub mod postgresql;
mod prefix;
mod probe;
mod request_retry;
pub mod s3;
pub mod seam;
pub mod secret;
pub mod select;
pub mod sftp;

use std::path::Path;

pub use place::Place;
pub use seam::{
    Endpoint, Integration, NotConnected, ParseError, Policies, Purpose, RestorePick, RestoreTarget,
    Role,
};
pub use secret::{SecretRef, resolve_path};

/// Every integration built into this klosetd, in the order `version` lists
/// them.
pub const REGISTRY: &[&'static dyn Integration] = &[
    &fs::Fs,
    &s3::S3,
    &sftp::Sftp,
    &postgresql::Postgresql,
    &exec::Exec,
    &azure::Azure,
    &mysql::Mysql,
];

/// Names of the integrations that provide `role`.
pub fn names_with(role: Role) -> Vec<&'static str> {
    REGISTRY
        .iter()
        .filter(|i| i.roles().contains(&role))
        .map(|i| i.name())
        .collect()
}

/// Parses an app declaration through the registry.
pub fn endpoint(decl: &select::AppDecl<'_>) -> Result<Endpoint, Vec<ParseError>> {
    select::endpoint(REGISTRY, decl)
}

/// The endpoint of a location given on a command line (`PATH`, `s3://…`,
/// `sftp://…`), with the credentials of the environment; relative paths
/// are relative to the current directory.
pub fn from_location(location: &str, role: Role) -> Result<Endpoint, String> {
    let here = std::env::current_dir()
        .map_err(|e| format!("finding the current directory: {e}"))?
        .join("command-line");
    let keys = toml::Table::new();
    endpoint(&select::AppDecl {
        role,
        name: "command-line",
        file: Path::new(&here),
        resource: None,
        location: Some(location),
        integration: None,
        protocol: None,
        keys: &keys,
    })
    .map_err(|errors| {
        errors
            .iter()
            .map(ParseError::message)
            .collect::<Vec<_>>()
            .join("; ")
    })
}
