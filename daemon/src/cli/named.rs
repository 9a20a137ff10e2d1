//! `@NAME` references: stores, sources and destinations declared in the
//! klosetd configuration directory (`--config`), so the CLI and the daemon
//! share one declaration, passphrases included.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use zeroize::Zeroizing;

use crate::config::desired::{DestinationDef, Endpoint, SourceDef};
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
    pub endpoint: Endpoint,
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
        endpoint: {
            def.endpoint
                .check_secrets()
                .map_err(|e| anyhow!("store {name}: {e}"))?;
            def.endpoint.clone()
        },
        passphrase: def
            .passphrase
            .read()
            .map_err(|e| anyhow!("store {name}: {e}"))
            .context("reading the passphrase")?,
    })
}

/// Resolves `@NAME` to a source declaration.
pub fn source(dir: &Path, name: &str) -> Result<SourceDef> {
    let mut state = load(dir)?;
    let declared: Vec<String> = state.sources.keys().cloned().collect();
    state.sources.remove(name).ok_or_else(|| {
        anyhow!(
            "no [source.{name}] in {} (declared: {declared:?})",
            dir.display()
        )
    })
}

/// Resolves `@NAME` to a destination declaration.
pub fn destination(dir: &Path, name: &str) -> Result<DestinationDef> {
    let mut state = load(dir)?;
    let declared: Vec<String> = state.destinations.keys().cloned().collect();
    state.destinations.remove(name).ok_or_else(|| {
        anyhow!(
            "no [destination.{name}] in {} (declared: {declared:?})",
            dir.display()
        )
    })
}
