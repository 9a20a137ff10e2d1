//! The engine's error type.
//!
//! Policy: callers branch on [`ErrorKind`] (wrong passphrase, corrupt object,
//! not found, ...) and ask [`Error::is_retryable`] whether trying again can help.
//! Every variant carries enough context (object name, path, location) to be
//! shown to an operator as is. No variant ever carries secret material.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The passphrase does not unlock the store.
    WrongPassphrase,
    /// There is no Kloset store at the location.
    NotAStore,
    /// The location already holds a Kloset store or other data.
    AlreadyExists,
    /// An object failed authentication, framing or decoding.
    Corrupt,
    /// Something named by the caller does not exist.
    NotFound,
    /// A store object was written by a newer, unknown format version.
    Unsupported,
    /// The storage backend failed.
    Storage,
    /// A local file system operation failed.
    Io,
    /// The caller passed something invalid.
    InvalidArgument,
    /// Another process holds a conflicting lock (retry later).
    Locked,
    /// The operation was cancelled.
    Cancelled,
    /// Some of the data could not be read, and the operation wanted all of it.
    Incomplete,
}

/// An engine error with its context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("wrong passphrase for the store at {location}")]
    WrongPassphrase { location: String },
    #[error("no kloset store at {location}{}", found_suffix(.found))]
    NotAStore {
        location: String,
        found: Option<String>,
    },
    #[error("{location} already holds {what}")]
    AlreadyExists { location: String, what: String },
    #[error("corrupt object {object}: {reason}")]
    Corrupt { object: String, reason: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{object} uses format version {version}, which this kloset ({supported}) cannot read")]
    UnsupportedVersion {
        object: String,
        version: u32,
        supported: u32,
    },
    #[error("storage error while {context}: {}", without_repeats(&.source.to_string()))]
    Storage {
        context: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the store at {location} is locked by {holder}")]
    Locked { location: String, holder: String },
    #[error("lost the lock on the store at {location} ({reason}); nothing was committed")]
    LockLost { location: String, reason: String },
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Incomplete(String),
    /// A structure could not be serialized or sealed (a value its format
    /// cannot represent, or a message too large for the cipher): nothing was
    /// written.
    #[error("cannot encode {object}: {reason}")]
    Encode { object: String, reason: String },
}

fn found_suffix(found: &Option<String>) -> String {
    match found {
        Some(f) => format!(" (it holds other data: {f})"),
        None => String::new(),
    }
}

impl Error {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::WrongPassphrase { .. } => ErrorKind::WrongPassphrase,
            Error::NotAStore { .. } => ErrorKind::NotAStore,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::UnsupportedVersion { .. } => ErrorKind::Unsupported,
            Error::Storage { source, .. } => match source {
                object_store::Error::NotFound { .. } => ErrorKind::NotFound,
                _ => ErrorKind::Storage,
            },
            Error::Io { .. } => ErrorKind::Io,
            Error::InvalidArgument(_) | Error::Encode { .. } => ErrorKind::InvalidArgument,
            Error::Locked { .. } | Error::LockLost { .. } => ErrorKind::Locked,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Incomplete(_) => ErrorKind::Incomplete,
        }
    }

    /// Whether retrying the same operation later may succeed (network and
    /// backend failures); corruption, wrong passphrases and bad arguments are
    /// permanent.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Storage | ErrorKind::Io | ErrorKind::Locked | ErrorKind::Incomplete
        )
    }

    pub(crate) fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn encode(object: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Encode {
            object: object.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn storage(context: impl Into<String>, source: object_store::Error) -> Self {
        Error::Storage {
            context: context.into(),
            source,
        }
    }
}

/// A storage error's message without the parts it repeats: object_store's
/// errors wrap each other and each layer's message holds its source's, so
/// the same request and answer came out up to four times. Keeps each
/// `": "`-separated part once, dropping a part that is one said before or
/// is (at 12 bytes or more) already within what was kept. Also for a whole
/// chain of causes printed one after the other (`{:#}`), which repeats the
/// storage error's own causes.
pub fn without_repeats(message: &str) -> String {
    let mut kept = String::new();
    let mut parts: Vec<&str> = Vec::new();
    for part in message.split(": ") {
        let said = parts.contains(&part) || (part.len() >= 12 && kept.contains(part));
        if said {
            continue;
        }
        if !kept.is_empty() {
            kept.push_str(": ");
        }
        kept.push_str(part);
        parts.push(part);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::without_repeats;

    #[test]
    fn a_wrapped_storage_message_is_said_once() {
        // As object_store 0.13 printed an S3 server's refusal.
        let get = "Error performing GET http://127.0.0.1:39131/b/st/kloset in 1.88ms \
                   - Server returned non-2xx status code";
        let answer = "400 Bad Request: <Error><Code>InvalidBucketName</Code></Error>";
        let message = format!(
            "Generic S3 error: {get}: {answer}: Generic S3 error: {get}: {answer}: {get}: \
             {answer}: Server returned non-2xx status code: {answer}"
        );
        assert_eq!(
            without_repeats(&message),
            format!("Generic S3 error: {get}: {answer}")
        );
        // Nothing is lost from a message without repeats.
        let plain = "Generic S3 error: connection refused: tcp connect error: 127.0.0.1:9";
        assert_eq!(without_repeats(plain), plain);
    }
}
