//! Test connection of sources and destinations: what "connected" means for
//! each connector and role. A failure has a machine reason and a message
//! that never holds a secret. (Stores are tested by opening them:
//! `tasks::store`.)

use std::path::{Path, PathBuf};

use crate::config::desired::Endpoint;

/// Why an endpoint is not usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotConnected {
    /// `NotFound`, `PermissionDenied`, `NotADirectory`, `Unsupported`, ...
    pub reason: &'static str,
    /// What was found, for humans.
    pub message: String,
}

fn io_reason(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "NotFound",
        std::io::ErrorKind::PermissionDenied => "PermissionDenied",
        std::io::ErrorKind::NotADirectory => "NotADirectory",
        _ => "Unreachable",
    }
}

/// A source is connected when its data can be read: a local path that
/// exists and, for a directory, can be listed.
pub fn test_source(endpoint: &Endpoint) -> Result<&'static str, NotConnected> {
    match endpoint.integration {
        "fs" => {
            let path = Path::new(&endpoint.location);
            let meta = std::fs::metadata(path).map_err(|e| NotConnected {
                reason: io_reason(&e),
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            if meta.is_dir() {
                std::fs::read_dir(path).map_err(|e| NotConnected {
                    reason: io_reason(&e),
                    message: format!("cannot list {}: {e}", path.display()),
                })?;
            } else {
                std::fs::File::open(path).map_err(|e| NotConnected {
                    reason: io_reason(&e),
                    message: format!("cannot open {}: {e}", path.display()),
                })?;
            }
            Ok("Readable")
        }
        other => Err(unsupported(other, "source")),
    }
}

/// A destination is connected when a restore can write there: an existing
/// directory, or a path whose nearest existing parent is a directory that
/// is not read-only.
pub fn test_destination(endpoint: &Endpoint) -> Result<&'static str, NotConnected> {
    match endpoint.integration {
        "fs" => {
            let path = PathBuf::from(&endpoint.location);
            let mut probe = path.as_path();
            let meta = loop {
                match std::fs::metadata(probe) {
                    Ok(meta) => break meta,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => match probe.parent() {
                        Some(parent) => probe = parent,
                        None => {
                            return Err(NotConnected {
                                reason: "NotFound",
                                message: format!("no parent of {} exists", path.display()),
                            });
                        }
                    },
                    Err(e) => {
                        return Err(NotConnected {
                            reason: io_reason(&e),
                            message: format!("cannot inspect {}: {e}", probe.display()),
                        });
                    }
                }
            };
            if !meta.is_dir() {
                return Err(NotConnected {
                    reason: "NotADirectory",
                    message: format!("{} exists and is not a directory", probe.display()),
                });
            }
            if meta.permissions().readonly() {
                return Err(NotConnected {
                    reason: "PermissionDenied",
                    message: format!("{} is read-only", probe.display()),
                });
            }
            Ok("Writable")
        }
        other => Err(unsupported(other, "destination")),
    }
}

fn unsupported(integration: &str, role: &str) -> NotConnected {
    NotConnected {
        reason: "Unsupported",
        message: format!("the {integration} integration has no {role} connector in this build"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(location: &Path) -> Endpoint {
        Endpoint {
            integration: "fs",
            protocol: "fs",
            location: location.display().to_string(),
            resource: None,
            options: vec![],
            credentials: vec![],
            command: vec![],
        }
    }

    #[test]
    fn sources_must_exist_and_destinations_need_a_directory_parent() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(test_source(&fs(dir.path())), Ok("Readable"));
        let missing = dir.path().join("missing");
        assert_eq!(
            test_source(&fs(&missing)).map_err(|e| e.reason),
            Err("NotFound")
        );
        assert_eq!(test_destination(&fs(&missing.join("a/b"))), Ok("Writable"));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        assert_eq!(test_source(&fs(&file)), Ok("Readable"));
        assert_eq!(
            test_destination(&fs(&file.join("sub"))).map_err(|e| e.reason),
            Err("NotADirectory")
        );
    }
}
