//! Runtime connectors: a validated source becomes a kloset [`Importer`], a
//! destination that is not a local directory a kloset [`Exporter`]. This is
//! the one place where an integration name turns into code; secrets are
//! read here, at use, and never leave the connector.

use std::path::PathBuf;

use kloset::bucket::{BucketExporter, BucketImporter};
use kloset::export::Exporter;
use kloset::import::{FsImporter, Importer};
use kloset::{Location, Storage};

use crate::config::desired::{Endpoint, SourceDef};
use crate::tasks::store::backend_options;

/// Where a restore goes.
pub enum RestoreTarget {
    /// A local directory (the engine's own restore path: sparse files,
    /// owners, modes, times, read-back verification).
    Local(PathBuf),
    /// Anything else.
    Exporter(Box<dyn Exporter>),
}

impl std::fmt::Debug for RestoreTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreTarget::Local(p) => write!(f, "Local({})", p.display()),
            RestoreTarget::Exporter(x) => write!(f, "Exporter({})", x.target()),
        }
    }
}

/// Opens object storage for an S3 endpoint with its credentials.
pub fn object_storage(endpoint: &Endpoint) -> Result<Storage, String> {
    let location = Location::parse(&endpoint.location).map_err(|e| e.to_string())?;
    let options = backend_options(endpoint)?;
    Storage::open(&location, &options, false).map_err(|e| e.to_string())
}

/// The importer that reads `source`.
pub fn importer(source: &SourceDef) -> Result<Box<dyn Importer>, String> {
    let e = &source.endpoint;
    match e.integration {
        "fs" => Ok(Box::new(FsImporter::new(&e.location))),
        "s3" => Ok(Box::new(BucketImporter::new(object_storage(e)?))),
        other => Err(not_built(other, "source")),
    }
}

/// Where a restore into `endpoint` writes, `subdir` (a restore test's
/// per-snapshot directory) appended when given.
pub fn restore_target(endpoint: &Endpoint, subdir: Option<&str>) -> Result<RestoreTarget, String> {
    let joined = |base: &str| match subdir {
        Some(d) => format!("{}/{d}", base.trim_end_matches('/')),
        None => base.to_string(),
    };
    match endpoint.integration {
        "fs" => Ok(RestoreTarget::Local(PathBuf::from(joined(
            &endpoint.location,
        )))),
        "s3" => {
            let mut e = endpoint.clone();
            e.location = joined(&endpoint.location);
            Ok(RestoreTarget::Exporter(Box::new(BucketExporter::new(
                object_storage(&e)?,
            ))))
        }
        other => Err(not_built(other, "destination")),
    }
}

fn not_built(integration: &str, role: &str) -> String {
    format!("the {integration} integration has no {role} connector in this build")
}
