//! A store under test, on local disk or on the real S3 server, with access
//! to its object files on disk for tampering.

use std::path::{Path, PathBuf};

use super::cli::Kloset;
use super::s3::S3Server;

/// A store location plus where its objects live on disk.
pub struct StoreFixture {
    /// What to pass to `kloset at`.
    pub location: String,
    /// A CLI runner with the right environment.
    pub kloset: Kloset,
    /// Directory holding the store's objects as files (local store dir, or
    /// the S3 bucket directory plus prefix).
    pub objects_dir: PathBuf,
    /// Keeps the S3 server alive.
    _server: Option<S3Server>,
    /// The tree cache of an S3 store (`KLOSET_CACHE_DIR`), private to the
    /// fixture rather than the machine's /var/cache/kloset.
    _cache: Option<tempfile::TempDir>,
}

impl StoreFixture {
    /// A store in `dir` on local disk.
    pub fn local(dir: &Path) -> Self {
        StoreFixture {
            location: dir.display().to_string(),
            kloset: Kloset::new(),
            objects_dir: dir.to_path_buf(),
            _server: None,
            _cache: None,
        }
    }

    /// A store under `prefix` in a bucket of a fresh s3s-fs server; `None`
    /// only when `KLOSET_SKIP_S3=1`.
    pub fn s3(prefix: &str) -> Option<Self> {
        let server = S3Server::start_or_skip()?;
        let cache = tempfile::tempdir().expect("tree cache dir");
        Some(StoreFixture {
            location: server.location(prefix),
            kloset: Kloset::new()
                .envs(server.env())
                .env("KLOSET_CACHE_DIR", cache.path()),
            objects_dir: server.bucket_dir().join(prefix),
            _server: Some(server),
            _cache: Some(cache),
        })
    }

    /// A store under `prefix` of `server`'s bucket (which the caller keeps
    /// running), with `cache` (a private directory) as its tree cache.
    pub fn on_server(server: &S3Server, prefix: &str, cache: &Path) -> Self {
        StoreFixture {
            location: server.location(prefix),
            kloset: Kloset::new()
                .envs(server.env())
                .env("KLOSET_CACHE_DIR", cache),
            objects_dir: server.bucket_dir().join(prefix),
            _server: None,
            _cache: None,
        }
    }

    /// What a client needs in its environment to reach the store's S3
    /// server (nothing for a local store).
    pub fn server_env(&self) -> Vec<(String, String)> {
        self._server.as_ref().map(S3Server::env).unwrap_or_default()
    }

    /// Every object file, sorted, as (path on disk, key relative to the store).
    pub fn objects(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        collect(&self.objects_dir, &self.objects_dir, &mut out);
        out.sort();
        out
    }

    /// `kloset at LOCATION ARGS` that must succeed; returns stdout.
    pub fn must(&self, args: &[&str]) -> String {
        self.kloset.must_at(&self.location, args).stdout_str()
    }

    /// `kloset at LOCATION ARGS` with any outcome.
    pub fn run(&self, args: &[&str]) -> super::cli::Output {
        let mut all = vec!["at", self.location.as_str()];
        all.extend_from_slice(args);
        self.kloset.run(all)
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let e = e.expect("dir entry");
        let path = e.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let key = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            out.push((path, key));
        }
    }
}
