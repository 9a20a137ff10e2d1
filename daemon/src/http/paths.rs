//! Paths inside a snapshot as raw bytes: a request's path is percent-decoded
//! once into bytes (no UTF-8 requirement: Unix names are bytes) and split on
//! `/`; empty and `.` parts are dropped, and a `..`, a NUL or any other part
//! that is not one harmless name is refused before anything is read, so no
//! spelling (`%2e%2e`, `..%2f`, `%00`) leaves the snapshot. Links are the
//! reverse: every byte outside the URL-unreserved set is percent-encoded,
//! so an encoded path decodes to exactly the stored name.

use kloset::tree::{Node, NodeKind, is_safe_name};
use kloset::{Error, Repository, Snapshot};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};

/// Everything but the URL-unreserved characters is encoded in a segment.
pub const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path inside a snapshot: its components, raw bytes, each one a safe name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapPath(Vec<Vec<u8>>);

impl SnapPath {
    /// Decodes the part of a request target after `tree/` or `files/` (still
    /// percent-encoded); the error says which part is refused.
    pub fn decode(encoded: &str) -> Result<SnapPath, String> {
        let bytes: Vec<u8> = percent_decode_str(encoded).collect();
        let mut parts = Vec::new();
        for part in bytes.split(|b| *b == b'/') {
            if part.is_empty() || part == b"." {
                continue;
            }
            if !is_safe_name(part) {
                return Err(format!(
                    "invalid path {:?} inside a snapshot: {:?} is not a file name \
                     (no .., NUL or empty part)",
                    String::from_utf8_lossy(&bytes),
                    String::from_utf8_lossy(part)
                ));
            }
            parts.push(part.to_vec());
        }
        Ok(SnapPath(parts))
    }

    /// The components.
    pub fn parts(&self) -> &[Vec<u8>] {
        &self.0
    }

    /// This path with one more component.
    pub fn join(&self, name: &[u8]) -> SnapPath {
        let mut parts = self.0.clone();
        parts.push(name.to_vec());
        SnapPath(parts)
    }

    /// The first `n` components.
    pub fn prefix(&self, n: usize) -> SnapPath {
        SnapPath(self.0[..n.min(self.0.len())].to_vec())
    }

    /// The last component (the file name), if any.
    pub fn name(&self) -> Option<&[u8]> {
        self.0.last().map(Vec::as_slice)
    }

    /// `/a/b` as text, lossy for names that are not UTF-8 (for display).
    pub fn display(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        format!("/{}", parts.join("/"))
    }

    /// `a/b` percent-encoded (no leading slash; empty for the root): decodes
    /// back to exactly these bytes.
    pub fn encoded(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|p| encode(p)).collect();
        parts.join("/")
    }
}

/// Percent-encodes one raw name.
pub fn encode(name: &[u8]) -> String {
    percent_encode(name, SEGMENT).to_string()
}

/// The node at `path` (the root for an empty path). Each directory on the
/// way is read only up to the name looked for ([`Repository::find_in_tree`]),
/// never decoded whole.
pub fn find_node(repo: &Repository, snapshot: &Snapshot, path: &SnapPath) -> kloset::Result<Node> {
    let mut node = snapshot.root.clone();
    node.subtree = Some(snapshot.tree);
    for part in path.parts() {
        let not_found = || Error::NotFound {
            what: format!("{} in snapshot {}", path.display(), snapshot.id.short()),
        };
        let sub = match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(id)) => id,
            _ => return Err(not_found()),
        };
        node = repo.find_in_tree(&sub, part)?.ok_or_else(not_found)?;
    }
    Ok(node)
}

/// The `Content-Disposition` of a download named `name` (RFC 6266): the
/// name as UTF-8 in `filename*` (lossy for other bytes, percent-encoded),
/// and an ASCII fallback in `filename` where every byte that is not a
/// printable ASCII character, or is `"`, `\`, `%` or `;`, becomes `_`.
pub fn content_disposition(name: &[u8]) -> String {
    let lossy = String::from_utf8_lossy(name);
    let utf8 = percent_encoding::utf8_percent_encode(&lossy, SEGMENT);
    let ascii: String = lossy
        .chars()
        .map(|c| match c {
            ' '..='~' if !matches!(c, '"' | '\\' | '%' | ';') => c,
            _ => '_',
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{utf8}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_bytes_and_refuses_escapes() {
        let p = SnapPath::decode("a/caf%E9.txt").expect("raw bytes");
        assert_eq!(p.parts(), [b"a".to_vec(), b"caf\xe9.txt".to_vec()]);
        assert_eq!(p.encoded(), "a/caf%E9.txt");
        assert_eq!(p.display(), "/a/caf\u{fffd}.txt");
        assert_eq!(SnapPath::decode(&p.encoded()), Ok(p));
        let q = SnapPath::decode("//a/./b%2Fc/").expect("separators");
        assert_eq!(q.display(), "/a/b/c");
        assert_eq!(SnapPath::decode("").expect("root").display(), "/");
        for bad in [
            "..",
            "%2e%2e",
            "%2E%2E%2Fx",
            "a/..%2f..",
            "a%00",
            "%00/../x",
            "sub/../../x",
            ".%2e/x",
        ] {
            assert!(SnapPath::decode(bad).is_err(), "{bad}");
        }
        // Decoded once: a doubly encoded dot-dot is a literal name.
        assert_eq!(
            SnapPath::decode("%252e%252e").expect("literal").parts(),
            [b"%2e%2e".to_vec()]
        );
        let every: Vec<u8> = (1..=255u8).filter(|b| *b != b'/').collect();
        let p = SnapPath::default().join(&every);
        assert_eq!(SnapPath::decode(&p.encoded()), Ok(p));
    }

    #[test]
    fn content_disposition_is_safe() {
        assert_eq!(
            content_disposition(b"caf\xe9 \"x\";.txt"),
            "attachment; filename=\"caf_ _x__.txt\"; filename*=UTF-8''caf%EF%BF%BD%20%22x%22%3B.txt"
        );
        assert_eq!(
            content_disposition("日本.txt".as_bytes()),
            "attachment; filename=\"__.txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt"
        );
        let cd = content_disposition(b"a\r\nSet-Cookie: x");
        assert!(!cd.contains('\r') && !cd.contains('\n'), "{cd}");
    }
}
