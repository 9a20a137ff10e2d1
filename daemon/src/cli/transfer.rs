//! Where a CLI backup reads from and a restore writes to: a local path, a
//! URL of an integration that reads locations (credentials from the
//! standard variables such as `AWS_*` and from `~/.ssh`), or a `@NAME`
//! declared in the config directory. Both go through the integrations'
//! connectors, as in the daemon.

use std::path::Path;

use anyhow::{Context, Result, anyhow};

use crate::config::desired::SourceDef;
use crate::integrations::{Endpoint, RestoreTarget, Role, from_location};

/// What a backup reads.
pub struct BackupSource {
    /// The importer.
    pub importer: Box<dyn kloset::import::Importer>,
    /// The source name recorded in the snapshot (`None`: the origin).
    pub name: Option<String>,
    /// Excludes declared with the source.
    pub excludes: Vec<String>,
    /// Dump sources back up all or nothing.
    pub all_or_nothing: bool,
    /// The declaration, for its hooks (`@NAME` only).
    pub def: Option<SourceDef>,
}

/// Resolves `PATH`, a URL or `@NAME`.
pub fn backup_source(config: &Path, arg: &str) -> Result<BackupSource> {
    if let Some(name) = arg.strip_prefix('@') {
        let def = super::named::source(config, name)?;
        let importer = def
            .endpoint
            .importer()
            .map_err(|e| anyhow!("source {name}: {e}"))?;
        return Ok(BackupSource {
            importer,
            name: Some(name.to_string()),
            excludes: def.excludes.clone(),
            all_or_nothing: def.endpoint.policies().all_or_nothing,
            def: Some(def),
        });
    }
    let endpoint = if arg.contains("://") {
        located(arg, Role::Source)?
    } else {
        // A plain path: back up what it is now, and say so when it is
        // missing or neither a directory nor a file.
        let root = std::fs::canonicalize(arg).with_context(|| format!("cannot back up {arg}"))?;
        if !(root.is_dir() || root.is_file()) {
            return Err(anyhow!(
                "cannot back up {}: neither a directory nor a regular file",
                root.display()
            ));
        }
        located(&root.to_string_lossy(), Role::Source)?
    };
    Ok(BackupSource {
        importer: endpoint
            .importer()
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("connecting to {}", endpoint.location))?,
        name: None,
        excludes: Vec::new(),
        all_or_nothing: endpoint.policies().all_or_nothing,
        def: None,
    })
}

/// Resolves `-to DIR`, a URL or `@NAME`.
pub fn restore_target(config: &Path, arg: Option<&str>) -> Result<RestoreTarget> {
    let Some(arg) = arg else {
        return Ok(RestoreTarget::Local(
            std::env::current_dir().context("finding the current directory")?,
        ));
    };
    if let Some(name) = arg.strip_prefix('@') {
        let def = super::named::destination(config, name)?;
        return def
            .endpoint
            .restore_target(None)
            .map_err(|e| anyhow!("destination {name}: {e}"));
    }
    let endpoint = located(arg, Role::Destination)?;
    endpoint
        .restore_target(None)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("connecting to {}", endpoint.location))
}

/// The endpoint of a location argument. Integrations that need settings a
/// URL cannot carry (a password, a command) are declared and used as
/// `@NAME`.
fn located(arg: &str, role: Role) -> Result<Endpoint> {
    from_location(arg, role).map_err(|e| {
        anyhow!(
            "{e}; declare it as a {} in the config directory and use @NAME",
            role.as_str()
        )
    })
}
