//! Config errors: each names the file, the line and the object when known,
//! and never contains a secret value.

use std::fmt;
use std::path::PathBuf;

/// One problem in the config directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    /// The file, when the problem is in one.
    pub file: Option<PathBuf>,
    /// 1-based line in that file.
    pub line: Option<usize>,
    /// The object, e.g. `store.offsite`.
    pub object: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A problem not tied to a file.
    pub fn general(message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line: None,
            object: None,
            message: message.into(),
        }
    }

    /// A problem at `file:line`.
    pub fn at(
        file: impl Into<PathBuf>,
        line: usize,
        object: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: Some(file.into()),
            line: Some(line),
            object,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            _ => {}
        }
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// 1-based line number of a byte offset in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_lines() {
        let e = ConfigError::at("/etc/k/a.toml", 3, Some("store.x".into()), "bad");
        assert_eq!(e.to_string(), "/etc/k/a.toml:3: store.x: bad");
        assert_eq!(ConfigError::general("oops").to_string(), "oops");
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
