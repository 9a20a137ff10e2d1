//! A private temporary file a command reads a secret from (a MySQL option
//! file, a PostgreSQL password file), so the secret is never an argument
//! and never in a child's environment.
//!
//! Invariants: the file is created exclusively (`O_EXCL`, so a planted
//! file or symlink of the same name makes creation fail instead of being
//! written through) with mode 0600 in the temporary directory (the unit's
//! private `/tmp`), its content is written and synced before anyone gets
//! its path, and it is removed when the last holder drops it. The text is
//! never in `Debug`; only the path is.

use std::io::{self, Write};
use std::path::Path;

use tempfile::TempPath;

/// A private file holding a secret; removed on drop.
pub struct SecretFile {
    path: TempPath,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("path", &self.path.display())
            .finish()
    }
}

impl SecretFile {
    /// Writes `text` to a new 0600 file named `klosetd-LABEL-RANDOM.EXT` in
    /// the temporary directory.
    pub fn create(label: &str, extension: &str, text: &[u8]) -> io::Result<SecretFile> {
        let mut file = tempfile::Builder::new()
            .prefix(&format!("klosetd-{label}-"))
            .suffix(&format!(".{extension}"))
            .tempfile()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "creating a {label} password file in {}: {e}",
                        std::env::temp_dir().display()
                    ),
                )
            })?;
        file.write_all(text)?;
        file.as_file().sync_all()?;
        Ok(SecretFile {
            path: file.into_temp_path(),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_file_is_private_holds_the_text_and_is_removed_on_drop() {
        let f = SecretFile::create("test", "pass", b"s3cret\n").expect("secret file");
        let path = f.path().to_path_buf();
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).expect("read"), b"s3cret\n");
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("klosetd-test-") && name.ends_with(".pass"),
            "{name}"
        );
        assert!(!format!("{f:?}").contains("s3cret"));
        drop(f);
        assert!(!path.exists(), "removed on drop");
    }
}
