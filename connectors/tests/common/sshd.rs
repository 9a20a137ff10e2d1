//! A real OpenSSH server for tests: `/usr/sbin/sshd -D -e` on a free
//! loopback port with its own ed25519 host key, a client key in an
//! `authorized_keys` file in a temporary directory, and `internal-sftp`.
//! Killed when dropped.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kloset_connectors::sftp::{SftpAuth, SftpConfig};

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd and the files a client needs.
pub struct Sshd {
    child: Child,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// Keys, config, logs (and room for test data).
    pub dir: tempfile::TempDir,
    /// The client's private key (no passphrase), authorized for every user.
    pub client_key: PathBuf,
    /// A known_hosts file listing the server's host key.
    pub known_hosts: PathBuf,
    log: PathBuf,
}

/// Runs `ssh-keygen` to make an ed25519 key pair at `path`.
pub fn keygen(path: &Path, passphrase: &str) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "kloset-test",
            "-f",
        ])
        .arg(path)
        .output()
        .expect("run ssh-keygen (apt-get install -y openssh-client)");
    assert!(out.status.success(), "ssh-keygen: {:?}", out);
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("addr").port()
}

impl Sshd {
    /// Starts a server; panics with the install hint when sshd is missing.
    pub fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install the OpenSSH server (apt-get install -y openssh-server)"
        );
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::tempdir().expect("tmp");
        // Other users (the `nobody` test) must reach authorized_keys.
        set_mode(dir.path(), 0o755);
        let host_key = dir.path().join("host_ed25519");
        keygen(&host_key, "");
        let client_key = dir.path().join("client_ed25519");
        keygen(&client_key, "");
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).expect("authorized_keys");
        set_mode(&authorized, 0o644);
        let log = dir.path().join("sshd.log");
        let public = std::fs::read_to_string(host_key.with_extension("pub")).expect("host pub");
        let mut fields = public.split_whitespace();
        let (kind, key) = (
            fields.next().expect("key type").to_string(),
            fields.next().expect("key data").to_string(),
        );
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                     StrictModes no\nPidFile none\nUsePAM no\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                     MaxStartups 100:30:200\nMaxSessions 64\nLogLevel VERBOSE\n\
                     Subsystem sftp internal-sftp\n",
                    host_key.display(),
                    authorized.display()
                ),
            )
            .expect("sshd_config");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log"))
                .spawn()
                .expect("spawn sshd");
            if !wait_ready(&mut child, port, &log) {
                // The port was taken meanwhile: try another one.
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            let known_hosts = dir.path().join("known_hosts");
            std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {kind} {key}\n"))
                .expect("known_hosts");
            return Sshd {
                child,
                port,
                dir,
                client_key,
                known_hosts,
                log,
            };
        }
        panic!("sshd did not start on a free port in 5 attempts");
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The host key's fingerprint as `ssh-keygen -l` prints it (`SHA256:...`).
    pub fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join("host_ed25519.pub"))
            .output()
            .expect("ssh-keygen -l");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split_whitespace()
            .nth(1)
            .expect("fingerprint field")
            .to_string()
    }

    /// Client settings for `user` rooted at `path`, with the client key.
    pub fn config(&self, user: &str, path: &Path) -> SftpConfig {
        let mut c = SftpConfig::new(
            "127.0.0.1",
            user,
            path.to_str().expect("utf-8 path"),
            SftpAuth::KeyFile {
                path: self.client_key.clone(),
                passphrase: None,
            },
        );
        c.port = self.port;
        c.known_hosts = self.known_hosts.clone();
        c.timeout = Duration::from_secs(120);
        c
    }

    /// Backend options for `Storage::open` with the client key.
    pub fn options(&self) -> Vec<(String, String)> {
        vec![
            (
                "sftp_key_file".to_string(),
                self.client_key.display().to_string(),
            ),
            (
                "sftp_known_hosts_file".to_string(),
                self.known_hosts.display().to_string(),
            ),
        ]
    }

    /// `sftp://user@127.0.0.1:PORT/path`.
    pub fn url(&self, user: &str, path: &Path) -> String {
        format!("sftp://{user}@127.0.0.1:{}{}", self.port, path.display())
    }
}

/// Polls until `port` accepts connections; false if sshd exited because
/// the address was in use, panics on any other exit.
fn wait_ready(child: &mut Child, port: u16, log: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait sshd") {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("Address already in use") {
                return false;
            }
            panic!("sshd exited with {status}:\n{text}");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "sshd did not listen within 60 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chmod.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
