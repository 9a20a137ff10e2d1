//! A real S3 server for tests: the `s3s-fs` binary on a free loopback port.
//!
//! Install it with `cargo install s3s-fs@0.14.1 --features binary --locked`
//! (`.ci/run` does). It is looked up in `$S3S_FS_BIN`, then on `PATH`, then
//! in `~/.cargo/bin`. When it cannot be found the test panics, unless
//! `KLOSET_SKIP_S3=1` is set, in which case [`S3Server::start_or_skip`]
//! returns `None` (and [`S3Server::start`] still panics).
//!
//! # How s3s-fs 0.14.1 keeps data on disk
//!
//! With `ROOT` the directory given on its command line:
//! - a bucket is the directory `ROOT/BUCKET` (created here before use);
//! - an object is the plain file `ROOT/BUCKET/KEY`, byte for byte what was
//!   put; `/` in keys become subdirectories, which are never removed when
//!   objects are deleted (so empty directories may linger: count files only);
//! - side files live at the top of `ROOT`, never inside the bucket:
//!   `.bucket-B64(bucket).object-B64(key).internal.json` (the ETag, an MD5 of
//!   the uploaded bytes, plus checksums) and `….metadata.json` (content type
//!   and user metadata), both with URL-safe unpadded base64 names;
//!   multipart parts are `ROOT/.upload_id-UUID.part-N` with
//!   `ROOT/.upload-UUID.json` until completion; writes go through
//!   `ROOT/.tmp.N.internal.part` and a rename, so objects appear atomically.
//! - Tampering: editing `ROOT/BUCKET/KEY` in place is served as is on GET
//!   (s3s-fs does not verify it); the ETag it reports stays the stored one
//!   from `internal.json`, and checksums are only reported while the size is
//!   unchanged. Deleting the file makes the key disappear (NoSuchKey, not
//!   listed). Listing walks the bucket directory, so a file dropped there by
//!   hand is listed as an object.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Access key the server accepts.
pub const ACCESS_KEY: &str = "kloset-test-access";
/// Secret key the server accepts.
pub const SECRET_KEY: &str = "kloset-test-secret-0123456789";
/// Bucket created by [`S3Server::start`].
pub const BUCKET: &str = "kloset-test";
/// How long to wait for the server to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `s3s-fs`; killed (and its data removed) on drop.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    port: u16,
    bucket: String,
    /// Holds `data/` (the server's root) and `s3s-fs.log`.
    dir: TempDir,
}

/// The `s3s-fs` binary, if it can be found.
pub fn find_s3s_fs() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("S3S_FS_BIN") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|c| c.join("bin"));
    on_path
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("s3s-fs"))
        .find(|p| p.is_file())
}

fn skip_requested() -> bool {
    std::env::var("KLOSET_SKIP_S3").is_ok_and(|v| v == "1")
}

impl S3Server {
    /// Starts a server with the bucket [`BUCKET`]; panics if `s3s-fs` is
    /// missing or does not come up.
    pub fn start() -> Self {
        let Some(bin) = find_s3s_fs() else {
            panic!(
                "s3s-fs not found (looked in $S3S_FS_BIN, PATH and ~/.cargo/bin). Install it with \
                 `cargo install s3s-fs@0.14.1 --features binary --locked`, or set KLOSET_SKIP_S3=1 \
                 to skip the S3 tests"
            );
        };
        let dir = tempfile::Builder::new()
            .prefix("kloset-s3s-")
            .tempdir()
            .expect("create temp dir for s3s-fs");
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join(BUCKET)).expect("create bucket directory");
        // The port is found by binding port 0 and released before s3s-fs
        // binds it; another process may grab it in between, so retry.
        let mut last_error = String::new();
        for _ in 0..5 {
            match spawn(&bin, &data, &dir.path().join("s3s-fs.log")) {
                Ok((child, port)) => {
                    return Self {
                        child,
                        port,
                        bucket: BUCKET.to_owned(),
                        dir,
                    };
                }
                Err(e) => last_error = e,
            }
        }
        panic!("s3s-fs ({}) did not start: {last_error}", bin.display());
    }

    /// Like [`S3Server::start`], but returns `None` (after saying so on
    /// stderr) when `KLOSET_SKIP_S3=1` is set. Use as
    /// `let Some(s3) = S3Server::start_or_skip() else { return };`.
    pub fn start_or_skip() -> Option<Self> {
        if skip_requested() {
            eprintln!("KLOSET_SKIP_S3=1: skipping a test that needs s3s-fs");
            return None;
        }
        Some(Self::start())
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The server's root directory (buckets and side files).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory holding the bucket's objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root().join(&self.bucket)
    }

    /// Creates another bucket (names need at least 3 characters) and returns its directory.
    pub fn create_bucket(&self, name: &str) -> PathBuf {
        assert!(
            name.len() >= 3,
            "s3s-fs bucket names need at least 3 characters"
        );
        let path = self.root().join(name);
        std::fs::create_dir_all(&path).expect("create bucket directory");
        path
    }

    /// `bucket` through the S3 API, with the right credentials.
    pub fn bucket_storage(&self, bucket: &str) -> kloset::Storage {
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(self.endpoint())
            .with_region("us-east-1")
            .with_allow_http(true)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .expect("configure the bucket");
        let location = format!("s3://{bucket}");
        kloset::Storage::from_object_store(std::sync::Arc::new(s3), "", &location, None)
            .expect("open the bucket")
    }

    /// The environment the `kloset` CLI needs to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// `s3://BUCKET/prefix` (`s3://BUCKET` for an empty prefix).
    pub fn location(&self, prefix: &str) -> String {
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{prefix}", self.bucket)
        }
    }

    /// Every object in the bucket, as the files s3s-fs keeps them in
    /// (absolute paths, sorted). The object's key is the path relative to
    /// [`S3Server::bucket_dir`].
    pub fn objects(&self) -> Vec<PathBuf> {
        self.objects_under("")
    }

    /// The objects whose keys lie below `prefix` (a key prefix ending at a `/` boundary).
    pub fn objects_under(&self, prefix: &str) -> Vec<PathBuf> {
        let base = self.bucket_dir().join(prefix.trim_matches('/'));
        let mut out = Vec::new();
        let mut stack = vec![base];
        while let Some(dir) = stack.pop() {
            let Ok(iter) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in iter {
                let entry = entry.expect("read bucket directory entry");
                let ft = entry.file_type().expect("file type in bucket");
                if ft.is_dir() {
                    stack.push(entry.path());
                } else if ft.is_file() {
                    out.push(entry.path());
                }
            }
        }
        out.sort();
        out
    }

    /// The object key of a path returned by [`S3Server::objects`].
    pub fn key_of(&self, object: &Path) -> String {
        object
            .strip_prefix(self.bucket_dir())
            .expect("object path lies in the bucket directory")
            .to_str()
            .expect("object key is UTF-8")
            .to_owned()
    }

    /// Kills the server, as an outage would; its data stays.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port with the same data, after
    /// [`S3Server::stop`].
    pub fn restart(&mut self) {
        let bin = find_s3s_fs().expect("s3s-fs");
        let log = self.dir.path().join("s3s-fs.log");
        // The port was just released; another process may hold it briefly.
        let mut last = String::new();
        for _ in 0..50 {
            match spawn_on(&bin, &self.root(), &log, self.port) {
                Ok(child) => {
                    self.child = child;
                    return;
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("s3s-fs did not restart on port {}: {last}", self.port);
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("s3s-fs.log")).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // Errors only mean it is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

/// Starts s3s-fs on a free port and waits until it accepts connections.
fn spawn(bin: &Path, data: &Path, log: &Path) -> Result<(Child, u16), String> {
    let port = free_port();
    spawn_on(bin, data, log, port).map(|child| (child, port))
}

/// Starts s3s-fs on `port` and waits until it accepts connections.
fn spawn_on(bin: &Path, data: &Path, log: &Path, port: u16) -> Result<Child, String> {
    let log_file = std::fs::File::create(log).map_err(|e| format!("create log: {e}"))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("clone log: {e}"))?;
    let mut child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(data)
        // The "server is running" line proves that this very process bound
        // the port (and not some other server that raced for it).
        .env("RUST_LOG", "warn,s3s_fs=info")
        .env_remove("RUST_LOG_STYLE")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("exited with {status} on port {port}; log:\n{log}"));
        }
        let running = format!("server is running at http://{addr}");
        let bound = std::fs::read_to_string(log).is_ok_and(|l| l.contains(&running));
        if bound && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "not accepting connections on port {port} after {STARTUP_TIMEOUT:?}; log:\n{log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
