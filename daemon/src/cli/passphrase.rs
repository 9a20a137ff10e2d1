//! Where a store's passphrase comes from: `--passphrase-file`, then
//! `KLOSET_PASSPHRASE_FILE`, then `KLOSET_PASSPHRASE`, then a prompt when
//! standard input is a terminal. The passphrase is never printed or logged.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

/// Environment variables for one side (the store, or the `sync` target).
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    /// `--passphrase-file` or `--to-passphrase-file`.
    pub file_flag: Option<&'a Path>,
    /// `KLOSET_PASSPHRASE_FILE` or `KLOSET_PASSPHRASE_TO_FILE`.
    pub file_env: &'static str,
    /// `KLOSET_PASSPHRASE` or `KLOSET_PASSPHRASE_TO`.
    pub value_env: &'static str,
}

/// Reads a passphrase file, dropping one trailing newline.
pub fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("reading passphrase file {}", path.display()))?,
    );
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        bail!("passphrase file {} is empty", path.display());
    }
    Ok(bytes)
}

/// Finds the passphrase; `confirm` asks twice when prompting (create).
pub fn obtain(sources: Sources<'_>, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(path) = sources.file_flag {
        return read_file(path);
    }
    if let Some(path) = std::env::var_os(sources.file_env) {
        return read_file(Path::new(&path));
    }
    if let Some(value) = std::env::var_os(sources.value_env) {
        let bytes =
            Zeroizing::new(std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()).to_vec());
        if bytes.is_empty() {
            bail!("{} is set but empty", sources.value_env);
        }
        return Ok(bytes);
    }
    if std::io::stdin().is_terminal() {
        let first = Zeroizing::new(
            rpassword::prompt_password("passphrase: ").context("reading the passphrase")?,
        );
        if confirm {
            let again = Zeroizing::new(
                rpassword::prompt_password("passphrase (again): ")
                    .context("reading the passphrase")?,
            );
            if *first != *again {
                bail!("the passphrases do not match");
            }
        }
        if first.is_empty() {
            bail!("the passphrase must not be empty");
        }
        return Ok(Zeroizing::new(first.as_bytes().to_vec()));
    }
    bail!(
        "no passphrase: set {} or {}, or pass --passphrase-file",
        sources.value_env,
        sources.file_env
    )
}
