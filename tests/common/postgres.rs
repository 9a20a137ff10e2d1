//! A real PostgreSQL server for tests: `initdb` and `postgres` in a temp
//! directory, listening on a free loopback port and a private socket dir.
//!
//! The binaries are looked up in `$PG_BIN`, then in the newest
//! `/usr/lib/postgresql/N/bin` (Debian's `postgresql` package, which
//! `scripts/test` installs), then through `pg_config --bindir`; missing,
//! the test panics with an install hint. PostgreSQL refuses to run as root,
//! so as root the server runs as the `postgres` system user (`setpriv`) in a
//! directory it owns.
//!
//! Authentication: the Unix socket trusts everyone (the harness administers
//! the server through it as the superuser `postgres`); TCP on 127.0.0.1
//! demands SCRAM passwords, so a wrong password really fails. The role
//! [`ROLE`] (password [`PASSWORD`], `CREATEDB`) is created at start.
//! Dropping the server stops it (SIGINT, then SIGKILL after a deadline) and
//! removes its directory.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A login role with a password and `CREATEDB`, created at start.
pub const ROLE: &str = "kloset";
/// Its password.
pub const PASSWORD: &str = "kl0set-Test-pa55word";
/// How long to wait for the server to accept connections (and to stop).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `postgres`; stopped and removed on drop.
#[derive(Debug)]
pub struct PgServer {
    child: Child,
    port: u16,
    bin: PathBuf,
    /// Holds `data/`, `socket/` and `postgres.log`.
    dir: TempDir,
}

/// The directory holding `initdb`, `postgres`, `psql`, `pg_dump`, ...
pub fn find_pg_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(p));
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin);
    newest.or_else(|| {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        let bin = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        bin.join("initdb").is_file().then_some(bin)
    })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` run as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn must(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

/// A loopback port nothing listens on (for "connection refused").
pub fn closed_port() -> u16 {
    free_port()
}

impl PgServer {
    /// Initialises a cluster, starts it and creates [`ROLE`]; panics if
    /// PostgreSQL is missing or does not come up.
    pub fn start() -> Self {
        let Some(bin) = find_pg_bin() else {
            panic!(
                "PostgreSQL server binaries not found (looked in $PG_BIN, /usr/lib/postgresql/*/bin \
                 and pg_config --bindir). Install them with `apt-get install postgresql` \
                 (scripts/test does), or point PG_BIN at the directory holding initdb"
            );
        };
        let dir = tempfile::Builder::new()
            .prefix("kloset-pg-")
            .tempdir()
            .expect("create temp dir for postgres");
        let socket = dir.path().join("socket");
        std::fs::create_dir(&socket).expect("socket dir");
        if running_as_root() {
            let id = |flag: &str| -> u32 {
                let out = must("id", Command::new("id").args([flag, "postgres"]).output());
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("numeric id of the postgres user")
            };
            let (uid, gid) = (id("-u"), id("-g"));
            for d in [dir.path(), socket.as_path()] {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let data = dir.path().join("data");
        must(
            "initdb",
            as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .output(),
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("write pg_hba.conf");
        // The port is free when chosen but may be taken before postgres
        // binds it: retry on a fresh one.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn(&bin, &data, &socket, port, &dir.path().join("postgres.log")) {
                Ok(child) => {
                    let server = PgServer {
                        child,
                        port,
                        bin,
                        dir,
                    };
                    server.admin(
                        "postgres",
                        &format!("CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'"),
                    );
                    return server;
                }
                Err(e) => last_error = e,
            }
        }
        panic!("postgres ({}) did not start: {last_error}", bin.display());
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the client and server programs.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// Runs `sql` in `database` as the superuser over the socket and
    /// returns psql's unaligned output; panics (with the log) on failure.
    pub fn admin(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
            ])
            .arg("-h")
            .arg(self.socket())
            .args(["-p", &self.port.to_string(), "-d", database, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql as postgres in {database} failed: {}\nSQL: {sql}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).expect("psql output is UTF-8")
    }

    /// Runs `sql` in `database` as `user` over TCP with a password (the way
    /// klosetd connects); panics on failure.
    pub fn sql_as(&self, user: &str, password: &str, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--no-password",
            ])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", user])
            .args(["-d", database, "-c", sql])
            .env("PGPASSWORD", password)
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql as {user} in {database} failed: {}\nSQL: {sql}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("psql output is UTF-8")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: backends end, shared memory
        // is released. SIGKILL only if it does not stop in time.
        let _ = Command::new("kill")
            .args(["-s", "INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts postgres and waits until it accepts queries on both the socket
/// and the TCP port.
fn spawn(bin: &Path, data: &Path, socket: &Path, port: u16, log: &Path) -> Result<Child, String> {
    let log_file = std::fs::File::create(log).map_err(|e| format!("create log: {e}"))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("clone log: {e}"))?;
    let mut child = as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", socket.display()))
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "shared_buffers=16MB"])
        .args(["-c", "max_connections=40", "-c", "logging_collector=off"])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("exited with {status} on port {port}; log:\n{log}"));
        }
        let ready = Command::new(bin.join("pg_isready"))
            .arg("-h")
            .arg(socket)
            .args(["-p", &port.to_string(), "-q"])
            .status()
            .is_ok_and(|s| s.success());
        let tcp = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(200),
        )
        .is_ok();
        if ready && tcp {
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
        std::thread::sleep(Duration::from_millis(50));
    }
}
