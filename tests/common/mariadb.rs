//! A real MariaDB server for tests: a private instance initialised with
//! `mariadb-install-db` in a temporary directory and started as `mariadbd`
//! on a free loopback port (never the system service). Debian's
//! `mariadb-server` and `mariadb-client` provide the programs
//! (`scripts/test` installs them). Administration goes through the socket
//! as `root` (no password); tests create their own users with passwords.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

use super::server::{free_port, wait_ready};

/// How long to wait for the server to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `mariadbd`; killed (and its data removed) on drop.
#[derive(Debug)]
pub struct MariaDb {
    child: Child,
    port: u16,
    dir: TempDir,
}

fn program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} not found: apt-get install mariadb-server mariadb-client (scripts/test does)");
}

/// `--user=root` when running as root (mariadbd refuses root otherwise).
fn as_user() -> Vec<String> {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(1);
    if uid == 0 {
        vec!["--user=root".to_owned()]
    } else {
        Vec::new()
    }
}

impl MariaDb {
    /// Initialises a data directory and starts the server; panics if
    /// MariaDB is missing or does not come up.
    pub fn start() -> MariaDb {
        let dir = tempfile::Builder::new()
            .prefix("kloset-mariadb-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        // A private tmpdir: the bootstrap's temporary tables must not live
        // in a /tmp that other tests (and their cleanup) share.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).expect("mariadb tmpdir");
        let out = Command::new(program("mariadb-install-db"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(as_user())
            .output()
            .expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut last_error = String::new();
        for _ in 0..5 {
            match spawn(dir.path()) {
                Ok((child, port)) => return MariaDb { child, port, dir },
                Err(e) => last_error = e,
            }
        }
        panic!("mariadbd did not start: {last_error}");
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// Runs `sql` as root over the socket (in `database` when given) and
    /// returns the tab-separated output; panics on failure.
    pub fn admin(&self, database: Option<&str>, sql: &str) -> String {
        let mut cmd = Command::new(program("mariadb"));
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args([
                "--user=root",
                "--batch",
                "--skip-column-names",
                "--binary-mode",
                "--default-character-set=utf8mb4",
            ]);
        cmd.args(database.map(|d| format!("--database={d}")));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mariadb");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(sql.as_bytes())
            .expect("write sql");
        let out = child.wait_with_output().expect("wait for mariadb");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's error log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

fn spawn(dir: &Path) -> Result<(Child, u16), String> {
    let port = free_port();
    let log = dir.join("error.log");
    let _ = std::fs::remove_file(&log);
    let mut child = Command::new(program("mariadbd"))
        .arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--socket={}", dir.join("sock").display()))
        .arg(format!("--tmpdir={}", dir.join("tmp").display()))
        .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
        .arg(format!("--log-error={}", log.display()))
        .arg(format!("--port={port}"))
        .args([
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=16M",
            "--innodb-log-file-size=8M",
        ])
        .args(as_user())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn mariadbd: {e}"))?;
    wait_ready(
        &mut child,
        port,
        &log,
        "ready for connections",
        STARTUP_TIMEOUT,
    )?;
    Ok((child, port))
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // Errors only mean it is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
