//! Shared helpers for the kloset library tests: deterministic trees, a
//! fault-injecting object store, fast store creation and tree comparison.
#![allow(dead_code)]

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use kloset::repository::CreateOptions;
use kloset::{Repository, Storage};
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

pub const PASS: &[u8] = b"test passphrase";

/// Options for a fast test store: cheap KDF, small packs.
pub fn create_options(pack_size: u32) -> CreateOptions {
    let mut o = CreateOptions {
        kdf: kloset::crypto::KdfParams::with_cost(64, 1, 1),
        ..Default::default()
    };
    o.config.pack_size = pack_size;
    o
}

/// A tiny deterministic PRNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// Writes `files` files of random sizes (0..max) under `root` in a few dirs.
pub fn make_tree(root: &Path, seed: u64, files: usize, max: usize) {
    let mut rng = Rng::new(seed);
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 5));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let len = (rng.next() as usize) % max.max(1);
        std::fs::write(dir.join(format!("f{i}")), rng.bytes(len)).expect("write");
    }
    std::fs::create_dir_all(root.join("empty")).expect("mkdir");
    std::os::unix::fs::symlink("d0/f0", root.join("link")).expect("symlink");
}

/// Compares two trees: names, types, contents, modes, symlink targets.
pub fn assert_same_tree(a: &Path, b: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut names_a: Vec<_> = std::fs::read_dir(a)
        .expect("read a")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let mut names_b: Vec<_> = std::fs::read_dir(b)
        .expect("read b")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names_a.sort();
    names_b.sort();
    assert_eq!(
        names_a,
        names_b,
        "entries of {} vs {}",
        a.display(),
        b.display()
    );
    for n in names_a {
        let (pa, pb) = (a.join(&n), b.join(&n));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa).expect("a"),
            std::fs::symlink_metadata(&pb).expect("b"),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", pa.display());
        assert_eq!(
            ma.permissions().mode(),
            mb.permissions().mode(),
            "{}",
            pa.display()
        );
        if ma.is_dir() {
            assert_same_tree(&pa, &pb);
        } else if ma.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&pa).expect("a"),
                std::fs::read_link(&pb).expect("b")
            );
        } else {
            assert!(
                std::fs::read(&pa).expect("a") == std::fs::read(&pb).expect("b"),
                "content of {}",
                pa.display()
            );
        }
    }
}

/// An object store that fails every write after a budget of writes, like a
/// process that crashes at that point. Reads keep working. Deletes count
/// as writes once `faulty_deletes` is set.
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    /// Writes still allowed; negative = unlimited.
    pub budget: Arc<AtomicI64>,
    /// Writes performed.
    pub writes: Arc<AtomicI64>,
    /// Whether deletes are writes too (they are a prune's mutations).
    pub faulty_deletes: AtomicBool,
    /// Puts under this prefix wait until `release` is set (a process
    /// paused at that write); `paused` tells that one is waiting.
    pub pause_prefix: std::sync::Mutex<Option<String>>,
    pub paused: AtomicBool,
    pub release: AtomicBool,
    /// Paths of every `get` and ranged read, in order.
    pub reads: std::sync::Mutex<Vec<String>>,
}

impl FaultStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultStore {
            inner,
            budget: Arc::new(AtomicI64::new(-1)),
            writes: Arc::new(AtomicI64::new(0)),
            faulty_deletes: AtomicBool::new(false),
            pause_prefix: std::sync::Mutex::new(None),
            paused: AtomicBool::new(false),
            release: AtomicBool::new(false),
            reads: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Paths read so far.
    pub fn reads(&self) -> Vec<String> {
        self.reads.lock().expect("reads").clone()
    }

    fn record_read(&self, location: &ObjPath) {
        self.reads
            .lock()
            .expect("reads")
            .push(location.as_ref().to_string());
    }

    /// Makes puts under `prefix` wait for [`FaultStore::release`].
    pub fn pause_puts_under(&self, prefix: &str) {
        *self.pause_prefix.lock().expect("pause") = Some(prefix.to_string());
    }

    fn maybe_pause(&self, location: &ObjPath) {
        let hit = self
            .pause_prefix
            .lock()
            .expect("pause")
            .as_ref()
            .is_some_and(|p| location.as_ref().starts_with(p.as_str()));
        if !hit {
            return;
        }
        self.paused.store(true, Ordering::SeqCst);
        while !self.release.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn allow(&self) -> object_store::Result<()> {
        allow_write(&self.budget, &self.writes)
    }
}

/// Takes one write from the budget, or fails like a crash when none is left.
fn allow_write(budget: &AtomicI64, writes: &AtomicI64) -> object_store::Result<()> {
    let left = budget.load(Ordering::SeqCst);
    if left == 0 {
        return Err(object_store::Error::Generic {
            store: "fault",
            source: "injected crash".into(),
        });
    }
    if left > 0 {
        budget.fetch_sub(1, Ordering::SeqCst);
    }
    writes.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.maybe_pause(location);
        self.allow()?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.allow()?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.record_read(location);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &ObjPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.record_read(location);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        if !self.faulty_deletes.load(Ordering::SeqCst) {
            return self.inner.delete_stream(locations);
        }
        let (budget, writes) = (self.budget.clone(), self.writes.clone());
        let gated = locations
            .map(move |location| {
                let location = location?;
                allow_write(&budget, &writes)?;
                Ok(location)
            })
            .boxed();
        self.inner.delete_stream(gated)
    }

    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjPath>,
        offset: &ObjPath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.allow()?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// A storage over `store`.
pub fn storage_over(store: Arc<dyn ObjectStore>) -> Storage {
    Storage::from_object_store(store, "", "memory:test", None).expect("storage")
}

/// A storage over `store` at an `s3://` location, so that it counts as
/// remote (restores take their remote windows and worker counts).
pub fn remote_over(store: Arc<dyn ObjectStore>) -> Storage {
    Storage::from_object_store(store, "", "s3://bucket/test", None).expect("storage")
}

/// A new store on a read-recording memory backend that counts as remote,
/// with packs of `pack_size`; [`remote_over`] the store again to reopen.
pub fn remote_store(pack_size: u32) -> (Arc<FaultStore>, Repository) {
    let store = Arc::new(FaultStore::new(Arc::new(
        object_store::memory::InMemory::new(),
    )));
    let repo = Repository::create(remote_over(store.clone()), PASS, create_options(pack_size))
        .expect("create");
    assert!(repo.storage().is_remote());
    (store, repo)
}

/// Opens a repository on `store`.
pub fn open(store: Arc<dyn ObjectStore>) -> Repository {
    Repository::open(storage_over(store), PASS).expect("open")
}

/// The local importer with a hook around `open`, for tests that play
/// another process's tricks on files at the worst moment: the hook gets
/// the inner importer and does the open itself (before, after, or instead).
pub struct OnOpen<F> {
    pub inner: kloset::import::FsImporter,
    pub hook: F,
}

impl<F> OnOpen<F>
where
    F: for<'a> Fn(
            &'a kloset::import::FsImporter,
            &kloset::import::SourcePath,
            &kloset::tree::Node,
        ) -> std::io::Result<kloset::import::Opened<'a>>
        + Send
        + Sync,
{
    /// The local importer of `root` with `hook` around every open (a
    /// constructor, so the closure's lifetimes are inferred as general).
    pub fn new(root: &Path, hook: F) -> Self {
        OnOpen {
            inner: kloset::import::FsImporter::new(root),
            hook,
        }
    }
}

impl<F> kloset::import::Importer for OnOpen<F>
where
    F: for<'a> Fn(
            &'a kloset::import::FsImporter,
            &kloset::import::SourcePath,
            &kloset::tree::Node,
        ) -> std::io::Result<kloset::import::Opened<'a>>
        + Send
        + Sync,
{
    fn origin(&self) -> String {
        self.inner.origin()
    }
    fn root(&self) -> std::io::Result<kloset::tree::Node> {
        self.inner.root()
    }
    fn list(
        &self,
        dir: &kloset::import::SourcePath,
        listed: &kloset::tree::Node,
    ) -> std::io::Result<Vec<kloset::import::Listed>> {
        self.inner.list(dir, listed)
    }
    fn open(
        &self,
        path: &kloset::import::SourcePath,
        listed: &kloset::tree::Node,
    ) -> std::io::Result<kloset::import::Opened<'_>> {
        (self.hook)(&self.inner, path, listed)
    }
    fn leave(&self, dir: &kloset::import::SourcePath) {
        self.inner.leave(dir)
    }
}

/// `check --read-data` of everything finds no problem.
pub fn assert_clean(repo: &Repository, context: &str) {
    let report = kloset::ops::check::check(
        repo,
        &kloset::ops::check::CheckOptions {
            read_data_percent: Some(100.0),
            ..Default::default()
        },
    )
    .expect("check runs");
    assert!(report.is_ok(), "{context}: {:?}", report.problems);
}
