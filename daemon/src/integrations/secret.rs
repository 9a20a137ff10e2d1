//! Secrets and paths as a config file writes them: a secret is a reference
//! (`*_file` or `*_env`) read when needed, never a value in the desired
//! state; a path is relative to the file that names it.

use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

/// A secret: read when needed, never stored in the desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretRef {
    /// A file (e.g. under `$CREDENTIALS_DIRECTORY`).
    File(#[serde(serialize_with = "lossy_path")] PathBuf),
    /// An environment variable.
    Env(String),
}

fn lossy_path<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

impl SecretRef {
    /// Reads the secret; one trailing newline of a file is dropped. The
    /// error names the file or variable, never the value.
    pub fn read(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        let mut bytes = match self {
            SecretRef::File(p) => Zeroizing::new(
                std::fs::read(p)
                    .map_err(|e| format!("cannot read secret file {}: {e}", p.display()))?,
            ),
            SecretRef::Env(name) => match std::env::var_os(name) {
                Some(v) => {
                    Zeroizing::new(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec())
                }
                None => return Err(format!("environment variable {name} is not set")),
            },
        };
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(match self {
                SecretRef::File(p) => format!("secret file {} is empty", p.display()),
                SecretRef::Env(n) => format!("environment variable {n} is empty"),
            });
        }
        Ok(bytes)
    }

    /// Where it is read from (`file /run/…` or `$VAR`), never the value.
    pub fn describe(&self) -> String {
        match self {
            SecretRef::File(p) => format!("file {}", p.display()),
            SecretRef::Env(n) => format!("${n}"),
        }
    }

    /// Reads the secret as UTF-8 text.
    pub fn read_text(&self) -> Result<Zeroizing<String>, String> {
        let bytes = self.read()?;
        std::str::from_utf8(&bytes)
            .map(|t| Zeroizing::new(t.to_string()))
            .map_err(|_| "the secret is not UTF-8".to_string())
    }
}

/// Reads a client's optional password as text for a connection; an
/// unreadable one is `SecretUnreadable` (naming where, never the value).
pub fn read_password(
    password: Option<&SecretRef>,
) -> Result<Option<Zeroizing<String>>, super::seam::NotConnected> {
    password
        .map(|p| {
            p.read_text().map_err(|e| {
                super::seam::NotConnected::new("SecretUnreadable", format!("password: {e}"))
            })
        })
        .transpose()
}

/// Resolves a path as written in `file`: `$CREDENTIALS_DIRECTORY/…` (or
/// `${CREDENTIALS_DIRECTORY}/…`) expands from the environment; a relative
/// path is relative to the file's directory.
pub fn resolve_path(file: &Path, written: &str) -> Result<PathBuf, String> {
    for var in ["${CREDENTIALS_DIRECTORY}", "$CREDENTIALS_DIRECTORY"] {
        if let Some(rest) = written.strip_prefix(var) {
            let base = std::env::var_os("CREDENTIALS_DIRECTORY")
                .ok_or_else(|| format!("{written:?} uses $CREDENTIALS_DIRECTORY, which is not set (systemd sets it with LoadCredential=)"))?;
            return Ok(PathBuf::from(base).join(rest.trim_start_matches('/')));
        }
    }
    let p = Path::new(written);
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(file.parent().unwrap_or(Path::new("/")).join(p))
    }
}

/// The secret `what` from `what_file` (relative to `file`) or `what_env`,
/// read once now so that a missing one is a validation error. `Ok(None)`
/// when neither is given and it is optional.
pub fn secret(
    file: &Path,
    what: &str,
    from_file: Option<&str>,
    from_env: Option<&str>,
    required: bool,
) -> Result<Option<SecretRef>, String> {
    let secret = match (from_file, from_env) {
        (Some(_), Some(_)) => {
            return Err(format!("give either {what}_file or {what}_env, not both"));
        }
        (Some(f), None) => {
            SecretRef::File(resolve_path(file, f).map_err(|e| format!("{what}_file: {e}"))?)
        }
        (None, Some(e)) => SecretRef::Env(e.to_string()),
        (None, None) if required => {
            return Err(format!(
                "{what}_file or {what}_env is required (secrets are never written in the TOML)"
            ));
        }
        (None, None) => return Ok(None),
    };
    secret.read().map_err(|e| format!("{what}: {e}"))?;
    Ok(Some(secret))
}
