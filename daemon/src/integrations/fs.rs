//! `fs`: a local directory (or, as a source, a file) as source,
//! destination and store. A resource's `path` is the base; an app's `path`
//! is relative to it, or absolute.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use kloset::import::FsImporter;
use kloset::{Location, Storage};

use super::keys::string;
use super::place::Place;
use super::probe::{io_failure, io_reason};
use super::seam::{
    AppInput, Base, Connector, Integration, NotConnected, ParseError, Parsed, Purpose,
    RestoreTarget, Role,
};
use super::secret::resolve_path;

/// The `fs` integration.
#[derive(Debug)]
pub struct Fs;

impl Integration for Fs {
    fn name(&self) -> &'static str {
        "fs"
    }
    fn classes(&self) -> &'static [(&'static str, &'static str)] {
        &[("filesystem", "local"), ("filesystem", "nas")]
    }
    fn schemes(&self) -> &'static [&'static str] {
        &["", "fs"]
    }
    fn protocols(&self) -> &'static [&'static str] {
        &["fs"]
    }
    fn roles(&self) -> &'static [Role] {
        &[Role::Source, Role::Destination, Role::Store]
    }
    fn resource_keys(&self) -> &'static [&'static str] {
        &["path"]
    }
    fn app_keys(&self, _: Role) -> &'static [&'static str] {
        &["path"]
    }
    fn connector(&self, input: &AppInput<'_>) -> Result<Parsed, Vec<ParseError>> {
        let app_path = string(input.app, "path").map_err(|m| vec![ParseError::App(m)])?;
        let path = match &input.base {
            Base::Resource { table, file } => {
                let base = match string(table, "path").map_err(|m| vec![ParseError::Resource(m)])? {
                    Some(p) => {
                        Some(resolve_path(file, &p).map_err(|m| vec![ParseError::Resource(m)])?)
                    }
                    None => None,
                };
                within(
                    base.as_deref(),
                    app_path.as_deref(),
                    input.app_file,
                    "a filesystem",
                )?
            }
            Base::Location(loc) => {
                if app_path.is_some() {
                    return Err(vec![ParseError::App(
                        "`path` goes with `resource`; a `location` is already the whole place"
                            .into(),
                    )]);
                }
                let written = loc.strip_prefix("fs://").unwrap_or(loc);
                resolve_path(input.app_file, written).map_err(|m| vec![ParseError::App(m)])?
            }
            Base::Nothing => {
                return Err(vec![ParseError::App(
                    "`resource` or `location` is required".into(),
                )]);
            }
        };
        Ok(Parsed {
            location: path.display().to_string(),
            connector: Arc::new(FsConnector { path }),
        })
    }
}

/// The directory an app works in: its absolute `path`, or its relative one
/// inside the resource's. A relative path may not climb out with `..`.
pub(super) fn within(
    base: Option<&Path>,
    app: Option<&str>,
    app_file: &Path,
    what: &str,
) -> Result<PathBuf, Vec<ParseError>> {
    match (base, app) {
        (_, Some(p)) if p.starts_with('/') || p.starts_with("$CREDENTIALS_DIRECTORY") => {
            resolve_path(app_file, p).map_err(|m| vec![ParseError::App(m)])
        }
        (Some(base), Some(p)) => {
            if Path::new(p).components().any(|c| c == Component::ParentDir) {
                return Err(vec![ParseError::App(format!(
                    "path = {p:?} is relative to the resource's path and may not leave it with `..`; write an absolute path instead"
                ))]);
            }
            Ok(base.join(p))
        }
        (Some(base), None) => Ok(base.to_path_buf()),
        (None, Some(p)) => Err(vec![ParseError::App(format!(
            "path = {p:?} is relative, and the resource has no `path` to start from"
        ))]),
        (None, None) => Err(vec![ParseError::Resource(format!(
            "{what} resource needs `path`"
        ))]),
    }
}

/// A local directory or file.
#[derive(Debug)]
struct FsConnector {
    path: PathBuf,
}

impl Connector for FsConnector {
    fn settings(&self) -> serde_json::Value {
        serde_json::json!({ "path": self.path.to_string_lossy() })
    }

    fn place(&self) -> Option<Place> {
        Some(Place::new("file://localhost", &self.path.to_string_lossy()))
    }

    fn test(&self, role: Role) -> Result<&'static str, NotConnected> {
        match role {
            Role::Source => readable(&self.path),
            Role::Destination => writable(&self.path),
            Role::Store => Err(NotConnected::new(
                "Unsupported",
                "stores are tested by opening them",
            )),
        }
    }

    fn importer(&self) -> Result<Box<dyn kloset::import::Importer>, String> {
        Ok(Box::new(FsImporter::new(&self.path)))
    }

    fn restore_target(&self, subdir: Option<&str>) -> Result<RestoreTarget, String> {
        Ok(RestoreTarget::Local(match subdir {
            Some(d) => self.path.join(d),
            None => self.path.clone(),
        }))
    }

    fn storage(&self, create: bool, _: Purpose) -> kloset::Result<Storage> {
        Storage::open(&Location::Fs(self.path.clone()), create)
    }
}

/// A source is connected when its data can be read: a path that exists
/// and, for a directory, can be listed.
fn readable(path: &Path) -> Result<&'static str, NotConnected> {
    let meta = std::fs::metadata(path)
        .map_err(|e| io_failure(&format!("cannot read {}", path.display()), &e))?;
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map_err(|e| io_failure(&format!("cannot list {}", path.display()), &e))?;
    } else {
        std::fs::File::open(path)
            .map_err(|e| io_failure(&format!("cannot open {}", path.display()), &e))?;
    }
    Ok("Readable")
}

/// A destination is connected when a restore can write there: an existing
/// directory, or a path whose nearest existing parent is a directory that
/// is not read-only.
fn writable(path: &Path) -> Result<&'static str, NotConnected> {
    let mut probe = path;
    let meta = loop {
        match std::fs::metadata(probe) {
            Ok(meta) => break meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match probe.parent() {
                Some(parent) => probe = parent,
                None => {
                    return Err(NotConnected::new(
                        "NotFound",
                        format!("no parent of {} exists", path.display()),
                    ));
                }
            },
            Err(e) => {
                return Err(NotConnected::new(
                    io_reason(&e),
                    format!("cannot inspect {}: {e}", probe.display()),
                ));
            }
        }
    };
    if !meta.is_dir() {
        return Err(NotConnected::new(
            "NotADirectory",
            format!("{} exists and is not a directory", probe.display()),
        ));
    }
    if meta.permissions().readonly() {
        return Err(NotConnected::new(
            "PermissionDenied",
            format!("{} is read-only", probe.display()),
        ));
    }
    Ok("Writable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_must_exist_and_destinations_need_a_directory_parent() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(readable(dir.path()), Ok("Readable"));
        let missing = dir.path().join("missing");
        assert_eq!(readable(&missing).map_err(|e| e.reason), Err("NotFound"));
        assert_eq!(writable(&missing.join("a/b")), Ok("Writable"));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        assert_eq!(readable(&file), Ok("Readable"));
        assert_eq!(
            writable(&file.join("sub")).map_err(|e| e.reason),
            Err("NotADirectory")
        );
    }

    #[test]
    fn an_app_path_is_inside_the_resource_unless_absolute() {
        let file = Path::new("/etc/klosetd/conf.d/a.toml");
        let base = Path::new("/srv/nas");
        assert_eq!(
            within(Some(base), Some("a/b"), file, "x"),
            Ok(PathBuf::from("/srv/nas/a/b"))
        );
        assert_eq!(
            within(Some(base), Some("/elsewhere"), file, "x"),
            Ok(PathBuf::from("/elsewhere"))
        );
        assert_eq!(
            within(Some(base), None, file, "x"),
            Ok(PathBuf::from("/srv/nas"))
        );
        assert!(within(Some(base), Some("../etc"), file, "x").is_err());
        assert!(within(None, Some("rel"), file, "x").is_err());
        let e = within(None, None, file, "a filesystem").expect_err("no path");
        assert!(matches!(e.as_slice(), [ParseError::Resource(_)]));
    }
}
