//! A real Azure Blob Storage emulator for tests: Azurite's `azurite-blob`
//! on a free loopback port with its data in a temporary directory.
//!
//! Azurite is the npm package pinned in `tests/azurite/package.json`;
//! `scripts/test` installs it with `npm ci --prefix tests/azurite` (or set
//! `$AZURITE_BLOB_BIN`). It serves the well-known development account
//! [`ACCOUNT`] with the public key [`ACCOUNT_KEY`], path-style:
//! `http://127.0.0.1:PORT/devstoreaccount1/CONTAINER/BLOB`. Containers are
//! created through Azurite's REST API (`tests/azurite/create-container.mjs`
//! signs the request with the account key).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

use super::server::{free_port, wait_ready};

/// The development account every Azurite serves.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Its key, published in Azurite's documentation (not a secret anywhere
/// but in these tests, which still check it never shows).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// How long to wait for Azurite to accept connections (Node starts slowly).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `azurite-blob`; killed (and its data removed) on drop.
#[derive(Debug)]
pub struct Azurite {
    child: Child,
    port: u16,
    /// Holds `data/` (Azurite's `--location`) and `azurite.log`.
    dir: TempDir,
}

/// `tests/azurite`, where the npm package is installed.
fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/azurite")
}

/// The `azurite-blob` program.
fn find_azurite() -> PathBuf {
    match std::env::var_os("AZURITE_BLOB_BIN") {
        Some(p) => PathBuf::from(p),
        None => package_dir().join("node_modules/.bin/azurite-blob"),
    }
}

impl Azurite {
    /// Starts Azurite; panics if it is not installed or does not come up.
    pub fn start() -> Azurite {
        let bin = find_azurite();
        assert!(
            bin.exists(),
            "{} not found: run `npm ci --prefix tests/azurite` (scripts/test does) or set AZURITE_BLOB_BIN",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("kloset-azurite-")
            .tempdir()
            .expect("create temp dir for azurite");
        std::fs::create_dir_all(dir.path().join("data")).expect("mkdir data");
        // The port is found by binding port 0 and released before Azurite
        // binds it; another process may take it in between, so retry.
        let mut last_error = String::new();
        for _ in 0..5 {
            match spawn(&bin, dir.path()) {
                Ok((child, port)) => return Azurite { child, port, dir },
                Err(e) => last_error = e,
            }
        }
        panic!("azurite ({}) did not start: {last_error}", bin.display());
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The account's endpoint: `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Creates a container (it may exist already).
    pub fn create_container(&self, name: &str) {
        let mut child = Command::new("node")
            .arg(package_dir().join("create-container.mjs"))
            .args([self.endpoint().as_str(), ACCOUNT, name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run node create-container.mjs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ACCOUNT_KEY.as_bytes())
            .expect("write the key");
        let out = child.wait_with_output().expect("wait for node");
        assert!(
            out.status.success(),
            "create container {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `container` through object_store's Azure backend with the account key.
    pub fn container_storage(&self, container: &str) -> kloset::Storage {
        let azure = object_store::azure::MicrosoftAzureBuilder::new()
            .with_account(ACCOUNT)
            .with_access_key(ACCOUNT_KEY)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_container_name(container)
            .build()
            .expect("an Azure backend");
        kloset::Storage::from_object_store(
            std::sync::Arc::new(azure),
            "",
            &format!("azure://{container}"),
            None,
        )
        .expect("open the container")
    }

    /// Azurite's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }
}

fn spawn(bin: &Path, dir: &Path) -> Result<(Child, u16), String> {
    let port = free_port();
    let log = dir.join("azurite.log");
    let log_file = std::fs::File::create(&log).map_err(|e| format!("create log: {e}"))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("clone log: {e}"))?;
    let mut child = Command::new(bin)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(dir.join("data"))
        .args(["--skipApiVersionCheck", "--loose", "--disableTelemetry"])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    // This line proves that this very process bound the port.
    let listening = format!("successfully listens on http://127.0.0.1:{port}");
    wait_ready(&mut child, port, &log, &listening, STARTUP_TIMEOUT)?;
    Ok((child, port))
}

impl Drop for Azurite {
    fn drop(&mut self) {
        // Errors only mean it is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
