//! Where an app works, as data that can be compared: a domain (this host's
//! file system, an S3 service, an SSH server, a database server) and a path
//! of segments inside it. Two places overlap when they share the domain and
//! one path starts with the other.

use std::fmt;

/// A place inside a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// e.g. `file://localhost`, `s3://http://minio:9000`, `sftp://nas:22`.
    pub domain: String,
    /// Segments from the domain's root (directories, bucket then prefix
    /// parts, a database name); empty for the whole domain.
    pub path: Vec<String>,
}

impl Place {
    /// A place from a domain and a `/`-separated path (empty segments, `.`
    /// dropped; `..` pops).
    pub fn new(domain: impl Into<String>, path: &str) -> Place {
        let mut segments: Vec<String> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                other => segments.push(other.to_string()),
            }
        }
        Place {
            domain: domain.into(),
            path: segments,
        }
    }

    /// A place from explicit segments.
    pub fn of(domain: impl Into<String>, path: Vec<String>) -> Place {
        Place {
            domain: domain.into(),
            path,
        }
    }

    /// Whether `other` is this place or inside it.
    pub fn contains(&self, other: &Place) -> bool {
        self.domain == other.domain && other.path.starts_with(&self.path)
    }

    /// Whether one of the two places holds the other.
    pub fn overlaps(&self, other: &Place) -> bool {
        self.contains(other) || other.contains(self)
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_overlap_when_one_path_starts_the_other() {
        let a = Place::new("file://localhost", "/srv/backup/");
        let b = Place::new("file://localhost", "/srv/backup/./x/../x");
        let c = Place::new("file://localhost", "/srv/backups");
        let d = Place::new("sftp://nas:22", "/srv/backup");
        assert!(a.contains(&b) && !b.contains(&a) && a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c), "a prefix of a name is not a parent");
        assert!(!a.overlaps(&d), "another domain");
        assert!(a.overlaps(&a.clone()));
        assert_eq!(b.to_string(), "file://localhost/srv/backup/x");
    }
}
