//! Typed object keys over an `object_store` backend, with a blocking API.
//!
//! Durability contract: [`Storage::put`] and [`Storage::put_new`] return only
//! once the object is durable (S3 semantics; the local backend fsyncs the file
//! and its directory). Objects are immutable: nothing here overwrites an
//! object except the caller-chosen `put`, and the engine only writes fresh
//! names. [`Storage::put_new`] fails with `AlreadyExists` if the name is taken.
//!
//! The engine is synchronous and CPU-bound, so storage calls block on a small
//! runtime owned by the `Storage`; async variants exist for callers that
//! want many requests in flight.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};
use crate::id::{IndexId, LockId, MarkId, PackId, SnapshotId};

/// Where a store the engine opens by itself lives: a local directory or
/// memory. Other backends (S3, SFTP, …) are `ObjectStore`s that callers
/// build and hand to [`Storage::from_object_store`] (klosetd's integrations
/// do; see the `kloset-connectors` crate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local directory (`/path`, `./path`, `fs:///path`).
    Fs(PathBuf),
    /// A process-local in-memory store (`mem://`), for tests.
    Memory,
}

impl Location {
    /// Parses `PATH`, `fs://PATH` or `mem://`. Relative paths are made
    /// absolute against the current directory.
    pub fn parse(s: &str) -> Result<Location> {
        if s.is_empty() {
            return Err(Error::InvalidArgument("empty store location".into()));
        }
        if s == "mem://" {
            return Ok(Location::Memory);
        }
        let path = s.strip_prefix("fs://").unwrap_or(s);
        if let Some((scheme, _)) = path.split_once("://") {
            return Err(Error::InvalidArgument(format!(
                "the engine opens local directories and mem:// by itself, not {scheme}:// \
                 (other backends are built by klosetd's integrations)"
            )));
        }
        let path = Path::new(path);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io("resolve current directory for", path, e))?
                .join(path)
        };
        // Drop `.` components so the location reads as the user expects.
        Ok(Location::Fs(abs.components().collect()))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Fs(p) => write!(f, "{}", p.display()),
            Location::Memory => f.write_str("mem://"),
        }
    }
}

/// The name of an object in the store, relative to the store's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// The store header (`kloset`).
    Header,
    /// A pack (`packs/XX/ID`).
    Pack(PackId),
    /// An index object (`index/ID`).
    Index(IndexId),
    /// A snapshot header (`snapshots/ID`).
    Snapshot(SnapshotId),
    /// A writer or prune lock (`locks/ID`).
    Lock(LockId),
    /// A garbage-collection mark (`marks/ID`).
    Mark(MarkId),
}

/// Listing prefixes for each kind of object.
pub const PACKS_DIR: &str = "packs";
/// Index objects live here.
pub const INDEX_DIR: &str = "index";
/// Snapshot headers live here.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Lock objects live here.
pub const LOCKS_DIR: &str = "locks";
/// Garbage-collection marks live here.
pub const MARKS_DIR: &str = "marks";
/// Name of the store header object.
pub const HEADER_NAME: &str = "kloset";

impl Key {
    /// The relative object path.
    pub fn path(&self) -> String {
        match self {
            Key::Header => HEADER_NAME.to_string(),
            Key::Pack(id) => {
                let hex = id.to_hex();
                format!("{PACKS_DIR}/{}/{hex}", &hex[..2])
            }
            Key::Index(id) => format!("{INDEX_DIR}/{id}"),
            Key::Snapshot(id) => format!("{SNAPSHOTS_DIR}/{id}"),
            Key::Lock(id) => format!("{LOCKS_DIR}/{id}"),
            Key::Mark(id) => format!("{MARKS_DIR}/{id}"),
        }
    }
}

/// A listed object: its path relative to the store prefix and its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Path relative to the store prefix.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

struct IoRuntime(Option<tokio::runtime::Runtime>);

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A store's backend plus its key prefix.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    location: String,
    local_root: Option<PathBuf>,
    rt: Arc<IoRuntime>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("location", &self.location)
            .finish()
    }
}

impl Storage {
    /// Connects to `location`. For local directories, `create_dir` makes the
    /// directory when it does not exist (used by `create`).
    pub fn open(location: &Location, create_dir: bool) -> Result<Storage> {
        let (store, prefix, local_root): (Arc<dyn ObjectStore>, String, Option<PathBuf>) =
            match location {
                Location::Fs(path) => {
                    if create_dir {
                        std::fs::create_dir_all(path)
                            .map_err(|e| Error::io("create store directory", path, e))?;
                    } else if !path.is_dir() {
                        return Err(Error::NotAStore {
                            location: location.to_string(),
                            found: None,
                        });
                    }
                    let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                        .map_err(|e| Error::storage(format!("opening {}", path.display()), e))?
                        .with_fsync(true)
                        .with_automatic_cleanup(true);
                    (Arc::new(fs), String::new(), Some(path.clone()))
                }
                Location::Memory => (
                    Arc::new(object_store::memory::InMemory::new()),
                    String::new(),
                    None,
                ),
            };
        Storage::from_object_store(store, &prefix, &location.to_string(), local_root)
    }

    /// Wraps an existing backend (for tests and embedders).
    pub fn from_object_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        location: &str,
        local_root: Option<PathBuf>,
    ) -> Result<Storage> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .thread_name("kloset-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("start I/O runtime for", location, e))?;
        Ok(Storage {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            location: location.to_string(),
            local_root,
            rt: Arc::new(IoRuntime(Some(rt))),
        })
    }

    /// The location as shown to users (never contains credentials).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The backend itself, for importers and exporters that work on raw
    /// objects (`bucket`); store objects go through the typed methods.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The key prefix inside the backend (empty for none).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether requests go over a network (S3, SFTP, Azure, …): neither a
    /// local directory nor memory. Readers then keep more requests in
    /// flight and cache tree packs locally.
    pub fn is_remote(&self) -> bool {
        self.local_root.is_none() && !self.is_memory()
    }

    /// Whether the store lives in this process's memory (tests, `mem://`):
    /// nothing of it is cached on disk.
    pub fn is_memory(&self) -> bool {
        self.location.starts_with("memory") || self.location.starts_with("mem://")
    }

    /// For local stores, the directory on disk.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    fn full(&self, rel: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match &self.rt.0 {
            Some(rt) => rt.block_on(f),
            None => unreachable_runtime(),
        }
    }

    /// Runs a future on the storage runtime (for parallel requests).
    pub fn run<F: std::future::Future>(&self, f: F) -> F::Output {
        self.block_on(f)
    }

    /// Reads a whole object.
    pub fn get(&self, key: Key) -> Result<Bytes> {
        let rel = key.path();
        self.block_on(self.get_async(&rel))
    }

    /// Reads a whole object by relative path.
    pub async fn get_async(&self, rel: &str) -> Result<Bytes> {
        let path = self.full(rel);
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.read_error(rel, e))?;
        result.bytes().await.map_err(|e| self.read_error(rel, e))
    }

    /// Streams a byte range of an object into `file` (from its current
    /// position) and returns the bytes written, holding one network buffer
    /// at a time. Fewer bytes than asked means the object is shorter.
    pub async fn get_range_to_file_async(
        &self,
        rel: &str,
        range: Range<u64>,
        file: &mut std::fs::File,
    ) -> Result<u64> {
        use std::io::Write;
        let path = self.full(rel);
        let options = object_store::GetOptions::default().with_range(Some(range));
        let result = self
            .store
            .get_opts(&path, options)
            .await
            .map_err(|e| self.read_error(rel, e))?;
        let mut stream = result.into_stream();
        let mut written = 0u64;
        while let Some(part) = stream
            .try_next()
            .await
            .map_err(|e| self.read_error(rel, e))?
        {
            file.write_all(&part)
                .map_err(|e| Error::io("write", format!("the local copy of {rel}"), e))?;
            written += part.len() as u64;
        }
        Ok(written)
    }

    /// Reads a byte range of an object.
    pub fn get_range(&self, key: Key, range: Range<u64>) -> Result<Bytes> {
        let rel = key.path();
        self.block_on(self.get_range_async(&rel, range))
    }

    /// Reads a byte range of an object by relative path. A short read (the
    /// object is smaller than the index says) is reported as corruption.
    pub async fn get_range_async(&self, rel: &str, range: Range<u64>) -> Result<Bytes> {
        let want = range.end - range.start;
        let bytes = self
            .store
            .get_range(&self.full(rel), range)
            .await
            .map_err(|e| self.read_error(rel, e))?;
        if bytes.len() as u64 != want {
            return Err(Error::corrupt(
                rel,
                format!("truncated: wanted {want} bytes, got {}", bytes.len()),
            ));
        }
        Ok(bytes)
    }

    fn read_error(&self, rel: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound {
                what: format!("object {rel} in {}", self.location),
            },
            // A range past the end of a truncated object.
            object_store::Error::NotModified { .. } | object_store::Error::Precondition { .. } => {
                Error::storage(format!("reading {rel}"), e)
            }
            other => {
                let msg = other.to_string();
                if msg.contains("Range") || msg.contains("range") {
                    Error::corrupt(rel, format!("truncated: {msg}"))
                } else {
                    Error::storage(format!("reading {rel}"), other)
                }
            }
        }
    }

    /// Writes an object, replacing any object of that name.
    pub fn put(&self, key: Key, data: Bytes) -> Result<()> {
        let rel = key.path();
        self.block_on(self.put_async(&rel, data, PutMode::Overwrite))
    }

    /// Writes an object that must not exist yet.
    pub fn put_new(&self, key: Key, data: Bytes) -> Result<()> {
        let rel = key.path();
        self.block_on(self.put_async(&rel, data, PutMode::Create))
    }

    /// Writes an object by relative path.
    pub async fn put_async(&self, rel: &str, data: Bytes, mode: PutMode) -> Result<()> {
        let opts = PutOptions::from(mode);
        self.store
            .put_opts(&self.full(rel), PutPayload::from(data), opts)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                object_store::Error::AlreadyExists { .. } => Error::AlreadyExists {
                    location: self.location.clone(),
                    what: format!("an object named {rel}"),
                },
                other => Error::storage(format!("writing {rel}"), other),
            })
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub fn delete(&self, rel: &str) -> Result<()> {
        self.block_on(self.delete_async(rel))
    }

    /// [`Storage::delete`] for async callers.
    pub async fn delete_async(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.full(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::storage(format!("deleting {rel}"), e)),
        }
    }

    /// Lists every object under `dir` (recursively), or the whole store.
    pub fn list(&self, dir: Option<&str>) -> Result<Vec<Listed>> {
        let prefix = match dir {
            Some(d) => Some(self.full(d)),
            None if self.prefix.is_empty() => None,
            None => Some(ObjPath::from(self.prefix.as_str())),
        };
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        self.block_on(async {
            let metas: Vec<_> = self
                .store
                .list(prefix.as_ref())
                .try_collect()
                .await
                .map_err(|e| {
                    Error::storage(format!("listing {}", dir.unwrap_or("the store")), e)
                })?;
            Ok(metas
                .into_iter()
                .map(|m| {
                    let full = m.location.to_string();
                    Listed {
                        path: full.strip_prefix(&strip).unwrap_or(&full).to_string(),
                        size: m.size,
                    }
                })
                .collect())
        })
    }
}

fn unreachable_runtime() -> ! {
    // The runtime is only taken in Drop, after which no method can run.
    panic!("kloset storage runtime used after drop")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_locations() {
        assert_eq!(
            Location::parse("/tmp/x").expect("p"),
            Location::Fs("/tmp/x".into())
        );
        assert_eq!(
            Location::parse("fs:///tmp/x").expect("p"),
            Location::Fs("/tmp/x".into())
        );
        assert!(
            matches!(Location::parse("rel/dir").expect("p"), Location::Fs(p) if p.is_absolute())
        );
        assert!(Location::parse("s3://bucket/a").is_err());
        assert_eq!(Location::parse("mem://").expect("mem"), Location::Memory);
        assert!(Location::parse("ftp://x").is_err());
        assert!(Location::parse("").is_err());
    }

    #[test]
    fn keys_and_memory_round_trip() {
        let s = Storage::open(&Location::Memory, false).expect("open");
        let id = PackId::random();
        assert!(
            Key::Pack(id)
                .path()
                .starts_with(&format!("packs/{}/", &id.to_hex()[..2]))
        );
        s.put_new(Key::Pack(id), Bytes::from_static(b"0123456789"))
            .expect("put");
        assert_eq!(
            s.get_range(Key::Pack(id), 2..5).expect("range").as_ref(),
            b"234"
        );
        let err = s
            .put_new(Key::Pack(id), Bytes::from_static(b"x"))
            .expect_err("exists");
        assert_eq!(err.kind(), crate::error::ErrorKind::AlreadyExists);
        assert_eq!(s.list(Some(PACKS_DIR)).expect("list").len(), 1);
        assert_eq!(
            s.get(Key::Header).expect_err("missing").kind(),
            crate::error::ErrorKind::NotFound
        );
    }
}
