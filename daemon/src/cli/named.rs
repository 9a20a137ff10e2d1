//! `@NAME` references: stores, sources and destinations declared in the
//! klosetd configuration directory (`--config`), so the CLI and the daemon
//! share one declaration, passphrases included.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use kloset::Location;
use zeroize::Zeroizing;

use crate::config::{DesiredState, load_and_validate};

/// Loads and validates the config directory, or explains why it cannot.
pub fn load(dir: &Path) -> Result<DesiredState> {
    load_and_validate(dir).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow!(
            "the configuration in {} is invalid:\n{}",
            dir.display(),
            list.join("\n")
        )
    })
}

/// A store resolved from `@NAME`.
pub struct NamedStore {
    /// Where it is.
    pub location: Location,
    /// Backend settings with credentials read.
    pub options: Vec<(String, String)>,
    /// The passphrase from its `passphrase_file` or `passphrase_env`.
    pub passphrase: Zeroizing<Vec<u8>>,
}

/// Resolves `@NAME` to a store.
pub fn store(dir: &Path, name: &str) -> Result<NamedStore> {
    let state = load(dir)?;
    let def = state.stores.get(name).ok_or_else(|| {
        anyhow!(
            "no [store.{name}] in {} (declared: {:?})",
            dir.display(),
            state.stores.keys().collect::<Vec<_>>()
        )
    })?;
    Ok(NamedStore {
        location: Location::parse(&def.endpoint.location)?,
        options: crate::tasks::store::backend_options(&def.endpoint)
            .map_err(|e| anyhow!("store {name}: {e}"))?,
        passphrase: def
            .passphrase
            .read()
            .map_err(|e| anyhow!("store {name}: {e}"))
            .context("reading the passphrase")?,
    })
}

/// Resolves `@NAME` to a source directory and its excludes.
pub fn source(dir: &Path, name: &str) -> Result<(PathBuf, String, Vec<String>)> {
    let state = load(dir)?;
    let def = state.sources.get(name).ok_or_else(|| {
        anyhow!(
            "no [source.{name}] in {} (declared: {:?})",
            dir.display(),
            state.sources.keys().collect::<Vec<_>>()
        )
    })?;
    if def.endpoint.integration != "fs" {
        return Err(anyhow!(
            "source {name} uses the {} integration, which the CLI cannot back up yet",
            def.endpoint.integration
        ));
    }
    Ok((
        PathBuf::from(&def.endpoint.location),
        name.to_string(),
        def.excludes.clone(),
    ))
}

/// Resolves `@NAME` to a destination directory.
pub fn destination(dir: &Path, name: &str) -> Result<PathBuf> {
    let state = load(dir)?;
    let def = state.destinations.get(name).ok_or_else(|| {
        anyhow!(
            "no [destination.{name}] in {} (declared: {:?})",
            dir.display(),
            state.destinations.keys().collect::<Vec<_>>()
        )
    })?;
    if def.endpoint.integration != "fs" {
        return Err(anyhow!(
            "destination {name} uses the {} integration, which the CLI cannot restore to yet",
            def.endpoint.integration
        ));
    }
    Ok(PathBuf::from(&def.endpoint.location))
}
