//! Object storage (S3 and anything else behind `object_store`) as a backup
//! source and a restore target: [`BucketImporter`] and [`BucketExporter`].
//!
//! A bucket prefix is presented as a tree: `/` in keys separates
//! directories, a common prefix is a directory, an object is a regular file
//! (mode 0644, the object's last-modified time). Change detection uses the
//! size, the last-modified time and a hash of the ETag, so an unchanged
//! object is not downloaded again. Keys that cannot be a file name (an
//! empty segment as in `a//b`, `.` or `..`) and a name that is both an
//! object and a prefix are reported as unreadable entries, never dropped.
//!
//! A restore writes each file as one object under the target prefix
//! (multipart above [`MULTIPART_THRESHOLD`], so an object appears only once
//! complete, and a failed upload is aborted). Object storage keeps neither
//! modes, owners, times nor symlinks: those are not restored (links are
//! reported).

use std::io::Read;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde_bytes::ByteBuf;

use kloset::Storage;
use kloset::export::Exporter;
use kloset::import::{Importer, Listed, Opened, SourcePath};
use kloset::repository::now_ns;
use kloset::tree::{Node, NodeKind};

/// Files at least this large are uploaded in parts of this size.
pub const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;

fn storage_err(e: object_store::Error) -> std::io::Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => std::io::ErrorKind::PermissionDenied,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, e.to_string())
}

fn object_path(storage: &Storage, path: &SourcePath) -> std::io::Result<ObjPath> {
    let rel = std::str::from_utf8(path.as_bytes()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is not UTF-8, which object storage keys must be",
                path.display()
            ),
        )
    })?;
    let full = match (storage.prefix().is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (false, true) => storage.prefix().to_string(),
        (false, false) => format!("{}/{rel}", storage.prefix()),
    };
    // `parse` keeps the key as written; `ObjPath::from` would percent-encode
    // non-ASCII characters and `%`, `#`, `~`, `*`, … into the key itself, so
    // such objects would not be found and restores would get other keys.
    ObjPath::parse(&full).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} cannot be an object key: {e}", path.display()),
        )
    })
}

fn dir_node(name: &[u8], mtime_ns: i64) -> Node {
    Node {
        name: ByteBuf::from(name.to_vec()),
        kind: NodeKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime_ns,
        ctime_ns: mtime_ns,
        inode: 0,
        device: 0,
        size: 0,
        target: None,
        rdev: None,
        content: Vec::new(),
        subtree: None,
    }
}

fn file_node(meta: &ObjectMeta, name: &[u8]) -> Node {
    let mtime_ns = meta
        .last_modified
        .timestamp_nanos_opt()
        .unwrap_or_else(|| meta.last_modified.timestamp().saturating_mul(1_000_000_000));
    let tag = meta
        .e_tag
        .as_deref()
        .or(meta.version.as_deref())
        .unwrap_or("");
    let hash = blake3::hash(tag.as_bytes());
    let mut inode = [0u8; 8];
    inode.copy_from_slice(&hash.as_bytes()[..8]);
    Node {
        kind: NodeKind::File,
        mode: 0o644,
        size: meta.size,
        inode: u64::from_le_bytes(inode),
        ..dir_node(name, mtime_ns)
    }
}

/// Backs up the objects under a storage's prefix.
#[derive(Debug)]
pub struct BucketImporter {
    storage: Storage,
    started_ns: i64,
}

impl BucketImporter {
    /// Imports everything under `storage`'s location (bucket and prefix).
    pub fn new(storage: Storage) -> BucketImporter {
        BucketImporter {
            storage,
            started_ns: now_ns(),
        }
    }
}

impl Importer for BucketImporter {
    fn origin(&self) -> String {
        self.storage.location().to_string()
    }

    fn root(&self) -> std::io::Result<Node> {
        // Listing the root proves the bucket is reachable and readable.
        let store = self.storage.object_store();
        let prefix = object_path(&self.storage, &SourcePath::root())?;
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        self.storage
            .run(async move { store.list_with_delimiter(prefix.as_ref()).await })
            .map_err(storage_err)?;
        Ok(dir_node(b"", self.started_ns))
    }

    fn list(&self, dir: &SourcePath, _listed: &Node) -> std::io::Result<Vec<Listed>> {
        let store = self.storage.object_store();
        let prefix = object_path(&self.storage, dir)?;
        let listed = (!prefix.as_ref().is_empty()).then(|| prefix.clone());
        let listing = self
            .storage
            .run(async move { store.list_with_delimiter(listed.as_ref()).await })
            .map_err(storage_err)?;
        let base = prefix.as_ref().len();
        let name_of = |full: &str| -> Option<Vec<u8>> {
            let rest = full.get(base..)?.trim_start_matches('/');
            (!rest.is_empty() && !rest.contains('/')).then(|| rest.as_bytes().to_vec())
        };
        let mut out = Vec::new();
        let mut dirs = std::collections::BTreeSet::new();
        for p in &listing.common_prefixes {
            match name_of(p.as_ref()) {
                Some(name) => {
                    dirs.insert(name.clone());
                    out.push(Listed {
                        node: Ok(dir_node(&name, self.started_ns)),
                        name,
                    });
                }
                None => out.push(bad_key(p.as_ref())),
            }
        }
        for meta in &listing.objects {
            match name_of(meta.location.as_ref()) {
                Some(name) if dirs.contains(&name) => out.push(Listed {
                    node: Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "object {} is also a prefix of other objects; only the prefix is kept as a directory",
                            meta.location
                        ),
                    )),
                    // A distinct name so the directory of the same name survives.
                    name: [name.as_slice(), b" (object)"].concat(),
                }),
                Some(name) => out.push(Listed {
                    node: Ok(file_node(meta, &name)),
                    name,
                }),
                None => out.push(bad_key(meta.location.as_ref())),
            }
        }
        Ok(out)
    }

    fn open(&self, path: &SourcePath, _listed: &Node) -> std::io::Result<Opened<'_>> {
        let store = self.storage.object_store();
        let location = object_path(&self.storage, path)?;
        let stream = self
            .storage
            .run(async move { store.get(&location).await })
            .map_err(storage_err)?
            .into_stream();
        Ok(Opened::reader(Box::new(ObjectReader {
            storage: &self.storage,
            stream,
            current: Bytes::new(),
        })))
    }
}

fn bad_key(key: &str) -> Listed {
    Listed {
        name: key.as_bytes().to_vec(),
        node: Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("object key {key:?} cannot be a file name in a snapshot"),
        )),
    }
}

/// A blocking reader over an object's byte stream.
struct ObjectReader<'a> {
    storage: &'a Storage,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.storage.run(self.stream.next()) {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(storage_err(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Restores files as objects under a storage's prefix.
#[derive(Debug)]
pub struct BucketExporter {
    storage: Storage,
}

impl BucketExporter {
    /// Writes under `storage`'s location (bucket and prefix).
    pub fn new(storage: Storage) -> BucketExporter {
        BucketExporter { storage }
    }
}

/// Reads up to `limit` bytes (fewer only at the end of the stream).
fn read_up_to(content: &mut dyn Read, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(limit.min(1 << 20));
    content.take(limit as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

impl Exporter for BucketExporter {
    fn target(&self) -> String {
        self.storage.location().to_string()
    }

    fn exists(&self, path: &SourcePath) -> std::io::Result<bool> {
        let store = self.storage.object_store();
        let location = object_path(&self.storage, path)?;
        match self.storage.run(async move { store.head(&location).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(storage_err(e)),
        }
    }

    fn create_dir(&self, _path: &SourcePath, _node: &Node) -> std::io::Result<()> {
        Ok(())
    }

    fn write_file(
        &self,
        path: &SourcePath,
        _node: &Node,
        content: &mut dyn Read,
    ) -> std::io::Result<()> {
        let location = object_path(&self.storage, path)?;
        let first = read_up_to(content, MULTIPART_THRESHOLD)?;
        let store = self.storage.object_store();
        if first.len() < MULTIPART_THRESHOLD {
            let payload = PutPayload::from(Bytes::from(first));
            return self
                .storage
                .run(async move { store.put(&location, payload).await })
                .map(|_| ())
                .map_err(storage_err);
        }
        let mut upload = self
            .storage
            .run(store.put_multipart(&location))
            .map_err(storage_err)?;
        let mut part = first;
        let result = loop {
            let payload = PutPayload::from(Bytes::from(std::mem::take(&mut part)));
            if let Err(e) = self.storage.run(upload.put_part(payload)) {
                break Err(storage_err(e));
            }
            match read_up_to(content, MULTIPART_THRESHOLD) {
                Ok(next) if next.is_empty() => {
                    break self
                        .storage
                        .run(upload.complete())
                        .map(|_| ())
                        .map_err(storage_err);
                }
                Ok(next) => part = next,
                Err(e) => break Err(e),
            }
        };
        if result.is_err() {
            // Best effort: a failed upload leaves no object behind.
            let _ = self.storage.run(upload.abort());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kloset::Location;

    fn memory_with(objects: &[(&str, &[u8])]) -> Storage {
        let s = Storage::open(&Location::Memory, false).expect("open");
        for (key, data) in objects {
            let store = s.object_store();
            // Keys as written, as a real bucket holds them.
            let path = ObjPath::parse(*key).expect("key");
            let payload = PutPayload::from(Bytes::copy_from_slice(data));
            s.run(async move { store.put(&path, payload).await })
                .expect("put");
        }
        s
    }

    #[test]
    fn lists_prefixes_as_directories_and_reports_clashes() {
        let s = memory_with(&[
            ("a.txt", b"A"),
            ("dir/b.txt", b"BB"),
            ("dir/sub/c.txt", b"CCC"),
            ("both", b"object"),
            ("both/inner", b"x"),
        ]);
        let imp = BucketImporter::new(s);
        assert_eq!(imp.root().expect("root").kind, NodeKind::Dir);
        let mut root = imp
            .list(&SourcePath::root(), &imp.root().expect("root"))
            .expect("list");
        root.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<String> = root
            .iter()
            .map(|l| String::from_utf8_lossy(&l.name).into_owned())
            .collect();
        assert_eq!(names, ["a.txt", "both", "both (object)", "dir"]);
        assert!(root[2].node.is_err(), "the clash is reported");
        let a = root[0].node.as_ref().expect("file");
        assert_eq!((a.kind, a.size), (NodeKind::File, 1));
        let sub = imp
            .list(&SourcePath::root().join(b"dir"), &imp.root().expect("root"))
            .expect("list dir");
        assert_eq!(sub.len(), 2);
        let mut text = String::new();
        imp.open(&SourcePath::root().join(b"dir").join(b"b.txt"), a)
            .expect("open")
            .reader
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text, "BB");
    }

    #[test]
    fn exporter_writes_small_and_multipart_objects() {
        let s = memory_with(&[]);
        let exp = BucketExporter::new(s.clone());
        let path = SourcePath::root().join(b"d").join(b"big");
        assert!(!exp.exists(&path).expect("exists"));
        let big: Vec<u8> = (0..MULTIPART_THRESHOLD * 2 + 5)
            .map(|i| (i % 251) as u8)
            .collect();
        let node = dir_node(b"big", 0);
        exp.write_file(&path, &node, &mut big.as_slice())
            .expect("write big");
        exp.write_file(&SourcePath::root().join(b"small"), &node, &mut &b"hi"[..])
            .expect("write small");
        assert!(exp.exists(&path).expect("exists"));
        let store = s.object_store();
        let got = s
            .run(async move { store.get(&ObjPath::from("d/big")).await?.bytes().await })
            .expect("get");
        assert_eq!(got.as_ref(), big.as_slice());
    }

    #[test]
    fn keys_with_non_ascii_and_reserved_characters_are_used_as_written() {
        let keys: [&str; 4] = [
            "p/ünï cödé/grüße.txt",
            "p/100%.txt",
            "p/a~b#c*d?.txt",
            "p/[x]{y}|z^`.txt",
        ];
        let objects: Vec<(&str, &[u8])> = keys.iter().map(|k| (*k, k.as_bytes())).collect();
        let s = memory_with(&objects);
        let prefixed =
            Storage::from_object_store(s.object_store(), "p", "memory:p", None).expect("prefix");
        let imp = BucketImporter::new(prefixed);
        let mut root = imp
            .list(&SourcePath::root(), &imp.root().expect("root"))
            .expect("list");
        root.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<String> = root
            .iter()
            .map(|l| String::from_utf8_lossy(&l.name).into_owned())
            .collect();
        assert_eq!(
            names,
            ["100%.txt", "[x]{y}|z^`.txt", "a~b#c*d?.txt", "ünï cödé"]
        );
        let inner = imp
            .list(
                &SourcePath::root().join("ünï cödé".as_bytes()),
                &imp.root().expect("root"),
            )
            .expect("list the non-ASCII prefix");
        assert_eq!(inner.len(), 1, "the prefix is listed as written");
        let read = |path: SourcePath, node: &Node| {
            let mut text = String::new();
            imp.open(&path, node)
                .expect("open")
                .reader
                .read_to_string(&mut text)
                .expect("read");
            text
        };
        let node = inner[0].node.as_ref().expect("file");
        let path = SourcePath::root()
            .join("ünï cödé".as_bytes())
            .join("grüße.txt".as_bytes());
        assert_eq!(read(path, node), keys[0]);
        for (i, key) in [(0, keys[1]), (2, keys[2]), (1, keys[3])] {
            let node = root[i].node.as_ref().expect("file");
            assert_eq!(read(SourcePath::root().join(&root[i].name), node), key);
        }

        // Restored under another prefix: the same keys, nothing encoded.
        let out =
            Storage::from_object_store(s.object_store(), "q", "memory:q", None).expect("prefix");
        let exp = BucketExporter::new(out);
        let node = dir_node(b"f", 0);
        for key in keys {
            let rel = key.strip_prefix("p/").expect("p/");
            let path = rel
                .split('/')
                .fold(SourcePath::root(), |p, part| p.join(part.as_bytes()));
            assert!(!exp.exists(&path).expect("exists"));
            exp.write_file(&path, &node, &mut key.as_bytes())
                .expect("write");
            assert!(exp.exists(&path).expect("exists"));
        }
        let store = s.object_store();
        let mut listed: Vec<String> = s
            .run(async move {
                use futures::TryStreamExt;
                let q = ObjPath::parse("q").expect("q");
                store
                    .list(Some(&q))
                    .map_ok(|m| m.location.to_string())
                    .try_collect()
                    .await
            })
            .expect("list q");
        listed.sort();
        let mut want: Vec<String> = keys.iter().map(|k| k.replacen("p/", "q/", 1)).collect();
        want.sort();
        assert_eq!(listed, want);

        // A name object storage cannot hold is an error, not a panic.
        let bad = SourcePath::root().join(b"line\nbreak");
        let e = exp
            .write_file(&bad, &node, &mut &b"x"[..])
            .expect_err("a control character");
        assert!(e.to_string().contains("cannot be an object key"), "{e}");
    }
}
