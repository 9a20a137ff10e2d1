//! Where a CLI backup reads from and a restore writes to: a local path, an
//! `s3://` or `sftp://` URL (credentials from the standard `AWS_*`
//! variables and `~/.ssh`), or a `@NAME` declared in the config directory,
//! which goes through the same connectors as the daemon.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use kloset::bucket::{BucketExporter, BucketImporter};
use kloset::import::{FsImporter, Importer};
use kloset::sftp::{SftpConfig, SftpExporter, SftpImporter};
use kloset::{Location, Storage};

use crate::config::desired::SourceDef;
use crate::integrations::connectors::{self, RestoreTarget};

/// What a backup reads.
pub struct BackupSource {
    /// The importer.
    pub importer: Box<dyn Importer>,
    /// The source name recorded in the snapshot (`None`: the origin).
    pub name: Option<String>,
    /// Excludes declared with the source.
    pub excludes: Vec<String>,
    /// Dump sources back up all or nothing.
    pub all_or_nothing: bool,
    /// The declaration, for its hooks (`@NAME` only).
    pub def: Option<SourceDef>,
}

/// Resolves `PATH`, `s3://…`, `sftp://…` or `@NAME`.
pub fn backup_source(config: &Path, arg: &str) -> Result<BackupSource> {
    if let Some(name) = arg.strip_prefix('@') {
        let def = super::named::source(config, name)?;
        let importer = connectors::importer(&def).map_err(|e| anyhow!("source {name}: {e}"))?;
        return Ok(BackupSource {
            importer,
            name: Some(name.to_string()),
            excludes: def.excludes.clone(),
            all_or_nothing: matches!(def.endpoint.integration, "postgresql" | "exec"),
            def: Some(def),
        });
    }
    let importer: Box<dyn Importer> = match url(arg)? {
        Some(Location::S3 { .. }) => Box::new(BucketImporter::new(open_bucket(arg)?)),
        Some(location @ Location::Sftp { .. }) => Box::new(
            SftpImporter::connect(SftpConfig::from_location(&location, &Vec::new())?)
                .with_context(|| format!("connecting to {location}"))?,
        ),
        _ => {
            let path = Path::new(arg.strip_prefix("fs://").unwrap_or(arg));
            let root = std::fs::canonicalize(path)
                .with_context(|| format!("cannot back up {}", path.display()))?;
            if !(root.is_dir() || root.is_file()) {
                return Err(anyhow!(
                    "cannot back up {}: neither a directory nor a regular file",
                    root.display()
                ));
            }
            Box::new(FsImporter::new(root))
        }
    };
    Ok(BackupSource {
        importer,
        name: None,
        excludes: Vec::new(),
        all_or_nothing: false,
        def: None,
    })
}

/// Resolves `-to DIR`, `s3://…`, `sftp://…` or `@NAME`.
pub fn restore_target(config: &Path, arg: Option<&str>) -> Result<RestoreTarget> {
    let Some(arg) = arg else {
        return Ok(RestoreTarget::Local(
            std::env::current_dir().context("finding the current directory")?,
        ));
    };
    if let Some(name) = arg.strip_prefix('@') {
        let def = super::named::destination(config, name)?;
        return connectors::restore_target(&def.endpoint, None)
            .map_err(|e| anyhow!("destination {name}: {e}"));
    }
    Ok(match url(arg)? {
        Some(Location::S3 { .. }) => {
            RestoreTarget::Exporter(Box::new(BucketExporter::new(open_bucket(arg)?)))
        }
        Some(location @ Location::Sftp { .. }) => RestoreTarget::Exporter(Box::new(
            SftpExporter::connect(SftpConfig::from_location(&location, &Vec::new())?)
                .with_context(|| format!("connecting to {location}"))?,
        )),
        _ => RestoreTarget::Local(PathBuf::from(arg.strip_prefix("fs://").unwrap_or(arg))),
    })
}

/// The location of an `s3://` or `sftp://` argument; `None` for paths
/// (and `fs://`). Any other scheme is refused rather than taken as a path.
fn url(arg: &str) -> Result<Option<Location>> {
    match arg.split_once("://").map(|(scheme, _)| scheme) {
        Some("s3" | "sftp") => Ok(Some(Location::parse(arg)?)),
        None | Some("fs") => Ok(None),
        Some(other) => Err(anyhow!(
            "{other}:// is not a location the CLI reads or writes directly; \
             declare it as a source or destination and use @NAME (postgresql and exec work that way)"
        )),
    }
}

fn open_bucket(arg: &str) -> Result<Storage> {
    let location = Location::parse(arg)?;
    Storage::open(&location, &Vec::new(), false).with_context(|| format!("opening {arg}"))
}
