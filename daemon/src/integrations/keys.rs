//! Reading an integration's keys from a resource or app table: strings,
//! ports and secrets, each with an error that names the key.

use std::path::Path;

use super::secret::{SecretRef, secret};

/// A string key of a table, if set; empty is refused.
pub fn string(table: &toml::Table, key: &str) -> Result<Option<String>, String> {
    match text(table, key)? {
        Some(s) if s.is_empty() => Err(format!("`{key}` is a non-empty string")),
        other => Ok(other),
    }
}

/// A string key of a table, if set; empty is a value (e.g. a prefix).
pub fn text(table: &toml::Table, key: &str) -> Result<Option<String>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{key}` is a string")),
    }
}

/// A TCP port key, if set.
pub fn port(table: &toml::Table, key: &str) -> Result<Option<u16>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::Integer(p)) => u16::try_from(*p)
            .map(Some)
            .map_err(|_| format!("{key} = {p} is not a TCP port")),
        Some(_) => Err(format!("`{key}` is a number")),
    }
}

/// The secret `what` of a table: `what_file` (relative to `file`) or
/// `what_env`, read once now.
pub fn secret_of(
    table: &toml::Table,
    file: &Path,
    what: &str,
) -> Result<Option<SecretRef>, String> {
    let from_file = string(table, &format!("{what}_file"))?;
    let from_env = string(table, &format!("{what}_env"))?;
    secret(file, what, from_file.as_deref(), from_env.as_deref(), false)
}
